# MoCov3-Tiny (MAE-Lite projects/mocov3): ViT-Tiny base + momentum encoders (fixed sin-cos positions), projector
# 192 -> 4096 -> 4096 -> 256, predictor 256 -> 4096 -> 256, temperature 0.2, momentum 0.99 -> 1 (cosine).
_base_ = ["./_base_/default_runtime.py", "./_base_/datasets/imagenet_mocov3.py", "./_base_/schedules/mocov3_400e.py"]
task = "pretrain"
model = dict(name="mocov3_vit_tiny", img_size=224, dim=256, mlp_dim=4096, temperature=0.2, momentum=0.99)
