# MAE-Tiny (MAE-Lite): ViT-Tiny encoder, mask 0.75, norm-pix MSE, decoder 96 dim / 1 block / 3 heads.
_base_ = ["./_base_/default_runtime.py", "./_base_/datasets/imagenet_mae.py", "./_base_/schedules/pretrain_400e.py"]
task = "pretrain"
model = dict(name="mae_vit_tiny", img_size=224, mask_ratio=0.75, norm_pix_loss=True,
             decoder_embed_dim=96, decoder_depth=1, decoder_num_heads=3)
