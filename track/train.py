"""Training engine of the one-stream tracker: data, optimiser, schedules, AMP, DDP, checkpoints.

``train(cfg, work_dir, resume=...)`` runs the recipe described by an mmengine config (see
``configs/track/``): AdamW with a 0.1x learning rate on the backbone, a step decay, gradient
clipping, the candidate-elimination keep-ratio schedule (``ce_keep_ratio``), bf16 autocast or
fp16 + GradScaler, and ``torch.distributed`` data parallelism when launched by ``torchrun``.

Every random draw of the data comes from (seed, epoch, sample index) and the model's random
state (drop path) is saved in each checkpoint, together with the optimiser, scheduler, scaler
and position in the epoch: ``resume`` continues bit-identically, also from the middle of an
epoch. Checkpoints hold ``{"net": state_dict, "meta": {...}}`` plus the training state, so
``track.model.load_tracker_checkpoint`` reads them directly.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from backbones import atomic_save, read_checkpoint
from fileio import atomic_path, atomic_write_json
from track.datasets.training import build_train_dataset
from track.losses import TrackingLoss
from track.config import build_model
from track.sampler import TrackingPairDataset

logger = logging.getLogger("track.train")

LATEST = "latest.pth"
FINAL = "tracker_final.pth"
LOG_FILE = "log.jsonl"
BACKBONE_PARAMS = ("backbone.", "pos_embed_z", "pos_embed_x")


# ------------------------------------------------------------------------------- schedules
def ce_keep_ratio(epoch: float, final_ratio: float = 0.7, start_epoch: int = 20,
                  end_epoch: int = 100, initial_ratio: float = 1.0) -> float:
    """Keep ratio of candidate elimination at ``epoch`` (0-based).

    ``initial_ratio`` before ``start_epoch``, a half-cosine from ``initial_ratio`` to
    ``final_ratio`` over ``[start_epoch, end_epoch)``, then ``final_ratio`` (OSTrack's
    schedule with 20 warm-up and 80 decay epochs).
    """
    if epoch < start_epoch:
        return float(initial_ratio)
    if epoch >= end_epoch:
        return float(final_ratio)
    progress = (epoch - start_epoch) / (end_epoch - start_epoch)
    return float(final_ratio + (initial_ratio - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: the head (``lr``) and the backbone incl. its template/search position
    embeddings (``lr x backbone_lr_mult``); weight decay on every trainable parameter."""
    head, backbone = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (backbone if name.startswith(BACKBONE_PARAMS) else head).append(param)
    return [{"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"},
            {"params": backbone, "lr": lr * backbone_lr_mult, "weight_decay": weight_decay,
             "name": "backbone"}]


# ------------------------------------------------------------------------------- distributed
def init_distributed() -> tuple[int, int, int]:
    """Join the process group set up by ``torchrun`` (NCCL on GPU, gloo on CPU).

    Returns (rank, world_size, local_rank); (0, 1, 0) without ``torchrun``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist_info()[1] > 1:
        dist.barrier()


class ShardSampler(Sampler):
    """Yields ``(epoch, index)`` for this rank's share of every epoch from ``start_epoch``
    (batch ``start_batch``) to ``epochs``.

    Rank ``r`` of ``W`` takes indices ``r, r + W, r + 2W, ...`` of the first
    ``steps x batch_size x W`` samples of each epoch. Written here (not ``DistributedSampler``)
    because an exact mid-epoch resume needs to start at a given batch, and because one loader
    over all epochs keeps its worker processes alive (the epoch travels with the index).
    """

    def __init__(self, start_epoch: int, epochs: int, steps: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0) -> None:
        self.start_epoch, self.epochs = start_epoch, epochs
        self.steps, self.batch_size = steps, batch_size
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in range(self.start_epoch, self.epochs):
            first = self.start_batch if epoch == self.start_epoch else 0
            for j in range(first * self.batch_size, self.steps * self.batch_size):
                yield epoch, j * self.world_size + self.rank

    def __len__(self) -> int:
        epochs = max(0, self.epochs - self.start_epoch)
        return max(0, (epochs * self.steps - min(self.start_batch, self.steps)) * self.batch_size)


# ------------------------------------------------------------------------------- building
def _plain(obj: Any) -> Any:
    """Config values as plain json types (for checkpoints read with weights_only=True)."""
    return json.loads(json.dumps(obj, default=str))


def _hms(seconds: float) -> str:
    """Seconds as ``H:MM:SS`` (hours not wrapped at a day)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    return dict(cfg)


