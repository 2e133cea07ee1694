# The study's linear probe (MAE's: frozen backbone, class-token feature -> BatchNorm1d without
# affine -> Linear, LARS) on the photo classes: the 4-block ViT-Tiny at 64 px, trained on the
# study's "probe" split (32 crops of each photo's training region), scored on "val" (crops of
# the held-out regions). model.pretrained: a study export (none = random init). LARS's trust ratio
# makes its steps lr x 0.001 x |w| / |g|: with 42 updates instead of MAE's ~6,000 the rate is
# raised to base_lr 400 (lr 100 at batch 64; 1600 diverged, 20 barely moved from chance).
_base_ = ["../pretrain/linprobe_vit_tiny_90e_in1k.py"]
model = dict(num_classes=14, img_size=64, depth=4, pretrained=None)
data = dict(root="data/photos", train_split="probe", val_split="val", batch_size=64, num_workers=0,
            crop_pct=1.0, aug=dict(scale=(0.5, 1.0)))
optim = dict(base_lr=400.0, total_batch=None)
schedule = dict(epochs=6, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=7, checkpoint_interval=None, eval_every=6, progress_bar=False)
