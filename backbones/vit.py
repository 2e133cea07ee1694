"""Plain Vision Transformer (ViT-Tiny / Small / Base) as used by MAE-Lite.

One encoder serves every task of the project: MAE pre-training (`pretrain.mae` subclasses it),
ImageNet fine-tuning (global-average pooling + ``fc_norm``), segmentation (``forward_intermediates``)
and one-stream tracking (blocks called one by one).  Key names follow timm's
``VisionTransformer`` so timm / DeiT / MAE weights load without renaming; the relative-position
variant follows BEiT (``q_bias`` / ``v_bias`` / ``relative_position_bias_table``).

Attention runs the fused ``scaled_dot_product_attention`` kernel unless a caller asks a block for
its pre-softmax logits ``(q @ k^T) * scale (+ relative bias)``, which distillation and candidate
elimination read.  Both paths compute the same block output.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table
from timm.models.beit import gen_relative_position_index

from .registry import register_backbone

__all__ = ["Attention", "Block", "LogitsBlock", "VisionTransformer", "sincos_pos_embed_2d", "xavier_init_"]

Grid = tuple[int, int]


def sincos_pos_embed_2d(embed_dim: int, grid: Grid, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding laid out as MAE's (half the channels encode the column,
    half the row), returned as [1, (1 +) H*W, C] with a zero row for the class token."""
    if embed_dim % 4:
        raise ValueError(f"sin-cos position embedding needs embed_dim divisible by 4, got {embed_dim}")
    h, w = grid
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4.0))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    emb = torch.cat([encode(xs), encode(ys)], dim=1).float()
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim), emb], dim=0)
    return emb[None]


