"""UperNet on Hiera-Tiny (dim 46, stages 1/2/7/2): its four stage maps (strides 4/8/16/32,
46/92/184/368 channels) go to UPerHead directly, no neck. UPerHead (128 channels, pool scales
1, 2, 3, 6, dropout 0.1) + auxiliary FCNHead on stage 2 (184 channels in; 256, 1 conv, loss weight 0.4).
timm's Hiera is built for one input size: img_size = the 512 crop, and slide testing with
512 windows (smaller border windows are padded by the backbone).
Norm layers are SyncBN, reverted to BN by mmengine's Runner without a launcher.
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
        type='HieraBackbone',
        arch='hiera_tiny',
        img_size=(512, 512),
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1),
    decode_head=dict(
        type='UPerHead',
        in_channels=[46, 92, 184, 368],
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
        in_channels=184,
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
