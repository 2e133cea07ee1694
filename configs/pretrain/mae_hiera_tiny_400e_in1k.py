# Hiera-Tiny MAE (MAE-Lite): mask ratio 0.4 over 8x8 mask units, q_pool 2, norm-pix target,
# decoder 96 dim / 1 block / 3 heads.
_base_ = ["./_base_/default_runtime.py", "./_base_/datasets/imagenet_mae.py", "./_base_/schedules/pretrain_400e.py"]
task = "pretrain"
model = dict(name="mae_hiera_tiny", img_size=224, mask_ratio=0.4, norm_pix_loss=True, q_pool=2,
             decoder_embed_dim=96, decoder_depth=1, decoder_num_heads=3)
