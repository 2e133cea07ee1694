# Seconds-long supervised pre-training on generated images (python tools/make_imagenet_demo.py data/imagenet_demo):
# 4 classes, 64 px, 2-block ViT-Tiny, the DeiT recipe's augmentation and mixup / cutmix, fp32; exports backbone.pth.
_base_ = ["../supervised_vit_tiny_300e_in1k.py"]
model = dict(num_classes=4, img_size=64, depth=2)
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(total_batch=None)
schedule = dict(epochs=2, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
