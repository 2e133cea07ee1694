# Oxford Flowers102 (102 classes): trained on train + val (2,040), tested on test (6,149), as MAE-Lite.
# Root: data.root/flowers-102/{jpg/,imagelabels.mat,setid.mat}.
_base_ = ["./_base_/fine_grained.py"]
model = dict(num_classes=102)
data = dict(dataset="flowers102")