def build_pair_dataset(cfg: Mapping[str, Any], seed: int) -> TrackingPairDataset:
    """Readers of ``data.datasets`` mixed by ``data.ratios`` into a ``TrackingPairDataset``.

    Crop sizes come from ``model``, context factors from ``tracker`` (shared with inference),
    the other sampling settings from ``data.sampler``.
    """
    data_cfg, model_cfg = cfg["data"], cfg["model"]
    readers = []
    for entry in data_cfg["datasets"]:
        entry = dict(entry)
        name = entry.pop("type")
        readers.append(build_train_dataset(name, **entry))
    factors = {k: cfg.get("tracker", {})[k] for k in ("template_factor", "search_factor")
               if k in cfg.get("tracker", {})}
    patch = int(model_cfg.get("patch_size", 16))
    return TrackingPairDataset(
        readers, ratios=data_cfg.get("ratios"), samples_per_epoch=data_cfg["samples_per_epoch"],
        seed=seed, template_size=model_cfg["template_size"],
        search_size=model_cfg["search_size"], feat_size=model_cfg["search_size"] // patch,
        **factors, **data_cfg.get("sampler", {}))


def _device(train_cfg: Mapping[str, Any], local_rank: int) -> torch.device:
    name = train_cfg.get("device", "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _autocast(amp: str | None, device: torch.device):
    if not amp:
        return nullcontext()
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    raise ValueError(f"train.amp must be None, 'bf16' or 'fp16', got {amp!r}")


# ------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Torch (CPU, CUDA), python and numpy global random states, in weights_only-safe types."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


# ------------------------------------------------------------------------------- logging
class JsonLog:
    """Appends one json object a line (rank 0 only); lines are flushed as they are written."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``log.jsonl`` file; names file and line of a broken record."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a json record: {error.msg}") from None
    return records


def plot_log(log_path: str | Path, png_path: str | Path) -> Path:
    """Loss terms and learning rate against training step, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_log(log_path) if r.get("type") == "train"]
    png_path = Path(png_path)
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in records]
    for key in ("total", "giou", "l1", "focal"):
        ax_loss.plot(steps, [r[key] for r in records], label=key)
    ax_loss.plot(steps, [r["iou"] for r in records], label="mean IoU", linestyle="--")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    ax_lr.plot(steps, [r["lr"] for r in records], label="head lr")
    ax_lr.plot(steps, [r["lr_backbone"] for r in records], label="backbone lr", linestyle="--")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_yscale("log")
    ax_lr.set_title("schedules")
    ax_keep = ax_lr.twinx()
    ax_keep.plot(steps, [r["keep_ratio"] for r in records], color="tab:green",
                 label="CE keep ratio", linestyle=":")
    ax_keep.set_ylim(0, 1.05)
    ax_keep.set_ylabel("CE keep ratio")
    lines = ax_lr.get_lines() + ax_keep.get_lines()
    ax_lr.legend(lines, [line.get_label() for line in lines], loc="lower left")
    fig.tight_layout()
    with atomic_path(png_path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
    return png_path


# ------------------------------------------------------------------------------- checkpoints
def save_training_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                             scheduler: Any, scaler: Any, epoch: int, epoch_step: int,
                             global_step: int, meta: Mapping[str, Any]) -> None:
    """Collective: every rank contributes its RNG state; rank 0 writes the file atomically.

    ``epoch`` / ``epoch_step`` say where training continues (next batch to run).
    """
    rank, world_size = _dist_info()
    states = [None] * world_size
    if world_size > 1:
        dist.all_gather_object(states, rng_state())
    else:
        states = [rng_state()]
    if rank != 0:
        return
    net = model.module if hasattr(model, "module") else model
    atomic_save({
        "net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": states,
        "epoch": epoch, "epoch_step": epoch_step, "global_step": global_step,
        "meta": dict(meta, epoch=epoch, epoch_step=epoch_step, global_step=global_step),
    }, path)


