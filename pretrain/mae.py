"""Masked autoencoder on the plain ViT (MAE-Lite's MAE-Tiny, and the D²-MAE student).

``MaskedAutoencoderViT`` subclasses :class:`backbones.VisionTransformer`, so the encoder's keys are
the backbone's and the export is a state-dict filter.  The MAE is split in named steps:
``random_masking`` -> ``forward_encoder`` -> ``forward_decoder`` -> ``forward_loss``.

Speed (same maths as the reference, less work): only the visible patches are embedded (the
patch-embedding conv is a linear map on patchified pixels, applied after the gather), the target is
normalised and compared on the masked patches only, the encoder stops after the last block anybody
reads, and attention picks its kernel by where it runs (``attention="auto"``): the fused SDPA kernel
on GPU, without autograd and for fp32 CPU training, the explicit softmax for CPU training under
bf16 autocast, where SDPA's backward is several times slower.  ``attention="explicit",
embed_visible_only=False, loss_on_masked_only=False`` restores the reference's computation
(explicit softmax everywhere, conv over all patches, loss over every patch) for benchmarking.
"""
from __future__ import annotations

from functools import partial
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from backbones import Block, LogitsBlock, VisionTransformer, sincos_pos_embed_2d, xavier_init_

__all__ = ["MaskedAutoencoderViT", "MaskedEncoding", "MAEOutput", "random_masking", "patchify", "unpatchify",
           "embed_visible_patches", "mae_vit_tiny", "d2mae_vit_tiny", "VIT_ARCHS"]

# Encoder shapes of the backbones (see backbones/vit.py); the export test checks they agree.
VIT_ARCHS: dict[str, dict] = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=12),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
}


class MaskedEncoding(NamedTuple):
    """What the encoder hands on.

    latent: normed tokens read by the decoder [B, 1 + K, C] (class token first, K visible).
    mask: [B, L] with 1 = masked (removed), 0 = visible, in patch raster order.
    ids_restore: [B, L] inverse of the shuffle (un-shuffles [visible; masked] to raster order).
    ids_keep: [B, K] raster indices of the visible patches, in shuffle order.
    ids_masked: [B, L - K] raster indices of the masked patches.
    attn_logits: {block index: pre-softmax logits [B, heads, 1 + K, 1 + K]}.
    """

    latent: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor
    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    attn_logits: dict[int, torch.Tensor]


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # scalar: mean squared error over masked patches
    pred: torch.Tensor  # [B, L, p*p*3] predicted (normalised) pixels of every patch, or [B, M, ...]
    pred_ids: torch.Tensor | None  # None (every patch) or [B, M]: the patches ``pred`` covers
    encoding: MaskedEncoding


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, p*p*C], each patch laid out (row, column, channel) as MAE."""
    B, C, H, W = imgs.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """[B, L, p*p*C] -> [B, C, H, W] (inverse of :func:`patchify`)."""
    B = patches.shape[0]
    h, w = grid
    p = patch_size
    x = patches.reshape(B, h, w, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, w * p)


def random_masking(batch: int, length: int, mask_ratio: float, noise: torch.Tensor | None = None,
                   device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random shuffle; the patches with the smallest noise stay visible.

    Returns ``ids_keep`` [B, K], ``ids_masked`` [B, L - K], ``mask`` [B, L] (1 = masked) and
    ``ids_restore`` [B, L], with K = int(L * (1 - mask_ratio)).  ``noise`` [B, L] (uniform) may be
    given to fix the shuffle.
    """
    len_keep = int(length * (1 - mask_ratio))
    if not 0 < len_keep <= length:
        raise ValueError(f"mask ratio {mask_ratio} keeps {len_keep} of {length} patches")
    if noise is None:
        noise = torch.rand(batch, length, device=device)
    elif noise.shape != (batch, length):
        raise ValueError(f"noise must be [{batch}, {length}], got {list(noise.shape)}")
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, length, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle[:, :len_keep], ids_shuffle[:, len_keep:], mask, ids_restore


