"""Semantic FPN + ViT-Tiny+RPE (D²-MAE, then intermediate fine-tuning): MAE-Lite's ADE20K
recipe, which published 42.8 mIoU for this model (DeiT-Tiny-FT-RPE: 41.5).

As MAE-Lite's run (mmseg's MAE backbone): LayerScale with init 1.0 on both branches of every
block (init_values=1.0: learnable per-channel scales, not in the checkpoint, start as identity),
relative position bias loaded and resized to the 32x32 grid, layer decay 0.8, AdamW lr 1e-4,
wd 0.05, warm-up 1500 iterations then poly, 160k iterations, batch 2 x 8, seed 0, slide test.
Differences that remain: mmseg's MAE also carries a learnable absolute position embedding
(zero-initialised for RPE checkpoints), and resizes bias tables by geometric-sequence
interpolation where ours interpolates (timm).

At 512x512: 6.85M parameters, 26.9 GFLOPs (backbone 20.9, neck 0.3, FPNHead 5.7;
FlopCounterMode, 1 multiply-add = 2 FLOPs; benchmarks.seg_speed).

Pretrained weights: LITEVIT_PRETRAINED or --cfg-options model.pretrained=PATH.
"""
_base_ = [
    './_base_/fpn_vit-tiny.py', './_base_/ade20k.py', './_base_/runtime.py',
    './_base_/schedule_160k.py'
]
model = dict(
    pretrained='{{$LITEVIT_PRETRAINED:checkpoints/vit_tiny_rpe_d2mae_ft_1000e.pth}}',
    backbone=dict(arch='vit_tiny_rpe', init_values=1.0))
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))
