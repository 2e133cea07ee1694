"""Intersection over union of axis-aligned boxes given as x, y, w, h (numpy, any leading shape)."""
from __future__ import annotations

import numpy as np

__all__ = ["box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching boxes of two (..., 4) x, y, w, h arrays (broadcast against each other).

    One function serves both conventions in use: the LaSOT toolkit counts pixels (a box covers columns
    x .. x + w - 1, overlap side ``min(xy + wh - 1) - max(xy) + 1``) but keeps plain ``w * h`` areas, and
    its -1 and +1 cancel, so its IoU equals the continuous one computed here (a box covers [x, x + w)).
    0 / 0 gives NaN, which passes no threshold.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1:] != (4,) or b.shape[-1:] != (4,):
        raise ValueError(f"boxes must be (..., 4) arrays x, y, w, h; got shapes {a.shape} and {b.shape}")
    sides = np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:]) - np.maximum(a[..., :2], b[..., :2])
    intersection = np.prod(np.clip(sides, 0, None), axis=-1)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union
