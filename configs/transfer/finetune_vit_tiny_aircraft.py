# FGVC-Aircraft, variant level (100 classes): trainval (6,667) / test (3,333), as MAE-Lite.
# Root: data.root/fgvc-aircraft-2013b/data/{images/,variants.txt,images_variant_trainval.txt,images_variant_test.txt}.
_base_ = ["./_base_/fine_grained.py"]
model = dict(num_classes=100)
data = dict(dataset="aircraft")
