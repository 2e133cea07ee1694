# Runtime defaults of pre-training / fine-tuning / probing runs (tools/pretrain.py): the engine's
# settings, named as in every task on the engine (engine/loop.py).
runtime = dict(
    seed=0,
    deterministic=False,   # True: torch.use_deterministic_algorithms (exact resumption checks)
    precision="bf16",      # "fp32" | "bf16" (autocast, CPU or GPU) | "fp16" (autocast + GradScaler, GPU only)
    device="auto",         # "auto" | "cpu" | "cuda" (under torchrun: each rank its LOCAL_RANK's GPU) | "cuda:<i>"
    log_interval=50,       # optimizer updates between log.jsonl records
    checkpoint_interval=1000,  # optimizer updates between checkpoints (work_dir/latest.pth); one more at the end
    max_updates=None,      # stop (with a checkpoint) after this many updates; resume with --resume
    clip_grad=None,        # max gradient norm (None: no clipping)
    allow_world_size_change=False,  # resume a checkpoint of another number of processes (re-seeded, not exact)
    eval_every=1,          # epochs between evaluations (fine-tuning / probing)
    progress_bar=True,
)
