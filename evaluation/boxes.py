"""Box overlap of x, y, w, h boxes: the one IoU implementation for both pixel conventions (numpy only)."""
from __future__ import annotations

import numpy as np

__all__ = ["box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of matching x, y, w, h boxes, arrays of shape (..., 4) broadcast against each other.

    ``plus_one=False``: continuous coordinates (a box covers ``[x, x + w)``), the overlap side is
    ``min(x2) - max(x1)`` clamped at 0. ``plus_one=True``: the LaSOT toolkit's convention, a box
    covers the pixels ``x .. x + w - 1`` and the overlap side is ``min(x + w - 1) - max(x) + 1``
    clamped at 0. Areas are plain ``w * h`` in both, so the two agree up to rounding (the toolkit's
    -1 and +1 cancel); ``plus_one`` follows the toolkit's arithmetic literally. 0 / 0 (two empty
    boxes) gives NaN, which never passes a threshold.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1:] != (4,) or b.shape[-1:] != (4,):
        raise ValueError(f"boxes must have 4 values (x, y, w, h) in the last axis, got {a.shape} and {b.shape}")
    extra = 1.0 if plus_one else 0.0
    top_left = np.maximum(a[..., :2], b[..., :2])
    bottom_right = np.minimum(a[..., :2] + a[..., 2:] - extra, b[..., :2] + b[..., 2:] - extra)
    sides = np.clip(bottom_right - top_left + extra, 0, None)
    intersection = sides[..., 0] * sides[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union
