"""The analyses as one section of a Markdown report (for the main job's report)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch.nn as nn

from backbones import VisionTransformer

from .images import list_images, spread
from .plots import plot_attention_panels
from .runs import run_attention, run_cka

__all__ = ["PAPER_DISTANCE_FACTOR", "report_section"]

PAPER_DISTANCE_FACTOR = 14.0  # MAE-Lite's attention analyzer: patch-grid distance x 14 (PROTOCOLS.md)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _link(path: str | os.PathLike, root: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()


def report_section(models: Mapping[str, nn.Module], images: str | os.PathLike, out_dir: str | os.PathLike,
                   max_images: int, *, batch_size: int = 32, link_root: str | os.PathLike | None = None,
                   progress: bool = False, pairs: Sequence[tuple[str, str]] | None = None) -> tuple[str, dict]:
    """The paper's token-map CKA between every pair of models (full layer-by-layer maps, last layers in
    the table) and the attention distance / entropy of the ViTs, over up to ``max_images`` images of
    ``images``.

    ``pairs``: the model pairs to compare (default: every pair). Attention is also drawn as the
    paper's dot plot (one panel per model, x = layer, a dot per head), its distance in the paper's unit
    (:data:`PAPER_DISTANCE_FACTOR`).

    Models run on their own device, in eval mode (their training flag is restored afterwards).
    Figures and JSON go to ``out_dir``; the Markdown links them relative to ``link_root``
    (default: ``out_dir``'s parent, where a report that keeps its sections in sub-folders sits).
    Returns (Markdown, ``{"cka": ..., "attention": ...}``).
    """
    if not models:
        raise ValueError("report_section needs at least one model")
    out_dir = Path(out_dir)
    root = Path(link_root) if link_root is not None else out_dir.parent
    paths = spread(list_images(images), max_images)
    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        cka = run_cka(models, paths, out_dir, pairs=pairs, pool="tokens", batch_size=batch_size, progress=progress)
        vits = {n: m for n, m in models.items() if isinstance(m, VisionTransformer)}
        attention = run_attention(vits, paths, out_dir, batch_size=min(batch_size, 16),
                                  progress=progress) if vits else None
    finally:
        for name, m in models.items():
            m.train(modes[name])

    lines = [f"Linear CKA between the layers as the paper compares them: whole token maps, the input of "
             f"each ViT block after its first LayerNorm plus the final norm's output (depth + 1 layers, "
             f"`embed` first; Hiera: block output maps), minibatch estimate with unbiased HSIC (Nguyen et al. "
             f"2021), over {cka['images']} images of `{images}`.", "",
             "| model A | model B | last layer vs last layer | same layer, mean over layers | "
             "B's layer closest to A's last |", "|---|---|---:|---:|---:|"]
    for pair in cka["pairs"]:
        matrix = pair["matrix"]
        last = matrix[-1][-1]
        diagonal = ([matrix[i][i] for i in range(len(matrix))] if len(matrix) == len(matrix[0]) else None)
        diagonal_mean = (None if diagonal is None or any(v is None for v in diagonal)
                         else sum(diagonal) / len(diagonal))
        row = [v if v is not None else -math.inf for v in matrix[-1]]
        closest = pair["layers_b"][max(range(len(row)), key=row.__getitem__)]
        lines.append(f"| {pair['a']} | {pair['b']} | {_fmt(last)} | {_fmt(diagonal_mean)} | {closest} |")
    lines.append("")
    lines += [f"![CKA {p['a']} vs {p['b']}]({_link(p['png'], root)})" for p in cka["pairs"]]
    if attention is not None:
        lines += ["", f"Attention of the patch queries per block and head over {attention['images']} images "
                  "(class-token key removed and the rest renormalised; distance in pixels of the model input, "
                  "entropy in nats), mean over heads:", "",
                  "| model | distance, first block | distance, last block | entropy, first block | "
                  "entropy, last block | attention on the class token, last block |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, s in attention["models"].items():
            mean = {k: [sum(h) / len(h) for h in s[k]] for k in ("distance_px", "entropy", "class_token_attention")}
            lines.append(f"| {name} | {_fmt(mean['distance_px'][0], 1)} | {_fmt(mean['distance_px'][-1], 1)} | "
                         f"{_fmt(mean['entropy'][0])} | {_fmt(mean['entropy'][-1])} | "
                         f"{_fmt(mean['class_token_attention'][-1], 3)} |")
        factor = {n: PAPER_DISTANCE_FACTOR / s["patch_size"] for n, s in attention["models"].items()}
        attention["figures"]["distance_panels"] = str(plot_attention_panels(
            attention["models"], "distance_px", "mean attention distance (patch units x 14)",
            out_dir / "attention_distance_panels.png", scale=factor))
        attention["figures"]["entropy_panels"] = str(plot_attention_panels(
            attention["models"], "entropy", "attention entropy (nats)", out_dir / "attention_entropy_panels.png"))
        lines += ["", "The paper's dot plots (x = layer, one dot per head, the star line the mean over heads; one "
                  f"panel per model). Distance in the paper's unit: patch-grid distance x {PAPER_DISTANCE_FACTOR:g} "
                  f"(MAE-Lite's analyzer multiplies patch units by {PAPER_DISTANCE_FACTOR:g}), i.e. the pixels of "
                  "the table above times " + ", ".join(sorted({f"{PAPER_DISTANCE_FACTOR:g}/{s['patch_size']}"
                                                                for s in attention["models"].values()})) + ":", "",
                  f"![attention distance]({_link(attention['figures']['distance_panels'], root)})", "",
                  f"![attention entropy]({_link(attention['figures']['entropy_panels'], root)})"]
    skipped = [n for n in models if not isinstance(models[n], VisionTransformer)]
    if skipped:
        lines += ["", f"Attention statistics cover plain ViTs only; left out: {', '.join(skipped)}."]
    return "\n".join(lines), {"cka": cka, "attention": attention}
