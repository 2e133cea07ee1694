"""The ViT-Tiny demo (upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py: same data, schedule and head)
with the Hiera-Tiny backbone of upernet_hiera-tiny_mae_8xb2-160k_ade20k-512x512.py: four stage
maps (46/92/184/368 channels) straight into UPerHead, no neck; timm's Hiera is built for the 64 crop.

    python tools/seg_train.py configs/seg/upernet_hiera-tiny_1xb2-20iter_ade20k-demo-64x64.py
"""
_base_ = ['./upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py']
model = dict(
    backbone=dict(_delete_=True, type='HieraBackbone', arch='hiera_tiny', img_size=(64, 64),
                  out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    neck=None,
    decode_head=dict(in_channels=[46, 92, 184, 368]),
    auxiliary_head=dict(in_channels=184))
