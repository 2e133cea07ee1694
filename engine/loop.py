"""The training loop both tasks share: a task brings its model, optimizer, data and a loss step.

:class:`Engine` runs epochs of batches through the task's step function (``step(model, batch) ->
dict of loss terms``), backpropagates ``terms[loss_key]`` through the precision's GradScaler
(gradient accumulation with DDP's ``no_sync``, optional clipping), and owns the run's position,
its log, progress bar and checkpoints.

Loss terms stay on the device: each step adds them to a :class:`LossWindow` without reading them,
so the host waits for the device only at log intervals and before a checkpoint is written. Both
places check the window for non-finite values across all ranks and raise FloatingPointError
naming the updates and the terms, so no checkpoint is ever written after a non-finite loss.

The vocabulary of a training run, the same in every task on the engine (pre-training, fine-tuning,
probing, distillation, MoCo-v3, tracker training):

* A **step** of the loop is an **update**: one optimizer step, after ``accum_steps`` batches. Log
  records, checkpoints and the tasks' summaries count updates as ``update``; ``epoch`` is the
  epoch (0-based) and ``epoch_step`` the batches of it consumed (:class:`Position`).
* The config's ``runtime`` section holds what the engine does with any task
  (:func:`runtime_options`; defaults in :data:`RUNTIME_DEFAULTS`):

  ===================================  =================================================================
  ``runtime.device``                   "auto" | "cpu" | "cuda" | "cuda:<i>" (torchrun: LOCAL_RANK's GPU)
  ``runtime.precision``                "fp32" | "bf16" | "fp16" (:mod:`engine.precision`)
  ``runtime.seed``                     the run's seed
  ``runtime.log_interval``             updates between ``"train"`` log records (and at each epoch end)
  ``runtime.checkpoint_interval``      updates between checkpoints (0 / None: at the end, and at
                                       epoch ends where the task asks)
  ``runtime.max_updates``              stop, with a checkpoint, after this many updates in total
  ``runtime.clip_grad``                max norm of the gradients (None / 0: no clipping)
  ``runtime.progress_bar``             show the progress bar (rank 0)
  ``runtime.allow_world_size_change``  resume a checkpoint of another number of processes
  ===================================  =================================================================

  The names are mmengine's where it has one (``LoggerHook``'s and ``CheckpointHook``'s
  ``interval``, ``optim_wrapper.clip_grad``); the loop counts updates where mmengine counts
  iterations, since with gradient accumulation a batch is not an update.
* The resumable training state is ``work_dir/latest.pth`` (:data:`CHECKPOINT_NAME`);
  :func:`find_checkpoint` finds it for ``resume="auto"``.

The names of the previous release are still read for one release, each with a ``FutureWarning``
naming the new key (:data:`DEPRECATED_KEYS`, applied by :func:`upgrade_config`; mmengine does the
same), and ``resume`` still finds a checkpoint under its old name ``last.pth``, with a warning.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn

from backbones import read_checkpoint

from .checkpoint import check_training_checkpoint, restore_rank_rng, save_checkpoint
from .data import EpochSampler
from .distributed import DistInfo, wrap_ddp
from .log import JsonLog, progress_bar
from .precision import Precision

__all__ = ["CHECKPOINT_NAME", "DEPRECATED_KEYS", "Engine", "LOG_NAME", "LoopSettings", "LossWindow", "Position",
           "RUNTIME_DEFAULTS", "StepFn", "find_checkpoint", "runtime_options", "upgrade_config"]

logger = logging.getLogger("engine")

LOG_NAME = "log.jsonl"
CHECKPOINT_NAME = "latest.pth"
LEGACY_CHECKPOINT_NAMES = ("last.pth",)
StepFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]

RUNTIME_DEFAULTS: dict[str, Any] = {
    "device": "auto", "precision": "fp32", "seed": 0, "log_interval": 50, "checkpoint_interval": 0,
    "max_updates": None, "clip_grad": None, "progress_bar": True, "allow_world_size_change": False}

#: Config keys of the previous release -> their names now (read with a FutureWarning for one release).
DEPRECATED_KEYS: dict[str, str] = {
    "runtime.log_every": "runtime.log_interval",
    "runtime.checkpoint_every": "runtime.checkpoint_interval",
    "optim.clip_grad": "runtime.clip_grad",
    "train.device": "runtime.device",
    "train.precision": "runtime.precision",
    "train.seed": "runtime.seed",
    "train.log_interval": "runtime.log_interval",
    "train.checkpoint_interval": "runtime.checkpoint_interval",
    "train.max_steps": "runtime.max_updates",
    "train.grad_clip": "runtime.clip_grad",
    "train.progress": "runtime.progress_bar",
    "train.allow_world_size_change": "runtime.allow_world_size_change",
}


def _plain_copy(cfg: Any) -> dict[str, Any]:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else copy.deepcopy(dict(cfg))


def upgrade_config(cfg: Any) -> dict[str, Any]:
    """A plain copy of ``cfg`` (a dict or an mmengine ``Config``) with every key of
    :data:`DEPRECATED_KEYS` moved to its new name, each with a ``FutureWarning`` naming both.
    An old key's value wins over the new key's (it is the one the config or command line set)."""
    out = _plain_copy(cfg)
    for old, new in DEPRECATED_KEYS.items():
        section, key = old.split(".")
        if not isinstance(out.get(section), Mapping) or key not in out[section]:
            continue
        value = out[section].pop(key)
        new_section, new_key = new.split(".")
        target = out.setdefault(new_section, {})
        if not isinstance(target, dict):
            target = out[new_section] = dict(target or {})
        overrides = f", replacing {new}={target[new_key]!r}" if target.get(new_key, value) != value else ""
        warnings.warn(f"config key {old} is deprecated and will be removed in the next release: use {new} "
                      f"(read as {new}={value!r}{overrides})", FutureWarning, stacklevel=2)
        target[new_key] = value
    return out


def runtime_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``runtime`` section of an upgraded config (:func:`upgrade_config`) over
    :data:`RUNTIME_DEFAULTS` (a None interval means 0)."""
    options = {**RUNTIME_DEFAULTS, **dict(cfg.get("runtime") or {})}
    for key in ("log_interval", "checkpoint_interval"):
        options[key] = int(options[key] or 0)
    if options["log_interval"] < 1:
        raise ValueError(f"runtime.log_interval={options['log_interval']}: must be at least 1 update")
    return options


