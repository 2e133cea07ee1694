# Linear probing (as MAE): frozen ViT-Tiny, class-token feature -> BatchNorm1d(affine=False) -> Linear.
_base_ = ["./_base_/default_runtime.py", "./_base_/datasets/imagenet_mae.py", "./_base_/schedules/linprobe_90e.py"]
task = "linprobe"
model = dict(arch="vit_tiny", num_classes=1000, global_pool="token", img_size=224,
             pretrained="work_dirs/d2mae_vit_tiny_400e_in1k/backbone.pth")
data = dict(batch_size=2048, aug=dict(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5))
