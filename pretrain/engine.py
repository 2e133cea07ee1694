"""One training engine for pre-training, fine-tuning and linear probing.

* Distributed through ``torch.distributed`` (initialised from torchrun's environment variables;
  gloo on CPU, NCCL on GPU), ``DistributedSampler`` sharding, DDP gradient averaging.
* Mixed precision through ``torch.autocast``: bf16 on CPU and GPU, fp16 + ``GradScaler`` on GPU.
* AdamW (timm's ``create_optimizer_v2``, torch's fused kernel; no weight decay on 1-D parameters
  and the model's ``no_weight_decay()``; layer-wise lr decay for fine-tuning), lr = base_lr x
  total batch / 256, per-update warm-up then cosine (timm's ``CosineLRScheduler``).
* Checkpoints (``work_dir/last.pth``, written atomically every ``checkpoint_every`` updates and
  at the end) hold model, optimizer, scheduler, scaler, every rank's RNG states and the data
  position; ``resume`` continues exactly where the run stopped (same batches, same masks, same
  weights as an uninterrupted run on deterministic CPU settings).
* JSON-lines log ``work_dir/log.jsonl`` (loss terms, lr, throughput, skipped images), tqdm bar on
  rank 0, a loss curve ``work_dir/loss.png`` at the end.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from backbones import atomic_save, read_checkpoint
from fileio import atomic_path, atomic_write_json

from .data import ImageFolderDataset, SkipSampler, collate_skipping
from .finetune import evaluate, layer_decay_param_groups
from .tasks import build_task, build_transforms

__all__ = ["DistInfo", "TrainState", "Trainer", "init_distributed", "run", "capture_rng", "restore_rng",
           "weights_digest", "AUTOCAST_DTYPES"]

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_NAME = "last.pth"


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device='cuda' but no GPU is available")
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def _all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's RNG states as tensors / plain Python values (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every trainable parameter's bytes (rank-consistency check)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@dataclass
class TrainState:
    """Where the run is: ``step`` batches of ``epoch`` consumed, ``update`` optimizer steps done."""

    epoch: int = 0
    step: int = 0
    update: int = 0
    skipped_images: int = 0


class _JsonLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")


def _cfg(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node or node[part] is None:
            return default
        node = node[part]
    return node


class Trainer:
    """Builds everything a config asks for and runs it; see :func:`run`."""

    def __init__(self, cfg: Mapping[str, Any], info: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.info = info or init_distributed(_cfg(cfg, "runtime.device", "auto"))
        self.task_name = cfg.get("task", "pretrain")
        precision = _cfg(cfg, "runtime.precision", "fp32")
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"runtime.precision must be one of {sorted(AUTOCAST_DTYPES)}, got {precision!r}")
        if precision == "fp16" and self.info.device.type != "cuda":
            raise ValueError("runtime.precision='fp16' needs a GPU (GradScaler); use 'bf16' on CPU")
        self.precision = precision
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        work_dir = cfg.get("work_dir")
        if not work_dir:
            raise ValueError("work_dir is not set (config key work_dir or --work-dir)")
        self.work_dir = Path(work_dir)
        if self.info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log = _JsonLog(self.work_dir / "log.jsonl" if self.info.is_main else None)

        seed = int(_cfg(cfg, "runtime.seed", 0))
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        if _cfg(cfg, "runtime.deterministic", False):
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        # Same seed on every rank while building: identical initial weights (and random teachers).
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        self.task, self.task_info = build_task(cfg)
        self.task.to(self.info.device)
        distill = getattr(self.task, "distill", None)
        if distill is not None and self.autocast_dtype is not None:
            distill.store_teacher_matmul_weights(self.autocast_dtype)
        self.seed = seed
        # From here on each rank draws its own masks / dropout / mixup.
        torch.manual_seed(seed + self.info.rank)
        np.random.seed(seed + self.info.rank)
        random.seed(seed + self.info.rank)

        data_root = _cfg(cfg, "data.root")
        if not data_root:
            raise ValueError("data.root is not set (config key data.root or --data)")
        train_tf, eval_tf = build_transforms(cfg)
        self.train_set = ImageFolderDataset(data_root, _cfg(cfg, "data.train_split", "train"), train_tf, seed=seed)
        self.val_set = None
        if self.task_name in ("finetune", "linprobe"):
            num_classes = int(cfg["model"]["num_classes"])
            if len(self.train_set.classes) != num_classes:
                raise ValueError(f"model.num_classes={num_classes} but {self.train_set.folder} has "
                                 f"{len(self.train_set.classes)} class folders")
            val_split = _cfg(cfg, "data.val_split", "val")
            if val_split:
                self.val_set = ImageFolderDataset(data_root, val_split, eval_tf, seed=seed,
                                                  classes=self.train_set.classes)

        self.batch_size = int(_cfg(cfg, "data.batch_size", 64))
        per_rank = len(self.train_set) // self.info.world_size
        self.steps_per_epoch = per_rank // self.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{self.train_set.folder} has {len(self.train_set)} images: not enough for one batch "
                             f"of {self.batch_size} per rank on {self.info.world_size} rank(s)")
        self.accum = self._accumulation()
        self.updates_per_epoch = self.steps_per_epoch // self.accum
        if self.updates_per_epoch < 1:
            raise ValueError(f"{self.steps_per_epoch} batches per epoch cannot fill one update of "
                             f"{self.accum} accumulated batches")
        self.epochs = int(_cfg(cfg, "schedule.epochs", 1))
        self.total_updates = self.epochs * self.updates_per_epoch
        self.effective_batch = self.batch_size * self.info.world_size * self.accum
        self.lr = float(_cfg(cfg, "optim.base_lr", 1.5e-4)) * self.effective_batch / 256
        self.optimizer = self._build_optimizer()
        warmup = int(round(float(_cfg(cfg, "schedule.warmup_epochs", 0)) * self.updates_per_epoch))
        warmup = min(warmup, self.total_updates - 1)
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=max(1, self.total_updates - warmup),
            lr_min=float(_cfg(cfg, "schedule.min_lr", 0.0)), warmup_t=warmup,
            warmup_lr_init=float(_cfg(cfg, "schedule.warmup_lr", 0.0)), warmup_prefix=True, t_in_epochs=False)
        self.scaler = torch.amp.GradScaler(self.info.device.type, enabled=self.precision == "fp16")
        self.model: nn.Module = self.task
        if self.info.distributed:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.task, device_ids=ids)
        self.state = TrainState()
        self.clip_grad = _cfg(cfg, "optim.clip_grad")
        self.max_updates = _cfg(cfg, "runtime.max_updates")
        self._last_saved_update = -1

    def _accumulation(self) -> int:
        total = _cfg(self.cfg, "optim.total_batch")
        accum = _cfg(self.cfg, "optim.accum_iter")
        per_step = self.batch_size * self.info.world_size
        if total is not None:
            if int(total) % per_step:
                raise ValueError(f"optim.total_batch={total} is not a multiple of batch_size x world_size "
                                 f"= {self.batch_size} x {self.info.world_size}")
            derived = int(total) // per_step
            if accum is not None and int(accum) != derived:
                raise ValueError(f"optim.accum_iter={accum} contradicts total_batch={total} "
                                 f"({per_step} images per step)")
            return derived
        return int(accum or 1)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = dict(_cfg(self.cfg, "optim", {}))
        opt = o.get("opt", "adamw")
        wd = float(o.get("weight_decay", 0.05))
        kwargs: dict[str, Any] = {}
        if "betas" in o and opt in ("adamw", "adam"):
            kwargs["betas"] = tuple(o["betas"])
        if "momentum" in o:
            kwargs["momentum"] = o["momentum"]
        if opt in ("adamw", "adam") and o.get("fused", True):
            kwargs["fused"] = True  # one kernel for every parameter instead of ~10 ops per tensor
        kwargs.update(o.get("kwargs") or {})
        layer_decay = o.get("layer_decay")
        params: Any = self.task
        if layer_decay:
            params = layer_decay_param_groups(self.task.model, wd, float(layer_decay))
        return create_optimizer_v2(params, opt=opt, lr=self.lr, weight_decay=wd, **kwargs)

    # -- data -------------------------------------------------------------------------------
    def train_loader(self, epoch: int, skip_batches: int = 0) -> DataLoader:
        sampler = DistributedSampler(self.train_set, num_replicas=self.info.world_size, rank=self.info.rank,
                                     shuffle=True, seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        workers = int(_cfg(self.cfg, "data.num_workers", 0))
        # A private generator: creating the iterator must not draw from the global RNG (resumption).
        return DataLoader(self.train_set, batch_size=self.batch_size, num_workers=workers,
                          sampler=SkipSampler(sampler, skip_batches * self.batch_size), collate_fn=collate_skipping,
                          drop_last=True, pin_memory=self.info.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(self.seed + epoch))

    def val_loader(self) -> DataLoader:
        indices = list(range(self.info.rank, len(self.val_set), self.info.world_size))  # disjoint, no padding
        return DataLoader(torch.utils.data.Subset(self.val_set, indices), batch_size=self.batch_size, shuffle=False,
                          num_workers=int(_cfg(self.cfg, "data.num_workers", 0)), collate_fn=collate_skipping,
                          generator=torch.Generator().manual_seed(self.seed))

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save_checkpoint(self) -> None:
        rng = _all_gather_objects(capture_rng(self.info.device), self.info)
        if self.info.is_main:
            payload = {
                "model": self.task.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "position": asdict(self.state),
                "rng": rng,
                "world_size": self.info.world_size,
                "config": _plain(self.cfg),
                "meta": self.run_meta(),
            }
            atomic_save(payload, self.checkpoint_path)
        self._last_saved_update = self.state.update
        if self.info.distributed:
            dist.barrier()

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load ``path`` (default ``work_dir/last.pth``); False if there is nothing to resume."""
        path = Path(path) if path else self.checkpoint_path
        if not path.is_file():
            return False
        ckpt = read_checkpoint(path)
        if ckpt.get("world_size") != self.info.world_size:
            raise ValueError(f"{path}: saved with {ckpt.get('world_size')} rank(s), resuming with "
                             f"{self.info.world_size}: exact resumption needs the same number")
        self.task.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["position"])
        restore_rng(ckpt["rng"][self.info.rank], self.info.device)
        self._last_saved_update = self.state.update
        self.log.write({"event": "resume", "checkpoint": str(path), **asdict(self.state)})
        return True

    def run_meta(self) -> dict[str, Any]:
        return {"task": self.task_name, "recipe": self.cfg.get("recipe"), "epochs": self.epochs,
                "world_size": self.info.world_size, "effective_batch": self.effective_batch, "lr": self.lr,
                "accum_iter": self.accum, "precision": self.precision, **self.task_info}

    # -- training ---------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.autocast_dtype)

    def _reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        if not self.info.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.info.device)
        dist.all_reduce(t)
        return {k: v / self.info.world_size for k, v in zip(keys, t.tolist())}

    def _reduce_sum(self, value: float) -> float:
        if not self.info.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.info.device)
        dist.all_reduce(t)
        return float(t.item())

    def _stop_requested(self) -> bool:
        return self.max_updates is not None and self.state.update >= int(self.max_updates)

    def train_one_epoch(self, epoch: int) -> None:
        """Run (the rest of) one epoch from ``self.state.step``."""
        start_step = self.state.step if self.state.epoch == epoch else 0
        self.state.epoch, self.state.step = epoch, start_step
        steps = self.updates_per_epoch * self.accum  # a trailing partial accumulation is dropped
        loader = self.train_loader(epoch, start_step)
        log_every = int(_cfg(self.cfg, "runtime.log_every", 50))
        ckpt_every = _cfg(self.cfg, "runtime.checkpoint_every")
        bar = tqdm(total=steps, initial=start_step, desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True,
                   disable=not (self.info.is_main and _cfg(self.cfg, "runtime.progress_bar", True)), file=sys.stderr)
        self.model.train()
        sums: dict[str, float] = {}
        count, images_seen, t0 = 0, 0, time.perf_counter()
        for batch in loader:
            if self.state.step >= steps:
                break
            self.state.step += 1
            if batch.skipped:
                self.state.skipped_images += len(batch.skipped)
                for s in batch.skipped:
                    print(f"[rank {self.info.rank}] skipped unreadable image {s.path}: {s.reason}", file=sys.stderr)
            if batch.images is None:
                raise RuntimeError("every image of a batch was unreadable: "
                                   + ", ".join(s.path for s in batch.skipped[:8]))
            images = batch.images.to(self.info.device, non_blocking=True)
            labels = batch.labels.to(self.info.device, non_blocking=True)
            micro = (self.state.step - 1) % self.accum
            last_micro = micro == self.accum - 1
            if micro == 0:
                self.scheduler.step_update(self.state.update)
            sync = self.model.no_sync() if (self.info.distributed and not last_micro) else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    terms = self.model(images, labels)
                loss = terms["loss"]
                if not torch.isfinite(loss):
                    values = {k: float(v) for k, v in terms.items()}
                    raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {self.state.step} "
                                             f"(update {self.state.update}): {values}")
                self.scaler.scale(loss / self.accum).backward()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
            images_seen += images.shape[0]
            bar.update(1)
            if not last_micro:
                continue
            if self.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.task.parameters(), float(self.clip_grad))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.state.update += 1
            if self.state.update % log_every == 0 or self.state.update == self.total_updates or self._stop_requested():
                elapsed = time.perf_counter() - t0
                means = self._reduce_mean({k: v / count for k, v in sums.items()})
                rate = self._reduce_sum(images_seen / max(elapsed, 1e-9))
                record = {"update": self.state.update, "epoch": epoch, "step": self.state.step,
                          "lr": max(g["lr"] for g in self.optimizer.param_groups), **means,
                          "img_per_s": rate, "skipped_images": int(self._reduce_sum(self.state.skipped_images))}
                self.log.write(record)
                bar.set_postfix(loss=f"{means['loss']:.4f}", img_s=f"{rate:.1f}", lr=f"{record['lr']:.2e}")
                sums, count, images_seen, t0 = {}, 0, 0, time.perf_counter()
            if ckpt_every and self.state.update % int(ckpt_every) == 0:
                self.save_checkpoint()
            if self._stop_requested():
                break
        bar.close()
        if self.state.step >= steps:
            self.state.epoch, self.state.step = epoch + 1, 0

    def fit(self) -> dict[str, Any]:
        """Train to the end of the schedule (or ``runtime.max_updates``); returns a summary."""
        if self.info.is_main:
            self.log.write({"event": "start", **self.run_meta(), "steps_per_epoch": self.steps_per_epoch,
                            "updates_per_epoch": self.updates_per_epoch, "total_updates": self.total_updates,
                            "train_images": len(self.train_set), "torch": torch.__version__})
        eval_every = int(_cfg(self.cfg, "runtime.eval_every", 1))
        metrics: dict[str, Any] = {}
        while self.state.epoch < self.epochs and not self._stop_requested():
            epoch = self.state.epoch
            self.train_one_epoch(epoch)
            finished_epoch = self.state.epoch > epoch
            if self.val_set is not None and finished_epoch and (self.state.epoch % eval_every == 0
                                                                or self.state.epoch == self.epochs):
                metrics = evaluate(self.task.model, self.val_loader(), self.info.device, self.autocast_dtype)
                self.log.write({"event": "eval", "epoch": epoch, "update": self.state.update, **metrics})
        if self._last_saved_update != self.state.update:
            self.save_checkpoint()
        digests = _all_gather_objects(weights_digest(self.task), self.info)
        summary = {"event": "end", **asdict(self.state), "finished": self.state.epoch >= self.epochs,
                   "rank_weight_digests": digests, "ranks_in_sync": len(set(digests)) == 1,
                   "skipped_images": int(self._reduce_sum(self.state.skipped_images)), **metrics}
        self.log.write(summary)
        if self.info.is_main:
            if metrics:
                atomic_write_json(self.work_dir / "metrics.json", metrics, default=str)
            plot_log(self.work_dir / "log.jsonl", self.work_dir / "loss.png")
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        return summary


