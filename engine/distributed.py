"""Processes and devices: the process group torchrun describes, device choice, collectives.

One rule for every task: ``init_distributed`` reads torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``), picks the device, and joins the process group with NCCL when
the device is a GPU and gloo on CPU. Calling it again returns the same answer (a tool may join
the group before it hands over to a training function). The process that launched the run
leaves the group (:func:`close_distributed`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DistInfo", "resolve_device", "init_distributed", "close_distributed", "all_gather_objects",
           "barrier", "sum_over_ranks", "wrap_ddp", "unwrap", "weights_digest", "CrossRankBatchNorm",
           "sync_batchnorm"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0,
                   option: str = "device") -> torch.device:
    """``"auto"`` (the local rank's GPU if there is one, else the CPU), ``"cpu"``, ``"cuda"``
    (the local rank's GPU) or ``"cuda:<index>"``, checked against the GPUs torch sees.

    The one device parser of the project (training, tracking, analyses). ``option`` is the config key
    (``runtime.device``) or flag (``--device``) the value came from; every ValueError names it.
    """
    name = "auto" if name is None else str(name).strip().lower()
    given = f"{option} {name!r}" if option.startswith("--") else f"{option}={name!r}"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not name.startswith("cuda:"):
        raise ValueError(f"{given}: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    index_text = name.partition(":")[2] or str(local_rank)
    if not index_text.isdigit():
        raise ValueError(f"{given}: the GPU index must be a non-negative integer")
    if not torch.cuda.is_available():
        raise ValueError(f"{given} asks for a GPU, but torch sees none (torch.cuda.is_available() is False); "
                         "use 'cpu' or 'auto'")
    index, count = int(index_text), torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"{given}: GPU {index} does not exist ({count} visible"
                         + (f"; LOCAL_RANK is {local_rank}: one GPU a process)" if name == "cuda" else ")"))
    return torch.device("cuda", index)


def init_distributed(device: str | None = "auto", option: str = "device") -> DistInfo:
    """Join the process group torchrun describes (nothing to join for one process) on ``device``.

    NCCL on GPU, gloo on CPU. Under torchrun each rank takes its ``LOCAL_RANK``'s GPU, so a
    fixed ``cuda:<index>`` is refused there (NCCL needs one GPU a rank).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and str(device).startswith("cuda:"):
        raise ValueError(f"{option}={device!r} under torchrun with {world_size} processes: use 'cuda' "
                         f"(each process takes the GPU of its LOCAL_RANK) or 'auto'")
    dev = resolve_device(device, local_rank, option)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank, world_size, local_rank, dev)


def close_distributed() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` for one process)."""
    if not info.distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def sum_over_ranks(values: Sequence[float], info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64). Collective."""
    if not info.distributed:
        return [float(v) for v in values]
    packed = torch.tensor(list(values), dtype=torch.float64, device=info.device)
    dist.all_reduce(packed)
    return packed.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when there are several processes."""
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce`` (sum) whose backward is the sum over ranks of the gradients: each rank's
    input feeds every rank's output."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class CrossRankBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the batch of every rank, on any device and
    backend (gloo on CPU included): what ``torch.nn.SyncBatchNorm`` computes, which runs on GPUs only.

    The global mean and the centred sum of squares (a two-pass variance, stable) come from two
    ``torch.distributed.all_reduce`` calls made differentiable: in the backward pass each rank
    receives the gradient every rank's loss sends through the shared statistics, so DDP's averaged
    gradients are those of one process holding the whole batch. Ranks may hold different numbers
    of samples. Running statistics are updated with the unbiased
    global variance, as ``SyncBatchNorm``. Outside training, or in a single process, it is
    ``F.batch_norm``.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        count = xf.new_tensor([xf.numel() // xf.shape[1]])
        totals = _SumOverRanks.apply(torch.cat([xf.sum(dims), count]))
        n = totals[-1]
        mean = totals[:-1] / n
        centred = xf - mean.view(shape)
        var = _SumOverRanks.apply(centred.square().sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * n / (n - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every batch-norm layer replaced by this class, holding the same
        parameter and buffer tensors (``requires_grad`` included), as ``SyncBatchNorm.convert_sync_batchnorm``."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                setattr(new, name, tensor)
            return new.train(module.training)
        for name, child in module.named_children():
            converted = cls.convert(child)
            if converted is not child:
                setattr(module, name, converted)
        return module


def sync_batchnorm(module: nn.Module, info: DistInfo) -> nn.Module:
    """``module`` with batch statistics computed over all ranks when there are several: torch's
    ``SyncBatchNorm`` on CUDA, :class:`CrossRankBatchNorm` elsewhere (``SyncBatchNorm`` refuses
    CPU tensors: "SyncBatchNorm expected input tensor to be on GPU"). Unchanged for one process."""
    if not info.distributed:
        return module
    if info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return CrossRankBatchNorm.convert(module)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every trainable parameter's name and bytes (do the ranks hold the same weights?)."""
    digest = hashlib.sha256()
    for name, param in unwrap(model).named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
