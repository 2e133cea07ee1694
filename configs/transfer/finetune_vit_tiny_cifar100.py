# CIFAR-100 (100 classes, 50,000 / 10,000): scripts/transfer.sh's run: 50 epochs, 10 warm-up, lr 0.1 at
# batch 512, layer decay 0.75 (the base's values). Root: data.root/cifar-100-python/{train,test,meta}.
_base_ = ["./_base_/finetune_transfer.py"]
model = dict(num_classes=100)
data = dict(dataset="cifar100")
