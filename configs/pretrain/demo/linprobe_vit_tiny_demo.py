# Seconds-long linear probe on generated images (frozen random 2-block ViT-Tiny unless model.pretrained is set).
_base_ = ["../linprobe_vit_tiny_90e_in1k.py"]
model = dict(num_classes=4, img_size=64, depth=2, pretrained=None)
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(total_batch=None)
schedule = dict(epochs=2, warmup_epochs=0)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
