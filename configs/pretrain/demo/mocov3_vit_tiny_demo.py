# Seconds-long MoCo-v3 run on generated images (python tools/make_imagenet_demo.py data/imagenet_demo):
# 64 px views, 2-block ViT-Tiny, heads 256 wide (output 64), fp32, a log record every update.
_base_ = ["../mocov3_vit_tiny_400e_in1k.py"]
model = dict(img_size=64, depth=2, dim=64, mlp_dim=256)
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(base_lr=1.5e-3, total_batch=None)
schedule = dict(epochs=2, warmup_epochs=0)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
