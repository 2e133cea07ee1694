"""Masked autoencoder on the plain ViT (MAE-Lite's MAE-Tiny, and the D²-MAE student), and the
registry of pre-training models.

The MAE models are backbones of the registry extended by a decoder: ``MaskedAutoencoderViT("vit_tiny")``
is the model ``backbones.build_backbone("vit_tiny", ...)`` builds, taken over (see
:class:`BackboneMAE`), so the architecture is defined once, in ``backbones``, the encoder's
state-dict keys are the backbone's, and the export is a state-dict filter.  The MAE is split in
named steps: ``random_masking`` -> ``forward_encoder`` -> ``forward_decoder`` -> ``forward_loss``.

Same function as MAE's reference code, less work: only the visible patches are embedded (the
patch-embedding conv, kernel = stride = patch, is a linear map of each patch's pixels, applied
after the gather), the decoder head and the norm-pix target cover the masked patches only (the
loss reads nothing else), and the encoder stops after the last block anybody reads.

Pre-training models register by name with :func:`register_pretrain_model` and are built with
:func:`build_pretrain_model`; ``pretrain`` imports :mod:`.mae_hiera` so that its models are there too.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from backbones import Block, LogitsBlock, VisionTransformer, build_backbone, sincos_pos_embed_2d, xavier_init_
from backbones.registry import Registry

__all__ = ["BackboneMAE", "MaskedAutoencoderViT", "MaskedEncoding", "MAEOutput", "random_masking", "patchify",
           "unpatchify", "normalize_patches", "embed_visible_patches", "mae_vit_tiny", "d2mae_vit_tiny",
           "register_pretrain_model", "build_pretrain_model", "list_pretrain_models"]

PRETRAIN_MODELS = Registry("pre-training model")
register_pretrain_model = PRETRAIN_MODELS.register
list_pretrain_models = PRETRAIN_MODELS.names
build_pretrain_model = PRETRAIN_MODELS.build


class BackboneMAE:
    """What the MAE models share: each is a backbone of the registry, extended.

    A subclass of the backbone's class calls :meth:`_take_over` instead of the backbone's
    ``__init__``: the backbone that ``build_backbone`` built hands over its submodules, parameters,
    buffers and attributes (``arch`` included), exactly as if its ``__init__`` had run on this
    object. The MAE then adds its own parts; :meth:`encoder_state_dict` returns the backbone's
    part in the backbone's keys.
    """

    arch: str
    encoder_overrides: dict
    encoder_keys: tuple[str, ...]

    def _take_over(self, arch: str, defaults: dict, overrides: dict) -> None:
        """Build ``build_backbone(arch, **defaults, **overrides)`` and become it; ``overrides`` are
        the user's backbone arguments (kept as ``encoder_overrides`` for the export)."""
        base = next(c for c in type(self).__mro__ if not issubclass(c, BackboneMAE))
        try:
            backbone = build_backbone(arch, **{**defaults, **overrides})
        except TypeError as error:
            raise TypeError(f"{type(self).__name__} cannot extend backbone {arch!r}: {error}") from error
        if type(backbone) is not base:
            raise TypeError(f"{type(self).__name__} extends {base.__name__}; backbone {arch!r} is a "
                            f"{type(backbone).__name__}")
        nn.Module.__init__(self)
        vars(self).update(vars(backbone))
        self.encoder_overrides = dict(overrides)
        self.encoder_keys = tuple(backbone.state_dict())

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights in the backbone's key layout (decoder, mask token, extra blocks left out)."""
        state = self.state_dict()
        return {key: state[key] for key in self.encoder_keys}


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
    loss: torch.Tensor  # scalar: mean squared error over the masked patches
    pred: torch.Tensor  # [B, M, p*p*3] predicted (normalised) pixels of the M masked patches
    pred_ids: torch.Tensor  # [B, M] raster indices of the patches ``pred`` covers (= encoding.ids_masked)
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
    given to fix the shuffle; without it ``torch.rand(batch, length)`` is drawn, as MAE does.
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
                          patches: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens [B, 1 + K, C] of the class token and the visible patches ``ids_keep`` [B, K]
    (position embedding added).

    The patch-embedding conv (kernel = stride = patch) is applied as a linear map to the K
    gathered pixel patches only: the same function as the conv over all L patches followed by the
    gather.  ``patches`` (from :func:`patchify`) may be passed to share the work with the loss target.
    """
    if patches is None:
        patches = patchify(imgs, vit.patch_size)
    proj = vit.patch_embed.proj
    weight = proj.weight.permute(0, 2, 3, 1).reshape(proj.out_channels, -1)  # (row, col, chan) order
    x = F.linear(_gather_tokens(patches, ids_keep), weight, proj.bias)
    grid = (imgs.shape[-2] // vit.patch_size, imgs.shape[-1] // vit.patch_size)
    pos = vit.position_embedding(grid)
    if pos is not None:
        x = x + _gather_tokens(pos[:, 1:].expand(x.shape[0], -1, -1), ids_keep)
    return torch.cat([vit.class_token(x.shape[0]), x], dim=1)


def fused_attention_pays(x: torch.Tensor, min_tokens: int | None = None) -> bool:
    """Whether attention on ``x`` [B, N, C] should run the fused SDPA kernel (True) or the
    explicit softmax of the logits (False, what ``Block(..., return_logits=True)`` computes).

    Fused on GPU and without autograd. CPU training: explicit, except for sequences of at least
    ``min_tokens`` tokens, where the fused kernel pays when it runs in float32
    (:func:`sdpa_dtype`). MAE passes none (its encoder sees 50 tokens): on a 2-core Xeon with
    AVX512-BF16 (torch 2.14), MAE-Tiny forward + backward with bf16 SDPA was 2.1x slower under
    bf16 autocast (36 vs 75 img/s, batch 32) and ~10% slower in fp32 (33 vs 37 img/s, batch 64),
    SDPA's CPU backward being the slow part. MoCo-v3 passes 128 (its encoders see 197): attention
    alone at 197 tokens, 12 heads of 16, batch 32, forward + backward, one thread, took 0.055 s
    fused vs 0.17 s explicit in fp32, and under bf16 autocast 0.065 s fused in float32 vs 0.09 s
    explicit in bf16 vs 0.16 s fused in bf16.
    """
    if x.device.type != "cpu" or not torch.is_grad_enabled():
        return True
    return min_tokens is not None and x.shape[1] >= min_tokens


def sdpa_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype the fused attention kernel should run in for ``x``: float32 when training on CPU
    under autocast (see :func:`fused_attention_pays`), else None (the inputs' own)."""
    if x.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu"):
        return torch.float32
    return None


