# Runtime defaults of pre-training / fine-tuning / probing runs (tools/pretrain.py).
runtime = dict(
    seed=0,
    deterministic=False,   # True: torch.use_deterministic_algorithms (exact resumption checks)
    precision="bf16",      # "fp32" | "bf16" (autocast, CPU or GPU) | "fp16" (autocast + GradScaler, GPU only)
    device="auto",         # "auto" | "cpu" | "cuda" (under torchrun: each rank its LOCAL_RANK's GPU) | "cuda:<i>"
    log_every=50,          # optimizer updates between log.jsonl records
    checkpoint_every=1000,  # optimizer updates between checkpoints (work_dir/last.pth); one more at the end
    max_updates=None,      # stop (with a checkpoint) after this many updates; resume with --resume
    allow_world_size_change=False,  # resume a checkpoint of another number of processes (re-seeded, not exact)
    eval_every=1,          # epochs between evaluations (fine-tuning / probing)
    progress_bar=True,
)
