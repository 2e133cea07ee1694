"""UperNet + ViT-Tiny+RPE: D²-MAE pre-training, then intermediate ImageNet fine-tuning with
relative position bias (the 79.4% model), otherwise as the MAE config.

The backbone is vit_tiny_rpe: per-block BEiT relative position bias (table sized for the
32x32 grid of a 512 crop, resized from the checkpoint's 14x14 on load), q/v biases, no
absolute position embedding.

Pretrained weights: LITEVIT_PRETRAINED or --cfg-options model.pretrained=PATH.
"""
_base_ = './upernet_vit-tiny_mae_8xb2-160k_ade20k-512x512.py'
model = dict(
    pretrained='{{$LITEVIT_PRETRAINED:checkpoints/vit_tiny_rpe_d2mae_ft_1000e.pth}}',
    backbone=dict(arch='vit_tiny_rpe'))
