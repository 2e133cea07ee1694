"""Pre-training, fine-tuning and linear probing on the shared training engine (:mod:`engine`).

What is this task's own: the model (``pretrain.tasks.build_task``: MAE, D-MAE, D²-MAE, MoCo-v3, a
classifier or a linear probe, each returning its named loss terms; a task module may also have
``before_update(update, total_updates)``, called before each update's first batch, ``log_fields()``
for the log records, and ``sync_batchnorm = True`` for batch statistics over all ranks), the data
(ImageNet-layout folders or a transfer set, optionally a class-stratified subset:
:mod:`pretrain.datasets`; ``DistributedSampler`` shards, unreadable images skipped and counted), the
optimizer (timm's AdamW with no weight decay on 1-D parameters unless ``optim.filter_bias_and_bn=False``,
layer-wise lr decay for fine-tuning; lr = base_lr x total batch / ``optim.base_batch``, 256 unless a
recipe states its lr at 512) and the schedule (per-update warm-up then cosine, timm's
``CosineLRScheduler``), gradient accumulation up to ``optim.total_batch``.

What the engine does, set in the config's ``runtime`` section (the vocabulary every task on the
engine shares: :mod:`engine.loop`): processes (torchrun; gloo / NCCL), precision, the loop with
gradient clipping, the data order (:class:`engine.EpochSampler`: each epoch shuffled from
(seed, epoch), one loader for the run), device-side loss sums checked for non-finite values at log
intervals and before each checkpoint, ``work_dir/latest.pth`` (atomic, every
``runtime.checkpoint_interval`` updates and at the end) from which ``resume`` continues exactly,
``log.jsonl``, the progress bar and ``loss.png``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader

from engine import (CHECKPOINT_NAME, DistInfo, Engine, EpochKeyed, LoopSettings, WorldSizeChangeError,
                    all_gather_objects, find_checkpoint, init_distributed, plain, plot_log, read_log,
                    resolve_precision, runtime_options, seed_everything, seed_rank, sum_over_ranks, sync_batchnorm,
                    upgrade_config, weights_digest)
from fileio import atomic_write_json

from .data import Batch, collate_skipping
from .datasets import build_datasets
from .finetune import evaluate, layer_decay_param_groups
from .tasks import build_task, build_transforms

__all__ = ["CHECKPOINT_NAME", "Trainer", "build_optimizer", "run", "read_log", "with_best"]

WORLD_SIZE_OVERRIDE = "runtime.allow_world_size_change=True (tools/pretrain.py --allow-world-size-change)"


def _cfg(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node or node[part] is None:
            return default
        node = node[part]
    return node


def with_best(record: Mapping[str, Any], scores: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    """``record`` updated with an evaluation after ``epoch`` (1-based): the latest scores, and
    ``best_top1`` / ``best_top5`` / ``best_epoch`` of the highest top-1 so far (the earliest on a tie)."""
    out = {**record, **scores, "epoch": epoch}
    if "best_top1" not in record or scores["top1"] > record["best_top1"]:
        out.update(best_top1=scores["top1"], best_top5=scores["top5"], best_epoch=epoch)
    return out


def build_optimizer(task: nn.Module, optim_cfg: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """The optimizer ``optim_cfg`` (a config's ``optim``) asks for, over ``task``'s trainable
    parameters, at learning rate ``lr``: timm's ``create_optimizer_v2`` (torch's fused AdamW),
    no weight decay on 1-D parameters and ``no_weight_decay()`` names unless
    ``filter_bias_and_bn=False``; layer-wise lr decay with ``layer_decay`` (fine-tuning)."""
    o = dict(optim_cfg or {})
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
    params: Any = task
    if layer_decay:
        params = layer_decay_param_groups(task.model, wd, float(layer_decay))
    elif not o.get("filter_bias_and_bn", True):  # weight decay on every trainable parameter (MoCo-v3)
        params = [p for p in task.parameters() if p.requires_grad]
    return create_optimizer_v2(params, opt=opt, lr=lr, weight_decay=wd, **kwargs)


class Trainer:
    """Builds the model, data, optimizer and schedule a config asks for and trains them with
    :class:`engine.Engine`; see :func:`run`."""

    def __init__(self, cfg: Mapping[str, Any], info: DistInfo | None = None) -> None:
        self.cfg = cfg = upgrade_config(cfg)
        self.runtime = runtime = runtime_options(cfg)
        self.info = info or init_distributed(runtime["device"], option="runtime.device")
        self.task_name = cfg.get("task", "pretrain")
        self.precision = resolve_precision(runtime["precision"], self.info.device, option="runtime.precision")
        work_dir = cfg.get("work_dir")
        if not work_dir:
            raise ValueError("work_dir is not set (config key work_dir or --work-dir)")
        self.work_dir = Path(work_dir)

        self.seed = int(runtime["seed"])
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        if runtime.get("deterministic", False):
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        seed_everything(self.seed)  # the same on every rank while building: identical initial weights
        self.task, self.task_info = build_task(cfg)
        self.task.to(self.info.device)
        if getattr(self.task, "sync_batchnorm", False):
            sync_batchnorm(self.task, self.info)
        distill = getattr(self.task, "distill", None)
        if distill is not None and self.precision.dtype is not None:
            distill.store_teacher_matmul_weights(self.precision.dtype)
        seed_rank(self.seed, self.info.rank)  # from here each rank draws its own masks / dropout / mixup

        self._build_data()
        self.accum = self._accumulation()
        self.updates_per_epoch = self.steps_per_epoch // self.accum
        if self.updates_per_epoch < 1:
            raise ValueError(f"{self.steps_per_epoch} batches per epoch cannot fill one update of "
                             f"{self.accum} accumulated batches")
        self.epochs = int(_cfg(cfg, "schedule.epochs", 1))
        self.total_updates = self.epochs * self.updates_per_epoch
        self.effective_batch = self.batch_size * self.info.world_size * self.accum
        base_batch = float(_cfg(cfg, "optim.base_batch", 256))
        self.lr = float(_cfg(cfg, "optim.base_lr", 1.5e-4)) * self.effective_batch / base_batch
        self.optimizer = build_optimizer(self.task, _cfg(cfg, "optim", {}), self.lr)
        if self.info.is_main:  # the configuration holds together: from here on the run writes
            self.work_dir.mkdir(parents=True, exist_ok=True)
        warmup = int(round(float(_cfg(cfg, "schedule.warmup_epochs", 0)) * self.updates_per_epoch))
        warmup = min(warmup, self.total_updates - 1)
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=max(1, self.total_updates - warmup),
            lr_min=float(_cfg(cfg, "schedule.min_lr", 0.0)), warmup_t=warmup,
            warmup_lr_init=float(_cfg(cfg, "schedule.warmup_lr", 0.0)), warmup_prefix=True, t_in_epochs=False)
        self.skipped_images = 0  # this rank's, since the start (rank 0 also holds those before a resume)
        settings = LoopSettings.from_runtime(
            runtime, epochs=self.epochs, steps_per_epoch=self.updates_per_epoch * self.accum, accum_steps=self.accum,
            loss_key="loss", samples_per_step=self.batch_size * self.info.world_size, unit="img")
        self.engine = Engine(self.task, self.optimizer, self.info, self.precision, settings,
                             self.work_dir / CHECKPOINT_NAME, self.seed, model_key="model",
                             task_state=self._checkpoint_entries)

    def _build_data(self) -> None:
        train_tf, eval_tf = build_transforms(self.cfg)
        data = build_datasets(_cfg(self.cfg, "data", {}), train_tf, eval_tf, seed=self.seed,
                              with_val=self.task_name in ("finetune", "linprobe"))
        self.train_set, self.val_set, self.data_info = data.train, data.val, data.info
        if self.task_name in ("finetune", "linprobe"):
            num_classes = int(self.cfg["model"]["num_classes"])
            if len(self.train_set.classes) != num_classes:
                raise ValueError(f"model.num_classes={num_classes} but {self.train_set.location} has "
                                 f"{len(self.train_set.classes)} classes")
        self.batch_size = int(_cfg(self.cfg, "data.batch_size", 64))
        self.steps_per_epoch = len(self.train_set) // self.info.world_size // self.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{self.train_set.location} has {len(self.train_set)} images: not enough for one batch "
                             f"of {self.batch_size} per rank on {self.info.world_size} rank(s)")

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

    # -- data -------------------------------------------------------------------------------
    def train_loader(self) -> DataLoader:
        """One loader over the rest of the run, from the engine's position: each epoch this rank's
        share of a permutation drawn from (seed, epoch), images keyed by (epoch, index)."""
        # A private generator: creating the iterator must not draw from the global RNG (resumption).
        return DataLoader(EpochKeyed(self.train_set), batch_size=self.batch_size,
                          sampler=self.engine.sampler(len(self.train_set), self.batch_size, shuffle=True),
                          num_workers=int(_cfg(self.cfg, "data.num_workers", 0)), collate_fn=collate_skipping,
                          drop_last=True, pin_memory=self.info.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.seed))

    def val_loader(self) -> DataLoader:
        indices = list(range(self.info.rank, len(self.val_set), self.info.world_size))  # disjoint, no padding
        return DataLoader(torch.utils.data.Subset(self.val_set, indices), batch_size=self.batch_size, shuffle=False,
                          num_workers=int(_cfg(self.cfg, "data.num_workers", 0)), collate_fn=collate_skipping,
                          generator=torch.Generator().manual_seed(self.seed))

    # -- the loss step ----------------------------------------------------------------------
    def loss_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """The task module's loss terms (``"loss"`` = their sum) on one batch; unreadable images
        are counted and reported, never fatal unless a whole batch is unreadable."""
        self.skipped_images += len(batch.skipped)
        for s in batch.skipped:
            print(f"[rank {self.info.rank}] skipped unreadable image {s.path}: {s.reason}", file=sys.stderr)
        if batch.images is None:
            raise RuntimeError("every image of a batch was unreadable: " + ", ".join(s.path for s in batch.skipped[:8]))
        images = batch.images.to(self.info.device, non_blocking=True)
        labels = batch.labels.to(self.info.device, non_blocking=True)
        with self.precision.autocast():
            return model(images, labels)

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.engine.checkpoint_path

    def total_skipped_images(self) -> int:
        """Images skipped so far on all ranks. Collective."""
        return int(sum_over_ranks([self.skipped_images], self.info)[0])

    def _checkpoint_entries(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "skipped_images": self.total_skipped_images(),
                "config": plain(self.cfg), "meta": self.run_meta()}

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load ``path`` (default: :func:`engine.find_checkpoint` in the work dir, ``latest.pth``);
        False if there is nothing to resume.

        Another number of processes than the checkpoint's is refused unless
        ``runtime.allow_world_size_change``: the run then continues at the same update with the
        same fraction of the epoch consumed, on re-seeded RNGs (not bit-identical). That needs the
        same effective batch and updates per epoch (see :meth:`_check_world_size_change`)."""
        path = Path(path) if path else find_checkpoint(self.work_dir)
        if path is None or not path.is_file():
            return False
        ckpt = self.engine.resume(path, bool(self.runtime["allow_world_size_change"]),
                                  option=WORLD_SIZE_OVERRIDE,
                                  validate=lambda saved: self._check_world_size_change(saved, path))
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.skipped_images = int(ckpt.get("skipped_images", 0)) if self.info.is_main else 0
        if int(ckpt["world_size"]) != self.info.world_size:
            position, saved_accum = self.engine.position, int(ckpt["meta"]["accum_iter"])
            position.epoch_step = min(position.epoch_step // saved_accum * self.accum,
                                      self.engine.settings.steps_per_epoch)
        return True

    def _check_world_size_change(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """On another number of processes than the checkpoint's: WorldSizeChangeError unless the
        effective batch (and the updates per epoch, where the checkpoint records them) are the
        checkpoint's. The position is carried over update for update and the scheduler's state
        restores the saved schedule's lengths, so only an unchanged schedule continues correctly."""
        saved_world = int(ckpt["world_size"])
        if saved_world == self.info.world_size:
            return
        meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), Mapping) else {}
        now = {"effective_batch": self.effective_batch, "updates_per_epoch": self.updates_per_epoch}
        saved = {key: meta.get(key) for key in now}
        if "accum_iter" not in meta or saved["effective_batch"] is None:
            raise WorldSizeChangeError(
                f"{path}: written by {saved_world} process(es), resumed by {self.info.world_size}, but its meta "
                f"records no effective batch / accum_iter: cannot check that the schedule carries over")
        changed = {key: (saved[key], now[key]) for key in now if saved[key] is not None and int(saved[key]) != now[key]}
        if changed:
            what = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
            raise WorldSizeChangeError(
                f"{path}: written by {saved_world} process(es), resumed by {self.info.world_size} with another "
                f"schedule ({what}): the learning rate and the saved warm-up / cosine lengths would no longer "
                f"match. Set optim.total_batch={saved['effective_batch']} (the checkpoint's effective batch) to "
                f"keep the effective batch fixed across world sizes")

    def run_meta(self) -> dict[str, Any]:
        return {"task": self.task_name, "recipe": self.cfg.get("recipe"), "epochs": self.epochs,
                "world_size": self.info.world_size, "effective_batch": self.effective_batch, "lr": self.lr,
                "accum_iter": self.accum, "updates_per_epoch": self.updates_per_epoch,
                "precision": self.precision.name, "data": self.data_info, **self.task_info}

    def metrics_record(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """What ``metrics.json`` holds: the last evaluation (top-1 / top-5 / loss at ``epoch``), the
        best one (MAE-Lite's transfer figures are the best of their evaluations), and what was
        trained on: data set, root, images used of how many, ``subset`` (fraction / per_class, seed)."""
        return {**metrics, **self.data_info, "task": self.task_name, "recipe": self.cfg.get("recipe"),
                "pretrained": self.task_info.get("pretrained"), "epochs": self.epochs}

    # -- training ---------------------------------------------------------------------------
    def _before_update(self, update: int) -> None:
        """The learning rate of update ``update`` (0-based), and the task's own per-update step
        (``task.before_update(update, total_updates)``: MoCo-v3's momentum encoder). Both depend
        on the position alone, which a checkpoint restores: resumption stays exact."""
        self.scheduler.step_update(update)
        hook = getattr(self.task, "before_update", None)
        if hook is not None:
            hook(update, self.total_updates)

    def _log_fields(self) -> dict[str, Any]:
        fields = getattr(self.task, "log_fields", None)
        return {"skipped_images": self.total_skipped_images(), **(fields() if fields is not None else {})}

    def fit(self) -> dict[str, Any]:
        """Train to the end of the schedule (or ``runtime.max_updates``); returns a summary."""
        log = self.engine.log
        log.write({"event": "start", **self.run_meta(), "steps_per_epoch": self.steps_per_epoch,
                   "updates_per_epoch": self.updates_per_epoch, "total_updates": self.total_updates,
                   "train_images": len(self.train_set), "torch": torch.__version__})
        eval_every = int(self.runtime.get("eval_every") or 1)
        metrics: dict[str, Any] = {}

        def evaluate_after(epoch: int) -> None:
            if self.val_set is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == self.epochs):
                scores = evaluate(self.task.model, self.val_loader(), self.info.device, self.precision.dtype)
                metrics.update(with_best(metrics, scores, epoch + 1))
                log.write({"event": "eval", "epoch": epoch, "update": self.engine.position.update, **scores})

        finished = self.engine.fit(iter(self.train_loader()), self.loss_step, before_update=self._before_update,
                                   on_epoch_end=evaluate_after, log_fields=self._log_fields)
        digests = all_gather_objects(weights_digest(self.task), self.info)
        summary = {"event": "end", **asdict(self.engine.position), "finished": finished,
                   "checkpoint": str(self.checkpoint_path),
                   "rank_weight_digests": digests, "ranks_in_sync": len(set(digests)) == 1,
                   "skipped_images": self.total_skipped_images(), **metrics}
        log.write(summary)
        if self.info.is_main:
            if metrics:
                atomic_write_json(self.work_dir / "metrics.json", self.metrics_record(metrics), default=str)
            plot_log(log.path, self.work_dir / "loss.png")
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        return summary


def run(cfg: Mapping[str, Any], resume: bool | str = False) -> dict[str, Any]:
    """Train as ``cfg`` says; with ``resume`` continue from ``work_dir/latest.pth`` (or the given
    path) when it exists.  Pre-training, and fine-tuning with ``export_backbone=True`` (supervised
    pre-training), end by exporting the backbone to ``work_dir/backbone.pth``.
    Under torchrun the caller leaves the process group afterwards (:func:`engine.close_distributed`)."""
    trainer = Trainer(cfg)
    try:
        if resume:
            found = trainer.resume(None if resume is True else resume)
            if not found and resume is not True:
                raise FileNotFoundError(f"checkpoint to resume not found: {resume}")
        summary = trainer.fit()
        exports = trainer.task_name == "pretrain" or (trainer.task_name == "finetune" and cfg.get("export_backbone"))
        if exports and summary["finished"] and trainer.info.is_main:
            from .export import export_backbone

            out = export_backbone(trainer.checkpoint_path, trainer.work_dir / "backbone.pth")
            summary["export"] = str(out)
        return summary
    finally:
        torch.use_deterministic_algorithms(trainer._was_deterministic)
