"""The study's segmentation recipe on a real ADE20K folder (150 classes): the ViT-Tiny UperNet of
upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py on the study's 4-block backbone (its blocks
0-3 -> Feature2Pyramid), 64-channel heads, 64x64 crops, batch 8, 100 iterations (warm-up 10,
lr 1e-3), one validation at the end. model.pretrained: a study export (None = random init).

    LITEVIT_ADE20K=/data/ADEChallengeData2016 python tools/seg_train.py THIS_CONFIG \\
        --cfg-options model.pretrained=WORK/backbone.pth val_evaluator.output_dir=PREDS
"""
_base_ = ['../../seg/upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py']
data_root = '{{$LITEVIT_ADE20K:data/ade/ADEChallengeData2016}}'
model = dict(
    backbone=dict(depth=4, out_indices=(0, 1, 2, 3), drop_path_rate=0.0),
    decode_head=dict(channels=64),
    auxiliary_head=dict(channels=64))
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=10),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=10, end=100, by_epoch=False),
]
train_cfg = dict(max_iters=100, val_interval=100)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=1, save_best=None))
