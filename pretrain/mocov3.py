"""MoCo-v3 (Chen, Xie & He, 2021) on the registry's ViTs: the study's contrastive baseline, as
MAE-Lite's ``projects/mocov3`` trains MoCov3-Tiny.

:class:`MoCoV3` holds a base encoder (the ``backbones`` model ``arch``: fixed 2-D sin-cos
positions with a zero class position, patch embedding trained) with its projector MLP, a
predictor MLP, and a momentum copy of encoder and projector that follows the base by an
exponential moving average and never receives gradients. The sin-cos table is the backbone's
(MAE's layout, column half first); MoCo-v3's code puts the row half first, a fixed permutation of
channels that the initialisation's distribution cannot tell apart (a table loaded from their
files is used as it is). The steps:

* :meth:`MoCoV3.update_momentum_encoder`: ``m = momentum_at(t, T)``, momentum weights
  ``m * momentum + (1 - m) * base``, once per optimizer update, before the keys are computed
  (:class:`MoCoTask` does it when the engine announces update t of T);
* :meth:`MoCoV3.forward_encoder`: images -> the encoder's class-token features [n, C];
* :meth:`MoCoV3.forward` (two views [B, 3, H, W] each): queries ``q = predictor(projector(.))``,
  keys from the momentum branch without autograd, ``contrastive_loss(q1, k2) + contrastive_loss(q2, k1)``;
* :func:`contrastive_loss`: InfoNCE of the L2-normalised queries against the keys of every rank
  (gathered with ``torch.distributed.all_gather_into_tensor``; labels = own index + batch x rank),
  temperature T, scaled by 2T.

Same function as MAE-Lite's code (``tests/test_pretrain_mocov3.py`` checks loss, momentum encoder
and base encoder after an AdamW step against theirs), less work: both views go through each MLP
as one batch (the heads' batch norms still take their statistics per view, as two separate calls
do) and through each encoder in calls sized for the CPU's caches, the last block runs for the
class token only (the loss reads nothing else), CPU training runs the fused attention kernel in
float32 also under bf16 autocast (the bf16 kernel's backward is slow, the explicit softmax slower
at 197 tokens; see :func:`pretrain.mae.fused_attention_pays`), the momentum encoder runs without
autograd, and its update is one fused ``lerp``.

Under DDP the heads' batch norms must see the global batch (MoCo-v3 converts them to
``SyncBatchNorm``): :class:`MoCoTask` asks for it (``sync_batchnorm``) and the trainer applies
:func:`engine.sync_batchnorm` after placing the model.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from backbones import VisionTransformer, build_backbone

from .mae import fused_attention_pays, register_pretrain_model, sdpa_dtype

__all__ = ["MoCoV3", "MoCoTask", "MoCoOutput", "MLPHead", "momentum_at", "contrastive_loss", "gather_keys",
           "mocov3_init_", "mocov3_vit_tiny", "mocov3_vit_small", "mocov3_vit_base", "BATCH_OPTION"]

BATCH_OPTION = "data.batch_size"
FUSED_MIN_TOKENS = 128  # CPU training: fused attention (in float32) from this many tokens on, see fused_attention_pays
# On CPU the encoders take at most this many images a call: a MoCov3-Tiny fp32 step (16 pairs, one
# thread, 2-core Xeon) took 2.95 s in calls of 16 images, 2.93 s of 8, 3.15 s as one call of 32 (the
# activations of smaller calls stay in cache); bf16 steps were 1.90 s either way.
CPU_ENCODER_CHUNK = 16


def momentum_at(step: int, total: int, base: float = 0.99) -> float:
    """MoCo-v3's momentum at update ``step`` of ``total``: ``base`` rising to 1 on a half cosine,
    ``1 - (1 - base) * (1 + cos(pi * step / total)) / 2``."""
    if total < 1:
        raise ValueError(f"the momentum schedule needs at least one update, got total={total}")
    return 1.0 - (1.0 - base) * (1.0 + math.cos(math.pi * step / total)) / 2.0


def mocov3_init_(vit: VisionTransformer) -> None:
    """MoCo-v3's ViT initialisation: xavier-uniform Linear weights with the q, k and v thirds of
    ``qkv`` treated as separate layers, zero biases, xavier-uniform patch embedding (fan-in
    3 x p x p), class token N(0, 1e-6)."""
    for name, m in vit.named_modules():
        if isinstance(m, nn.Linear):
            if name.endswith("attn.qkv"):
                bound = math.sqrt(6.0 / (m.weight.shape[0] // 3 + m.weight.shape[1]))
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    w = vit.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    if vit.patch_embed.proj.bias is not None:
        nn.init.zeros_(vit.patch_embed.proj.bias)
    nn.init.normal_(vit.cls_token, std=1e-6)


class MLPHead(nn.Sequential):
    """MoCo-v3's projector / predictor: ``layers`` x (Linear without bias, BatchNorm, ReLU), the
    last layer without ReLU and its BatchNorm without affine (``last_bn``).

    ``forward(x, views)``: ``x`` stacks ``views`` equal groups of samples (the two views); the
    matrix products run on all at once, each batch norm takes its statistics per group, exactly
    as calling the head once per view.
    """

    def __init__(self, layers: int, in_dim: int, hidden_dim: int, out_dim: int, last_bn: bool = True) -> None:
        modules: list[nn.Module] = []
        for i in range(layers):
            last = i == layers - 1
            modules.append(nn.Linear(in_dim if i == 0 else hidden_dim, out_dim if last else hidden_dim, bias=False))
            if not last:
                modules += [nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            elif last_bn:
                modules.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*modules)

    def forward(self, x: torch.Tensor, views: int = 1) -> torch.Tensor:
        for layer in self:
            if views > 1 and isinstance(layer, nn.modules.batchnorm._BatchNorm):
                x = torch.cat([layer(chunk) for chunk in x.chunk(views)])
            else:
                x = layer(x)
        return x


def gather_keys(keys: torch.Tensor, capacity: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """(keys of every rank [world x capacity, D], which rows are real (None: all), index of this
    rank's first key) for keys [n, D] (no autograd: keys come from the momentum branch).

    One ``all_gather_into_tensor``; a rank whose batch lost unreadable images (n < capacity)
    sends zero rows marked invalid, so every rank's keys keep their place and no rank waits for
    a size. One process: the keys themselves.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return keys, None, 0
    n, d = keys.shape
    capacity = n if capacity is None else capacity
    if n > capacity:
        raise ValueError(f"a batch of {n} images exceeds {BATCH_OPTION}={capacity}")
    packed = keys.new_zeros(capacity, d + 1)
    packed[:n, :d] = keys
    packed[:n, d] = 1
    world, rank = dist.get_world_size(), dist.get_rank()
    out = keys.new_empty(world * capacity, d + 1)
    dist.all_gather_into_tensor(out, packed.contiguous())
    return out[:, :d], out[:, d] > 0, rank * capacity


def contrastive_loss(q: torch.Tensor, k: torch.Tensor, temperature: float, capacity: int | None = None) -> torch.Tensor:
    """MoCo-v3's InfoNCE of queries q [n, D] against the keys k [n, D] of every rank, times
    2 x temperature; computed in float32 at least (autocast off)."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.to(dtype), dim=1)
        k = F.normalize(k.to(dtype), dim=1)
        keys, valid, offset = gather_keys(k, capacity)
        logits = q @ keys.t() / temperature
        if valid is not None:
            logits = logits.masked_fill(~valid, float("-inf"))
        labels = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits, labels) * (2.0 * temperature)


class MoCoOutput(NamedTuple):
    loss: torch.Tensor  # scalar: contrastive_loss(q1, k2) + contrastive_loss(q2, k1)
    q: torch.Tensor     # [2B, dim] predictor outputs, view 1 then view 2
    k: torch.Tensor     # [2B, dim] momentum projector outputs (no autograd), view 1 then view 2


class MoCoV3(nn.Module):
    """Base encoder + projector, predictor, momentum encoder + projector (see the module docstring).

    Args:
        arch: the encoder, a ``backbones`` ViT (``vit_tiny``, ``vit_small``, ``vit_base``).
        dim: output width of projector and predictor (256).
        mlp_dim: hidden width of both MLPs (4096).
        temperature: InfoNCE temperature (0.2).
        momentum: the momentum at the first update (0.99); it rises to 1 over the run.
        **encoder_kwargs: ``build_backbone(arch, ...)`` arguments (img_size, depth, drop_path_rate ...).
    """

    def __init__(self, arch: str = "vit_tiny", dim: int = 256, mlp_dim: int = 4096, temperature: float = 0.2,
                 momentum: float = 0.99, **encoder_kwargs) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        defaults = {"num_classes": 0, "pos_embed": "sincos", "global_pool": "token"}
        try:
            encoder = build_backbone(arch, **{**defaults, **encoder_kwargs})
        except TypeError as error:
            raise TypeError(f"MoCo-v3 cannot build its encoder from backbone {arch!r}: {error}") from error
        if not isinstance(encoder, VisionTransformer):
            raise TypeError(f"MoCo-v3 is implemented for the ViT backbones; {arch!r} is a {type(encoder).__name__}")
        mocov3_init_(encoder)
        self.arch = arch
        self.encoder_overrides = dict(encoder_kwargs)
        self.temperature, self.base_momentum = float(temperature), float(momentum)
        self.encoder = encoder
        self.projector = MLPHead(3, encoder.embed_dim, mlp_dim, dim)
        self.predictor = MLPHead(2, dim, mlp_dim, dim)
        self.momentum_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The base encoder's weights in the backbone's key layout (what the export keeps)."""
        return self.encoder.state_dict()

    def momentum_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(momentum parameters, base parameters), in matching order: encoder, then projector."""
        momentum = [*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()]
        base = [*self.encoder.parameters(), *self.projector.parameters()]
        return momentum, base

    @torch.no_grad()
    def update_momentum_encoder(self, m: float) -> None:
        """momentum weights <- m x momentum weights + (1 - m) x base weights (one fused lerp)."""
        momentum, base = self.momentum_pairs()
        torch._foreach_lerp_(momentum, base, 1.0 - m)

    def forward_encoder(self, encoder: VisionTransformer, imgs: torch.Tensor) -> torch.Tensor:
        """Images [n, 3, H, W] -> pooled features [n, C] of ``encoder`` (base or momentum).

        Class-token pooling runs the last block for the class token only."""
        x, grid = encoder.embed(imgs)
        token_pool = encoder.global_pool == "token"
        blocks = encoder.blocks[:-1] if token_pool else encoder.blocks
        fused, dtype = fused_attention_pays(x, FUSED_MIN_TOKENS), sdpa_dtype(x)
        for blk in blocks:
            x = blk(x, grid, sdpa_dtype=dtype) if fused else blk(x, grid, return_logits=True)[0]
        if token_pool:
            x = encoder.blocks[-1].forward_prefix(x, 1, grid)
        return encoder.forward_head(encoder.norm(x), pre_logits=True)

    def _features(self, encoder: VisionTransformer, imgs: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_encoder` on ``imgs``, in calls of ``CPU_ENCODER_CHUNK`` images on CPU."""
        if imgs.device.type != "cpu" or imgs.shape[0] <= CPU_ENCODER_CHUNK:
            return self.forward_encoder(encoder, imgs)
        return torch.cat([self.forward_encoder(encoder, chunk) for chunk in imgs.split(CPU_ENCODER_CHUNK)])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, capacity: int | None = None) -> MoCoOutput:
        """Symmetric loss of two views [B, 3, H, W] of the same B images; ``capacity`` is the batch
        each rank was meant to have (see :func:`gather_keys`)."""
        if x1.shape != x2.shape:
            raise ValueError(f"the two views differ in shape: {list(x1.shape)} and {list(x2.shape)}")
        views = torch.cat([x1, x2])
        q = self.predictor(self.projector(self._features(self.encoder, views), 2), 2)
        with torch.no_grad():
            k = self.momentum_projector(self._features(self.momentum_encoder, views), 2)
        q1, q2 = q.chunk(2)
        k1, k2 = k.chunk(2)
        loss = (contrastive_loss(q1, k2, self.temperature, capacity)
                + contrastive_loss(q2, k1, self.temperature, capacity))
        return MoCoOutput(loss, q, k)


