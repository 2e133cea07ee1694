# Seconds-long fine-tuning on generated images (4 classes, 64 px, 2-block ViT-Tiny, from scratch unless
# model.pretrained is set, e.g. to a demo pre-training export with the same depth).
_base_ = ["../finetune_vit_tiny_300e_in1k.py"]
model = dict(num_classes=4, img_size=64, depth=2, pretrained=None)
data = dict(root="data/imagenet_demo", batch_size=8, num_workers=0)
optim = dict(total_batch=None)
schedule = dict(epochs=2, warmup_epochs=1)
runtime = dict(precision="fp32", log_interval=1, checkpoint_interval=None)
