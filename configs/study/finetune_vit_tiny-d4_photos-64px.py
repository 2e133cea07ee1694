# The study's short fine-tune (the "impr." recipe's shape: AdamW, layer-wise lr decay, global average
# pooling, cosine) of the 4-block ViT-Tiny on the photo classes at 64 px, every weight trained: trained on
# the study's "probe" split (32 crops of each photo's training region, or the fraction data.subset keeps),
# scored on "val" (crops of the held-out regions). RandAugment and mixup are left out; 448 images, 4 epochs =
# 28 updates (about twice a probe's time: every weight gets gradients). model.pretrained: a study export
# (none = random init).
_base_ = ["../pretrain/finetune_vit_tiny_300e_in1k.py"]
model = dict(num_classes=14, img_size=64, depth=4, pretrained=None)
data = dict(root="data/photos", train_split="probe", val_split="val", batch_size=64, num_workers=0,
            crop_pct=1.0, aug=dict(auto_augment=None, color_jitter=0.0, scale=(0.5, 1.0)))
mixup = dict(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
optim = dict(base_lr=2e-3, layer_decay=0.75, total_batch=None)
schedule = dict(epochs=4, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=7, checkpoint_interval=None, eval_every=4, progress_bar=False)
