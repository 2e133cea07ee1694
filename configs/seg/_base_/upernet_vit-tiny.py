"""UperNet on ViT-Tiny (192-d, 12 blocks, 12 heads) through mmseg's Feature2Pyramid.

Blocks [3, 5, 7, 11] (stride 16, 192 channels) -> Feature2Pyramid rescales [4, 2, 1, 0.5]
-> strides 4/8/16/32 x 192 -> UPerHead (128 channels, pool scales 1, 2, 3, 6, dropout 0.1)
+ auxiliary FCNHead on level 2 (256 channels, 1 conv, loss weight 0.4). Why 128 channels:
see upernet_vit-tiny_mae_8xb2-160k_ade20k-512x512.py.
Norm layers are SyncBN (2 images per GPU); mmengine's Runner reverts SyncBN to BN when it runs
without a launcher, so the configs also run on one CPU/GPU unchanged.
"""
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ViTBackbone',
        arch='vit_tiny',
        img_size=(512, 512),
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1),
    neck=dict(type='Feature2Pyramid', embed_dim=192, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[192, 192, 192, 192],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=192,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
