"""Training checkpoints: written atomically by rank 0 with every rank's RNG state, read back with
``weights_only=True``, and one rule for a run resumed on another number of processes.

Exact resumption needs each rank's RNG state back, so a checkpoint records how many processes
wrote it. Resuming with another number is refused (the error names the file, both numbers and
the option that overrides it); with the override each rank's RNGs are re-seeded from
(seed, rank, update) instead: the run continues deterministically, but not bit-identically to
an uninterrupted one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from backbones import CheckpointError, atomic_save

from .distributed import DistInfo, all_gather_objects, barrier
from .rng import capture_rng, restore_rng, seed_rank

__all__ = ["TRAINING_KEYS", "WorldSizeChangeError", "check_training_checkpoint", "plain", "save_checkpoint",
           "restore_rank_rng"]

# What every checkpoint of :func:`save_checkpoint` holds (besides the model's state under the task's key).
TRAINING_KEYS = ("optimizer", "position", "rng", "world_size")


class WorldSizeChangeError(ValueError):
    """A checkpoint written by N processes was resumed by M != N processes without the override,
    or with the override where the task cannot continue its schedule on M processes."""


def plain(obj: Any) -> Any:
    """A config as nested dicts / lists of JSON values (other objects as their ``str``), so that a
    checkpoint holding it loads with ``weights_only=True``."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any] | None, info: DistInfo) -> Path:
    """Collective: gather every rank's RNG state; rank 0 writes ``payload`` + ``rng`` (a list in
    rank order) + ``world_size`` to ``path`` atomically. Other ranks may pass ``payload=None``."""
    states = all_gather_objects(capture_rng(info.device), info)
    if info.is_main:
        if payload is None:
            raise ValueError("save_checkpoint: rank 0 must provide the payload")
        atomic_save({**payload, "rng": states, "world_size": info.world_size}, path)
    barrier(info)
    return Path(path)


def check_training_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike, model_key: str) -> None:
    """:class:`backbones.CheckpointError` naming ``path`` unless ``ckpt`` has what resuming needs:
    the model's state under ``model_key`` and :data:`TRAINING_KEYS`, with a non-empty per-rank
    ``rng`` list."""
    missing = [k for k in (model_key, *TRAINING_KEYS) if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a training checkpoint of this engine (no {', '.join(repr(k) for k in missing)}; it holds "
            f"{sorted(map(str, ckpt))}): resume from a checkpoint the training loop wrote, e.g. its latest.pth")
    states = ckpt["rng"]
    if not isinstance(states, (list, tuple)) or not states:
        raise CheckpointError(f"{path}: no per-rank 'rng' list: not a training checkpoint of this engine")


def restore_rank_rng(ckpt: Mapping[str, Any], path: str | os.PathLike, info: DistInfo, *, seed: int, update: int,
                     allow_world_size_change: bool, option: str) -> bool:
    """Give this rank the RNG state saved for it; returns True (exact resumption).

    If the checkpoint was written by another number of processes: raise
    :class:`WorldSizeChangeError` naming ``option``, or with ``allow_world_size_change`` re-seed
    this rank from (seed, rank, update) and return False.
    """
    states = ckpt.get("rng")
    if not isinstance(states, (list, tuple)) or not states or "world_size" not in ckpt:
        raise CheckpointError(f"{path}: no per-rank 'rng' list or no 'world_size': not a training checkpoint of "
                              "this engine")
    saved = int(ckpt["world_size"])  # save_checkpoint writes it with every 'rng' list
    if saved == info.world_size:
        restore_rng(states[info.rank], info.device)
        return True
    if not allow_world_size_change:
        raise WorldSizeChangeError(
            f"{path}: written by {saved} process(es), resumed by {info.world_size}: exact resumption needs the "
            f"same number of processes. Set {option} to resume anyway (each rank's random state is then "
            f"re-seeded from (seed, rank, update) and the run is not bit-identical to an uninterrupted one)")
    seed_rank(seed, info.rank, update)
    return False
