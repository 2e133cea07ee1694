"""Numeric precision of a run: autocast on the run's device type, and a GradScaler for fp16.

``"fp32"``: no autocast. ``"bf16"``: ``torch.autocast`` with bfloat16, on CPU or GPU.
``"fp16"``: autocast with float16 plus ``torch.amp.GradScaler`` (dynamic loss scaling), on CUDA
only: float16 autocast on CPU is slow and has no scaler there, so it is refused before any work.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "resolve_precision"]

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device_type: str, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast(device_type, dtype)``, or nothing for ``dtype=None`` (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


@dataclass(frozen=True)
class Precision:
    """A checked precision name on a device; build it with :func:`resolve_precision`."""

    name: str
    device: torch.device

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None for fp32)."""
        return PRECISIONS[self.name]

    def autocast(self) -> ContextManager:
        return autocast(self.device.type, self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that scales only under fp16 (disabled, it passes losses and steps through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def resolve_precision(name: str | None, device: torch.device, option: str = "precision") -> Precision:
    """Check ``name`` (None means fp32) against the device; ``option`` names the config key in errors."""
    name = "fp32" if name is None else name
    if name not in PRECISIONS:
        raise ValueError(f"{option} must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"{option}='fp16' needs a GPU (float16 autocast with GradScaler); the run's device is "
                         f"{device}: use 'bf16' or 'fp32' there")
    return Precision(name, device)
