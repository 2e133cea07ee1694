"""The three analyses end to end: images in, figures and JSON out (what ``tools/analyze.py`` runs).

Each function checks its options against every model first (layer and head indices, query
position, model kinds), so bad input fails before any image is read, then streams the images in
batches with a progress bar and writes its files atomically into ``out_dir``.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch.nn as nn

from fileio import atomic_write_json, atomic_write_png
from fileio.progress import progress as progress_bar

from .attention import attention_summary
from .cka import cka_summary
from .images import image_loader, to_rgb_uint8
from .maps import Query, attention_maps, query_token, render_map_grid
from .models import POOLS, HieraLayers, Pool, check_indices, input_size, require_vit
from .plots import file_stem, plot_attention_metric, plot_cka

__all__ = ["default_pairs", "run_attention", "run_cka", "run_maps"]

CLASS_TOKEN_NOTE = ("patch queries only; the class-token key is removed and the attention renormalised over "
                    "the patch keys (softmax of the patch-to-patch logits); class_token_attention = mean "
                    "full-softmax probability a patch query puts on the class token")


_TITLES = {"tokens": "token maps", "mean": "mean of the patch tokens", "cls": "class token"}


def default_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of different models; a single model is compared with itself."""
    return list(itertools.combinations(names, 2)) if len(names) > 1 else [(names[0], names[0])]


def _sizes(models: Mapping[str, nn.Module]) -> list[tuple[int, int]]:
    return list(dict.fromkeys(input_size(m) for m in models.values()))


def _stems(names: Sequence[str]) -> dict[str, str]:
    stems: dict[str, str] = {}
    for name in names:
        stem, k = file_stem(name), 1
        while stem in stems.values():
            k += 1
            stem = f"{file_stem(name)}-{k}"
        stems[name] = stem
    return stems


def run_cka(models: Mapping[str, nn.Module], paths: Sequence[Path], out_dir: str | os.PathLike, *,
            pairs: Sequence[tuple[str, str]] | None = None, pool: Pool = "tokens",
            hiera_layers: HieraLayers = "blocks", batch_size: int = 64, workers: int = 0,
            progress: bool = True) -> dict:
    """Layer-by-layer CKA heat maps ``cka_<a>_vs_<b>.png`` and ``cka.json``; ``pool`` chooses the layer
    representations (:mod:`analysis.models`; ``tokens``: the paper's)."""
    pairs = list(pairs or default_pairs(list(models)))
    for a, b in pairs:
        for name in (a, b):
            if name not in models:
                raise KeyError(f"pair ({a}, {b}): no model named {name!r}")
    if pool not in POOLS:
        raise ValueError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if pool == "cls":
        for name, model in models.items():
            if not hasattr(model, "cls_token"):
                raise ValueError(f"--pool cls: model {name!r} ({type(model).__name__}) has no class token; "
                                 f"use --pool tokens or mean")
    if len(paths) < 4:
        raise ValueError(f"cka needs at least 4 images, {len(paths)} given")
    out_dir = Path(out_dir)
    loader = image_loader(paths, _sizes(models), batch_size, workers)
    summary = cka_summary(models, loader, pairs, pool, hiera_layers, total=len(paths), progress=progress)
    stems = _stems(list(models))
    for pair in summary["pairs"]:
        png = out_dir / f"cka_{stems[pair['a']]}_vs_{stems[pair['b']]}.png"
        plot_cka(pair["matrix"], pair["a"], pair["b"], pair["layers_a"], pair["layers_b"], png,
                 title=f"linear CKA (unbiased, minibatch), {_TITLES[pool]}, {summary['images']} images")
        pair["png"] = str(png)
    atomic_write_json(out_dir / "cka.json", summary)
    return summary