def _plain(obj: Any) -> Any:
    """Config -> nested dicts / lists of plain values (safe for weights_only loading)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_log(log_path: Path, png_path: Path) -> Path | None:
    """Loss terms and lr against updates, as a PNG (skipped quietly without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    records = [r for r in read_log(log_path) if "update" in r and "lr" in r and "event" not in r]
    if not records:
        return None
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.5))
    updates = [r["update"] for r in records]
    for key in sorted(k for k in records[-1] if k.startswith("loss")):
        ax_loss.plot(updates, [r.get(key, math.nan) for r in records], label=key)
    ax_loss.set_xlabel("update")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_lr.plot(updates, [r["lr"] for r in records])
    ax_lr.set_xlabel("update")
    ax_lr.set_ylabel("lr")
    fig.tight_layout()
    with atomic_path(png_path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
    return png_path


def run(cfg: Mapping[str, Any], resume: bool | str = False) -> dict[str, Any]:
    """Train as ``cfg`` says; with ``resume`` continue from ``work_dir/last.pth`` (or the given
    path) when it exists.  Pre-training ends by exporting the backbone to ``work_dir/backbone.pth``."""
    trainer = Trainer(cfg)
    try:
        if resume:
            found = trainer.resume(None if resume is True else resume)
            if not found and resume is not True:
                raise FileNotFoundError(f"checkpoint to resume not found: {resume}")
        summary = trainer.fit()
        if trainer.task_name == "pretrain" and summary["finished"] and trainer.info.is_main:
            from .export import export_backbone

            out = export_backbone(trainer.checkpoint_path, trainer.work_dir / "backbone.pth")
            summary["export"] = str(out)
        return summary
    finally:
        torch.use_deterministic_algorithms(trainer._was_deterministic)
        if trainer.info.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
