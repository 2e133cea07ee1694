"""Hiera (hierarchical ViT with mask-unit attention) on top of timm's implementation.

Hiera-Tiny here is MAE-Lite's 6.5M model: embed dim 46, 1 head, stages (1, 2, 7, 2), giving
stage maps of 46/92/184/368 channels at strides 4/8/16/32.  Everything but the attention comes
from ``timm.models.hiera``; the attention subclass adds the one thing timm lacks, handing out the
pre-softmax logits that Hiera distillation reads.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.models.hiera import Hiera as TimmHiera
from timm.models.hiera import MaskUnitAttention

from .registry import register_backbone

__all__ = ["Hiera", "HieraAttention"]


class HieraAttention(MaskUnitAttention):
    """Mask-unit / global attention that keeps its logits when ``keep_logits`` is set.

    timm's ``HieraBlock`` calls ``attn(x)`` with no options, so the request travels as a flag
    and the logits of the last call are left in ``self.logits``: [B, heads, windows, Nq, Nk] for
    mask-unit attention, [B, heads, Nq, N] for global attention.
    """

    keep_logits: bool = False
    logits: torch.Tensor | None = None

    @classmethod
    def from_module(cls, m: MaskUnitAttention) -> "HieraAttention":
        new = cls(m.dim, m.dim_out, m.heads, m.q_stride, m.window_size, m.use_mask_unit_attn)
        new.load_state_dict(m.state_dict())
        return new.to(m.qkv.weight)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        if self.use_mask_unit_attn:
            windows = N // (self.q_stride * self.window_size)
            qkv = self.qkv(x).reshape(B, -1, windows, 3, self.heads, self.head_dim).permute(3, 0, 4, 2, 1, 5)
            q, k, v = qkv.unbind(0)  # [B, heads, windows, tokens, head_dim]
            if self.q_stride > 1:
                q = q.view(B, self.heads, windows, self.q_stride, -1, self.head_dim).amax(dim=3)
        else:
            qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)  # [B, heads, N, head_dim]
            if self.q_stride > 1:
                q = q.view(B, self.heads, self.q_stride, -1, self.head_dim).amax(dim=2)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        q, k, v = self._qkv(x)
        if self.keep_logits:
            self.logits = (q * self.scale) @ k.transpose(-1, -2)
            out = self.logits.softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        # windowed: [B, heads, windows, tokens, d] -> [B, tokens, windows, heads, d]
        out = out.transpose(1, 3) if self.use_mask_unit_attn else out.transpose(1, 2)
        return self.proj(out.reshape(B, -1, self.dim_out))


class Hiera(TimmHiera):
    """timm's Hiera with logits-capable attention; same parameters and state-dict keys."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for blk in self.blocks:
            blk.attn = HieraAttention.from_module(blk.attn)

    @property
    def stage_channels(self) -> list[int]:
        return [self.blocks[i].dim_out for i in self.stage_ends]

    def forward_features_with_logits(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, logits_from: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[int, torch.Tensor]]:
        """``forward_features(x, mask, return_intermediates=True)`` plus ``{block: logits}``.

        ``mask`` is timm's: [B, mask units] booleans, True = keep.
        """
        wanted = sorted({i % len(self.blocks) for i in logits_from})
        try:
            for i in wanted:
                self.blocks[i].attn.keep_logits = True
            x, intermediates = self.forward_features(x, mask=mask, return_intermediates=True)
            logits = {i: self.blocks[i].attn.logits for i in wanted}
        finally:
            for i in wanted:
                self.blocks[i].attn.keep_logits = False
                self.blocks[i].attn.logits = None
        return x, intermediates, logits


@register_backbone
def hiera_tiny(**kwargs) -> Hiera:
    """MAE-Lite's Hiera-Tiny: dim 46, 1 head, stages (1, 2, 7, 2), 6.7M parameters with head."""
    return Hiera(**{"embed_dim": 46, "num_heads": 1, "stages": (1, 2, 7, 2), **kwargs})


@register_backbone
def hiera_base(**kwargs) -> Hiera:
    """Hiera-Base: dim 96, 1 head, stages (2, 3, 16, 3) (the Hiera distillation teacher)."""
    return Hiera(**{"embed_dim": 96, "num_heads": 1, "stages": (2, 3, 16, 3), **kwargs})
