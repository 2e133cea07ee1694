# The study's MoCo-v3: MoCov3-Tiny (configs/pretrain/mocov3_vit_tiny_400e_in1k.py: base + momentum encoders,
# fixed sin-cos positions, 3-layer projector / 2-layer predictor with BatchNorm, temperature 0.2, symmetric
# InfoNCE, AdamW with weight decay 0.1 on every parameter) scaled down to the 4-block ViT-Tiny on the same
# photo crops as the other recipes, BYOL's two views at 64 px (crop scale 0.2-1 as the study's MAE).
# Scaled for the toy budget (about an MAE study run's cost: an update here runs both views through both
# encoders, about 4x an MAE update at the same batch, measured): the heads are 1024 wide instead of 4096
# (output 256 kept), one epoch at batch 32 (56 updates), the lr raised for the short schedule, and the
# momentum starting at 0.9 instead of 0.99 (at 0.99 the momentum encoder would keep most of its random
# initialisation over 56 updates).
_base_ = ["../../pretrain/mocov3_vit_tiny_400e_in1k.py"]
model = dict(img_size=64, depth=4, mlp_dim=1024, dim=256, momentum=0.9)
data = dict(root="data/photos", batch_size=32, num_workers=0, aug=dict(scale=(0.2, 1.0)))
optim = dict(base_lr=4e-3, total_batch=None)
schedule = dict(epochs=1, warmup_epochs=0.2)
runtime = dict(precision="fp32", log_interval=7, checkpoint_interval=None, progress_bar=False)
