# Optimisation of the recipe: AdamW, lr 4e-4 (backbone x 0.1), weight decay 1e-4, 300 epochs with
# the learning rate x 0.1 from epoch 240, gradient clipping at 0.1, batch 128 in total (32 per GPU
# on 4 GPUs; batch_size is the total, split over the processes), candidate-elimination keep ratio
# 1.0 before epoch 20, cosine to 0.7 over epochs 20-100, then 0.7.
train = dict(
    epochs=300,
    batch_size=128,
    lr=4e-4,
    backbone_lr_mult=0.1,
    freeze_backbone=False,  # True: backbone + its position embeddings fixed (eval mode, no gradients),
                            # only the head learns (a tracking probe of the representation)
    weight_decay=1e-4,
    lr_drop_epochs=[240],
    lr_drop_factor=0.1,
    ce=dict(start_epoch=20, end_epoch=100, final_ratio=0.7),
    num_threads=None,  # torch CPU threads of this process (None: torch's default)
    save_epoch_interval=20,  # keep epoch_XXXX.pth every this many epochs (0: latest.pth only)
    plot=True,
)
# The engine's settings, named as in every task on the engine (engine/loop.py).
runtime = dict(
    seed=42,
    precision="fp32",  # "fp32", "bf16" (autocast, CPU or GPU) or "fp16" (autocast + GradScaler, GPU only)
    device="auto",  # "auto" | "cpu" | "cuda" (under torchrun: each rank its LOCAL_RANK's GPU) | "cuda:<i>"
    log_interval=50,  # optimizer updates between log.jsonl records
    checkpoint_interval=0,  # updates between mid-epoch checkpoints (0: latest.pth at epoch ends only)
    max_updates=None,  # stop (with a checkpoint) after this many updates in total
    clip_grad=0.1,  # max gradient norm
    allow_world_size_change=False,  # resume a checkpoint of another number of processes (re-seeded, not exact)
    progress_bar=True,
)
loss = dict(giou_weight=2.0, l1_weight=5.0, focal_weight=1.0, alpha=2.0, beta=4.0)
