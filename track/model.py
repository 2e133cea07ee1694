"""One-stream OSTrack-style tracker: a plain ViT over [template; search] tokens + a centre head.

The backbone is a ``backbones.VisionTransformer`` used block by block (never a copy of its
architecture). Template (128 px -> 8x8 tokens) and search region (256 px -> 16x16 tokens) are
patch-embedded with the backbone's own patch embedding, get separate position embeddings
(``pos_embed_z`` / ``pos_embed_x``, bicubic resamples of the pre-trained grid) and are
concatenated without a class token.

Candidate elimination (CE) runs after blocks 3, 6 and 9 (0-based): every remaining search token
is scored by the softmax attention it receives from the template's centre token (averaged over
heads), and only the best ``ceil(keep_ratio * n)`` survive. Which template token is "the
centre" of an even 8x8 grid is ambiguous; like OSTrack's ``CTR_POINT`` mask we take the single
token at row 3, column 3 (0-based, ``(n // 2 - 1, n // 2 - 1)``), so that published checkpoints
see the same rule they were trained with. ``ce_template_range="ctr_rec"`` averages the central
2x2 tokens instead and ``"all"`` every template token.

After the final norm the dropped positions are refilled with zeros, and the centre head sees the
full 16x16 map in the original order.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from backbones import (CheckpointError, LoadResult, VisionTransformer, atomic_save, build_backbone,
                       load_matched_state, load_pretrained, read_checkpoint)

__all__ = ["CE_TEMPLATE_RANGES", "CenterHead", "OneStreamTracker", "build_tracker",
           "box_at", "decode_boxes", "load_tracker_checkpoint", "ostrack_to_ours",
           "save_tracker_checkpoint", "template_centre_indices"]

CE_TEMPLATE_RANGES = ("ctr_point", "ctr_rec", "all")
SCORE_EPS = 1e-4


def template_centre_indices(grid: int, mode: str = "ctr_point") -> list[int]:
    """Flat indices (row-major) of the template tokens whose attention scores the search tokens.

    ``ctr_point``: the single token at ``(grid // 2 - 1, grid // 2 - 1)`` for an even grid (OSTrack:
    (3, 3) of 8x8), the true centre for an odd grid; ``ctr_rec``: the central 2x2 (even) or 1x1
    (odd) block; ``all``: every token.
    """
    if mode not in CE_TEMPLATE_RANGES:
        raise ValueError(f"ce_template_range must be one of {CE_TEMPLATE_RANGES}, got {mode!r}")
    if mode == "all":
        return list(range(grid * grid))
    if grid % 2:
        rows = [grid // 2]
    else:
        rows = [grid // 2 - 1] if mode == "ctr_point" else [grid // 2 - 1, grid // 2]
    return [r * grid + c for r in rows for c in rows]


# ---------------------------------------------------------------------------- centre head

def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class CenterHead(nn.Module):
    """Three conv branches on the search feature map: centre score, sub-cell offset and box size.

    Each branch: conv3x3-BN-ReLU with channels C -> w -> w/2 -> w/4 -> w/8, then a 1x1 conv
    (``w`` = ``width``, 256 as published). Score and size pass a sigmoid (score clamped to
    [1e-4, 1 - 1e-4]); the offset is raw. Outputs are float32 even under bf16 autocast.
    """

    def __init__(self, in_channels: int, width: int = 256) -> None:
        super().__init__()
        if width % 8:
            raise ValueError(f"head width must be divisible by 8, got {width}")
        self.width = width
        self.score = self._branch(in_channels, width, 1)
        self.offset = self._branch(in_channels, width, 2)
        self.size = self._branch(in_channels, width, 2)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    @staticmethod
    def _branch(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
        chans = [in_channels, width, width // 2, width // 4, width // 8]
        layers = [_conv_bn_relu(a, b) for a, b in zip(chans[:-1], chans[1:])]
        return nn.Sequential(*layers, nn.Conv2d(chans[-1], out_channels, 1))

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """feat [B, C, H, W] -> score [B, 1, H, W], offset [B, 2, H, W], size [B, 2, H, W]."""
        score = self.score_map(feat)
        return score, self.offset(feat).float(), self.size(feat).float().sigmoid()

    def score_map(self, feat: torch.Tensor) -> torch.Tensor:
        """feat [B, C, H, W] -> score [B, 1, H, W] (the score branch alone)."""
        return self.score(feat).float().sigmoid().clamp(SCORE_EPS, 1.0 - SCORE_EPS)

    def offset_size_at(self, feat: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Offset [B, 2] and size [B, 2] at one flat position ``index`` [B] of each map.

        Equal to reading ``forward(feat)``'s offset / size maps at ``index``, at a fraction of the
        cost: each branch runs only on the receptive field of that cell (9x9 inputs for four 3x3
        convolutions), with unpadded convolutions whose outputs outside the map are set to zero,
        which is what the full map's zero padding feeds the next layer.
        """
        B, C, H, W = feat.shape
        radius = len(self.offset) - 1                     # one per 3x3 conv layer
        side = 2 * radius + 1
        steps = torch.arange(side, device=feat.device)
        rows = (index // W).unsqueeze(1) + steps - radius  # [B, side], map coordinates
        cols = (index % W).unsqueeze(1) + steps - radius
        padded = F.pad(feat, (radius, radius, radius, radius)).flatten(2)
        flat = (rows + radius).unsqueeze(2) * (W + 2 * radius) + (cols + radius).unsqueeze(1)
        window = padded.gather(2, flat.view(B, 1, side * side).expand(B, C, side * side)).view(B, C, side, side)
        inside = (((rows >= 0) & (rows < H)).unsqueeze(2) & ((cols >= 0) & (cols < W)).unsqueeze(1)).unsqueeze(1)
        outputs = []
        for branch in (self.offset, self.size):
            x = window
            for depth, layer in enumerate(branch[:-1], start=1):
                for module in layer:
                    if isinstance(module, nn.Conv2d):
                        x = F.conv2d(x, module.weight, module.bias, module.stride, 0, module.dilation, module.groups)
                    else:
                        x = module(x)
                x = x * inside[..., depth:side - depth, depth:side - depth].to(x.dtype)
            outputs.append(branch[-1](x).float().flatten(1))  # [B, 2]
        return outputs[0], outputs[1].sigmoid()


def decode_boxes(score_map: torch.Tensor, offset_map: torch.Tensor,
                 size_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes at the score peak: ``cx = (col + offset_x) / W``, ``cy = (row + offset_y) / H``, size
    read from the size map at that cell. Returns (boxes [B, 4] normalised cxcywh, peak score [B])."""
    B, _, H, W = score_map.shape
    peak, index = score_map.flatten(1).max(dim=1)                          # [B], [B]
    gather_at = index.view(B, 1, 1).expand(B, 2, 1)
    offset = offset_map.flatten(2).gather(2, gather_at).squeeze(2)          # [B, 2]
    size = size_map.flatten(2).gather(2, gather_at).squeeze(2)              # [B, 2]
    return box_at(index, offset, size, H, W), peak


def box_at(index: torch.Tensor, offset: torch.Tensor, size: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised cxcywh boxes [B, 4] from the flat cell ``index`` [B] and that cell's offset / size [B, 2]."""
    cx = ((index % width).to(offset.dtype) + offset[:, 0]) / width
    cy = ((index // width).to(offset.dtype) + offset[:, 1]) / height
    return torch.stack([cx, cy, size[:, 0], size[:, 1]], dim=1)


# ---------------------------------------------------------------------------- the tracker network

class OneStreamTracker(nn.Module):
    """ViT over concatenated template and search tokens with candidate elimination + centre head.

    Args:
        backbone: a ``VisionTransformer`` with absolute position embeddings (weights already
            loaded: ``pos_embed_z`` / ``pos_embed_x`` are resampled from its ``pos_embed`` here).
        template_size, search_size: input crop sides in pixels (multiples of the patch size).
        ce_locations: 0-based indices of the blocks after which CE runs.
        ce_keep_ratio: default keep ratio (``forward(..., ce_keep_ratio=None)`` uses it).
        ce_template_range: which template tokens score the search tokens (module docstring).
        head_width: channels of the first head conv (published: 256).
    """

    def __init__(self, backbone: VisionTransformer, template_size: int = 128, search_size: int = 256,
                 ce_locations: Sequence[int] = (3, 6, 9), ce_keep_ratio: float = 0.7,
                 ce_template_range: str = "ctr_point", head_width: int = 256) -> None:
        super().__init__()
        if not isinstance(backbone, VisionTransformer):
            raise TypeError(f"backbone must be a backbones.VisionTransformer, got {type(backbone).__name__}")
        if any(block.attn.rel_pos_window is not None for block in backbone.blocks):
            raise ValueError("the tracker needs a backbone without relative position bias: template and "
                             "search tokens do not form one grid")
        if backbone.pos_embed is None:
            raise ValueError("the tracker needs a backbone with absolute position embeddings "
                             "(pos_embed='learn' or 'sincos'); relative-position-only ViTs are not supported")
        patch = backbone.patch_size
        for name, size in (("template_size", template_size), ("search_size", search_size)):
            if size % patch:
                raise ValueError(f"{name}={size} is not a multiple of the patch size {patch}")
        if not 0.0 < ce_keep_ratio <= 1.0:
            raise ValueError(f"ce_keep_ratio must be in (0, 1], got {ce_keep_ratio}")
        depth = len(backbone.blocks)
        if any(not 0 <= i < depth for i in ce_locations):
            raise ValueError(f"ce_locations {tuple(ce_locations)} outside the {depth} blocks")
        self.backbone = backbone
        self.template_size, self.search_size = template_size, search_size
        self.template_grid, self.search_grid = template_size // patch, search_size // patch
        self.ce_locations = tuple(sorted(int(i) for i in ce_locations))
        self.ce_keep_ratio = float(ce_keep_ratio)
        self.ce_template_range = ce_template_range
        self.register_buffer("template_centre", torch.tensor(
            template_centre_indices(self.template_grid, ce_template_range)), persistent=False)
        # the backbone's class token and 224-px position embedding are not used by the tracker
        for unused in (backbone.cls_token, backbone.pos_embed):
            unused.requires_grad_(False)
        self.pos_embed_z = nn.Parameter(self._resample_pos(self.template_grid))
        self.pos_embed_x = nn.Parameter(self._resample_pos(self.search_grid))
        self.head = CenterHead(backbone.embed_dim, head_width)
        # CE scores from ``centre_logits`` while blocks run fused attention (inference speed);
        # False: from the logits the blocks return (``block(x, return_logits=True)``)
        self.fast_ce = False
        self.backbone_frozen = False

    def freeze_backbone(self) -> "OneStreamTracker":
        """Fix the backbone and the template / search position embeddings: no gradients, and the
        backbone stays in eval mode when the model is put in training mode. Only the head learns:
        a tracking probe of the backbone's representation, as a linear probe is of a classifier's
        (and no backward pass runs through the backbone)."""
        self.backbone.requires_grad_(False)
        self.pos_embed_z.requires_grad_(False)
        self.pos_embed_x.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()
        return self

    def train(self, mode: bool = True) -> "OneStreamTracker":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def _resample_pos(self, grid: int) -> torch.Tensor:
        """Patch position embedding of the backbone (no class position) resized to ``grid``.

        Bicubic without antialiasing, as OSTrack resizes it (timm's default antialias would
        change the downsampled template embedding).
        """
        patch_pos = self.backbone.pos_embed.detach()[:, self.backbone.num_prefix_tokens:]
        return resample_abs_pos_embed(patch_pos.float(), [grid, grid], list(self.backbone.grid_size),
                                      num_prefix_tokens=0, antialias=False).clone()

    # -- embeddings
    def embed_template(self, template: torch.Tensor) -> torch.Tensor:
        """Template images [B, 3, Hz, Wz] -> tokens with position [B, Nz, C] (cacheable per sequence)."""
        return self.backbone.patch_embed(template).flatten(1, 2) + self.pos_embed_z

    def embed_search(self, search: torch.Tensor) -> torch.Tensor:
        """Search images [B, 3, Hx, Wx] -> tokens with position [B, Nx, C]."""
        return self.backbone.patch_embed(search).flatten(1, 2) + self.pos_embed_x

    # -- candidate elimination
    def centre_logits(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Pre-softmax logits of the template-centre queries of ``block`` against every key,
        [B, heads, n_centre, N], computed from the block's input without the N x N matrix.

        Equals ``block(tokens, return_logits=True)[1]`` restricted to the centre rows
        (``Attention.query_logits``); lets the block itself run its fused attention
        (``fast_ce``, used by inference). Computed in float32 even under autocast: which tokens
        survive hinges on small score differences.
        """
        with torch.autocast(tokens.device.type, enabled=False):
            return block.attn.query_logits(block.norm1(tokens.float()), self.template_centre)

    def ce_attention_modules(self) -> list[nn.Module]:
        """The attention modules whose weights the CE scores read (one per CE block): inference
        copies keep them in float32 when the rest of the network is stored in bf16 / fp16."""
        return [self.backbone.blocks[i].attn for i in self.ce_locations]

    def eliminate(self, tokens: torch.Tensor, centre_logits: torch.Tensor, keep_index: torch.Tensor,
                  num_template: int, keep_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Drop the search tokens that the template centre attends to least.

        Args:
            tokens: [B, Nz + n, C] block output.
            centre_logits: [B, heads, n_centre, Nz + n] pre-softmax attention logits of that
                block for the template-centre queries (rows ``template_centre`` of its logits).
            keep_index: [B, n] original positions of the search tokens still present.
        Returns:
            tokens [B, Nz + k, C], keep_index [B, k], attention score [B, n] of each search token
            (``k = ceil(keep_ratio * n)``).
        """
        B, _, C = tokens.shape
        n = tokens.shape[1] - num_template
        centre_rows = centre_logits.float().softmax(dim=-1)
        score = centre_rows[..., num_template:].mean(dim=(1, 2))                # [B, n]
        keep = math.ceil(keep_ratio * n)
        if keep >= n:
            return tokens, keep_index, score
        top = score.topk(keep, dim=1).indices                                   # [B, k]
        search = tokens[:, num_template:].gather(1, top.unsqueeze(-1).expand(B, keep, C))
        return torch.cat([tokens[:, :num_template], search], dim=1), keep_index.gather(1, top), score

    # -- forward
    def forward(self, template: torch.Tensor | None = None, search: torch.Tensor | None = None,
                ce_keep_ratio: float | None = None, *,
                search_features: torch.Tensor | None = None) -> dict[str, Any]:
        """template [B, 3, 128, 128], search [B, 3, 256, 256] -> dict (see ``forward_tokens``).

        Or ``search_features`` alone: the search feature map [B, C, H, W] the backbone gave for
        these inputs (``forward_features``), through the head only (``forward_head``): how a head is
        trained on the cached features of a frozen backbone, through the same (DDP) forward call.
        """
        if search_features is not None:
            if template is not None or search is not None:
                raise ValueError("give either template and search images or search_features, not both")
            return self.forward_head(search_features)
        if template is None or search is None:
            raise ValueError("the tracker needs template and search images (or search_features)")
        return self.forward_tokens(self.embed_template(template), search, ce_keep_ratio)

    def forward_tokens(self, template_tokens: torch.Tensor, search: torch.Tensor,
                       ce_keep_ratio: float | None = None, details: bool = True) -> dict[str, Any]:
        """Run the network from precomputed template tokens (``embed_template``).

        Returns a dict: ``score_map`` [B, 1, H, W], ``offset_map`` / ``size_map`` [B, 2, H, W],
        ``pred_boxes`` [B, 4] (normalised cxcywh at the score peak), ``pred_scores`` [B],
        ``keep_index`` [B, k] original positions of the search tokens that reached the head,
        ``removed_mask`` [B, H*W] (True = eliminated), ``keep_indices`` / ``ce_scores``: per CE
        stage, the kept positions and the attention score of each candidate before it.
        ``details=False`` returns the three maps only.
        """
        feat, keep_index, keep_indices, ce_scores = self.forward_features(template_tokens, search, ce_keep_ratio)
        out = self.forward_head(feat, keep_index, details)
        if details:
            out.update(keep_indices=keep_indices, ce_scores=ce_scores)
        return out

    def forward_head(self, feat: torch.Tensor, keep_index: torch.Tensor | None = None,
                     details: bool = True) -> dict[str, Any]:
        """The centre head on a search feature map [B, C, H, W]: the maps and, with ``details``,
        the decoded boxes and which positions CE removed (``keep_index`` None: none)."""
        score_map, offset_map, size_map = self.head(feat)
        if not details:
            return {"score_map": score_map, "offset_map": offset_map, "size_map": size_map}
        boxes, peak = decode_boxes(score_map, offset_map, size_map)
        B, num_search = feat.shape[0], feat.shape[2] * feat.shape[3]
        if keep_index is None:
            keep_index = torch.arange(num_search, device=feat.device).expand(B, num_search)
        removed = torch.ones(B, num_search, dtype=torch.bool, device=feat.device).scatter(
            1, keep_index, torch.zeros_like(keep_index, dtype=torch.bool))
        return {"score_map": score_map, "offset_map": offset_map, "size_map": size_map,
                "pred_boxes": boxes, "pred_scores": peak, "keep_index": keep_index,
                "removed_mask": removed, "keep_indices": [], "ce_scores": []}

    def forward_features(self, template_tokens: torch.Tensor, search: torch.Tensor,
                         ce_keep_ratio: float | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Backbone with CE: (search feature map [B, C, H, W] with zeros at eliminated positions,
        final keep_index [B, k], per-stage keep indices, per-stage CE scores).

        ``search``: images [B, 3, Hx, Wx], or their tokens with position [B, Nx, C] (``embed_search``'s
        output, as the inference step computes them from uint8 crops)."""
        keep_ratio = self.ce_keep_ratio if ce_keep_ratio is None else float(ce_keep_ratio)
        x = search if search.ndim == 3 else self.embed_search(search)
        B, num_search, C = x.shape
        num_template = template_tokens.shape[1]
        if template_tokens.shape[0] != B:
            template_tokens = template_tokens.expand(B, -1, -1)
        tokens = self.backbone.pos_drop(torch.cat([template_tokens, x], dim=1))
        keep_index = torch.arange(num_search, device=x.device).expand(B, num_search)
        keep_indices, ce_scores = [], []
        for i, block in enumerate(self.backbone.blocks):
            if i in self.ce_locations and keep_ratio < 1.0:
                if self.fast_ce:
                    logits = self.centre_logits(block, tokens)
                    tokens = block(tokens)
                else:
                    tokens, logits = block(tokens, return_logits=True)
                    logits = logits.index_select(2, self.template_centre)
                tokens, keep_index, score = self.eliminate(tokens, logits, keep_index, num_template, keep_ratio)
                keep_indices.append(keep_index)
                ce_scores.append(score)
            else:
                tokens = block(tokens)
        tokens = self.backbone.norm(tokens)
        feat = self.restore_search_map(tokens[:, num_template:], keep_index, num_search)
        return feat, keep_index, keep_indices, ce_scores

    def locate(self, template_tokens: torch.Tensor, search: torch.Tensor, window: torch.Tensor | None = None,
               ce_keep_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-frame tracking output: (box [B, 4] normalised cxcywh at the peak of
        ``score_map * window``, peak [B] of the raw score map).

        Equal to ``decode_boxes`` on the windowed maps of ``forward_tokens``, but the offset and
        size branches run only around the chosen cell (``CenterHead.offset_size_at``).
        """
        feat = self.forward_features(template_tokens, search, ce_keep_ratio)[0]
        score_map = self.head.score_map(feat)
        response = score_map if window is None else score_map * window
        index = response.flatten(1).max(dim=1).indices
        offset, size = self.head.offset_size_at(feat, index)
        return box_at(index, offset, size, feat.shape[2], feat.shape[3]), score_map.flatten(1).max(dim=1).values

    def restore_search_map(self, search_tokens: torch.Tensor, keep_index: torch.Tensor,
                           num_search: int) -> torch.Tensor:
        """Kept search tokens [B, k, C] back at their positions of a zero map [B, C, H, W]."""
        B, k, C = search_tokens.shape
        if k < num_search:
            full = search_tokens.new_zeros(B, num_search, C)
            search_tokens = full.scatter(1, keep_index.unsqueeze(-1).expand(B, k, C), search_tokens)
        grid = self.search_grid
        return search_tokens.transpose(1, 2).reshape(B, C, grid, grid)


# ---------------------------------------------------------------------------- building

def build_tracker(backbone: str = "vit_tiny", pretrained: str | None = None, template_size: int = 128,
                  search_size: int = 256, ce_locations: Sequence[int] = (3, 6, 9), ce_keep_ratio: float = 0.7,
                  ce_template_range: str = "ctr_point", head_width: int = 256, drop_path_rate: float = 0.0,
                  **backbone_kwargs: Any) -> OneStreamTracker:
    """Build the backbone by name, load backbone weights (any format ``load_pretrained`` reads:
    our pre-training export, MAE-Lite trainer files, DeiT / timm, OSTrack), then the tracker.

    The load report is kept as ``model.backbone_load_result`` (None without ``pretrained``).
    """
    kwargs = {"num_classes": 0, "global_pool": "token", "drop_path_rate": drop_path_rate, **backbone_kwargs}
    vit = build_backbone(backbone, **kwargs)
    result = load_pretrained(vit, pretrained) if pretrained else None
    model = OneStreamTracker(vit, template_size, search_size, ce_locations, ce_keep_ratio,
                             ce_template_range, head_width)
    model.backbone_load_result = result
    return model


# ---------------------------------------------------------------------------- tracker checkpoints

_OSTRACK_BRANCHES = {"ctr": "score", "offset": "offset", "size": "size"}
# OSTrack's CenterPredictor: conv{1..4}_{ctr,offset,size} = Sequential(conv, BN, ReLU), conv5_* = 1x1 conv
_OSTRACK_HEAD_KEY = re.compile(r"^box_head\.conv([1-5])_(ctr|offset|size)\.(.+)$")


def ostrack_to_ours(key: str) -> str | None:
    """Rename one OSTrack / MAE-Lite tracking key to ours (None = not part of our model).

    ``backbone.pos_embed_z`` -> ``pos_embed_z``, ``backbone.*`` unchanged,
    ``box_head.conv{i}_{ctr|offset|size}.*`` -> ``head.{score|offset|size}.{i-1}.*``.
    """
    if key in ("backbone.pos_embed_z", "backbone.pos_embed_x"):
        return key[len("backbone."):]
    if key.startswith("backbone."):
        return key
    match = _OSTRACK_HEAD_KEY.match(key)
    if match:
        layer, branch, rest = match.groups()
        return f"head.{_OSTRACK_BRANCHES[branch]}.{int(layer) - 1}.{rest}"
    return None


def _tracker_state_dict(ckpt: Mapping[str, Any]) -> tuple[str, dict[str, torch.Tensor]]:
    """(layout, state dict in our names) of a tracker checkpoint of any known layout."""
    for container in ("net", "state_dict", "model"):
        inner = ckpt.get(container)
        if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
            sd = dict(inner)
            break
    else:
        if ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
            sd = dict(ckpt)
        else:
            raise CheckpointError(f"no tracker state dict found; top-level keys: {sorted(map(str, ckpt))[:12]}")
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    if any(k.startswith("box_head.") for k in sd):
        renamed, dropped = {}, []
        for key, value in sd.items():
            ours = ostrack_to_ours(key)
            if ours is None:
                dropped.append(key)
            else:
                renamed[ours] = value
        return "ostrack", {**renamed, **{k: sd[k] for k in dropped}}
    return "litevit", sd


def load_tracker_checkpoint(model: OneStreamTracker, path_or_state: str | Mapping[str, Any],
                            strict: bool = False) -> LoadResult:
    """Load a whole-tracker checkpoint: OSTrack / MAE-Lite tracking files (``{"net": ...}`` with
    ``backbone.*`` / ``box_head.*`` keys) or our own (``save_tracker_checkpoint``, or training
    files holding ``net`` / ``state_dict`` / ``model``).

    Position embeddings of another grid are resized (bicubic); other shape mismatches raise
    CheckpointError naming the key. Missing / unexpected keys are returned by name
    (``strict=True`` raises on them). Files are read with ``weights_only=True``.
    """
    source = path_or_state if isinstance(path_or_state, Mapping) else read_checkpoint(path_or_state)
    where = "" if isinstance(path_or_state, Mapping) else f"{path_or_state}: "
    try:
        fmt, sd = _tracker_state_dict(source)
    except CheckpointError as e:
        raise CheckpointError(where + str(e)) from None
    result = LoadResult(fmt)
    own = model.state_dict()
    for key, value in list(sd.items()):
        target = own.get(key)
        if target is None or target.shape == value.shape:
            continue
        if key in ("pos_embed_z", "pos_embed_x") and value.ndim == 3 and value.shape[-1] == target.shape[-1]:
            old, new = math.isqrt(value.shape[1]), math.isqrt(target.shape[1])
            if old * old != value.shape[1]:
                raise CheckpointError(f"{where}{key}: {tuple(value.shape)} is not a square token grid")
            sd[key] = resample_abs_pos_embed(value.float(), [new, new], [old, old], num_prefix_tokens=0,
                                             antialias=False)
            result.resized.append(key)
        elif key == "backbone.pos_embed":  # unused by the tracker: keep the model's own
            del sd[key]
            result.resized.append(key + " (skipped: other grid, unused by the tracker)")
        else:
            raise CheckpointError(f"{where}shape mismatch for {key}: checkpoint {tuple(value.shape)} "
                                  f"vs model {tuple(target.shape)}")
    return load_matched_state(model, sd, result, strict, where)


def save_tracker_checkpoint(model: nn.Module, path: str, **meta: Any) -> None:
    """Write ``{"net": state_dict, "meta": {...}}`` atomically (our key names).

    The ``net`` container makes the file readable by ``backbones.load_pretrained`` too (it takes
    the ``backbone.*`` keys), e.g. to start another tracker from a trained backbone.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_save({"net": state, "meta": {"kind": "one_stream_tracker", **meta}}, path)
