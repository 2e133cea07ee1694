"""Pictures of segmentation results: colour label maps, overlays, side-by-side panels, IoU charts.

Everything is RGB uint8; label maps are class indices of the evaluated space (ADE20K: after the
zero-label reduction, 0..149), with ``ignore_index`` (or any index without a palette colour) drawn
as "no label": black in :func:`colorize`, the untouched image in :func:`overlay`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from fileio import atomic_write_png


def ade20k_palette() -> np.ndarray:
    """ADE20K's 150 RGB colours from mmseg, as a [150, 3] uint8 array."""
    from mmseg.datasets import ADE20KDataset

    return np.asarray(ADE20KDataset.METAINFO["palette"], dtype=np.uint8)


def _as_palette(palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"palette must be [num_colours, 3], got shape {palette.shape}")
    return palette.astype(np.uint8)


def _labelled(label_map: np.ndarray, num_colours: int, ignore_index: int) -> np.ndarray:
    """[H, W] bool: pixels that carry a label with a palette colour."""
    return (label_map >= 0) & (label_map < num_colours) & (label_map != ignore_index)


def colorize(label_map: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]],
             ignore_index: int = 255) -> np.ndarray:
    """[H, W] class indices -> [H, W, 3] RGB; ignored or out-of-palette pixels are black."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {label_map.shape}")
    palette = _as_palette(palette)
    keep = _labelled(label_map, len(palette), ignore_index)
    rgb = np.zeros(label_map.shape + (3,), dtype=np.uint8)
    rgb[keep] = palette[label_map[keep].astype(np.int64)]
    return rgb


def overlay(image_rgb: np.ndarray, label_map: np.ndarray,
            palette: np.ndarray | Sequence[Sequence[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """Blend the label colours into the image: ``(1 - alpha) * image + alpha * colour``.

    Ignored pixels (and indices without a palette colour) keep the image colour exactly.
    """
    image_rgb = np.asarray(image_rgb)
    label_map = np.asarray(label_map)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image_rgb.shape}")
    if image_rgb.shape[:2] != label_map.shape:
        raise ValueError(f"image size {image_rgb.shape[:2]} differs from label map size "
                         f"{label_map.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    palette = _as_palette(palette)
    keep = _labelled(label_map, len(palette), ignore_index)
    out = image_rgb.astype(np.uint8, copy=True)
    colours = palette[label_map[keep].astype(np.int64)].astype(np.float32)
    blended = (1.0 - alpha) * image_rgb[keep].astype(np.float32) + alpha * colours
    out[keep] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out


def save_overlays(images: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                  gts: Sequence[np.ndarray] | None, out_dir: str | os.PathLike,
                  palette: np.ndarray | Sequence[Sequence[int]] | None = None,
                  names: Sequence[str] | None = None, alpha: float = 0.5,
                  ignore_index: int = 255) -> list[Path]:
    """Write one PNG panel per image: image | prediction overlay [| GT overlay], side by side.

    Args:
        images: RGB uint8 [H, W, 3] images.
        preds: predicted label maps [H, W] (evaluated class space).
        gts: GT label maps in the same space (already reduced for ADE20K), or None for 2 panels.
        out_dir: output folder.
        palette: [num_classes, 3] RGB colours; default ADE20K's.
        names: file stems (default ``000000``, ``000001`` ...).
    Returns:
        The written paths; each panel is [H, 3W, 3] (or [H, 2W, 3] without GT).
    """
    if palette is None:
        palette = ade20k_palette()
    if len(preds) != len(images) or (gts is not None and len(gts) != len(images)):
        raise ValueError(f"{len(images)} images, {len(preds)} predictions and "
                         f"{'no' if gts is None else len(gts)} GT maps: counts must match")
    if names is None:
        names = [f"{i:06d}" for i in range(len(images))]
    elif len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images")
    written = []
    for i, (image, pred) in enumerate(zip(images, preds)):
        panels = [np.asarray(image, dtype=np.uint8),
                  overlay(image, pred, palette, alpha, ignore_index)]
        if gts is not None:
            panels.append(overlay(image, gts[i], palette, alpha, ignore_index))
        written.append(atomic_write_png(Path(out_dir) / f"{names[i]}.png", np.concatenate(panels, 1)))
    return written
