# Oxford-IIIT Pet (37 breeds): trainval (3,680) / test (3,669).
# Root: data.root/oxford-iiit-pet/{images/,annotations/trainval.txt,annotations/test.txt}.
_base_ = ["./_base_/fine_grained.py"]
model = dict(num_classes=37)
data = dict(dataset="pets")
