# "impr." intermediate fine-tuning of a pre-trained ViT-Tiny on ImageNet-1k (global average pooling).
_base_ = ["./_base_/default_runtime.py", "./_base_/datasets/imagenet_finetune.py",
          "./_base_/schedules/finetune_300e.py"]
task = "finetune"
model = dict(arch="vit_tiny", num_classes=1000, global_pool="avg", drop_path_rate=0.0, img_size=224,
             pretrained="work_dirs/d2mae_vit_tiny_400e_in1k/backbone.pth")
runtime = dict(checkpoint_interval=5000, log_interval=100)
