# The study's tracking probe: the study's tracker (vit_tiny-d4_ce_photos.py: 4-block ViT-Tiny,
# 64/128 px crops, 4x4 / 8x8 tokens) with the pre-trained backbone frozen (train.freeze_backbone):
# only the centre head learns, as only a linear layer does in the linear probe. It measures what
# the representation gives a tracker, at a cost a CPU affords (no backward pass through the
# backbone). What changes, and why (measured on the generated photo sequences):
# - sequences without the exit and the occlusion (generate.events=False): in 32 frames the two
#   events mark a quarter of the frames absent and carry the object out at up to a whole object
#   size a frame; every toy tracker lost it there and stayed below the static box. The object
#   still moves (up to ~1.4 sizes from its first box), changes scale and the camera pans: the
#   static box scores ~24 AUC, the ground truth fed through the tracker's geometry 95.2.
# - 3 test sequences per photo (42): a smaller standard error of the paired difference.
# - search region 3x the target instead of 4x (tracker.search_factor), the template 1.5x
#   instead of 2x: the target spans ~2.7 of the 8x8 search tokens instead of 2, at the same
#   pixel scale in template and search (42.7 px), as the published 128/2 = 256/4 = 64 px keeps it.
# - L1 + focal loss, no GIoU term: with the position this uncertain, GIoU pays for a larger box
#   (the trained heads predicted sizes ~8-10% too large); tracking feeds each box back as the next
#   crop, so the box grew frame after frame (median 2x the target by frame 9).
# - no scale jitter of the search crop (data.sampler.scale_jitter=0): the head still predicts the
#   size, but a bias of a few percent, compounded through the crops, still let the boxes grow in
#   one run of four (3 of 4 runs beat the static box with the recipe's 0.25, 4 of 4 without).
# - no candidate elimination (keep ratio 1.0): its ranking would come from the frozen backbone's
#   attention, never trained to find the target.
# - the backbone's features computed once per training pair (train.cache_features): 2048 pairs,
#   the same each epoch, 4 epochs (512 steps of 16), the head's rate x 0.1 for the last one. The
#   earlier design (8192 pairs each seen once, 32 epochs of 256) spent 90% of its 55 s in the frozen
#   backbone; this one takes ~22 s on the same quiet 2-core CPU, and its AUC on MoCo-v3 / D-MAE /
#   supervised exports was 33.0 / 33.2 / 33.2 against 31.3 / 32.8 / 33.2 (static box 24.0).
#   python tools/track_train.py THIS_CONFIG --pretrained WORK/backbone.pth --work-dir DIR
_base_ = ["./vit_tiny-d4_ce_photos.py"]
model = dict(ce_keep_ratio=1.0)
tracker = dict(template_factor=1.5, search_factor=3.0)
data = dict(generate=dict(dirname="photo_lasot_calm", seqs_per_class=7, test_per_class=3, events=False),
            sampler=dict(scale_jitter=0.0), samples_per_epoch=2048)
train = dict(
    freeze_backbone=True,
    cache_features=True,
    epochs=4,
    lr_drop_epochs=[3],
    ce=dict(final_ratio=1.0),
)
runtime = dict(log_interval=32)
loss = dict(giou_weight=0.0)
