"""Attention distance and entropy per block and head of a ViT (the study's locality analysis).

Attention is read through the backbone's own logits path
(``VisionTransformer.forward_blocks(tokens, grid, logits_from=...)``): the pre-softmax logits of
the very blocks that run the model, so there is no second attention implementation to drift.

Definitions, for each image, block and head, over the patch queries (the class-token query is
left out):

* the class-token key is removed and the attention renormalised over the patch keys, which is
  the softmax of the patch-to-patch logits (as MAE-Lite's analysis does); how much attention the
  class token took away is reported separately as ``class_token_attention`` (mean probability of
  the full softmax on the class-token key);
* **distance**: sum_j p_ij * ||centre_i - centre_j||, in pixels of the model input (patch grid
  distance times the patch size), averaged over the queries;
* **entropy**: -sum_j p_ij log p_ij (nats; the maximum is log of the number of patches),
  averaged over the queries.

Each is then averaged over images.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch

from backbones import VisionTransformer
from fileio.progress import progress as progress_bar

from .images import ImageBatch
from .models import input_size

__all__ = ["attention_entropy", "attention_logits", "attention_summary", "block_statistics", "mean_attention_distance",
           "patch_attention", "patch_distances"]

Grid = tuple[int, int]


def patch_distances(grid: Grid, patch_size: int | float = 1) -> torch.Tensor:
    """[P, P] Euclidean distances between patch centres of a (rows, cols) grid, in pixels."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    return torch.cdist(centres, centres) * patch_size


def patch_attention(logits: torch.Tensor, prefix: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [B, heads, N, N] with ``prefix`` leading non-patch tokens ->
    (patch-to-patch attention renormalised over patch keys [B, heads, P, P],
    attention of each patch query on the prefix keys [B, heads, P])."""
    log_probs, prefix_mass = _patch_log_attention(logits, prefix)
    return log_probs.exp(), prefix_mass


def _patch_log_attention(logits: torch.Tensor, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log of the renormalised patch-to-patch attention, attention of patch queries on the prefix)."""
    queries = logits[:, :, prefix:].float()
    patch = queries[..., prefix:]
    patch_norm = patch.logsumexp(dim=-1, keepdim=True)
    prefix_logits = queries[..., :prefix]
    # share of the prefix keys in the full softmax: sigmoid(logsumexp(prefix) - logsumexp(patch))
    prefix_mass = torch.sigmoid(prefix_logits.logsumexp(dim=-1, keepdim=True) - patch_norm).squeeze(-1)
    return patch - patch_norm, prefix_mass


def mean_attention_distance(probs: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Attention [..., Q, K] and distances [Q, K] -> attention-weighted distance averaged over queries [...]."""
    weighted = torch.einsum("...qk,qk->...q", probs, distances.to(probs))
    return weighted.double().mean(dim=-1)


def attention_entropy(probs: torch.Tensor, log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Attention [..., Q, K] -> entropy of each query's distribution (nats) averaged over queries [...].

    ``log_probs`` (the logarithm of ``probs``, e.g. from a log-softmax) avoids taking it again."""
    per_query = (-torch.special.xlogy(probs, probs) if log_probs is None else -(probs * log_probs)).sum(dim=-1)
    return per_query.double().mean(dim=-1)


def block_statistics(logits: torch.Tensor, distances: torch.Tensor,
                     prefix: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A block's logits [B, heads, N, N] -> (mean distance, entropy, class-token attention), each
    [B, heads] averaged over the patch queries (the definitions of the module docstring)."""
    log_probs, prefix_mass = _patch_log_attention(logits, prefix)
    probs = log_probs.exp()
    return (mean_attention_distance(probs, distances), attention_entropy(probs, log_probs),
            prefix_mass.double().mean(dim=-1))


def attention_logits(model: VisionTransformer, images: torch.Tensor,
                     blocks: Sequence[int]) -> tuple[dict[int, torch.Tensor], Grid]:
    """Pre-softmax logits {block: [B, heads, N, N]} of chosen blocks, and the token grid."""
    tokens, grid = model.embed(images)
    _, logits = model.forward_blocks(tokens, grid, logits_from=list(blocks))
    return logits, grid


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def attention_summary(models: Mapping[str, VisionTransformer], batches: Iterable[ImageBatch],
                      blocks: Mapping[str, Sequence[int]], total: int | None = None,
                      progress: bool = True) -> dict[str, dict]:
    """Mean attention distance (px), entropy (nats) and class-token attention per block and head,
    averaged over all images of ``batches``; one dict per model (lists indexed [block][head])."""
    sums = {name: {b: torch.zeros(3, m.num_heads, dtype=torch.float64) for b in blocks[name]}
            for name, m in models.items()}
    grids: dict[str, Grid] = {}
    images = 0
    bar = progress_bar(total=total, unit="img", desc="attention", enabled=progress)
    for batch in batches:
        if not batch.indices:
            continue
        for name, model in models.items():
            x = batch.images[input_size(model)].to(_device(model))
            logits, grid = attention_logits(model, x, blocks[name])
            grids[name] = grid
            distances = patch_distances(grid, model.patch_size).to(x.device)
            for b, block_logits in logits.items():
                stats = torch.stack(block_statistics(block_logits, distances, model.num_prefix_tokens))
                sums[name][b] += stats.sum(dim=1).cpu()  # [3, heads]
        images += len(batch.indices)
        bar.update(len(batch.indices) + len(batch.skipped))
    bar.close()
    if not images:
        raise ValueError("no image could be decoded")
    out = {}
    for name, model in models.items():
        mean = {b: s / images for b, s in sums[name].items()}
        grid = grids[name]
        out[name] = {
            "blocks": list(blocks[name]), "heads": model.num_heads, "grid": list(grid),
            "patch_size": model.patch_size, "input_size": list(input_size(model)), "images": images,
            "distance_px": [mean[b][0].tolist() for b in blocks[name]],
            "entropy": [mean[b][1].tolist() for b in blocks[name]],
            "class_token_attention": [mean[b][2].tolist() for b in blocks[name]],
            "max_entropy": float(torch.log(torch.tensor(grid[0] * grid[1], dtype=torch.float64))),
        }
    return out