def normalize_patches(patches: torch.Tensor, eps: float = 1.0e-6) -> torch.Tensor:
    """MAE's norm-pix target (x - mean) / sqrt(var + eps) per patch, var unbiased, as one fused
    layer norm: with n values, that is sqrt((n-1)/n) * layer_norm(x, eps * (n-1)/n)."""
    n = patches.shape[-1]
    scale = torch.full((n,), ((n - 1) / n) ** 0.5, dtype=patches.dtype, device=patches.device)
    return F.layer_norm(patches, (n,), weight=scale, eps=eps * (n - 1) / n)


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [B, L, D] (or [1, L, D], shared by the batch), ids [B, K] -> [B, K, D].

    Whole rows are copied with one ``index_select`` over the flattened batch: on CPU that is
    several times faster than ``torch.gather`` with an index expanded over D, forward and backward.
    """
    B, K = ids.shape
    L, D = x.shape[1], x.shape[2]
    if x.shape[0] == 1 or x.stride(0) == 0:
        return x[0].index_select(0, ids.reshape(-1)).view(B, K, D)
    flat = (ids + torch.arange(B, device=ids.device).unsqueeze(1) * L).reshape(-1)
    return x.reshape(B * L, D).index_select(0, flat).view(B, K, D)


def embed_visible_patches(vit: VisionTransformer, imgs: torch.Tensor, ids_keep: torch.Tensor,
                          patches: torch.Tensor | None = None, visible_only: bool = True) -> torch.Tensor:
    """Tokens [B, 1 + K, C] of the class token and the visible patches (position embedding added).

    With ``visible_only`` the patch-embedding conv (kernel = stride = patch) is applied as a
    linear map to the K gathered pixel patches only, which is the same function as running the
    conv on all L patches and gathering afterwards (``visible_only=False``, the reference).
    ``patches`` (from :func:`patchify`) may be passed to share the work with the loss target.
    """
    proj = vit.patch_embed.proj
    if visible_only:
        if patches is None:
            patches = patchify(imgs, vit.patch_size)
        weight = proj.weight.permute(0, 2, 3, 1).reshape(proj.out_channels, -1)  # (row, col, chan) order
        x = F.linear(_gather_tokens(patches, ids_keep), weight, proj.bias)
        grid = (imgs.shape[-2] // vit.patch_size, imgs.shape[-1] // vit.patch_size)
        pos = vit.position_embedding(grid)
        if pos is not None:
            x = x + _gather_tokens(pos[:, 1:].expand(x.shape[0], -1, -1), ids_keep)
    else:
        x, _ = vit.patch_tokens(imgs)
        x = _gather_tokens(x, ids_keep)
    return torch.cat([vit.class_token(x.shape[0]), x], dim=1)


class MaskedAutoencoderViT(VisionTransformer):
    """MAE with a ViT encoder (fixed sin-cos positions) and a small ViT decoder.

    Args:
        mask_ratio: fraction of patches removed (0.75).
        norm_pix_loss: regress per-patch normalised pixels (mean 0, variance 1 per patch).
        decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio: the decoder
            (MAE-Lite: 96, 1, 3, 4).
        decode_idx: the decoder reads the normed output of this many blocks (None: all full
            blocks; D²-MAE: 8).
        logits_block: append an attention-only :class:`backbones.LogitsBlock` as the last block
            (D²-MAE's 13th block, ``blocks.<depth>``): it only produces logits to distil.
        attention: ``"auto"`` (fused SDPA, except explicit softmax for CPU training under low-
            precision autocast), ``"fused"`` (SDPA wherever logits are not read) or
            ``"explicit"`` (everywhere, as the reference).
        embed_visible_only: embed only the visible patches (False: conv over all, as the reference).
        loss_on_masked_only: normalise and compare the masked patches only (False: every patch,
            weighted by the mask, as the reference).
        **vit_kwargs: :class:`backbones.VisionTransformer` arguments (embed_dim, depth, ...).
    """

    def __init__(
        self,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_embed_dim: int = 96,
        decoder_depth: int = 1,
        decoder_num_heads: int = 3,
        decoder_mlp_ratio: float = 4.0,
        decode_idx: int | None = None,
        logits_block: bool = False,
        attention: Literal["auto", "fused", "explicit"] = "auto",
        embed_visible_only: bool = True,
        loss_on_masked_only: bool = True,
        **vit_kwargs,
    ) -> None:
        vit_kwargs = {"num_classes": 0, "pos_embed": "sincos", "global_pool": "token", **vit_kwargs}
        super().__init__(**vit_kwargs)
        if self.patch_embed.norm is not None and not isinstance(self.patch_embed.norm, nn.Identity):
            raise ValueError("visible-only patch embedding needs a PatchEmbed without norm")
        self.encoder_depth = len(self.blocks)
        if decode_idx is None:
            decode_idx = self.encoder_depth
        if not 1 <= decode_idx <= self.encoder_depth:
            raise ValueError(f"decode_idx must be in [1, {self.encoder_depth}], got {decode_idx}")
        self.decode_idx = decode_idx
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        if attention not in ("auto", "fused", "explicit"):
            raise ValueError(f"attention must be 'auto', 'fused' or 'explicit', got {attention!r}")
        self.attention = attention
        self.embed_visible_only = embed_visible_only
        self.loss_on_masked_only = loss_on_masked_only
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        if logits_block:
            self.blocks.append(LogitsBlock(self.embed_dim, self.num_heads, norm_layer=norm_layer))

        num_patches = self.grid_size[0] * self.grid_size[1]
        self.decoder_embed = nn.Linear(self.embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed_2d(decoder_embed_dim, self.grid_size),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, decoder_mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size ** 2 * 3)
        assert self.decoder_pos_embed.shape[1] == 1 + num_patches
        self._init_mae_parts()

    def _init_mae_parts(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        extra = [self.decoder_embed, *self.decoder_blocks, self.decoder_norm, self.decoder_pred]
        extra += [blk for blk in self.blocks if isinstance(blk, LogitsBlock)]
        for part in extra:
            xavier_init_(part)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"mask_token"}

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.attention != "auto":
            return self.attention == "fused"
        if x.is_cuda or not torch.is_grad_enabled():
            return True
        # CPU training: SDPA's backward beats the explicit softmax in fp32, loses 2-9x under bf16 autocast.
        return not torch.is_autocast_enabled("cpu")

    @property
    def has_logits_block(self) -> bool:
        return isinstance(self.blocks[-1], LogitsBlock)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, L, p*p*3]."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*3] -> [B, 3, H, W] (square grids, or the training grid)."""
        L = patches.shape[1]
        grid = self.grid_size if L == self.num_patches else (int(L ** 0.5),) * 2
        return unpatchify(patches, self.patch_size, grid)

    def random_masking(self, batch: int, noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                       device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """(ids_keep [B, K], ids_masked [B, L - K], mask [B, L], ids_restore [B, L]); see
        :func:`random_masking`."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        return random_masking(batch, self.num_patches, ratio, noise, device)

    def forward_encoder(
        self,
        imgs: torch.Tensor,
        noise: torch.Tensor | None = None,
        logits_from: Sequence[int] = (),
        mask_ratio: float | None = None,
        patches: torch.Tensor | None = None,
    ) -> MaskedEncoding:
        """Encode the visible patches of ``imgs`` [B, 3, H, W].

        ``logits_from``: block indices whose pre-softmax attention logits to return (the logits
        block, if any, is the last index).  Blocks after the last one needed are not run.
        """
        if tuple(imgs.shape[-2:]) != tuple(s * self.patch_size for s in self.grid_size):
            raise ValueError(f"MAE input must be {self.grid_size[0] * self.patch_size}px square, "
                             f"got {list(imgs.shape[-2:])}")
        B = imgs.shape[0]
        ids_keep, ids_masked, mask, ids_restore = self.random_masking(B, noise, mask_ratio, imgs.device)
        x = embed_visible_patches(self, imgs, ids_keep, patches, self.embed_visible_only)

        num_blocks = len(self.blocks)
        wanted = {i % num_blocks for i in logits_from}
        last = max(wanted | {self.decode_idx - 1})
        logits: dict[int, torch.Tensor] = {}
        latent = None
        fused = self._use_fused(x)
        for i, blk in enumerate(self.blocks[: last + 1]):
            if isinstance(blk, LogitsBlock):
                logits[i] = blk(x)
                continue
            if i in wanted or not fused:
                x, block_logits = blk(x, return_logits=True)
                if i in wanted:
                    logits[i] = block_logits
            else:
                x = blk(x)
            if i + 1 == self.decode_idx:
                latent = self.norm(x)
        return MaskedEncoding(latent, mask, ids_restore, ids_keep, ids_masked, logits)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor,
                        ids_pred: torch.Tensor | None = None) -> torch.Tensor:
        """latent [B, 1 + K, C] -> predicted patches [B, L, p*p*3] (class token dropped), or
        [B, M, p*p*3] for the patches ``ids_pred`` [B, M] only (the head runs on those tokens)."""
        x = self.decoder_embed(latent)
        B, n_visible, D = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(B, L + 1 - n_visible, D)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)
        x_ = _gather_tokens(x_, ids_restore)  # back to raster order
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        fused = self._use_fused(x)
        for blk in self.decoder_blocks:
            x = blk(x) if fused else blk(x, return_logits=True)[0]
        x = x[:, 1:]
        if ids_pred is not None:
            x = _gather_tokens(x, ids_pred)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_target(self, imgs: torch.Tensor, patches: torch.Tensor | None = None,
                       ids: torch.Tensor | None = None) -> torch.Tensor:
        """Regression target [B, L, p*p*3] (or [B, M, ...] for the patches ``ids`` [B, M]):
        pixels, per-patch normalised with norm_pix_loss."""
        target = self.patchify(imgs) if patches is None else patches
        if ids is not None:
            target = _gather_tokens(target, ids)
        return normalize_patches(target.float()) if self.norm_pix_loss else target.float()

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                     patches: torch.Tensor | None = None, ids_pred: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over masked patches of the per-patch MSE (computed in float32).

        ``pred`` [B, L, D] covers every patch (the mean is weighted by ``mask``), or [B, M, D]
        covers the patches ``ids_pred`` [B, M], which must be exactly the masked ones: then only
        those are normalised and compared (the same value, less work).
        """
        if ids_pred is not None:
            return F.mse_loss(pred.float(), self.forward_target(imgs, patches, ids_pred))
        target = (self.patchify(imgs) if patches is None else patches).float()
        if self.norm_pix_loss:  # MAE's formula, term by term
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = (pred.float() - target).pow(2).mean(dim=-1)  # [B, L]
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None, logits_from: Sequence[int] = (),
                mask_ratio: float | None = None, patches: torch.Tensor | None = None) -> MAEOutput:
        """Loss, prediction and encoding of ``imgs``; ``patches`` (= ``patchify(imgs)``) may be
        passed in when the caller needs them too."""
        if patches is None:
            patches = self.patchify(imgs)
        enc = self.forward_encoder(imgs, noise, logits_from, mask_ratio, patches)
        ids_pred = enc.ids_masked if self.loss_on_masked_only else None
        pred = self.forward_decoder(enc.latent, enc.ids_restore, ids_pred)
        loss = self.forward_loss(imgs, pred, enc.mask, patches, ids_pred)
        return MAEOutput(loss, pred, ids_pred, enc)


def mae_vit_tiny(**kwargs) -> MaskedAutoencoderViT:
    """MAE-Tiny (MAE-Lite): ViT-Tiny encoder, decoder 96 dim / 1 block / 3 heads, mask 0.75."""
    return MaskedAutoencoderViT(**{**VIT_ARCHS["vit_tiny"], **kwargs})


def d2mae_vit_tiny(**kwargs) -> MaskedAutoencoderViT:
    """D²-MAE student: ViT-Tiny + attention-only 13th block, decoder fed by block 8."""
    return MaskedAutoencoderViT(**{**VIT_ARCHS["vit_tiny"], "decode_idx": 8, "logits_block": True, **kwargs})
