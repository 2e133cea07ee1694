"""The study's pictures: the summary bars, the pre-training curves, segmentation overlays."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fileio import atomic_path

from .settings import SEG_CONFIG


def photo_palette() -> list[list[int]]:
    """The seg config's colour for each photo class."""
    from mmengine.config import Config

    return [list(c) for c in Config.fromfile(str(SEG_CONFIG)).photo_classes["palette"]]


def _savefig(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_summary(names: Sequence[str], probe: Mapping, seg: Mapping, track: Mapping, path: Path,
                 baseline_auc: float | None = None, scale: str = "all") -> Path:
    """Three bar panels (probe top-1 at ``scale`` with its standard deviation over seeds, mIoU, AUC
    with its standard error and the static-box floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    rows = {n: probe[n][scale] for n in names if scale in probe.get(n, {})}
    panels = [("linear probe top-1 (%)", {n: r["top1_mean"] for n, r in rows.items()},
               {n: r["top1_std"] if math.isfinite(r["top1_std"]) else 0.0 for n, r in rows.items()}),
              ("segmentation mIoU (%)", {n: seg[n]["mIoU"] for n in names if n in seg}, {}),
              ("tracking AUC (%)", {n: track[n]["AUC"] for n in names if n in track},
               {n: track[n]["AUC_standard_error"] for n in names if n in track})]
    for ax, (label, values, errors) in zip(axes, panels):
        keys = [n for n in names if n in values]
        ax.bar(range(len(keys)), [values[k] for k in keys],
               yerr=[errors.get(k, 0) or 0 for k in keys] if errors else None, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(keys)), keys, rotation=20, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(True, axis="y", linestyle=":")
    if baseline_auc is not None:
        axes[2].axhline(baseline_auc, color="#c44e52", linestyle="--", label="static box")
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    return _savefig(fig, path)


def plot_pretrain_losses(logs: Mapping[str, Path], path: Path) -> Path:
    """Pre-training curves against updates: the MAE term of every run, and (log scale) the
    distillation term of the distilled ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .drivers import train_records

    fig, (ax_mae, ax_attn) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, log in logs.items():
        records = train_records(log)
        updates = [r["update"] for r in records]
        ax_mae.plot(updates, [r.get("loss_mae", r["loss"]) for r in records], label=name)
        if any("loss_attn" in r for r in records):
            ax_attn.plot(updates, [r.get("loss_attn", math.nan) for r in records], label=name)
    ax_mae.set(xlabel="update", ylabel="MAE loss (norm-pix MSE)", title="masked-patch reconstruction")
    ax_attn.set(xlabel="update", ylabel="attention-logit MSE", yscale="log", title="distillation term")
    for ax in (ax_mae, ax_attn):
        ax.grid(True, linestyle=":")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _savefig(fig, path)


def seg_overlay_grid(ade_root: Path, preds: Mapping[str, Path], palette: Sequence[Sequence[int]], path: Path,
                     count: int = 4) -> Path:
    """Rows = the first ``count`` validation images; columns = image, ground truth, then each
    model's prediction, as colour overlays (ignored pixels show the bare image)."""
    import cv2

    from evaluation.miou import apply_reduce_zero_label, read_label_map
    from fileio import atomic_write_png
    from seg.visualize import overlay

    images = sorted((ade_root / "images" / "validation").glob("*.jpg"))[:count]
    rows = []
    for image_path in images:
        rgb = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = apply_reduce_zero_label(read_label_map(ade_root / "annotations" / "validation" / f"{image_path.stem}.png"))
        panels = [rgb, overlay(rgb, gt, palette)]
        for folder in preds.values():
            panels.append(overlay(rgb, apply_reduce_zero_label(read_label_map(folder / f"{image_path.stem}.png")),
                                  palette))
        size = (96, int(round(96 * rgb.shape[0] / rgb.shape[1])))
        panels = [cv2.resize(p, size, interpolation=cv2.INTER_NEAREST) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    header = np.full((14, width, 3), 255, np.uint8)
    for i, title in enumerate(["image", "ground truth", *preds]):
        cv2.putText(header, title.replace("²", "2")[:16], (96 * i + 2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([header] + [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                      for r in rows], axis=0)
    return atomic_write_png(path, grid)
