# The study's supervised recipe: the DeiT-style run (configs/pretrain/supervised_vit_tiny_300e_in1k.py:
# random init, AdamW, drop path 0.1, mixup 0.8 / cutmix 1.0, label smoothing 0.1, random erasing, global
# average pooling) scaled down to the 4-block ViT-Tiny on 64 px crops of the photo set's "train" split
# with its 14 photo labels (the same images the other recipes pre-train on), then exported
# (backbone.pth) like them. Scaled for the toy budget (about an MAE study run's cost): 3 epochs of 28
# updates, lr raised for the short schedule, RandAugment left out (its PIL ops cost more than the
# model at 64 px), eval on the held-out crops at the end only.
_base_ = ["../../pretrain/supervised_vit_tiny_300e_in1k.py"]
# DeiT's class-token pooling (the full-scale config pools by average + fc_norm as MAE-Lite's): the study's
# linear probe reads the class token after the final norm, which average pooling would leave untrained.
model = dict(num_classes=14, img_size=64, depth=4, global_pool="token")
data = dict(root="data/photos", train_split="train", val_split="val", batch_size=64, num_workers=0,
            crop_pct=1.0, aug=dict(auto_augment=None, color_jitter=0.4, scale=(0.2, 1.0)))
optim = dict(base_lr=2e-3, base_batch=256, total_batch=None)
schedule = dict(epochs=3, warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5)
runtime = dict(precision="fp32", log_interval=7, checkpoint_interval=None, eval_every=3, progress_bar=False)