def xavier_init_(module: nn.Module) -> None:
    """MAE's initialisation of a module tree: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Attention(nn.Module):
    """Multi-head self-attention with an optional BEiT relative position bias.

    With ``rel_pos_window`` set, the qkv projection has q and v biases only (as BEiT / MAE-Lite
    +RPE) and each block owns a bias table for that window (class token included), resized
    bicubically when the token grid differs.  ``proj=False`` builds the logits-only attention of
    D²-MAE's extra block.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        rel_pos_window: Grid | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        proj: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.rel_pos_window = rel_pos_window
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias and rel_pos_window is None)
        if rel_pos_window is not None:
            self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
            self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
            num_rel = (2 * rel_pos_window[0] - 1) * (2 * rel_pos_window[1] - 1) + 3
            self.relative_position_bias_table = nn.Parameter(torch.zeros(num_rel, num_heads))
            self.register_buffer("relative_position_index", gen_relative_position_index(rel_pos_window),
                                 persistent=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim) if proj else None
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self, grid: Grid) -> torch.Tensor:
        """[heads, 1 + H*W, 1 + H*W] bias for a token grid (class token first).

        Without autograd (inference) the expanded bias is cached until the table changes.
        """
        if torch.is_grad_enabled():
            return self._expand_bias(grid)
        table = self.relative_position_bias_table
        key = (tuple(grid), table.data_ptr(), table._version, table.device)
        cached = getattr(self, "_bias_cache", None)
        if cached is None or cached[0] != key:
            self._bias_cache = cached = (key, self._expand_bias(grid))
        return cached[1]

    def _expand_bias(self, grid: Grid) -> torch.Tensor:
        table, index = self.relative_position_bias_table, self.relative_position_index
        if tuple(grid) != tuple(self.rel_pos_window):
            num_rel = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
            table = resize_rel_pos_bias_table(table, grid, (num_rel, self.num_heads),
                                              old_window_size=self.rel_pos_window)
            index = gen_relative_position_index(tuple(grid), device=table.device)
        n = index.shape[0]
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, C = x.shape
        if self.rel_pos_window is not None and self.q_bias is not None:
            bias = torch.cat([self.q_bias, self.k_bias, self.v_bias])
            qkv = F.linear(x, self.qkv.weight, bias)
        else:
            qkv = self.qkv(x)
        # split before the head reshape: the same strided views as a 5-D permute, but exported as
        # 4-D transposes that OpenVINO folds into its fused attention (8% of the CPU step)
        return tuple(t.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)   # each [B, heads, N, head_dim]
                     for t in qkv.split(C, dim=-1))

    def _bias(self, grid: Grid | None, n: int, dtype: torch.dtype) -> torch.Tensor | None:
        if self.rel_pos_window is None:
            return None
        if grid is None:
            raise ValueError("a relative-position attention needs the token grid (grid=(H, W))")
        bias = self.relative_position_bias(grid)
        if bias.shape[-1] != n:
            raise ValueError(f"relative position bias covers {bias.shape[-1]} tokens, input has {n}")
        return bias.to(dtype)[None]

    def logits(self, x: torch.Tensor, grid: Grid | None = None) -> torch.Tensor:
        """Pre-softmax attention logits [B, heads, N, N]."""
        q, k, _ = self._qkv(x)
        return self._logits(q, k, self._bias(grid, x.shape[1], x.dtype))

    def query_logits(self, x: torch.Tensor, rows: torch.Tensor | Sequence[int],
                     grid: Grid | None = None) -> torch.Tensor:
        """Pre-softmax logits of the query tokens ``rows`` against every key, [B, heads, len(rows), N].

        Equals ``logits(x, grid)[:, :, rows]`` (q / k biases and the relative position bias
        rows included) without the N x N matrix: q is projected for the chosen rows only.
        Runs in ``x``'s dtype (the weights are cast to it), so a caller that wants float32
        scores under autocast passes float32 ``x`` with autocast disabled.
        """
        B, N, C = x.shape
        rows = torch.as_tensor(rows, dtype=torch.long, device=x.device)
        weight = self.qkv.weight.to(x.dtype)
        if self.rel_pos_window is not None:
            q_bias, k_bias = self.q_bias, None   # BEiT: q and v biases only
        else:
            bias = self.qkv.bias
            q_bias, k_bias = (None, None) if bias is None else (bias[:C], bias[C:2 * C])
        q_bias = None if q_bias is None else q_bias.to(x.dtype)
        k_bias = None if k_bias is None else k_bias.to(x.dtype)
        q = F.linear(x.index_select(1, rows), weight[:C], q_bias)
        k = F.linear(x, weight[C:2 * C], k_bias)
        q = q.view(B, -1, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        bias = self._bias(grid, N, x.dtype)
        return self._logits(q, k, None if bias is None else bias.index_select(2, rows))

    def _logits(self, q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        logits = (q * self.scale) @ k.transpose(-2, -1)
        return logits if bias is None else logits + bias

    def forward(
        self, x: torch.Tensor, grid: Grid | None = None, return_logits: bool = False,
        sdpa_dtype: torch.dtype | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``sdpa_dtype``: run the fused kernel in this dtype, autocast off around it (float32 for
        CPU training under bf16 autocast, where the bf16 kernel's backward is slow)."""
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        bias = self._bias(grid, N, q.dtype)
        if return_logits:
            logits = self._logits(q, k, bias)
            out = self.attn_drop(logits.softmax(dim=-1)) @ v
        elif sdpa_dtype is not None and q.dtype != sdpa_dtype:
            q, k, v = (t.to(sdpa_dtype) for t in (q, k, v))
            with torch.autocast(x.device.type, enabled=False):
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=None if bias is None else bias.to(sdpa_dtype),
                    dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, N, C)
        if self.proj is not None:
            out = self.proj_drop(self.proj(out))
        return (out, logits) if return_logits else out

    def forward_prefix(self, x: torch.Tensor, count: int = 1, grid: Grid | None = None) -> torch.Tensor:
        """``forward(x, grid)[:, :count]`` [B, count, C]: the output of the first ``count`` tokens
        (the class token), every token still a key and value, without the N x N matrix."""
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        bias = self._bias(grid, N, q.dtype)
        logits = self._logits(q[:, :, :count], k, None if bias is None else bias[:, :, :count])
        out = (self.attn_drop(logits.softmax(dim=-1)) @ v).transpose(1, 2).reshape(B, count, C)
        if self.proj is not None:
            out = self.proj_drop(self.proj(out))
        return out


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        rel_pos_window: Grid | None = None,
        init_values: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        act_layer: Callable[[], nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, rel_pos_window, attn_drop, drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, grid: Grid | None = None, return_logits: bool = False,
        sdpa_dtype: torch.dtype | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        attn = self.attn(self.norm1(x), grid, return_logits, sdpa_dtype)
        attn, logits = attn if return_logits else (attn, None)
        x = x + self.drop_path1(self.ls1(attn))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return (x, logits) if return_logits else x

    def forward_prefix(self, x: torch.Tensor, count: int = 1, grid: Grid | None = None) -> torch.Tensor:
        """``forward(x, grid)[:, :count]``: the block's output for the first ``count`` tokens only
        (a last block whose other outputs nobody reads: MLP and projections run on those tokens)."""
        x = x[:, :count] + self.drop_path1(self.ls1(self.attn.forward_prefix(self.norm1(x), count, grid)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class LogitsBlock(nn.Module):
    """Attention-only block (norm1 + qkv) that outputs pre-softmax logits and nothing else.

    D²-MAE appends one to the student: its logits are distilled while the 12 blocks below it
    stay free of the distillation target.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6)) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, proj=False)

    def forward(self, x: torch.Tensor, grid: Grid | None = None) -> torch.Tensor:
        return self.attn.logits(self.norm1(x), grid)


class VisionTransformer(nn.Module):
    """ViT with class token, absolute (sin-cos or learned) and/or relative position embeddings.

    Args:
        img_size: training resolution; other sizes work (position embeddings are resampled).
        global_pool: ``"token"`` (class token + ``norm``) or ``"avg"`` (mean of patch tokens +
            ``fc_norm``, the fine-tuning convention of MAE).
        pos_embed: ``"sincos"`` (fixed, MAE pre-training), ``"learn"`` or ``"none"``.
        rel_pos_bias: per-block BEiT relative position bias (the "+RPE" models).
    """

    def __init__(
        self,
        img_size: int | Grid = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        global_pool: Literal["token", "avg"] = "token",
        pos_embed: Literal["sincos", "learn", "none"] = "learn",
        rel_pos_bias: bool = False,
        init_values: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if pos_embed not in ("sincos", "learn", "none"):
            raise ValueError(f"pos_embed must be 'sincos', 'learn' or 'none', got {pos_embed!r}")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.num_prefix_tokens = 1
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim,
                                      output_fmt="NHWC", strict_img_size=False)
        self.patch_size = patch_size
        grid = tuple(self.patch_embed.grid_size)
        self.grid_size: Grid = grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed_type = pos_embed
        if pos_embed == "none":
            self.pos_embed = None
        elif pos_embed == "sincos":
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(embed_dim, grid), requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, grid if rel_pos_bias else None, init_values,
                  drop_rate, attn_drop_rate, dpr[i], norm_layer)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim) if global_pool == "token" else nn.Identity()
        self.fc_norm = norm_layer(embed_dim) if global_pool == "avg" else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        if self.pos_embed is not None and self.pos_embed.requires_grad:
            trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        xavier_init_(self)
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=2e-5)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"} | {
            n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's layer grouping (layer-wise lr decay): stem -> 0, ``blocks.i`` -> i + 1, rest last."""
        return {"stem": r"^(?:cls_token|pos_embed|patch_embed)", "blocks": r"^blocks\.(\d+)\."}

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def position_embedding(self, grid: Grid) -> torch.Tensor | None:
        """Absolute position embedding [1, 1 + H*W, C] for a token grid (bicubic resample)."""
        if self.pos_embed is None:
            return None
        if tuple(grid) == self.grid_size:
            return self.pos_embed
        if self.pos_embed_type == "sincos":
            return sincos_pos_embed_2d(self.embed_dim, grid).to(self.pos_embed)
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.grid_size), num_prefix_tokens=1)

    def patch_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        """Image [B, 3, H, W] -> patch tokens with position embedding [B, h*w, C], grid (h, w)."""
        x = self.patch_embed(x)
        grid = (x.shape[1], x.shape[2])
        x = x.flatten(1, 2)
        pos = self.position_embedding(grid)
        if pos is not None:
            x = x + pos[:, 1:]
        return x, grid

    def class_token(self, batch: int) -> torch.Tensor:
        """Class token with its position embedding, [B, 1, C]."""
        cls = self.cls_token if self.pos_embed is None else self.cls_token + self.pos_embed[:, :1]
        return cls.expand(batch, -1, -1)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        tokens, grid = self.patch_tokens(x)
        tokens = torch.cat([self.class_token(tokens.shape[0]), tokens], dim=1)
        return self.pos_drop(tokens), grid

    def forward_blocks(
        self, x: torch.Tensor, grid: Grid | None = None, logits_from: Sequence[int] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run all blocks on tokens; return the tokens and ``{block index: logits}`` for
        the blocks in ``logits_from`` (negative indices count from the end)."""
        wanted = {i % len(self.blocks) for i in logits_from}
        logits: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.blocks):
            if i in wanted:
                x, logits[i] = blk(x, grid, return_logits=True)
            else:
                x = blk(x, grid)
        return x, logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, H, W] -> normed tokens [B, 1 + h*w, C]."""
        x, grid = self.embed(x)
        x, _ = self.forward_blocks(x, grid)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        output_fmt: Literal["NCHW", "NLC"] = "NCHW",
        intermediates_only: bool = False,
        stop_early: bool = True,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs of chosen blocks (an int n means the last n), class token dropped, as
        [B, C, h, w] maps (or [B, h*w, C]); with ``norm`` the final norm is applied to each."""
        depth = len(self.blocks)
        if indices is None:
            take = list(range(depth))
        elif isinstance(indices, int):
            take = list(range(depth - indices, depth))
        else:
            take = sorted(i % depth for i in indices)
        x, grid = self.embed(x)
        last = max(take) if stop_early and intermediates_only else depth - 1
        outs = []
        for i, blk in enumerate(self.blocks[: last + 1]):
            x = blk(x, grid)
            if i in take:
                y = self.norm(x) if norm else x
                y = y[:, self.num_prefix_tokens:]
                if output_fmt == "NCHW":
                    y = y.reshape(y.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
                outs.append(y)
        if intermediates_only:
            return outs
        return self.norm(x), outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, self.num_prefix_tokens:].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone
def vit_tiny(**kwargs) -> VisionTransformer:
    """ViT-Tiny/16 as MAE-Lite: 192 dim, 12 blocks, 12 heads (head dim 16), 5.7M parameters."""
    return VisionTransformer(**{"embed_dim": 192, "depth": 12, "num_heads": 12, **kwargs})


@register_backbone
def vit_tiny_rpe(**kwargs) -> VisionTransformer:
    """ViT-Tiny/16 with per-block relative position bias and global pooling (the "+RPE" model)."""
    kwargs = {"rel_pos_bias": True, "pos_embed": "none", "global_pool": "avg", **kwargs}
    return VisionTransformer(**{"embed_dim": 192, "depth": 12, "num_heads": 12, **kwargs})


@register_backbone
def vit_small(**kwargs) -> VisionTransformer:
    """ViT-Small/16: 384 dim, 12 blocks, 6 heads."""
    return VisionTransformer(**{"embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


@register_backbone
def vit_base(**kwargs) -> VisionTransformer:
    """ViT-Base/16: 768 dim, 12 blocks, 12 heads (the MAE teacher)."""
    return VisionTransformer(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **kwargs})
