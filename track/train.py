"""Training of the one-stream tracker on the shared training engine (:mod:`engine`).

What is this task's own: the model (``track.config.build_model``, optionally from a pre-trained
backbone), the data (template / search pairs from the mixed training sets, every random draw
from (seed, epoch, sample index), one loader over all epochs sharded by :class:`engine.EpochSampler`),
the loss step (``TrackingLoss``: GIoU + L1 + focal on the network's outputs), AdamW with a 0.1x
learning rate on the backbone (or the backbone frozen: ``train.freeze_backbone``, a tracking probe
that trains the head only), a step decay per epoch and the candidate-elimination keep-ratio
schedule (``ce_keep_ratio``). With the backbone frozen, ``train.cache_features`` runs it once per
training pair (:func:`cache_search_features`) and trains the head on the stored feature maps, the
same ``data.samples_per_epoch`` pairs every epoch.

What the engine does, set in the config's ``runtime`` section (the vocabulary every task on the
engine shares: :mod:`engine.loop`): processes (torchrun; gloo / NCCL), precision, the loop with
gradient clipping, device-side loss sums checked at log intervals and before each checkpoint,
``latest.pth`` (every epoch, every ``runtime.checkpoint_interval`` updates and when the run
stops) from which ``resume`` continues bit-identically, also from the middle of an epoch,
``log.jsonl``, the progress bar and ``loss.png``. Checkpoints hold ``{"net": state_dict,
"meta": {...}}`` plus the training state, so ``track.model.load_tracker_checkpoint`` reads them.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from engine import (CHECKPOINT_NAME, LOG_NAME, Engine, LoopSettings, Precision, barrier, find_checkpoint,
                    init_distributed, plain, plot_log, read_log, resolve_precision, runtime_options, seed_everything,
                    seed_rank, upgrade_config)
from fileio import atomic_write_json
from fileio.progress import progress
from track.config import build_model
from track.datasets.training import build_train_dataset
from track.losses import TrackingLoss
from track.model import save_tracker_checkpoint
from track.sampler import TrackingPairDataset

__all__ = ["BACKBONE_PARAMS", "FINAL", "LOG_FILE", "CachedSearchFeatures", "build_pair_dataset",
           "cache_search_features", "ce_keep_ratio", "param_groups", "read_log", "train"]

logger = logging.getLogger("track.train")

FINAL = "tracker_final.pth"
LOG_FILE = LOG_NAME
BACKBONE_PARAMS = ("backbone.", "pos_embed_z", "pos_embed_x")
WORLD_SIZE_OVERRIDE = "runtime.allow_world_size_change=True (tools/track_train.py --allow-world-size-change)"


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
    embeddings (``lr x backbone_lr_mult``); weight decay on every trainable parameter. Parameters
    without gradients (a frozen backbone) are left out: the backbone group is then empty."""
    head, backbone = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (backbone if name.startswith(BACKBONE_PARAMS) else head).append(param)
    return [{"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"},
            {"params": backbone, "lr": lr * backbone_lr_mult, "weight_decay": weight_decay,
             "name": "backbone"}]


# ------------------------------------------------------------------------------- data
class CachedSearchFeatures(Dataset):
    """Training pairs as the frozen backbone saw them: ``(epoch, index)`` -> pair ``index``'s search
    feature map (``search_features``), its box and heat map; the same for every epoch."""

    def __init__(self, indices: list[int], features: torch.Tensor, boxes: torch.Tensor,
                 heatmaps: torch.Tensor) -> None:
        self.rows = {index: row for row, index in enumerate(indices)}
        self.features, self.boxes, self.heatmaps = features, boxes, heatmaps

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        row = self.rows[int(key[1])]
        return {"search_features": self.features[row], "search_box": self.boxes[row],
                "heatmap": self.heatmaps[row]}


