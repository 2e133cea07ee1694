"""Semantic FPN on ViT-Tiny as MAE-Lite's ADE20K runs: blocks [3, 5, 7, 11] ->
ReducedFeature2Pyramid (rescales [4, 2, 1, 0.5], 192 -> 48 channels) -> FPNHead (128 channels,
feature strides 4/8/16/32, dropout 0.1), no auxiliary head. Norm layers are SyncBN (reverted
to BN by mmengine's Runner without a launcher).
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
    neck=dict(type='ReducedFeature2Pyramid', embed_dim=192, rescales=[4, 2, 1, 0.5], channel_ratio=0.25,
              norm_cfg=norm_cfg),
    decode_head=dict(
        type='FPNHead',
        in_channels=[48, 48, 48, 48],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
