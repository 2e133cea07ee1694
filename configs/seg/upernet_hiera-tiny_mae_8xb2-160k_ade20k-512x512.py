"""UperNet + Hiera-Tiny pre-trained with MAE, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.

Same protocol as the ViT-Tiny configs: AdamW lr 1e-4, wd 0.05, layer decay 0.65 over Hiera's
12 blocks (global block index across stages), warm-up 1500 iterations, poly decay, drop path
0.1, slide test 512 / stride 341 (Hiera needs fixed 512 inputs).

Head width: UPerHead channels=128 as the ViT-Tiny UperNet. At 512x512:

    UPerHead channels | params (w/o aux head) | GFLOPs (backbone 16.7, head)
    128 (chosen)      |  9.23M                |  43.8
    256               | 14.77M                | 122.9
    512               | 35.59M                | 437.0

(FlopCounterMode, 1 multiply-add = 2 FLOPs, backbone + decode head; benchmarks.seg_speed.)

Pretrained weights: LITEVIT_PRETRAINED or --cfg-options model.pretrained=PATH.
"""
_base_ = [
    './_base_/upernet_hiera-tiny.py', './_base_/ade20k.py', './_base_/runtime.py',
    './_base_/schedule_160k.py'
]
model = dict(pretrained='{{$LITEVIT_PRETRAINED:checkpoints/hiera_tiny_mae_400e.pth}}')
