"""Let ``torch.load(weights_only=True)`` read mmengine's own training checkpoints.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 calls ``torch.load``
without the argument, so mmseg's ``tools/test.py CKPT`` and ``tools/train.py --resume`` stop at
``Unsupported global: mmengine.logging.history_buffer.HistoryBuffer``.  Besides tensors, an
mmengine checkpoint pickles the message hub's ``HistoryBuffer`` objects (numpy arrays of logged
values) and numpy scalars in its runtime info; nothing else.

This module adds exactly those types to torch's allow-list of the safe unpickler (it never turns
safe loading off, and nothing it admits can run code on load).  The call happens on
``import seg``, which is how a config's ``custom_imports=dict(imports=["seg"])`` reaches mmseg's
unchanged tools: mmengine imports custom modules inside ``Config.fromfile``, before the runner
loads or resumes any checkpoint.
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = ["mmengine_checkpoint_globals", "allow_mmengine_checkpoints"]


def _numpy_multiarray() -> Any:
    """numpy's ``multiarray`` module: ``numpy._core`` (numpy >= 2) or ``numpy.core`` (1.x)."""
    core = getattr(np, "_core", None)
    return core.multiarray if core is not None else np.core.multiarray


def mmengine_checkpoint_globals() -> list[Any]:
    """The non-tensor globals an mmengine ``Runner`` checkpoint refers to.

    * ``HistoryBuffer``: the message hub's logged scalars (``message_hub`` entry), and
      ``builtins.getattr``, with which pickle rebuilds the statistics methods each buffer keeps
      (``getattr(HistoryBuffer, "min")`` ...).
    * ``multiarray._reconstruct``, ``ndarray``, ``dtype``: the numpy arrays inside the buffers.
    * ``multiarray.scalar``: numpy scalars: the ``eta`` (``np.float64``) and, with
      ``CheckpointHook(save_best="mIoU")``, the ``best_score`` (``np.float32``, as mmseg's
      ``IoUMetric`` returns it) of the message hub's runtime info.
    * ``Float64DType``, ``Int64DType``, ``Float32DType``: numpy >= 2 gives each dtype its own
      class, which the unpickler must be allowed to build (float64/int64 arrays in the buffers,
      the float32 best score).

    Each one is needed to load a checkpoint written by mmseg's ``tools/train.py`` with our
    configs (checked by leaving them out one at a time; torch 2.14, numpy 2.4); nothing else is.
    """
    multiarray = _numpy_multiarray()
    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.int64, np.float32)]
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            *dtype_classes, builtins.getattr]


def allow_mmengine_checkpoints() -> None:
    """Add :func:`mmengine_checkpoint_globals` to torch's safe-unpickler allow-list (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
