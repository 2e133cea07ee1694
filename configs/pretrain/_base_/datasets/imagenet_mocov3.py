# ImageNet-1k folder (root/train/<wnid>/*.JPEG) with MoCo-v3's pair of views (BYOL's augmentations,
# pretrain.data.mocov3_train_transform): RandomResizedCrop(224, scale=(0.08, 1), bilinear), colour jitter
# (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, flip; Gaussian blur p 1.0 / 0.1, solarisation p 0 / 0.2.
data = dict(
    root="data/imagenet",
    train_split="train",
    val_split="val",
    batch_size=128,        # per GPU (x 8 GPUs = 1024); at least 2: the rest of the batch are the negatives
    num_workers=10,
    transform="mocov3",
    aug=dict(scale=(0.08, 1.0)),
)