class MoCoTask(nn.Module):
    """The training module of MoCo-v3 pre-training: two views in, ``{"loss": ...}`` out.

    Args:
        student: the :class:`MoCoV3` model (checkpoints hold it under ``student.``, as the MAE
            task modules, so one export serves both).
        batch_size: images per process and step (``data.batch_size``): the number of key slots
            each rank fills (:func:`gather_keys`); at least 2, else there are no negatives.
    """

    sync_batchnorm = True  # the heads' batch norms use the global batch under DDP (engine.sync_batchnorm)

    def __init__(self, student: MoCoV3, batch_size: int | None = None) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 2:
            raise ValueError(f"{BATCH_OPTION}={batch_size}: MoCo-v3 needs at least 2 images per process and step "
                             f"(the other images of the batch are each image's negatives)")
        self.student = student
        self.batch_size = batch_size
        self.momentum = student.base_momentum

    def before_update(self, update: int, total_updates: int) -> None:
        """Called by the trainer before the first batch of update ``update`` (0-based) of
        ``total_updates``: moves the momentum encoder with that update's momentum."""
        self.momentum = momentum_at(update, total_updates, self.student.base_momentum)
        self.student.update_momentum_encoder(self.momentum)

    def log_fields(self) -> dict[str, float]:
        return {"momentum": self.momentum}

    def forward(self, imgs: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """imgs [B, 2, 3, H, W]: two views of each image (``pretrain.data.TwoViews``)."""
        if imgs.dim() != 5 or imgs.shape[1] != 2:
            raise ValueError(f"MoCo-v3 takes two views of each image, [B, 2, 3, H, W], got {list(imgs.shape)}: "
                             f"set data.transform='mocov3'")
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if imgs.shape[0] < 2 and not distributed:
            raise ValueError(f"a MoCo-v3 batch of {imgs.shape[0]} image(s) has no negatives "
                             f"({BATCH_OPTION}={self.batch_size}; unreadable images are dropped from the batch)")
        return {"loss": self.student(imgs[:, 0], imgs[:, 1], self.batch_size).loss}


@register_pretrain_model
def mocov3_vit_tiny(**kwargs) -> MoCoV3:
    """MoCov3-Tiny (MAE-Lite): ``vit_tiny`` encoder, MLPs 4096 wide, output 256, T 0.2, m 0.99."""
    return MoCoV3(**{"arch": "vit_tiny", **kwargs})


@register_pretrain_model
def mocov3_vit_small(**kwargs) -> MoCoV3:
    """MoCo-v3 with the ``vit_small`` encoder (6 heads), the Tiny recipe's heads and loss."""
    return MoCoV3(**{"arch": "vit_small", **kwargs})


@register_pretrain_model
def mocov3_vit_base(**kwargs) -> MoCoV3:
    """MoCo-v3 with the ``vit_base`` encoder, the Tiny recipe's heads and loss."""
    return MoCoV3(**{"arch": "vit_base", **kwargs})