@torch.no_grad()
def cache_search_features(model: nn.Module, dataset: TrackingPairDataset, indices: list[int], batch_size: int,
                          precision: Precision, device: torch.device, num_workers: int = 0,
                          show_progress: bool = True) -> CachedSearchFeatures:
    """Run the (frozen) backbone once over the pairs ``indices`` of epoch 0 and keep its search
    feature maps (on ``device``), boxes and heat maps: a head trained on them sees what it would
    see from the images, without a backbone forward per step."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=[(0, i) for i in indices],
                        num_workers=num_workers, generator=torch.Generator())
    features, boxes, heatmaps = [], [], []
    bar = progress(total=len(indices), desc="backbone features", unit="pair", enabled=show_progress)
    for batch in loader:
        with precision.autocast():
            feat = model.forward_features(model.embed_template(batch["template"].to(device)),
                                          batch["search"].to(device), 1.0)[0]
        features.append(feat)
        boxes.append(batch["search_box"])
        heatmaps.append(batch["heatmap"])
        bar.update(len(feat))
    bar.close()
    return CachedSearchFeatures(indices, torch.cat(features), torch.cat(boxes).to(device),
                                torch.cat(heatmaps).to(device))


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


def _resume_path(resume: str | bool | None, work_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume is True or resume == "auto":
        path = find_checkpoint(work_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {work_dir / CHECKPOINT_NAME}")
        return path
    return Path(resume)


# ------------------------------------------------------------------------------- training
def train(cfg: Any, work_dir: str | Path, resume: str | bool | None = None) -> dict[str, Any]:
    """Train the tracker described by ``cfg`` (an mmengine ``Config`` or a plain dict).

    Args:
        cfg: needs ``model``, ``data``, ``train`` and ``loss``, optional ``runtime`` (the
            engine's settings: :mod:`engine.loop`) and ``tracker`` (crop factors); see
            configs/track/. ``model.pretrained``: backbone checkpoint of any format
            ``backbones.load_pretrained`` reads (not loaded when resuming).
            ``train.num_threads`` sets torch's CPU threads for the run (restored after).
        work_dir: receives ``latest.pth``, ``epoch_XXXX.pth``, ``tracker_final.pth``,
            ``log.jsonl``, ``loss.png`` and ``config.json``.
        resume: a checkpoint path, or True / "auto" for ``<work_dir>/latest.pth``.

    Returns a summary: final checkpoint path (None if the run stopped before the end), the
    resumable checkpoint, epochs, the position (``epoch``, ``epoch_step``, ``update``),
    ``finished`` and the last log record.
    """
    threads = torch.get_num_threads()
    try:
        return _train(upgrade_config(cfg), Path(work_dir), resume)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: dict[str, Any], work_dir: Path, resume: str | bool | None) -> dict[str, Any]:
    model_cfg, data_cfg, train_cfg = cfg["model"], cfg["data"], cfg["train"]
    if "amp" in train_cfg:
        raise KeyError("train.amp is now runtime.precision: 'fp32' (default), 'bf16' or 'fp16'")
    runtime = runtime_options(cfg)
    info = init_distributed(runtime["device"], option="runtime.device")
    precision = resolve_precision(runtime["precision"], info.device, option="runtime.precision")
    resume_path = _resume_path(resume, work_dir)
    if info.is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
    barrier(info)
    if train_cfg.get("num_threads"):
        torch.set_num_threads(int(train_cfg["num_threads"]))
    seed = int(runtime["seed"])
    seed_everything(seed)

    dataset = build_pair_dataset(cfg, seed)
    batch_total = int(train_cfg["batch_size"])
    if batch_total % info.world_size:
        raise ValueError(f"train.batch_size={batch_total} is not divisible by the {info.world_size} processes")
    steps_per_epoch = dataset.samples_per_epoch // batch_total
    if steps_per_epoch < 1:
        raise ValueError(f"data.samples_per_epoch={dataset.samples_per_epoch} is smaller than one batch of "
                         f"{batch_total}")
    epochs = int(train_cfg["epochs"])
    ce_cfg = train_cfg.get("ce", {})
    cache_features = bool(train_cfg.get("cache_features", False))
    if cache_features:
        if not train_cfg.get("freeze_backbone", False):
            raise ValueError("train.cache_features needs train.freeze_backbone=True: a backbone that learns "
                             "gives new features every step")
        if min(ce_keep_ratio(e, **ce_cfg) for e in range(epochs)) < 1.0:
            raise ValueError("train.cache_features needs every search token kept (train.ce.final_ratio=1.0): "
                             "candidate elimination's keep ratio changes the features over the schedule")

    pretrained = None if resume_path else model_cfg.get("pretrained")
    model = build_model(cfg, pretrained=pretrained).to(info.device)
    if train_cfg.get("freeze_backbone", False):
        model.freeze_backbone()
    seed_rank(seed, info.rank)  # drop path: each rank its own draws
    optimizer = torch.optim.AdamW(
        param_groups(model, train_cfg["lr"], train_cfg.get("backbone_lr_mult", 0.1),
                     train_cfg.get("weight_decay", 1e-4)), lr=train_cfg["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(train_cfg.get("lr_drop_epochs", [])),
        gamma=train_cfg.get("lr_drop_factor", 0.1))
    criterion = TrackingLoss(**cfg.get("loss", {}))
    meta = {"config": plain(cfg), "arch": model_cfg.get("backbone"), "world_size": info.world_size}
    settings = LoopSettings.from_runtime(runtime, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                         checkpoint_each_epoch=True, loss_key="total", samples_per_step=batch_total,
                                         unit="pair")
    engine = Engine(model, optimizer, info, precision, settings, work_dir / CHECKPOINT_NAME, seed, model_key="net",
                    task_state=lambda: {"scheduler": scheduler.state_dict(),
                                        "meta": dict(meta, **asdict(engine.position))})
    if resume_path is not None:
        ckpt = engine.resume(resume_path, bool(runtime["allow_world_size_change"]),
                             option=WORLD_SIZE_OVERRIDE)
        scheduler.load_state_dict(ckpt["scheduler"])
        if info.is_main:
            logger.info("resumed from %s at %s", resume_path, engine.position)
    if info.is_main:
        atomic_write_json(work_dir / "config.json", plain(cfg))
    _log_backbone_load(engine, model, pretrained)

    local_batch = batch_total // info.world_size
    sampler = engine.sampler(len(dataset), local_batch)
    num_workers = int(data_cfg.get("num_workers", 0))
    source: Dataset = dataset
    if cache_features:  # this rank's pairs of an epoch (the same every epoch), each through the backbone once
        source = cache_search_features(model, dataset, sampler.indices(0), local_batch, precision, info.device,
                                       num_workers, show_progress=runtime["progress_bar"] and info.is_main)
        num_workers = 0
    loader = DataLoader(source, batch_size=local_batch, drop_last=True, sampler=sampler, num_workers=num_workers,
                        pin_memory=info.device.type == "cuda" and not cache_features,
                        generator=torch.Generator())  # keeps the global RNG untouched by the loader
    batches = iter(loader)

    def loss_step(net: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        boxes, heatmap = (batch[k].to(info.device, non_blocking=True) for k in ("search_box", "heatmap"))
        with precision.autocast():
            if cache_features:
                outputs = net(search_features=batch["search_features"])
            else:
                outputs = net(batch["template"].to(info.device, non_blocking=True),
                              batch["search"].to(info.device, non_blocking=True),
                              ce_keep_ratio=ce_keep_ratio(engine.position.epoch, **ce_cfg))
        return criterion(outputs, boxes, heatmap)

    save_epochs = int(train_cfg.get("save_epoch_interval", 0) or 0)

    def end_of_epoch(epoch: int) -> None:
        scheduler.step()
        if save_epochs and (epoch + 1) % save_epochs == 0:
            engine.save(work_dir / f"epoch_{epoch + 1:04d}.pth")

    finished = engine.fit(batches, loss_step, on_epoch_end=end_of_epoch,
                          log_fields=lambda: {"lr_backbone": optimizer.param_groups[1]["lr"],
                                              "keep_ratio": ce_keep_ratio(engine.position.epoch, **ce_cfg)})
    final = work_dir / FINAL
    if finished and info.is_main:
        save_tracker_checkpoint(model, final, **meta, **asdict(engine.position))
    if info.is_main and train_cfg.get("plot", True):
        plot_log(engine.log.path, work_dir / "loss.png", curves=("total", "giou", "l1", "focal", "iou"),
                 rates=("lr", "lr_backbone"), twin="keep_ratio")
    barrier(info)
    return {"final_checkpoint": str(final) if finished else None, "checkpoint": str(engine.checkpoint_path),
            "epochs": epochs, **asdict(engine.position), "finished": finished, "last": engine.last_record}


def _log_backbone_load(engine: Engine, model: nn.Module, pretrained: str | None) -> None:
    """Which backbone weights were loaded, missed or resized: a warning if any were missed."""
    result = getattr(model, "backbone_load_result", None)
    if result is None:
        return
    if engine.info.is_main:
        level = logging.WARNING if result.missing or result.unexpected else logging.INFO
        logger.log(level, "backbone initialised from %s: %s", pretrained, result)
    engine.log.write({"event": "init", "pretrained": str(pretrained), "format": result.format,
                      "missing": list(result.missing), "unexpected": list(result.unexpected),
                      "resized": list(result.resized)})
