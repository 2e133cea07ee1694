# The published recipe: ViT-Tiny OSTrack-CE (template 128, search 256), trained 300 epochs on
# LaSOT + GOT-10k (vot-train) + COCO 2017 + TrackingNet, batch 128 (4 GPUs x 32), AdamW 4e-4.
# The 66.1 LaSOT AUC model starts from the D²-MAE ViT-Tiny (our export or a MAE-Lite file):
#   python tools/track_train.py THIS_CONFIG --pretrained d2mae_vit_tiny.pth \
#       --lasot-root ... --got10k-root ... --coco-root ... --trackingnet-root ... \
#       --cfg-options data.datasets.1.split_file=got10k_vot_train_split.txt
_base_ = [
    "./_base_/model.py",
    "./_base_/data_lasot_got10k_coco_trackingnet.py",
    "./_base_/schedule_300ep.py",
]
model = dict(drop_path_rate=0.1)