def find_checkpoint(work_dir: str | Path) -> Path | None:
    """The resumable checkpoint in ``work_dir`` (``latest.pth``), or one under an old name
    (``last.pth``, with a FutureWarning); None if there is none."""
    work_dir = Path(work_dir)
    if (work_dir / CHECKPOINT_NAME).is_file():
        return work_dir / CHECKPOINT_NAME
    for name in LEGACY_CHECKPOINT_NAMES:
        if (work_dir / name).is_file():
            warnings.warn(f"{work_dir / name}: a checkpoint under its old name; resuming from it, the run now "
                          f"writes {CHECKPOINT_NAME} (the old name is read for one more release)",
                          FutureWarning, stacklevel=2)
            return work_dir / name
    return None


@dataclass
class Position:
    """Where a run is: ``epoch_step`` batches of ``epoch`` consumed, ``update`` optimizer steps done."""

    epoch: int = 0
    epoch_step: int = 0
    update: int = 0


@dataclass
class LoopSettings:
    """How the loop runs; the task derives these from its config.

    Args:
        epochs: epochs of the schedule.
        steps_per_epoch: batches each rank runs an epoch (a multiple of ``accum_steps``).
        accum_steps: batches whose gradients are accumulated into one update.
        clip_grad: max gradient norm (None or 0: no clipping).
        log_interval: updates between ``"train"`` log records (one is also written at each epoch
            end and when the run stops).
        checkpoint_interval: updates between checkpoints (0: none besides the ones below).
        checkpoint_each_epoch: write the checkpoint at every epoch end.
        max_updates: stop (with a checkpoint) after this many updates in total.
        loss_key: the term of the step's dict that is backpropagated.
        samples_per_step: samples of one step over all ranks (progress bar, rate in the log).
        unit: what a sample is called on the progress bar.
        progress_bar: show the progress bar (rank 0).
    """

    epochs: int
    steps_per_epoch: int
    accum_steps: int = 1
    clip_grad: float | None = None
    log_interval: int = 50
    checkpoint_interval: int = 0
    checkpoint_each_epoch: bool = False
    max_updates: int | None = None
    loss_key: str = "loss"
    samples_per_step: int = 1
    unit: str = "sample"
    progress_bar: bool = True

    @classmethod
    def from_runtime(cls, runtime: Mapping[str, Any], **task: Any) -> "LoopSettings":
        """The settings of :func:`runtime_options`' ``runtime`` keys plus the task's own (``task``:
        epochs, steps_per_epoch, accum_steps, loss_key ...)."""
        return cls(clip_grad=runtime["clip_grad"], log_interval=int(runtime["log_interval"]),
                   checkpoint_interval=int(runtime["checkpoint_interval"] or 0),
                   max_updates=None if runtime["max_updates"] is None else int(runtime["max_updates"]),
                   progress_bar=bool(runtime["progress_bar"]), **task)


