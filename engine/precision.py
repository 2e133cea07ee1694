"""Numeric precision, decided here for every task (training, tracking, distillation, benchmarks).

* Names: ``"fp32"`` (no autocast), ``"bf16"`` (``torch.autocast`` with bfloat16, CPU or GPU),
  ``"fp16"`` (autocast with float16 plus ``torch.amp.GradScaler``, CUDA only: float16 autocast on a
  CPU is slow and has no scaler there, so it is refused before any work). :data:`PRECISIONS` maps
  them to autocast dtypes, :func:`torch_dtype` to the dtype tensors are stored in.
* Which device runs bf16 natively: a CPU with AVX512-BF16 or AMX-BF16 that torch may use
  (:func:`cpu_bf16_native`), a GPU of compute capability 8.0 or newer (:func:`cuda_bf16_native`).
  Elsewhere bf16 is emulated, several times slower than fp32; :func:`bf16_unsupported_reason` says
  why in one sentence, and :func:`resolve_precision` warns.
* The context: :func:`autocast` (nothing for fp32), :meth:`Precision.autocast`.
* Quantized precisions (:data:`QUANTIZED`): ``"int8"`` is not an autocast dtype but post-training
  quantization by one runtime (the tracker's OpenVINO backend, through NNCF); :data:`DTYPES` lists
  every name a tool accepts, :func:`check_quantized` refuses a quantized name on any other runtime
  or device, and :func:`cpu_int8_native` says whether the CPU multiplies 8-bit integers natively
  (AVX512-VNNI, AVX-VNNI or AMX-INT8).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

__all__ = ["CUDA_BF16_CAPABILITY", "DTYPES", "PRECISIONS", "QUANTIZED", "check_quantized", "cpu_int8_native", "Precision", "autocast", "bf16_unsupported_reason", "cpu_bf16_native",
           "cpu_flags", "cuda_bf16_native", "onednn_isa_limit", "resolve_precision", "torch_dtype"]

CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPU_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CAPABILITIES_BELOW_AVX512 = frozenset({"NO AVX", "DEFAULT", "AVX", "AVX2"})
# oneDNN's ISA limit (``ONEDNN_MAX_CPU_ISA``, honoured by torch's oneDNN kernels and OpenVINO's CPU plugin):
# the limits below which the CPU's bf16 / 8-bit dot-product units are not used
ISA_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"})
ISA_WITHOUT_INT8 = frozenset({"SSE41", "AVX", "AVX2", "AVX512_CORE"})
CUDA_BF16_CAPABILITY = (8, 0)   # Ampere: the first GPUs whose tensor cores compute bf16

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
QUANTIZED: dict[str, str] = {"int8": "openvino"}   # precision -> the one runtime that quantizes to it
DTYPES: tuple[str, ...] = (*PRECISIONS, *QUANTIZED)


def check_quantized(name: str, backend: str, device: torch.device, option: str = "dtype") -> None:
    """Raise ValueError unless the quantized precision ``name`` runs on ``backend`` on ``device``.

    Quantized precisions are a runtime's post-training quantization of an exported network, not a
    torch dtype: only the runtime named in :data:`QUANTIZED`, on the CPU, runs them."""
    runtime = QUANTIZED[name]
    if backend != runtime or device.type != "cpu":
        raise ValueError(f"{option}={name!r} is post-training quantization by the {runtime} backend on a CPU "
                         f"(NNCF); got backend={backend!r} on {device}: use backend={runtime!r} with device='cpu', "
                         f"or one of {', '.join(PRECISIONS)}")


def torch_dtype(name: str) -> torch.dtype:
    """The dtype a precision stores tensors in (``"fp32"`` -> float32, ``"bf16"`` -> bfloat16, ...)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name] or torch.float32


def autocast(device_type: str, dtype: torch.dtype | None, cache_enabled: bool = True) -> ContextManager:
    """``torch.autocast(device_type, dtype)``, or nothing for ``dtype=None`` (fp32).

    ``cache_enabled=False`` for code captured as a CUDA graph or traced: autocast's cache of cast
    weights must not outlive the capture."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=cache_enabled)


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


def resolve_precision(name: str | None, device: torch.device, option: str = "precision",
                      cuda_capability: tuple[int, int] | None = None) -> Precision:
    """Check ``name`` (None means fp32) against the device; ``option`` names the config key in errors.

    ``"bf16"`` where the device only emulates it (:func:`bf16_unsupported_reason`) is accepted with a
    RuntimeWarning: the run works, but several times slower than in fp32. ``cuda_capability``:
    the GPU's (major, minor), read from the device when None."""
    name = "fp32" if name is None else name
    if name in QUANTIZED:
        raise ValueError(f"{option}={name!r} is post-training quantization by the {QUANTIZED[name]} backend of the "
                         f"tracker, not a torch precision: use one of {list(PRECISIONS)} here")
    if name not in PRECISIONS:
        raise ValueError(f"{option} must be one of {list(PRECISIONS)}, got {name!r}")
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"{option}='fp16' needs a GPU (float16 autocast); the device is {device}: use 'bf16' "
                         "or 'fp32' there")
    if name == "bf16":
        reason = bf16_unsupported_reason(device, cuda_capability=cuda_capability)
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