class MaskedAutoencoderViT(BackboneMAE, VisionTransformer):
    """MAE with a ViT encoder (the registry's ``arch``, fixed sin-cos positions) and a small ViT decoder.

    Args:
        arch: the encoder, a ``backbones`` name (``vit_tiny``, ``vit_small``, ``vit_base``).
        mask_ratio: fraction of patches removed (0.75).
        norm_pix_loss: regress per-patch normalised pixels (mean 0, variance 1 per patch).
        decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio: the decoder
            (MAE-Lite: 96, 1, 3, 4).
        decode_idx: the decoder reads the normed output of this many blocks (None: all full
            blocks; D²-MAE: 8).
        logits_block: append an attention-only :class:`backbones.LogitsBlock` as the last block
            (D²-MAE's 13th block, ``blocks.<depth>``): it only produces logits to distil.
        **encoder_kwargs: ``build_backbone(arch, ...)`` arguments (img_size, depth, drop_path_rate ...).
    """

    def __init__(
        self,
        arch: str = "vit_tiny",
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_embed_dim: int = 96,
        decoder_depth: int = 1,
        decoder_num_heads: int = 3,
        decoder_mlp_ratio: float = 4.0,
        decode_idx: int | None = None,
        logits_block: bool = False,
        **encoder_kwargs,
    ) -> None:
        self._take_over(arch, {"num_classes": 0, "pos_embed": "sincos", "global_pool": "token"}, encoder_kwargs)
        if not isinstance(self.patch_embed.norm, nn.Identity):
            raise ValueError("visible-only patch embedding needs a PatchEmbed without norm")
        self.encoder_depth = len(self.blocks)
        if decode_idx is None:
            decode_idx = self.encoder_depth
        if not 1 <= decode_idx <= self.encoder_depth:
            raise ValueError(f"decode_idx must be in [1, {self.encoder_depth}], got {decode_idx}")
        self.decode_idx = decode_idx
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        if logits_block:
            self.blocks.append(LogitsBlock(self.embed_dim, self.num_heads, norm_layer=norm_layer))

        self.decoder_embed = nn.Linear(self.embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed_2d(decoder_embed_dim, self.grid_size),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([
            Block(decoder_embed_dim, decoder_num_heads, decoder_mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(decoder_depth)])
        self.decoder_norm = norm_layer(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size ** 2 * 3)
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

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, L, p*p*3]."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*3] -> [B, 3, H, W] (the training grid)."""
        return unpatchify(patches, self.patch_size, self.grid_size)

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
        x = embed_visible_patches(self, imgs, ids_keep, patches)

        num_blocks = len(self.blocks)
        wanted = {i % num_blocks for i in logits_from}
        last = max(wanted | {self.decode_idx - 1})
        logits: dict[int, torch.Tensor] = {}
        latent = None
        fused = fused_attention_pays(x)
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
        fused = fused_attention_pays(x)
        for blk in self.decoder_blocks:
            x = blk(x) if fused else blk(x, return_logits=True)[0]
        x = x[:, 1:]
        if ids_pred is not None:
            x = _gather_tokens(x, ids_pred)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_target(self, imgs: torch.Tensor, ids: torch.Tensor, patches: torch.Tensor | None = None) -> torch.Tensor:
        """Regression target [B, M, p*p*3] of the patches ``ids`` [B, M] (float32): their pixels,
        per-patch normalised with norm_pix_loss."""
        target = _gather_tokens(self.patchify(imgs) if patches is None else patches, ids).float()
        return normalize_patches(target) if self.norm_pix_loss else target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, ids_masked: torch.Tensor,
                     patches: torch.Tensor | None = None) -> torch.Tensor:
        """MSE (float32) between ``pred`` [B, M, p*p*3] and the target of the masked patches
        ``ids_masked`` [B, M]: MAE's loss, the mean over masked patches of the per-patch MSE."""
        return F.mse_loss(pred.float(), self.forward_target(imgs, ids_masked, patches))

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None, logits_from: Sequence[int] = (),
                mask_ratio: float | None = None, patches: torch.Tensor | None = None) -> MAEOutput:
        """Loss, prediction of the masked patches and encoding of ``imgs``; ``patches``
        (= ``patchify(imgs)``) may be passed in when the caller needs them too."""
        if patches is None:
            patches = self.patchify(imgs)
        enc = self.forward_encoder(imgs, noise, logits_from, mask_ratio, patches)
        pred = self.forward_decoder(enc.latent, enc.ids_restore, enc.ids_masked)
        loss = self.forward_loss(imgs, pred, enc.ids_masked, patches)
        return MAEOutput(loss, pred, enc.ids_masked, enc)


@register_pretrain_model
def mae_vit_tiny(**kwargs) -> MaskedAutoencoderViT:
    """MAE-Tiny (MAE-Lite): ``vit_tiny`` encoder, decoder 96 dim / 1 block / 3 heads, mask 0.75."""
    return MaskedAutoencoderViT(**{"arch": "vit_tiny", **kwargs})


@register_pretrain_model
def d2mae_vit_tiny(**kwargs) -> MaskedAutoencoderViT:
    """D²-MAE student: ``vit_tiny`` + attention-only 13th block, decoder fed by block 8."""
    return MaskedAutoencoderViT(**{"arch": "vit_tiny", "decode_idx": 8, "logits_block": True, **kwargs})