class LossWindow:
    """Loss terms of the steps since the last log record, summed on the device (float64).

    ``add`` only launches device work; ``totals`` is the one place that reads the sums on the
    host, all-reduced over the ranks. A non-finite term of any step leaves its sum non-finite.
    """

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.steps = 0
        self.first_update = self.last_update = 0

    def add(self, terms: Mapping[str, torch.Tensor], update: int) -> None:
        """Add one step's terms; ``update`` is the (1-based) update the step contributes to."""
        if self.keys is None:
            self.keys = sorted(terms)
        elif sorted(terms) != self.keys:
            raise KeyError(f"the step returned terms {sorted(terms)}, earlier steps {self.keys}")
        values = torch.stack([terms[k].detach().reshape(()).to(torch.float64) for k in self.keys])
        if self.sums is None:
            self.sums, self.first_update = values, update
        else:
            self.sums += values
        self.steps += 1
        self.last_update = update

    def totals(self, info: DistInfo) -> tuple[dict[str, float], int]:
        """(sum of each term, number of steps), over all ranks. Collective."""
        if self.sums is None or self.keys is None:
            return {}, 0
        packed = torch.cat([self.sums, self.sums.new_tensor([self.steps])])
        if info.distributed:
            dist.all_reduce(packed)
        values = packed.tolist()
        return dict(zip(self.keys, values[:-1])), int(values[-1])

    def check_finite(self, info: DistInfo, epoch: int) -> tuple[dict[str, float], int]:
        """The totals, or FloatingPointError naming the window's updates and non-finite terms."""
        sums, steps = self.totals(info)
        bad = {k: v for k, v in sums.items() if not math.isfinite(v)}
        if bad:
            raise FloatingPointError(
                f"non-finite loss in updates {self.first_update}-{self.last_update} (epoch {epoch}): "
                + ", ".join(f"{k}={v}" for k, v in bad.items())
                + f" (summed over the window's steps and {info.world_size} rank(s)); every term: {sums}")
        return sums, steps

    def pop_means(self, info: DistInfo, epoch: int) -> dict[str, float]:
        """Mean of each term over the window's steps and ranks; starts a new window. Collective."""
        sums, steps = self.check_finite(info, epoch)
        self.sums, self.steps = None, 0
        return {k: v / max(steps, 1) for k, v in sums.items()}