def onednn_isa_limit() -> str | None:
    """oneDNN's ISA limit (``ONEDNN_MAX_CPU_ISA``, or its old name ``DNNL_MAX_CPU_ISA``) upper-cased, None
    when unset or ``ALL``: torch's oneDNN kernels and OpenVINO's CPU plugin use no instruction above it."""
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return None if value in ("", "ALL", "DEFAULT") else value


def cpu_bf16_native(flags: frozenset[str] | None = None, capability: str | None = None,
                    isa_limit: str | None = None) -> bool:
    """True when the CPU computes bf16 matrix products natively (AVX512-BF16 or AMX-BF16) and torch may use
    those units (its CPU capability is not restricted below AVX-512, e.g. by ``ATEN_CPU_CAPABILITY=avx2``,
    nor oneDNN's ISA below AVX512_CORE_BF16 by ``ONEDNN_MAX_CPU_ISA``: ``isa_limit``, read from the
    environment when None); elsewhere bf16 is emulated, several times slower than fp32 (OpenVINO
    2026.4 under ``ONEDNN_MAX_CPU_ISA=AVX2`` has no bf16 Softmax kernel at all)."""
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    isa_limit = onednn_isa_limit() if isa_limit is None else isa_limit
    return (bool(CPU_BF16_FLAGS & (cpu_flags() if flags is None else flags))
            and capability not in CAPABILITIES_BELOW_AVX512 and isa_limit not in ISA_WITHOUT_BF16)


def cpu_int8_native(flags: frozenset[str] | None = None, isa_limit: str | None = None) -> bool:
    """True when the CPU has 8-bit integer dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8) that
    oneDNN may use (``isa_limit``: ``ONEDNN_MAX_CPU_ISA``, read from the environment when None), where
    int8 matrix products run at two to four times the fp32 rate; elsewhere int8 still runs but gains
    little (slower than fp32 under ``ONEDNN_MAX_CPU_ISA=AVX2``, measured)."""
    isa_limit = onednn_isa_limit() if isa_limit is None else isa_limit
    return bool(CPU_INT8_FLAGS & (cpu_flags() if flags is None else flags)) and isa_limit not in ISA_WITHOUT_INT8


def cuda_bf16_native(device: str | torch.device = "cuda", capability: tuple[int, int] | None = None) -> bool:
    """True when the GPU computes bf16 natively: compute capability 8.0 (Ampere) or newer.

    ``torch.cuda.is_bf16_supported()`` also says True where bf16 is only emulated (before Ampere),
    hence the capability. ``capability``: (major, minor), read from ``device`` when None."""
    capability = torch.cuda.get_device_capability(device) if capability is None else capability
    return tuple(capability) >= CUDA_BF16_CAPABILITY


def bf16_unsupported_reason(device: str | torch.device = "cpu", flags: frozenset[str] | None = None,
                            capability: str | None = None,
                            cuda_capability: tuple[int, int] | None = None) -> str | None:
    """Why bf16 would only be emulated on ``device`` (a sentence for reports), or None where it is native.

    ``flags`` / ``capability``: the CPU's flags and torch's CPU capability; ``cuda_capability``: a
    GPU's (major, minor); each read from the machine when None."""
    device = torch.device(device)
    if device.type == "cuda":
        cuda_capability = torch.cuda.get_device_capability(device) if cuda_capability is None else cuda_capability
        if cuda_bf16_native(device, cuda_capability):
            return None
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else str(device)
        major, minor = cuda_capability
        return (f"{name} has compute capability {major}.{minor}: native bf16 needs "
                f"{CUDA_BF16_CAPABILITY[0]}.{CUDA_BF16_CAPABILITY[1]} or newer (Ampere), so bf16 is emulated")
    flags = cpu_flags() if flags is None else flags
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    if cpu_bf16_native(flags, capability):
        return None
    if CPU_BF16_FLAGS & flags and capability not in CAPABILITIES_BELOW_AVX512:
        return (f"oneDNN's ISA is limited to {onednn_isa_limit()} (ONEDNN_MAX_CPU_ISA): the CPU's bf16 units are not "
                "used, so bf16 figures would time the emulation")
    if CPU_BF16_FLAGS & flags:
        return (f"torch's CPU capability is restricted to {capability} (ATEN_CPU_CAPABILITY): the CPU's bf16 units "
                "are not used, so bf16 figures would time the emulation")
    if not flags:
        return f"CPU capability {capability} and no readable /proc/cpuinfo: native bf16 unknown, treated as emulated"
    return (f"CPU capability {capability} without avx512_bf16 or amx_bf16: torch emulates bf16 there (about 10x "
            "slower than fp32), so bf16 figures would time the emulation")
