"""Masked autoencoder on Hiera (MAE-Lite's Hiera-Tiny MAE and its distillation student).

Follows the structure of the official Hiera MAE: the encoder is the registry's
:class:`backbones.Hiera` (taken over as :class:`pretrain.mae.BackboneMAE` says) run on the kept
mask units (timm's ``forward_features(mask=...)``), the outputs of the first ``q_pool`` stages
are pooled onto the final mask-unit grid by strided convs ("multi-scale fusion") and summed with
the last stage, then a small decoder predicts the pixels of each final-resolution token (a 16x16
patch at q_pool 2).  The encoder's final norm is the backbone's own ``head.norm`` (the official
MAE's ``encoder_norm``), so the encoder keeps the backbone's keys.  Mask convention here is
timm's: True = kept (visible).
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
from timm.models.hiera import HieraBlock, undo_windowing

from backbones import Hiera, xavier_init_

from .mae import BackboneMAE, normalize_patches, patchify, register_pretrain_model

__all__ = ["MaskedAutoencoderHiera", "HieraMaskedEncoding", "random_unit_mask", "mae_hiera_tiny"]


class HieraMaskedEncoding(NamedTuple):
    """latent: [B, kept units, MUy, MUx, C] at the final resolution (normed, fused).
    keep: [B, units] bool, True = visible.  attn_logits: {block: logits}."""

    latent: torch.Tensor
    keep: torch.Tensor
    attn_logits: dict[int, torch.Tensor]


class HieraMAEOutput(NamedTuple):
    loss: torch.Tensor  # scalar
    pred: torch.Tensor  # [B, N_final, s*s*3], every final-resolution token
    visible: torch.Tensor  # [B, N_final] bool, raster order
    encoding: HieraMaskedEncoding


def random_unit_mask(batch: int, units: int, mask_ratio: float, noise: torch.Tensor | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
    """[B, units] bool, True = keep; the int(units * (1 - ratio)) units with smallest noise stay."""
    len_keep = int(units * (1 - mask_ratio))
    if not 0 < len_keep <= units:
        raise ValueError(f"mask ratio {mask_ratio} keeps {len_keep} of {units} mask units")
    if noise is None:
        noise = torch.rand(batch, units, device=device)
    elif noise.shape != (batch, units):
        raise ValueError(f"noise must be [{batch}, {units}], got {list(noise.shape)}")
    ids_keep = torch.argsort(noise, dim=1)[:, :len_keep]
    keep = torch.zeros(batch, units, dtype=torch.bool, device=noise.device)
    return keep.scatter(1, ids_keep, True)


class MaskedAutoencoderHiera(BackboneMAE, Hiera):
    """Hiera MAE.

    Args:
        arch: the encoder, a ``backbones`` name (``hiera_tiny``, ``hiera_base``).
        mask_ratio: fraction of mask units removed (MAE-Lite's Hiera: 0.4).
        norm_pix_loss: per-patch normalised pixel target.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder (96, 1, 3).
        q_pool: number of q-pooling stages in the encoder (2 for MAE; the mask unit shrinks to
            ``mask_unit_size / q_stride ** q_pool``).
        **encoder_kwargs: ``build_backbone(arch, ...)`` arguments (img_size, drop_path_rate ...).
    """

    def __init__(
        self,
        arch: str = "hiera_tiny",
        mask_ratio: float = 0.4,
        norm_pix_loss: bool = True,
        decoder_embed_dim: int = 96,
        decoder_depth: int = 1,
        decoder_num_heads: int = 3,
        q_pool: int = 2,
        **encoder_kwargs,
    ) -> None:
        self._take_over(arch, {"num_classes": 0, "q_pool": q_pool}, encoder_kwargs)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        encoder_dim_out = self.blocks[-1].dim_out
        self.mask_unit_spatial_shape_final = [m // s ** q_pool for m, s in zip(self.mask_unit_size, self.q_stride)]
        self.tokens_spatial_shape_final = [t // s ** q_pool for t, s in zip(self.tokens_spatial_shape, self.q_stride)]
        if min(self.mask_unit_spatial_shape_final) < 1:
            raise ValueError(f"mask unit {self.mask_unit_size} is too small for q_pool {q_pool}")

        self.multi_scale_fusion_heads = nn.ModuleList()
        unit = list(self.mask_unit_size)
        for stage_end in self.stage_ends[:q_pool]:
            kernel = [u // f for u, f in zip(unit, self.mask_unit_spatial_shape_final)]
            unit = [u // s for u, s in zip(unit, self.q_stride)]
            self.multi_scale_fusion_heads.append(
                nn.Conv2d(self.blocks[stage_end].dim_out, encoder_dim_out, kernel_size=kernel, stride=kernel))
        self.multi_scale_fusion_heads.append(nn.Identity())  # the last stage is already at the final grid

        self.decoder_embed = nn.Linear(encoder_dim_out, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, math.prod(self.tokens_spatial_shape_final), decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList([
            HieraBlock(dim=decoder_embed_dim, dim_out=decoder_embed_dim, heads=decoder_num_heads,
                       norm_layer=norm_layer, mlp_ratio=4.0) for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.pred_stride = self.patch_stride[-1] * self.q_stride[-1] ** q_pool
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.pred_stride ** 2 * 3)
        self._init_mae_weights()

    def _init_mae_weights(self) -> None:
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        xavier_init_(self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set(super().no_weight_decay()) | {"mask_token", "decoder_pos_embed"}

    @property
    def num_mask_units(self) -> int:
        return math.prod(self.mask_spatial_shape)

    def random_mask(self, batch: int, noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                    device: torch.device | None = None) -> torch.Tensor:
        """[B, mask units] bool, True = keep."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        return random_unit_mask(batch, self.num_mask_units, ratio, noise, device)

    def _fuse(self, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """[B, units, My, Mx, C] -> [B, units, My', Mx', C'] (conv inside each mask unit)."""
        if isinstance(head, nn.Identity):
            return x
        B, U = x.shape[:2]
        x = head(x.reshape(B * U, *x.shape[2:]).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).reshape(B, U, *x.shape[2:], x.shape[1])

    def forward_encoder(self, imgs: torch.Tensor, noise: torch.Tensor | None = None,
                        logits_from: Sequence[int] = (), keep: torch.Tensor | None = None,
                        mask_ratio: float | None = None) -> HieraMaskedEncoding:
        """Encode the kept mask units of ``imgs`` [B, 3, H, W]; ``keep`` overrides the random mask."""
        if keep is None:
            keep = self.random_mask(imgs.shape[0], noise, mask_ratio, imgs.device)
        _, intermediates, logits = self.forward_features_with_logits(imgs, keep, logits_from)
        intermediates = intermediates[: self.q_pool] + intermediates[-1:]
        x = sum(self._fuse(head, t) for head, t in zip(self.multi_scale_fusion_heads, intermediates))
        return HieraMaskedEncoding(self.head.norm(x), keep, logits)

    def forward_decoder(self, latent: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent [B, kept, My, Mx, C] -> (pred [B, N, s*s*3], visible [B, N] bool), raster order."""
        x = self.decoder_embed(latent)
        B, U = keep.shape
        unit_shape = x.shape[2:-1]
        D = x.shape[-1]
        full = x.new_zeros(B, U, *unit_shape, D)
        full[keep] = x.reshape(-1, *unit_shape, D)
        is_kept = keep.view(B, U, *([1] * (len(unit_shape) + 1)))
        x = torch.where(is_kept, full, self.mask_token.to(x.dtype))
        x = undo_windowing(x, self.tokens_spatial_shape_final, self.mask_unit_spatial_shape_final)
        visible = undo_windowing(is_kept.expand(B, U, *unit_shape, 1).to(x.dtype),
                                 self.tokens_spatial_shape_final, self.mask_unit_spatial_shape_final)
        x = x.reshape(B, -1, D) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x, visible.reshape(B, -1) > 0.5

    def forward_target(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, N, s*s*3] pixels of each final token's patch, per-patch normalised if norm_pix_loss."""
        target = patchify(imgs, self.pred_stride).float()
        return normalize_patches(target) if self.norm_pix_loss else target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        masked = (~visible).float()
        loss = (pred.float() - self.forward_target(imgs)).pow(2).mean(dim=-1)
        return (loss * masked).sum() / masked.sum()

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None,
                logits_from: Sequence[int] = (), mask_ratio: float | None = None) -> HieraMAEOutput:
        enc = self.forward_encoder(imgs, noise, logits_from, mask_ratio=mask_ratio)
        pred, visible = self.forward_decoder(enc.latent, enc.keep)
        return HieraMAEOutput(self.forward_loss(imgs, pred, visible), pred, visible, enc)


@register_pretrain_model
def mae_hiera_tiny(**kwargs) -> MaskedAutoencoderHiera:
    """Hiera-Tiny MAE (MAE-Lite): ``hiera_tiny`` encoder, mask ratio 0.4 over mask units, q_pool 2,
    decoder 96 dim / 1 block / 3 heads."""
    return MaskedAutoencoderHiera(**{"arch": "hiera_tiny", **kwargs})
