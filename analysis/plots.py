"""Figures of the analyses (matplotlib, Agg), written atomically at a fixed pixel size.

CKA: one heat map per model pair (layers of A on the y axis, of B on the x axis, 0..1).
Attention: the study's style, one dot per head at each block, a line through the head mean, one
colour per model, all models in one figure.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Sequence

from fileio import atomic_path

__all__ = ["FIGURE_PX", "file_stem", "plot_attention_metric", "plot_attention_panels", "plot_cka"]

DPI = 100
FIGURE_PX = {"cka": (560, 480), "attention": (720, 480)}  # (width, height) of the PNGs


def file_stem(name: str) -> str:
    """A model name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    plt = _pyplot()
    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return Path(path)


def plot_cka(matrix: Sequence[Sequence[float | None]], name_a: str, name_b: str, layers_a: Sequence[str],
             layers_b: Sequence[str], path: str | os.PathLike, title: str = "linear CKA") -> Path:
    """Heat map of a [layers_a, layers_b] CKA matrix (missing values blank)."""
    import numpy as np

    plt = _pyplot()
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    width, height = FIGURE_PX["cka"]
    fig, ax = plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI)
    image = ax.imshow(values, origin="lower", vmin=0.0, vmax=1.0, cmap="magma", aspect="auto",
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label="CKA")
    for axis, labels in ((ax.xaxis, layers_b), (ax.yaxis, layers_a)):
        step = max(1, len(labels) // 12)
        axis.set_ticks(range(0, len(labels), step))
        axis.set_ticklabels([re.sub(r"\D", "", s) or s for s in labels[::step]])
    ax.set_xlabel(f"{name_b}: {re.sub(r'[0-9]', '', layers_b[0])}")
    ax.set_ylabel(f"{name_a}: {re.sub(r'[0-9]', '', layers_a[0])}")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_attention_metric(summaries: Mapping[str, Mapping], key: str, ylabel: str, path: str | os.PathLike,
                          title: str = "") -> Path:
    """One dot per head at each block (x), a line through the head means; a colour per model."""
    import numpy as np

    plt = _pyplot()
    width, height = FIGURE_PX["attention"]
    fig, ax = plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    count = len(summaries)
    for m, (name, summary) in enumerate(summaries.items()):
        colour = colours[m % len(colours)]
        blocks = np.asarray(summary["blocks"], dtype=float)
        values = np.asarray(summary[key], dtype=float)  # [blocks, heads]
        shift = (m - (count - 1) / 2) * min(0.5 / count, 0.15)
        xs = np.repeat(blocks + shift, values.shape[1])
        ax.scatter(xs, values.reshape(-1), s=14, alpha=0.55, color=colour, linewidths=0)
        ax.plot(blocks + shift, values.mean(axis=1), color=colour, marker="o", markersize=4, label=name)
    ax.set_xlabel("block")
    ax.set_ylabel(ylabel)
    all_blocks = sorted({b for s in summaries.values() for b in s["blocks"]})
    ax.set_xticks(all_blocks)
    ax.set_ylim(bottom=0)
    ax.grid(True, linestyle=":", alpha=0.6)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_attention_panels(summaries: Mapping[str, Mapping], key: str, ylabel: str, path: str | os.PathLike,
                          scale: Mapping[str, float] | None = None, title: str = "") -> Path:
    """The paper's dot plot, one panel per model side by side (shared y axis): x = layer (block
    1..depth), one dot per head, a line through the head means. ``scale``: a factor per model that
    multiplies its values (a change of unit, e.g. pixels to the paper's distance units)."""
    import numpy as np

    plt = _pyplot()
    count = len(summaries)
    width, height = FIGURE_PX["attention"]
    fig, axes = plt.subplots(1, count, figsize=(max(width, 200 * count) / DPI, height / DPI), dpi=DPI,
                             sharey=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, (ax, (name, summary)) in enumerate(zip(axes[0], summaries.items())):
        colour = colours[m % len(colours)]
        layers = np.asarray(summary["blocks"], dtype=float) + 1
        values = np.asarray(summary[key], dtype=float) * (scale or {}).get(name, 1.0)  # [blocks, heads]
        ax.scatter(np.repeat(layers, values.shape[1]), values.reshape(-1), s=16, alpha=0.6, color=colour,
                   linewidths=0)
        ax.plot(layers, values.mean(axis=1), color="black", marker="*", markersize=8)
        ax.set_xticks(layers)
        ax.set_xlabel("layer")
        ax.set_title(name, fontsize=9)
        ax.grid(True, linestyle=":", alpha=0.6)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].set_ylim(bottom=0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
