# The study's teacher: a 4-block ViT of ViT-Small width (384 dim, 6 heads), wider than the student,
# MAE-pre-trained like the student (same data, mask, decoder, schedule shape) but for 8 epochs.
# Its export (backbone.pth, arch vit_tiny with embed_dim 384 / 6 heads in the metadata) is read
# by the D-MAE / D²-MAE configs as a vit_small teacher of depth 4.
_base_ = ["./mae_vit_tiny-d4_photos-64px.py"]
model = dict(embed_dim=384, num_heads=6)
schedule = dict(epochs=8, warmup_epochs=1)
