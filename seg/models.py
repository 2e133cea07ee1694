"""Our backbones as mmsegmentation modules, and MAE-Lite's channel-reducing ViT neck.

The architectures live in :mod:`backbones` only; the wrappers here build them with
``backbones.build_backbone``, take multi-scale features through their ``forward_intermediates``,
load pretrained weights with ``backbones.load_pretrained`` (every checkpoint layout it knows), and
tell the layer-decay optimizer constructor (:mod:`seg.optim`) which depth each parameter sits at.

Registered in ``mmseg.registry.MODELS``:

* ``ViTBackbone``: plain ViT (``vit_tiny``, ``vit_tiny_rpe``, ...), four stride-16 maps of the
  blocks in ``out_indices`` (MAE/BEiT convention [3, 5, 7, 11]); a neck makes them multi-scale.
* ``HieraBackbone``: Hiera (``hiera_tiny``), its four stage maps at strides 4/8/16/32.
* ``ReducedFeature2Pyramid``: MAE-Lite's neck (mmseg has only the channel-keeping
  ``Feature2Pyramid``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from backbones import build_backbone, load_pretrained

__all__ = ["EncoderBackbone", "ViTBackbone", "HieraBackbone", "ReducedFeature2Pyramid"]

# Parameters that belong to the input stem (layer 0 of layer-wise lr decay).
_STEM_NAMES = ("cls_token", "pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_win",
               "patch_embed")
# Classification-only parts the seg wrappers remove (unused parameters would break DDP).
_CLASSIFIER_PREFIXES = ("norm.", "fc_norm.", "head.")


class EncoderBackbone(BaseModule):
    """Shared part of the wrappers: the encoder, pretrained loading, layer ids for lr decay.

    Args:
        encoder: a model from ``backbones.build_backbone`` with ``patch_embed`` and ``blocks``.
        pretrained: checkpoint path in any layout ``backbones.load_pretrained`` reads (our export,
            MAE-Lite trainer files, official MAE / Hiera, OSTrack, timm); loaded by
            :meth:`init_weights`, which mmengine's runner calls before training.
        init_cfg: mmengine's ``dict(type="Pretrained", checkpoint=PATH)`` is the same as
            ``pretrained=PATH``; other initialisers are refused (the encoder initialises itself).
    """

    def __init__(self, encoder: nn.Module, pretrained: str | None = None,
                 init_cfg: dict | None = None) -> None:
        if init_cfg is not None:
            if not (isinstance(init_cfg, dict) and init_cfg.get("type") == "Pretrained"):
                raise ValueError(f"{type(self).__name__}: only init_cfg=dict(type='Pretrained', "
                                 f"checkpoint=PATH) is supported, got {init_cfg!r}")
            if pretrained is not None:
                raise ValueError(f"{type(self).__name__}: give either pretrained or init_cfg, not both")
            pretrained = init_cfg["checkpoint"]
        super().__init__(init_cfg=None)
        self.encoder = encoder
        self.pretrained = None if pretrained in (None, "") else str(pretrained)
        self.load_result = None

    @property
    def num_layers(self) -> int:
        """Blocks of the encoder: layer-decay ids run 0 (stem) .. num_layers + 1 (rest of model)."""
        return len(self.encoder.blocks)

    def layer_id(self, name: str) -> int:
        """Layer-decay id of a parameter named relative to this module (``encoder.blocks.3.x``):
        stem (patch / position embeddings, class token) 0, block i -> i + 1, anything else
        ``num_layers + 1``.  Hiera's blocks carry one global index across its stages."""
        name = name.removeprefix("encoder.")
        if name.split(".", 1)[0] in _STEM_NAMES:
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to this module) the encoder excludes from weight decay."""
        names = self.encoder.no_weight_decay() if hasattr(self.encoder, "no_weight_decay") else ()
        return {f"encoder.{n}" for n in names}

    def init_weights(self) -> None:
        """Load ``pretrained`` into the encoder and log what did not match, by name.

        Without ``pretrained`` the encoder keeps its own initialisation from construction.
        Raises when the file is missing or when not a single encoder weight was found in it
        (``load_pretrained`` refuses such a checkpoint, naming the key prefixes it holds).
        """
        if self.pretrained is None:
            print_log(f"{type(self).__name__}: no pretrained weights, the encoder starts from its "
                      "random initialisation", logger="current")
            self._is_init = True
            return
        try:
            result = load_pretrained(self.encoder, self.pretrained)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} (set model.pretrained with --cfg-options, or the "
                                    "LITEVIT_PRETRAINED environment variable the configs read)") from None
        unused = [k for k in result.unexpected if k.startswith(_CLASSIFIER_PREFIXES)]
        unexpected = [k for k in result.unexpected if k not in unused]
        print_log(f"{type(self).__name__}: loaded {self.pretrained} ({result.format} layout); "
                  f"{len(result.resized)} resized {result.resized}, {len(result.dropped)} "
                  f"pre-training-only keys dropped, {len(unused)} classifier keys unused by "
                  f"segmentation {unused}", logger="current")
        if result.missing or unexpected:
            print_log(f"{type(self).__name__}: missing keys {result.missing}; "
                      f"unexpected keys {unexpected}", logger="current", level=30)
        self.load_result = result
        self._is_init = True


@MODELS.register_module()
class ViTBackbone(EncoderBackbone):
    """A plain ViT from :mod:`backbones` giving the outputs of blocks ``out_indices``.

    Outputs ``len(out_indices)`` maps [B, C, H/16, W/16] (ViT-Tiny: C = 192), taken before the
    final norm (as mmseg's ``MAE``/``BEiT`` backbones).  Position embeddings (absolute and
    relative) are resampled for any token grid, so whole-image inference works too.

    Args:
        arch: a ``backbones`` name: ``vit_tiny``, ``vit_tiny_rpe`` (+RPE), ``vit_small`` ...
        img_size: training crop; absolute / relative position tables are sized for it (a
            pretrained table of another size is resized on load).
        out_indices: blocks whose outputs are returned, in increasing order.
        drop_path_rate: stochastic depth of the last block (linear in depth).
        pretrained, init_cfg: see :class:`EncoderBackbone`.
        **backbone_kwargs: passed to ``build_backbone`` (e.g. ``init_values=1.0`` for LayerScale,
            ``pos_embed="learn"``).
    """

    def __init__(self, arch: str = "vit_tiny", img_size: int | Sequence[int] = 512,
                 out_indices: Sequence[int] = (3, 5, 7, 11), drop_path_rate: float = 0.1,
                 pretrained: str | None = None, init_cfg: dict | None = None, **backbone_kwargs) -> None:
        img_size = tuple(img_size) if isinstance(img_size, Sequence) else (img_size, img_size)
        encoder = build_backbone(arch, img_size=img_size, num_classes=0, drop_path_rate=drop_path_rate,
                                 **backbone_kwargs)
        encoder.norm, encoder.fc_norm = nn.Identity(), nn.Identity()
        super().__init__(encoder, pretrained, init_cfg)
        depth = len(encoder.blocks)
        out_indices = [int(i) for i in out_indices]
        if out_indices != sorted(set(out_indices)) or not all(0 <= i < depth for i in out_indices):
            raise ValueError(f"out_indices must be increasing block indices in [0, {depth}), got {out_indices}")
        self.arch, self.img_size, self.out_indices = arch, img_size, out_indices
        self.out_channels = [encoder.embed_dim] * len(out_indices)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.encoder.forward_intermediates(x, self.out_indices, intermediates_only=True))


@MODELS.register_module()
class HieraBackbone(EncoderBackbone):
    """Hiera from :mod:`backbones` giving its stage maps (timm's ``forward_intermediates``).

    Hiera-Tiny gives [B, 46, H/4, W/4], [B, 92, H/8, W/8], [B, 184, H/16, W/16],
    [B, 368, H/32, W/32].  timm's Hiera unrolls tokens for one fixed input size, ``img_size``:
    a smaller input (a border window of slide inference, a small image) is zero-padded at the
    bottom/right to it and the maps are cropped back to ``ceil(H / stride)``; a larger input is an
    error, so test with ``mode="slide"`` and ``crop_size`` = ``img_size``.

    Args:
        arch: ``hiera_tiny`` (or another Hiera of :mod:`backbones`).
        img_size: the fixed input size (the training crop); a multiple of 32 for Hiera-Tiny
            (patch stride 4 x three 2x2 poolings), and of the mask-unit size x 4 (8 x 4 = 32).
        out_indices: stages to return (0..3).
        drop_path_rate, pretrained, init_cfg, **backbone_kwargs: as :class:`ViTBackbone`.
    """

    def __init__(self, arch: str = "hiera_tiny", img_size: int | Sequence[int] = 512,
                 out_indices: Sequence[int] = (0, 1, 2, 3), drop_path_rate: float = 0.1,
                 pretrained: str | None = None, init_cfg: dict | None = None, **backbone_kwargs) -> None:
        img_size = tuple(img_size) if isinstance(img_size, Sequence) else (img_size, img_size)
        encoder = build_backbone(arch, img_size=img_size, num_classes=0, drop_path_rate=drop_path_rate,
                                 **backbone_kwargs)
        num_stages = len(encoder.stage_ends)
        out_indices = [int(i) for i in out_indices]
        if out_indices != sorted(set(out_indices)) or not all(0 <= i < num_stages for i in out_indices):
            raise ValueError(f"out_indices must be increasing stage indices in [0, {num_stages}), "
                             f"got {out_indices}")
        unit = encoder.patch_stride[0] * encoder.mask_unit_size[0]
        if any(s % unit for s in img_size):
            raise ValueError(f"{arch} needs img_size divisible by {unit} (patch stride x mask unit), "
                             f"got {img_size}")
        encoder.prune_intermediate_layers(out_indices, prune_head=True)
        super().__init__(encoder, pretrained, init_cfg)
        self.arch, self.img_size, self.out_indices = arch, img_size, out_indices
        self.strides = [encoder.patch_stride[0] * encoder.q_stride[0] ** min(i, encoder.q_pool)
                        for i in out_indices]
        self.out_channels = [encoder.stage_channels[i] for i in out_indices]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        H, W = x.shape[-2:]
        th, tw = self.img_size
        if H > th or W > tw:
            raise ValueError(f"HieraBackbone is built for {th}x{tw} inputs and got {H}x{W}: test with "
                             f"test_cfg=dict(mode='slide', crop_size=({th}, {tw}), stride=...)")
        padded = (H, W) != (th, tw)
        if padded:
            x = F.pad(x, (0, tw - W, 0, th - H))
        maps = self.encoder.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)
        if padded:
            maps = [m[..., : math.ceil(H / s), : math.ceil(W / s)].contiguous()
                    for m, s in zip(maps, self.strides)]
        return tuple(maps)


@MODELS.register_module()
class ReducedFeature2Pyramid(nn.Module):
    """Plain-ViT maps -> four scales with fewer channels: MAE-Lite's neck for Semantic FPN.

    mmseg's ``Feature2Pyramid`` rescales [4, 2, 1, 0.5] keeping the embed dim; MAE-Lite's variant
    (not in mmseg, hence this module) also projects every level to ``embed_dim * channel_ratio``
    channels (ViT-Tiny: 192 -> 48):

    * 4x: ConvT 2x2 (C -> c), norm, GELU, ConvT 2x2 (c -> c)
    * 2x: ConvT 2x2 (C -> c)
    * 1x: Conv 1x1 (C -> c)
    * 0.5x: Conv 1x1 (C -> c), max-pool 2x2

    Args:
        embed_dim: channels C of the input maps.
        rescales: scale of each input map, in input order; only 4, 2, 1 and 0.5.
        channel_ratio: c = int(C * channel_ratio).
        norm_cfg: norm of the 4x branch (mmcv ``build_norm_layer`` config).
    """

    def __init__(self, embed_dim: int, rescales: Sequence[float] = (4, 2, 1, 0.5),
                 channel_ratio: float = 0.25, norm_cfg: dict | None = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type="SyncBN", requires_grad=True)
        c = int(embed_dim * channel_ratio)
        if c < 1:
            raise ValueError(f"embed_dim {embed_dim} x channel_ratio {channel_ratio} leaves no channel")
        self.rescales = [float(r) for r in rescales]
        self.out_channels = c
        branches = []
        for r in self.rescales:
            if r == 4:
                branches.append(nn.Sequential(
                    nn.ConvTranspose2d(embed_dim, c, 2, stride=2), build_norm_layer(norm_cfg, c)[1],
                    nn.GELU(), nn.ConvTranspose2d(c, c, 2, stride=2)))
            elif r == 2:
                branches.append(nn.ConvTranspose2d(embed_dim, c, 2, stride=2))
            elif r == 1:
                branches.append(nn.Conv2d(embed_dim, c, 1))
            elif r == 0.5:
                branches.append(nn.Sequential(nn.Conv2d(embed_dim, c, 1), nn.MaxPool2d(2, stride=2)))
            else:
                raise ValueError(f"ReducedFeature2Pyramid supports rescales 4, 2, 1, 0.5; got {r}")
        self.branches = nn.ModuleList(branches)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} maps (rescales {self.rescales}), got {len(inputs)}")
        return tuple(branch(x) for branch, x in zip(self.branches, inputs))
