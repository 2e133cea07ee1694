# MAE-Lite's transfer fine-tuning (projects/eval_tools/finetuning_transfer_exp.py, scripts/transfer.sh):
# the pre-trained ViT-Tiny with global average pooling + fc_norm and a new head, images resized to 224 by
# RandomResizedCrop(0.08-1, bicubic) + flip only (no RandAugment, colour jitter, erasing, mixup or label
# smoothing), SGD (Nesterov) momentum 0.9 without weight decay, gradient norm clipped at 1.0, layer-wise lr
# decay 0.75, per-update linear warm-up from 0 then cosine to 1e-6, batch 512, evaluation on the test split
# every 10 epochs. Their trainer reports the best evaluation: metrics.json keeps the last and the best.
# A data set file sets data.dataset / model.num_classes and the lr, epochs and warm-up it was run with.
_base_ = ["../../pretrain/_base_/default_runtime.py"]
task = "finetune"
model = dict(arch="vit_tiny", num_classes=100, global_pool="avg", drop_path_rate=0.0, img_size=224,
             pretrained="work_dirs/d2mae_vit_tiny_400e_in1k/backbone.pth")
data = dict(
    dataset="cifar100",
    root="data/transfer",  # torchvision layout: one root can hold all six sets' folders
    batch_size=128,        # per GPU (x 4 GPUs = 512, as MAE-Lite); optim.total_batch keeps 512 on any count
    num_workers=10,
    crop_pct=0.875,
    aug=dict(auto_augment=None, color_jitter=None, re_prob=0.0, interpolation="bicubic"),
    # The data-scale axis: subset=dict(fraction=0.1, seed=0) or dict(per_class=10, seed=0) (left unset here:
    # --cfg-options data.subset.fraction=0.1 data.subset.seed=0 adds it).
)
mixup = dict(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
# lr as MAE-Lite states it: an absolute lr at batch 512 (lr = base_lr x total_batch / base_batch).
optim = dict(opt="sgd", base_lr=0.1, base_batch=512, momentum=0.9, weight_decay=0.0, layer_decay=0.75,
             total_batch=512)
schedule = dict(epochs=50, warmup_epochs=10, warmup_lr=0.0, min_lr=1e-6)
runtime = dict(eval_every=10, checkpoint_interval=1000, log_interval=20, clip_grad=1.0)
