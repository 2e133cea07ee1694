"""A minutes-on-a-CPU version of the Hiera-Tiny UperNet recipe, for tests and the demo dataset.

Same model, data pipeline shape, optimizer and schedule shape as
upernet_hiera-tiny_mae_8xb2-160k_ade20k-512x512.py, scaled down: 64x64 crops (images resized to
a 64-pixel short side), slide test 64 / stride 43, BN instead of SyncBN, 20 iterations
(warm-up 5) with validation and a checkpoint every 10, no pretrained weights.

    python tools/make_ade20k_demo.py --out data/ade20k_demo --num-train 16 --num-val 4
    python tools/seg_train.py configs/seg/upernet_hiera-tiny_1xb2-20iter_ade20k-demo-64x64.py

Data root: LITEVIT_ADE20K (default data/ade20k_demo/ADEChallengeData2016).
"""
_base_ = [
    './_base_/upernet_hiera-tiny.py', './_base_/ade20k.py', './_base_/runtime.py',
    './_base_/schedule_160k.py'
]
data_root = '{{$LITEVIT_ADE20K:data/ade20k_demo/ADEChallengeData2016}}'
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    pretrained=None,
    data_preprocessor=data_preprocessor,
    backbone=dict(img_size=crop_size),
    decode_head=dict(norm_cfg=norm_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=5),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=5, end=20, by_epoch=False),
]
train_cfg = dict(max_iters=20, val_interval=10)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=10, max_keep_ckpts=3))
