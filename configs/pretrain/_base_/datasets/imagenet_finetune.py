# ImageNet-1k folder with the "impr." fine-tuning augmentation (timm create_transform):
# RandAugment m10 mstd0.5, colour jitter 0.3 (not applied while RandAugment is on, as in the reference),
# no random erasing, bicubic.  Evaluation: resize to 224 / 0.875, centre crop 224.
data = dict(
    root="data/imagenet",
    train_split="train",
    val_split="val",
    batch_size=128,        # per GPU (x 8 GPUs = 1024)
    num_workers=10,
    crop_pct=0.875,
    aug=dict(auto_augment="rand-m10-mstd0.5", color_jitter=0.3, re_prob=0.0, interpolation="bicubic"),
)
mixup = dict(mixup_alpha=0.2, cutmix_alpha=0.0, label_smoothing=0.0)
