# The study's tracker: the tiny one-stream tracker of vit_tiny_ce_tiny_synthetic.py (4-block
# ViT-Tiny, 64/128 px crops, CE after blocks 2 and 3, sin-cos positions as the study's
# pre-training) on LaSOT-layout sequences made from the photos (benchmarks/demo_data/lasot.py,
# source="photos": 14 classes x 6 sequences of 32 frames, 2 of each class for testing, cut from
# the photos' held-out regions). 6 epochs of 256 pairs, batch 16 (96 steps); the backbone
# learns at 0.1x the head's rate as in the published recipe, whatever its initialisation.
#   python tools/track_train.py THIS_CONFIG --pretrained WORK/backbone.pth --work-dir DIR
_base_ = ["../../track/vit_tiny_ce_tiny_synthetic.py"]
data = dict(
    generate=dict(dirname="photo_lasot", source="photos", seqs_per_class=6, test_per_class=2,
                  num_frames=32, size=(192, 144), seed=0,
                  classes=["astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass",
                           "gravel", "hubble_deep_field", "ihc", "moon", "motorcycle", "retina",
                           "rocket"]),
)
train = dict(
    epochs=6,
    backbone_lr_mult=0.1,
    lr_drop_epochs=[5],
    ce=dict(start_epoch=2, end_epoch=5, final_ratio=0.7),
    num_threads=None,
    plot=True,
)
runtime = dict(log_interval=8, progress_bar=False)
