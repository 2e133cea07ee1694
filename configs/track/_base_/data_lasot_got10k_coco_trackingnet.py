# Training data of the recipe: LaSOT (train split, 1120 sequences) + GOT-10k (vot-train split)
# + COCO 2017 (static pairs) + TrackingNet (chunks 0-11), mixed 1:1:1:1, 60,000 pairs an epoch.
# Roots are set on the command line (--lasot-root, --got10k-root, --coco-root,
# --trackingnet-root) or with --cfg-options data.datasets.<i>.root=DIR.
# GOT-10k vot-train: pass the sequence list (names, or 0-based indices into train/list.txt, e.g.
# pytracking's got10k_vot_train_split.txt) as data.datasets.1.split_file; without it every
# train sequence is used and a warning is logged.
data = dict(
    datasets=[
        dict(type="lasot", root=None, split="train"),
        dict(type="got10k", root=None, split="train", split_file=None),
        dict(type="coco", root=None, split="train2017", min_size=8.0),
        dict(type="trackingnet", root=None, chunks=list(range(12))),
    ],
    ratios=[1, 1, 1, 1],
    samples_per_epoch=60000,
    num_workers=8,
    # pair sampling and augmentation (crop sizes come from `model`, context factors from `tracker`)
    sampler=dict(
        center_jitter=3.0,
        scale_jitter=0.25,
        max_gap=200,
        gap_increase=5,
        min_visible_frames=5,
        flip_prob=0.5,
        gray_prob=0.05,
        brightness_jitter=0.2,
    ),
    generate=None,
)
