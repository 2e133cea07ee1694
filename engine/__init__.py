"""One small training engine shared by pre-training (``pretrain/``) and tracker training (``track/``).

* :mod:`engine.distributed`: torchrun's process group (NCCL on GPU, gloo on CPU), device choice,
  batch norm over all ranks.
* :mod:`engine.precision`: fp32 / bf16 / fp16: names to dtypes, which device runs which natively (CPU
  flags, CUDA capability), autocast on the run's device, GradScaler for fp16.
* :mod:`engine.rng`: RNG state capture / restore (weights_only-safe) and seeding.
* :mod:`engine.checkpoint`: atomic checkpoints with every rank's RNG state; the world-size rule.
* :mod:`engine.log`: JSON-lines log, loss plot, progress bar.
* :mod:`engine.data`: :class:`EpochSampler`, the one resumable, rank-aware data order of a run.
* :mod:`engine.loop`: :class:`Engine`, the loop that runs a task's loss step, and the vocabulary of
  a training run every task's config uses (``runtime.*``, ``update``, ``latest.pth``).
"""
from .checkpoint import WorldSizeChangeError, plain, restore_rank_rng, save_checkpoint
from .data import EpochKeyed, EpochSampler
from .distributed import (CrossRankBatchNorm, DistInfo, all_gather_objects, barrier, close_distributed,
                          init_distributed, resolve_device, sum_over_ranks, sync_batchnorm, unwrap, weights_digest,
                          wrap_ddp)
from .log import JsonLog, plot_log, progress_bar, read_log
from .loop import (CHECKPOINT_NAME, DEPRECATED_KEYS, LOG_NAME, RUNTIME_DEFAULTS, Engine, LoopSettings, LossWindow,
                   Position, StepFn, find_checkpoint, runtime_options, upgrade_config)
from .precision import (PRECISIONS, Precision, autocast, bf16_unsupported_reason, cpu_bf16_native, cpu_flags,
                        cuda_bf16_native, resolve_precision, torch_dtype)
from .rng import capture_rng, rank_seed, restore_rng, seed_everything, seed_rank

__all__ = ["CHECKPOINT_NAME", "CrossRankBatchNorm", "DEPRECATED_KEYS", "DistInfo", "Engine", "EpochKeyed",
           "EpochSampler", "JsonLog", "LOG_NAME", "LoopSettings", "LossWindow", "Position", "Precision",
           "PRECISIONS", "RUNTIME_DEFAULTS", "StepFn", "WorldSizeChangeError", "all_gather_objects", "autocast",
           "barrier", "bf16_unsupported_reason", "capture_rng", "close_distributed", "cpu_bf16_native", "cpu_flags",
           "cuda_bf16_native", "find_checkpoint", "init_distributed", "plain", "plot_log", "progress_bar",
           "rank_seed", "read_log", "resolve_device", "resolve_precision", "restore_rank_rng", "restore_rng",
           "runtime_options", "save_checkpoint", "seed_everything", "seed_rank", "sum_over_ranks", "sync_batchnorm",
           "torch_dtype", "unwrap", "upgrade_config", "weights_digest", "wrap_ddp"]
