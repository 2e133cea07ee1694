# A tiny run that checks the whole pipeline on a CPU in a few minutes: generated LaSOT-layout
# sequences (written to <work-dir>/synthetic_lasot unless --lasot-root is given), a 4-block
# ViT-Tiny with 64/128 px crops, 60 short epochs of 256 pairs. Without a pre-trained backbone
# the network starts from scratch, so two settings make the task learnable in minutes: fixed
# sin-cos position embeddings, and a search-centre jitter of 1.5 instead of 3 (the target stays
# nearer the crop centre, as it is when tracking). It then follows the synthetic objects better
# than a static box (tests/test_track_train.py::test_tiny_config_learns_to_track).
_base_ = [
    "./_base_/model.py",
    "./_base_/data_lasot_got10k_coco_trackingnet.py",
    "./_base_/schedule_300ep.py",
]
model = dict(
    depth=4,
    pos_embed="sincos",
    template_size=64,      # 4x4 tokens
    search_size=128,       # 8x8 tokens
    ce_locations=(1, 2),
    head_width=64,
    drop_path_rate=0.0,
)
data = dict(
    _delete_=True,
    datasets=[dict(type="lasot", root=None, split="train")],
    ratios=[1],
    samples_per_epoch=256,
    num_workers=1,
    sampler=dict(center_jitter=1.5, max_gap=40),
    # with no LaSOT root: write this synthetic set (benchmarks.demo_data.lasot.make_lasot_dataset),
    # 72 training and 8 test sequences of 40 frames
    generate=dict(dirname="synthetic_lasot", classes=["car", "dog", "bird", "cat"],
                  seqs_per_class=20, test_per_class=2, num_frames=40, size=(256, 192), seed=0),
)
train = dict(
    epochs=60,
    batch_size=16,
    lr=1e-3,
    backbone_lr_mult=1.0,  # no pre-trained backbone to protect
    lr_drop_epochs=[50],
    ce=dict(start_epoch=20, end_epoch=40, final_ratio=0.7),
    save_epoch_interval=0,
)
runtime = dict(log_interval=16, seed=0)