def run_attention(models: Mapping[str, nn.Module], paths: Sequence[Path], out_dir: str | os.PathLike, *,
                  blocks: Sequence[int] | None = None, batch_size: int = 16, workers: int = 0,
                  progress: bool = True) -> dict:
    """Mean attention distance / entropy per block and head: two figures and ``attention.json``."""
    vits = {name: require_vit(m, name, "attention") for name, m in models.items()}
    chosen = {name: check_indices(blocks, m.depth, "--layers", "blocks", name) for name, m in vits.items()}
    out_dir = Path(out_dir)
    loader = image_loader(paths, _sizes(vits), batch_size, workers)
    summaries = attention_summary(vits, loader, chosen, total=len(paths), progress=progress)
    images = next(iter(summaries.values()))["images"]
    distance_png = plot_attention_metric(summaries, "distance_px", "mean attention distance (px)",
                                         out_dir / "attention_distance.png", f"{images} images")
    entropy_png = plot_attention_metric(summaries, "entropy", "attention entropy (nats)",
                                        out_dir / "attention_entropy.png", f"{images} images")
    result = {"class_token": CLASS_TOKEN_NOTE, "distance_unit": "pixels of the model input",
              "entropy_unit": "nats", "images": images, "models": summaries,
              "figures": {"distance": str(distance_png), "entropy": str(entropy_png)}}
    atomic_write_json(out_dir / "attention.json", result)
    return result


def run_maps(models: Mapping[str, nn.Module], paths: Sequence[Path], out_dir: str | os.PathLike, *,
             blocks: Sequence[int] | None = (-1,), heads: Sequence[int] | None = None, query: Query = "cls",
             alpha: float = 0.6, root: str | os.PathLike | None = None, batch_size: int = 8, workers: int = 0,
             progress: bool = True) -> dict:
    """One PNG per model and image (``maps_<model>_<image>.png``) and ``maps.json``."""
    vits = {name: require_vit(m, name, "maps") for name, m in models.items()}
    chosen_blocks = {n: check_indices(blocks, m.depth, "--layers", "blocks", n) for n, m in vits.items()}
    chosen_heads = {n: check_indices(heads, m.num_heads, "--heads", "heads", n) for n, m in vits.items()}
    for name, model in vits.items():
        query_token(query, model.grid_size, model.num_prefix_tokens, name)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {alpha}")
    out_dir = Path(out_dir)
    stems = _stems(list(vits))
    labels = [Path(p).relative_to(root).as_posix() if root else Path(p).name for p in paths]
    image_stems = _stems([str(Path(label).with_suffix("")) for label in labels])
    records: dict[str, list[dict]] = {name: [] for name in vits}
    skipped = []
    bar = progress_bar(total=len(paths), unit="img", desc="maps", enabled=progress)
    for batch in image_loader(paths, _sizes(vits), batch_size, workers):
        skipped += [s.path for s in batch.skipped]
        for name, model in vits.items():
            if not batch.indices:
                continue
            x = batch.images[input_size(model)]
            maps, cls = attention_maps(model, x.to(next(model.parameters()).device), chosen_blocks[name], query, name)
            hs = chosen_heads[name]
            for k, index in enumerate(batch.indices):
                label = labels[index]
                per_block = {b: maps[b][k, hs].numpy() for b in chosen_blocks[name]}
                png = out_dir / f"maps_{stems[name]}_{image_stems[str(Path(label).with_suffix(''))]}.png"
                atomic_write_png(png, render_map_grid(to_rgb_uint8(x[k]), per_block, hs, query, model.patch_size, alpha))
                records[name].append({
                    "image": label, "png": str(png),
                    "attention": [[[[round(v, 6) for v in row] for row in m] for m in per_block[b].tolist()]
                                  for b in chosen_blocks[name]],
                    "class_token_attention": [[round(v, 6) for v in cls[b][k, hs].tolist()]
                                              for b in chosen_blocks[name]]})
        bar.update(len(batch.indices) + len(batch.skipped))
    bar.close()
    result = {"query": query if query == "cls" else list(query),
              "note": "attention of the query on the patch keys (full softmax); the class-token key's share "
                      "is class_token_attention; attention indexed [block][head][row][col]",
              "skipped": skipped,
              "models": {name: {"blocks": chosen_blocks[name], "heads": chosen_heads[name],
                                "grid": list(vits[name].grid_size), "images": records[name]} for name in vits}}
    atomic_write_json(out_dir / "maps.json", result)
    return result
