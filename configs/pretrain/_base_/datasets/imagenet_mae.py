# ImageNet-1k folder (root/train/<wnid>/*.JPEG) with MAE-Lite's pre-training augmentation:
# RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3), bicubic) + horizontal flip, nothing else.
data = dict(
    root="data/imagenet",
    train_split="train",
    val_split="val",
    batch_size=512,        # per GPU; optim.total_batch / (batch_size x GPUs) = gradient accumulation
    num_workers=10,
    aug=dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5),
)
