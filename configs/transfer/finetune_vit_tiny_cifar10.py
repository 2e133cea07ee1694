# CIFAR-10 (10 classes, 50,000 / 10,000): MAE-Lite lists it but states no settings; CIFAR-100's run is used.
# Root: data.root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}.
_base_ = ["./_base_/finetune_transfer.py"]
model = dict(num_classes=10)
data = dict(dataset="cifar10")