class Engine:
    """Runs a task's loss step over epochs of batches; see the module docstring.

    Args:
        model: the task's module on ``info.device`` (wrapped in DDP here when distributed).
        optimizer: over ``model``'s parameters.
        info: from :func:`engine.init_distributed`.
        precision: from :func:`engine.resolve_precision`.
        settings: the loop's schedule and intervals.
        checkpoint_path: the resumable checkpoint the loop writes; ``log.jsonl`` goes beside it.
        seed: the run's seed (RNGs are re-seeded from it after a world-size change).
        model_key: key of the model's state dict in checkpoints.
        task_state: returns the task's own checkpoint entries (scheduler, config, metadata ...);
            called on every rank when a checkpoint is written (it may use collectives), rank 0's
            entries are written.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo, precision: Precision,
                 settings: LoopSettings, checkpoint_path: str | Path, seed: int, model_key: str = "model",
                 task_state: Callable[[], dict[str, Any]] | None = None) -> None:
        if settings.steps_per_epoch % settings.accum_steps:
            raise ValueError(f"steps_per_epoch={settings.steps_per_epoch} is not a multiple of "
                             f"accum_steps={settings.accum_steps}")
        self.module = model
        self.model = wrap_ddp(model, info)
        self.optimizer = optimizer
        self.info, self.precision, self.settings = info, precision, settings
        self.scaler = precision.grad_scaler()
        self.checkpoint_path = Path(checkpoint_path)
        self.seed, self.model_key = seed, model_key
        self.task_state = task_state or dict
        self.log = JsonLog(self.checkpoint_path.parent / LOG_NAME, info.is_main)
        self.position = Position()
        self.window = LossWindow()
        self.last_record: dict[str, Any] = {}
        self._saved_update = -1

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Write a resumable checkpoint (default: ``checkpoint_path``). Collective.

        Only a save to ``checkpoint_path`` counts as the run's checkpoint: a copy elsewhere (an
        epoch snapshot, say) does not spare :meth:`fit` its final save of ``checkpoint_path``.

        First checks, on every rank, that the losses since the last log record and the weights
        are finite: FloatingPointError instead of a checkpoint of a diverged run.
        """
        self.window.check_finite(self.info, self.position.epoch)
        self._check_finite_weights()
        entries = self.task_state()
        payload = None
        if self.info.is_main:
            payload = {self.model_key: self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "scaler": self.scaler.state_dict(), "position": asdict(self.position), **entries}
        target = self.checkpoint_path if path is None else Path(path)
        written = save_checkpoint(target, payload, self.info)
        if target.resolve() == self.checkpoint_path.resolve():
            self._saved_update = self.position.update
        return written

    def _check_finite_weights(self) -> None:
        tensors = {k: v for k, v in self.module.state_dict().items() if v.is_floating_point()}
        if torch.stack([torch.isfinite(v).all() for v in tensors.values()]).all():
            return
        bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
        raise FloatingPointError(f"non-finite weights after update {self.position.update} "
                                 f"(epoch {self.position.epoch}): {bad[:8]}{' ...' if len(bad) > 8 else ''}")

    def resume(self, path: str | Path, allow_world_size_change: bool = False,
               option: str = "allow_world_size_change=True",
               validate: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Load model, optimizer, scaler, position and this rank's RNG state from ``path``;
        returns the checkpoint for the task's own entries.

        A file that is not a checkpoint of :meth:`save` raises :class:`backbones.CheckpointError`
        naming it. A checkpoint of another number of processes is refused unless
        ``allow_world_size_change`` (``option`` names the setting in the error); the resumption is
        then logged as not exact. ``validate(ckpt)``, the task's own check, may raise after those
        checks and before anything is loaded.
        """
        ckpt = read_checkpoint(path)
        check_training_checkpoint(ckpt, path, self.model_key)
        position = Position(**ckpt["position"])
        exact = restore_rank_rng(ckpt, path, self.info, seed=self.seed, update=position.update,
                                 allow_world_size_change=allow_world_size_change, option=option)
        if validate is not None:
            validate(ckpt)
        self.module.load_state_dict(ckpt[self.model_key])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.position = position
        self._saved_update = position.update
        record = {"event": "resume", "checkpoint": str(path), **asdict(position), "exact": exact,
                  "world_size": self.info.world_size, "saved_world_size": int(ckpt["world_size"])}
        if not exact:
            note = (f"resumed {path} with {self.info.world_size} process(es) instead of {ckpt['world_size']}: "
                    f"random states re-seeded from (seed={self.seed}, rank, update={position.update}); "
                    f"the run is not bit-identical to an uninterrupted one")
            record["note"] = note
            if self.info.is_main:
                logger.warning(note)
        self.log.write(record)
        return ckpt

    # -- the loop ----------------------------------------------------------------------------
    def sampler(self, length: int, batch_size: int, shuffle: bool = False) -> EpochSampler:
        """The run's data order from the current position (after :meth:`resume`): this rank's
        ``(epoch, index)`` keys of the rest of the schedule, ``batch_size`` per batch, for one
        ``DataLoader`` over all epochs (see :mod:`engine.data`)."""
        s = self.settings
        return EpochSampler(length, s.steps_per_epoch, batch_size, s.epochs, rank=self.info.rank,
                            world_size=self.info.world_size, shuffle=shuffle, seed=self.seed,
                            start_epoch=self.position.epoch, start_step=self.position.epoch_step)

    def stop_requested(self) -> bool:
        limit = self.settings.max_updates
        return limit is not None and self.position.update >= int(limit)

    def fit(self, batches: Iterator[Any], step: StepFn, *,
            before_update: Callable[[int], None] | None = None,
            on_epoch_end: Callable[[int], None] | None = None,
            log_fields: Callable[[], dict[str, Any]] | None = None) -> bool:
        """Train from ``position`` to the end of the schedule, or until ``max_updates``.

        Args:
            batches: the rest of the run's batches, from ``position`` on: a loader over
                :meth:`sampler`'s keys (one iterator for every epoch).
            step: the task's loss step, ``step(model, batch) -> {name: scalar tensor}``, run in
                training mode; ``model`` is the (DDP-wrapped) model to call.
            before_update: called with the number of updates done before the first batch of
                each update (per-update learning-rate schedules).
            on_epoch_end: called with the finished epoch before its end-of-epoch checkpoint.
            log_fields: extra entries of each ``"train"`` record; called on every rank (it may
                use collectives).

        Returns True when the schedule is complete. A checkpoint is written at the end unless
        one was written at the last update.
        """
        s = self.settings
        samples_done = (self.position.epoch * s.steps_per_epoch + self.position.epoch_step) * s.samples_per_step
        bar = progress_bar(s.epochs * s.steps_per_epoch * s.samples_per_step, samples_done, unit=s.unit,
                           enabled=s.progress_bar and self.info.is_main)
        self._run_start, self._run_start_update = time.perf_counter(), self.position.update
        try:
            while self.position.epoch < s.epochs and not self.stop_requested():
                epoch = self.position.epoch
                bar.set_description(f"epoch {epoch + 1}/{s.epochs}")
                if not self._run_epoch(epoch, batches, step, before_update,
                                       log_fields, bar):
                    break
                self.position = Position(epoch + 1, 0, self.position.update)
                if on_epoch_end is not None:
                    on_epoch_end(epoch)
                if s.checkpoint_each_epoch or self._checkpoint_due():
                    self.save()
        finally:
            bar.close()
        if self._saved_update != self.position.update:
            self.save()
        return self.position.epoch >= s.epochs

    def _run_epoch(self, epoch: int, batches: Iterator[Any], step: StepFn,
                   before_update: Callable[[int], None] | None,
                   log_fields: Callable[[], dict[str, Any]] | None, bar: Any) -> bool:
        """The rest of ``epoch``; False if the run stopped inside it (``max_updates``)."""
        s, pos = self.settings, self.position
        self.model.train()
        self._window_start = time.perf_counter()
        for _ in range(pos.epoch_step, s.steps_per_epoch):
            batch = next(batches)
            micro = pos.epoch_step % s.accum_steps
            if micro == 0 and before_update is not None:
                before_update(pos.update)
            last_micro = micro == s.accum_steps - 1
            with self._gradient_sync(last_micro):
                terms = step(self.model, batch)
                self.scaler.scale(terms[s.loss_key] / s.accum_steps).backward()
            self.window.add(terms, pos.update + 1)
            pos.epoch_step += 1
            bar.update(s.samples_per_step)
            if not last_micro:
                continue
            self._optimizer_step()
            pos.update += 1
            epoch_done = pos.epoch_step == s.steps_per_epoch
            if pos.update % s.log_interval == 0 or epoch_done or self.stop_requested():
                self._write_log(epoch, bar, log_fields)
            if epoch_done:
                break
            if self._checkpoint_due():
                self.save()
            if self.stop_requested():
                return False
        return True

    def _gradient_sync(self, last_micro: bool) -> contextlib.AbstractContextManager:
        """DDP averages gradients only on the last batch of an accumulated update."""
        if self.info.distributed and not last_micro:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _optimizer_step(self) -> None:
        if self.settings.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), float(self.settings.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _checkpoint_due(self) -> bool:
        every = self.settings.checkpoint_interval
        return bool(every) and self.position.update % int(every) == 0

    def _write_log(self, epoch: int, bar: Any, log_fields: Callable[[], dict[str, Any]] | None) -> None:
        s = self.settings
        steps = self.window.steps
        means = self.window.pop_means(self.info, epoch)
        extra = log_fields() if log_fields is not None else {}
        now = time.perf_counter()
        updates_left = s.epochs * s.steps_per_epoch // s.accum_steps - self.position.update
        update_rate = (self.position.update - self._run_start_update) / max(now - self._run_start, 1e-9)
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        record = {"event": "train", **asdict(self.position), "lr": lr, **means,
                  "samples_per_s": steps * s.samples_per_step / max(now - self._window_start, 1e-9),
                  "eta_s": updates_left / max(update_rate, 1e-9), "time": time.time(), **extra}
        self.log.write(record)
        bar.set_postfix({s.loss_key: f"{means[s.loss_key]:.4f}", "lr": f"{lr:.2e}"})
        self.last_record = record
        self._window_start = now
