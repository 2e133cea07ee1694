"""UperNet + ViT-Tiny pre-trained with MAE, ADE20K 512x512, 160k iterations, 8 GPUs x 2 images.

Protocol: AdamW lr 1e-4, wd 0.05, layer decay 0.65 (mmseg's MAE UperNet recipe; MAE-Lite's
0.8: --cfg-options optim_wrapper.paramwise_cfg.layer_decay_rate=0.8), warm-up 1500 iterations,
poly decay, drop path 0.1, slide test 512 / stride 341.

Head width: UPerHead channels=128 (mmseg's UperNets use 512, its MAE-B config 768). At
512x512 the head, not the 5.7M backbone, sets the cost; 128 keeps it near the backbone's:

    UPerHead channels | params (w/o aux head) | GFLOPs (backbone 20.9, neck 1.8, head)
    128 (chosen)      |  8.16M                |  50.5
    256               | 13.45M                | 130.2
    512               | 33.74M                | 445.4

(torch.utils.flop_counter.FlopCounterMode with CPU fused attention counted, 1 multiply-add =
2 FLOPs, inference path backbone + neck + decode head; benchmarks.seg_speed.seg_model_stats. The
auxiliary FCNHead adds 0.48M parameters, training only.)

Pretrained weights (any layout backbones.load_pretrained reads): the LITEVIT_PRETRAINED
environment variable, or --cfg-options model.pretrained=PATH; default path below.
"""
_base_ = [
    './_base_/upernet_vit-tiny.py', './_base_/ade20k.py', './_base_/runtime.py',
    './_base_/schedule_160k.py'
]
model = dict(pretrained='{{$LITEVIT_PRETRAINED:checkpoints/vit_tiny_mae_400e.pth}}')
