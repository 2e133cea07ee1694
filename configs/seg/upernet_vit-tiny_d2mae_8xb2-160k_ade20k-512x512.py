"""UperNet + ViT-Tiny pre-trained with D²-MAE (MAE-Lite), otherwise as the MAE config.

Pretrained weights: LITEVIT_PRETRAINED or --cfg-options model.pretrained=PATH.
"""
_base_ = './upernet_vit-tiny_mae_8xb2-160k_ade20k-512x512.py'
model = dict(pretrained='{{$LITEVIT_PRETRAINED:checkpoints/vit_tiny_d2mae_400e.pth}}')
