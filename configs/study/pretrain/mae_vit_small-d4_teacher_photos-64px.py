# The study's teacher: a 4-block ViT of ViT-Small width (384 dim, 6 heads), wider than the student,
# MAE-pre-trained exactly like the student (same data, mask, decoder, 5 epochs); it costs about 3x
# a student's run.
# Its export (backbone.pth, arch vit_tiny with embed_dim 384 / 6 heads in the metadata) is read
# by the D-MAE / D²-MAE configs as a vit_small teacher of depth 4.
_base_ = ["./mae_vit_tiny-d4_photos-64px.py"]
model = dict(embed_dim=384, num_heads=6)
