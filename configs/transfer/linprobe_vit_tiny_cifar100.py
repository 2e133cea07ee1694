# Linear probe on a transfer set (here CIFAR-100; data.dataset / model.num_classes pick another): the frozen
# backbone's class-token feature -> BatchNorm1d(affine=False) -> Linear, MAE's ImageNet probing recipe
# (LARS, lr 0.1 x batch / 256, no weight decay, 90 epochs, 10 warm-up, RandomResizedCrop + flip) at batch
# 512, the transfer batch. MAE-Lite fine-tunes on these sets and states no probing recipe: this one is ours.
_base_ = ["../pretrain/linprobe_vit_tiny_90e_in1k.py"]
model = dict(num_classes=100)
data = dict(dataset="cifar100", root="data/transfer", batch_size=128)
optim = dict(total_batch=512)
runtime = dict(eval_every=10)
