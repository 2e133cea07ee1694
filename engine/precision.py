"""Numeric precision of a run: autocast on the run's device type, and a GradScaler for fp16.

``"fp32"``: no autocast. ``"bf16"``: ``torch.autocast`` with bfloat16, on CPU or GPU.
``"fp16"``: autocast with float16 plus ``torch.amp.GradScaler`` (dynamic loss scaling), on CUDA
only: float16 autocast on CPU is slow and has no scaler there, so it is refused before any work.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "bf16_unsupported_reason", "cpu_bf16_native", "cpu_flags",
           "resolve_precision"]

CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CAPABILITIES_BELOW_AVX512 = frozenset({"NO AVX", "DEFAULT", "AVX", "AVX2"})

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
    """Check ``name`` (None means fp32) against the device; ``option`` names the config key in errors.

    ``"bf16"`` where the device only emulates it (:func:`bf16_unsupported_reason`) is accepted with a
    RuntimeWarning: the run works, but several times slower than in fp32."""
    name = "fp32" if name is None else name
    if name not in PRECISIONS:
        raise ValueError(f"{option} must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"{option}='fp16' needs a GPU (float16 autocast with GradScaler); the run's device is "
                         f"{device}: use 'bf16' or 'fp32' there")
    if name == "bf16":
        reason = bf16_unsupported_reason(device)
        if reason is not None:
            warnings.warn(f"{option}='bf16' on {device}: {reason}; 'fp32' is faster there", RuntimeWarning,
                          stacklevel=2)
    return Precision(name, device)


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags of the first CPU as Linux lists them (empty where there is no such file)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_native(flags: frozenset[str] | None = None, capability: str | None = None) -> bool:
    """True when the CPU computes bf16 matrix products natively (AVX512-BF16 or AMX-BF16) and torch may use
    those units (its CPU capability is not restricted below AVX-512, e.g. by ``ATEN_CPU_CAPABILITY=avx2``);
    elsewhere torch emulates bf16 and runs it several times slower than fp32."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    return bool(CPU_BF16_FLAGS & (cpu_flags() if flags is None else flags)) and capability not in CAPABILITIES_BELOW_AVX512


def bf16_unsupported_reason(device: str | torch.device = "cpu", flags: frozenset[str] | None = None,
                            capability: str | None = None) -> str | None:
    """Why bf16 would only be emulated on ``device`` (a sentence for reports), or None where it is native."""
    device = torch.device(device)
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no native bf16"
    flags = cpu_flags() if flags is None else flags
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if cpu_bf16_native(flags, capability):
        return None
    if CPU_BF16_FLAGS & flags:
        return (f"torch's CPU capability is restricted to {capability} (ATEN_CPU_CAPABILITY): the CPU's bf16 units "
                "are not used, so bf16 figures would time the emulation")
    if not flags:
        return f"CPU capability {capability} and no readable /proc/cpuinfo: native bf16 unknown, treated as emulated"
    return (f"CPU capability {capability} without avx512_bf16 or amx_bf16: torch emulates bf16 there (about 10x "
            "slower than fp32), so bf16 figures would time the emulation")