def _resume_path(resume: str | bool | None, work_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume is True or resume == "auto":
        path = work_dir / LATEST
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {path}")
        return path
    return Path(resume)


# ------------------------------------------------------------------------------- the loop
def train(cfg: Any, work_dir: str | Path, resume: str | bool | None = None) -> dict[str, Any]:
    """Train the tracker described by ``cfg`` (an mmengine ``Config`` or a plain dict).

    Args:
        cfg: needs ``model``, ``data``, ``train`` and ``loss``, optional ``tracker`` (crop
            factors); see configs/track/. ``model.pretrained``: backbone checkpoint of any
            format ``backbones.load_pretrained`` reads (not loaded when resuming).
            ``train.num_threads`` sets torch's CPU threads for the run (restored after).
        work_dir: receives ``latest.pth``, ``epoch_XXXX.pth``, ``tracker_final.pth``,
            ``log.jsonl``, ``loss.png`` and ``config.json``.
        resume: a checkpoint path, or True / "auto" for ``<work_dir>/latest.pth``.

    Returns a summary: final checkpoint path, epochs, steps and the last logged losses.
    """
    threads = torch.get_num_threads()
    try:
        return _train(_cfg_dict(cfg), Path(work_dir), resume)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: dict[str, Any], work_dir: Path, resume: str | bool | None) -> dict[str, Any]:
    model_cfg, data_cfg, train_cfg = cfg["model"], cfg["data"], cfg["train"]
    rank, world_size = _dist_info()
    resume_path = _resume_path(resume, work_dir)
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else 0
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
    _barrier()
    device = _device(train_cfg, local_rank)
    if train_cfg.get("num_threads"):
        torch.set_num_threads(int(train_cfg["num_threads"]))
    seed = int(train_cfg.get("seed", 0))
    torch.manual_seed(seed + rank)
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2 ** 32)

    dataset = build_pair_dataset(cfg, seed)
    batch_total = int(train_cfg["batch_size"])
    if batch_total % world_size:
        raise ValueError(f"train.batch_size={batch_total} is not divisible by the "
                         f"{world_size} processes")
    batch_size = batch_total // world_size
    steps_per_epoch = dataset.samples_per_epoch // batch_total
    if steps_per_epoch < 1:
        raise ValueError(f"data.samples_per_epoch={dataset.samples_per_epoch} is smaller than "
                         f"one batch of {batch_total}")
    epochs = int(train_cfg["epochs"])

    pretrained = None if resume_path else model_cfg.get("pretrained")
    model = build_model(cfg, pretrained=pretrained).to(device)
    load_result = getattr(model, "backbone_load_result", None)
    if load_result is not None and rank == 0:
        level = logging.WARNING if load_result.missing or load_result.unexpected else logging.INFO
        logger.log(level, "backbone initialised from %s: %s", pretrained, load_result)
    optimizer = torch.optim.AdamW(
        param_groups(model, train_cfg["lr"], train_cfg.get("backbone_lr_mult", 0.1),
                     train_cfg.get("weight_decay", 1e-4)), lr=train_cfg["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(train_cfg.get("lr_drop_epochs", [])),
        gamma=train_cfg.get("lr_drop_factor", 0.1))
    amp = train_cfg.get("amp")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp='fp16' needs a GPU (GradScaler); use 'bf16' on CPU")
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    criterion = TrackingLoss(**cfg.get("loss", {}))

    start_epoch = start_batch = global_step = 0
    if resume_path is not None:
        ckpt = read_checkpoint(resume_path)
        model.load_state_dict(ckpt["net"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["epoch_step"])
        global_step = int(ckpt["global_step"])
        states = ckpt["rng"]
        if len(states) != world_size:
            logger.warning("resuming with %d processes from a checkpoint of %d: random "
                           "states are not restored exactly", world_size, len(states))
        set_rng_state(states[rank % len(states)])
        if rank == 0:
            logger.info("resumed from %s at epoch %d, batch %d (step %d)", resume_path,
                        start_epoch, start_batch, global_step)

    if world_size > 1:
        ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        net = nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    else:
        net = model
    ce_cfg = train_cfg.get("ce", {})
    meta = {"model": _plain(model_cfg), "config": _plain(cfg), "arch": model_cfg.get("backbone"),
            "world_size": world_size}
    if rank == 0:
        atomic_write_json(work_dir / "config.json", _plain(cfg))
    log = JsonLog(work_dir / LOG_FILE, rank == 0)
    if load_result is not None:
        log.write({"type": "init", "pretrained": str(pretrained), "format": load_result.format,
                   "missing": list(load_result.missing),
                   "unexpected": list(load_result.unexpected),
                   "resized": list(load_result.resized), "time": time.time()})
    log_interval = int(train_cfg.get("log_interval", 50))
    ckpt_interval = int(train_cfg.get("checkpoint_interval", 0) or 0)
    save_epochs = int(train_cfg.get("save_epoch_interval", 0) or 0)
    max_steps = train_cfg.get("max_steps")
    grad_clip = train_cfg.get("grad_clip", 0.1)
    progress = bool(train_cfg.get("progress", True)) and rank == 0
    loader_generator = torch.Generator()  # keeps the global RNG untouched by the DataLoader
    num_workers = int(data_cfg.get("num_workers", 0))
    total_steps = epochs * steps_per_epoch
    run_start, run_start_step = time.perf_counter(), global_step
    last: dict[str, float] = {}

    def save(name: str, epoch: int, epoch_step: int) -> None:
        save_training_checkpoint(work_dir / name, net, optimizer, scheduler, scaler, epoch,
                                 epoch_step, global_step, meta)

    loader = DataLoader(dataset, batch_size=batch_size,
                        sampler=ShardSampler(start_epoch, epochs, steps_per_epoch, batch_size,
                                             rank, world_size, start_batch),
                        num_workers=num_workers, drop_last=True,
                        pin_memory=device.type == "cuda", generator=loader_generator)
    batches = iter(loader)
    stopped = False
    for epoch in range(start_epoch, epochs):
        keep = ce_keep_ratio(epoch, **ce_cfg)
        first = start_batch if epoch == start_epoch else 0
        net.train()
        bar = tqdm(total=steps_per_epoch * batch_total, initial=first * batch_total,
                   unit="pair", desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        count, window_start = 0, time.perf_counter()
        epoch_step = first
        for _ in range(first, steps_per_epoch):
            batch = next(batches)
            template = batch["template"].to(device, non_blocking=True)
            search = batch["search"].to(device, non_blocking=True)
            gt_boxes = batch["search_box"].to(device, non_blocking=True)
            heatmap = batch["heatmap"].to(device, non_blocking=True)
            with _autocast(amp, device):
                outputs = net(template, search, ce_keep_ratio=keep)
            terms = criterion(outputs, gt_boxes, heatmap)
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch}, step {global_step}: "
                    f"{ {k: float(v) for k, v in terms.items()} }")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["total"]).backward()
                scaler.unscale_(optimizer)
            else:
                terms["total"].backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            global_step += 1
            epoch_step += 1
            for key, value in terms.items():  # summed on the device: no sync per step
                sums[key] = sums[key] + value.detach() if key in sums else value.detach()
            count += 1
            bar.update(batch_total)
            if global_step % log_interval == 0 or epoch_step == steps_per_epoch:
                means = {k: float(v) / count for k, v in sums.items()}
                if world_size > 1:
                    packed = torch.tensor([means[k] for k in sorted(means)], device=device)
                    dist.all_reduce(packed)
                    means = dict(zip(sorted(means), (packed / world_size).tolist()))
                elapsed = time.perf_counter() - window_start
                pairs_per_s = count * batch_total / max(elapsed, 1e-9)
                run_rate = (global_step - run_start_step) / max(time.perf_counter() - run_start, 1e-9)
                eta_s = (total_steps - global_step) / max(run_rate, 1e-9)
                last = {**means, "pairs_per_s": pairs_per_s}
                log.write({"type": "train", "epoch": epoch, "step": global_step,
                           "epoch_step": epoch_step, "lr": optimizer.param_groups[0]["lr"],
                           "lr_backbone": optimizer.param_groups[1]["lr"], "keep_ratio": keep,
                           **means, "pairs_per_s": pairs_per_s, "eta_s": eta_s,
                           "time": time.time()})
                bar.set_postfix(loss=f"{means['total']:.3f}", iou=f"{means['iou']:.3f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.1e}",
                                eta=_hms(eta_s))
                sums, count, window_start = {}, 0, time.perf_counter()
            if ckpt_interval and global_step % ckpt_interval == 0 and epoch_step < steps_per_epoch:
                save(LATEST, epoch, epoch_step)
            if max_steps and global_step >= max_steps and epoch_step < steps_per_epoch:
                save(LATEST, epoch, epoch_step)
                stopped = True
                break
        bar.close()
        if stopped:
            break
        scheduler.step()
        save(LATEST, epoch + 1, 0)
        if save_epochs and (epoch + 1) % save_epochs == 0:
            save(f"epoch_{epoch + 1:04d}.pth", epoch + 1, 0)
        if max_steps and global_step >= max_steps:
            stopped = True
            break

    final = work_dir / FINAL
    if rank == 0 and not stopped:
        net_module = net.module if hasattr(net, "module") else net
        atomic_save({"net": {k: v.detach().cpu() for k, v in net_module.state_dict().items()},
                     "meta": dict(meta, kind="one_stream_tracker", epoch=epochs,
                                  global_step=global_step)}, final)
    if rank == 0 and (work_dir / LOG_FILE).is_file() and train_cfg.get("plot", True):
        try:
            plot_log(work_dir / LOG_FILE, work_dir / "loss.png")
        except (ValueError, KeyError) as error:
            logger.warning("could not plot %s: %s", work_dir / LOG_FILE, error)
    _barrier()
    return {"final_checkpoint": None if stopped else str(final), "latest": str(work_dir / LATEST),
            "epochs": epochs, "global_step": global_step, "stopped_early": stopped,
            "last": last}
