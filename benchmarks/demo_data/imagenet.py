"""A small ImageNet-layout folder of generated JPEG images (``<root>/<split>/<class>/*.JPEG``), for tests
and seconds-long demo runs of the pre-training configs (``tools/make_imagenet_demo.py``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["make_imagenet_folder"]


def _class_image(rng: np.random.Generator, cls: int, num_classes: int, size: int) -> np.ndarray:
    """A BGR image whose colour and stripe orientation depend on the class, plus clutter."""
    import cv2

    hue = int(180 * cls / max(1, num_classes))
    angle = np.pi * cls / max(1, num_classes)
    period = 6 + 2 * (cls % 4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + phase)
    hsv = np.empty((size, size, 3), np.uint8)
    hsv[..., 0] = (hue + rng.integers(-6, 7)) % 180
    hsv[..., 1] = (120 + 100 * stripes).astype(np.uint8)
    hsv[..., 2] = (80 + 150 * stripes).astype(np.uint8)
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    for _ in range(int(rng.integers(1, 4))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, centre, int(rng.integers(size // 16 + 1, size // 4 + 2)), colour, -1)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def make_imagenet_folder(root: str | os.PathLike, classes: int | Sequence[str] = 4, per_class: int = 8,
                         size: int = 64, seed: int = 0, splits: Sequence[str] = ("train", "val"),
                         val_per_class: int | None = None) -> dict[str, Any]:
    """Write a small ImageNet-layout folder of real JPEG files (OpenCV) for tests and demos.

    Class ``k`` has its own hue and stripe orientation, so classifiers can learn it.  Returns
    ``{"root", "classes", "counts": {split: images}}``.
    """
    import cv2

    names = [f"n{k:08d}" for k in range(classes)] if isinstance(classes, int) else list(classes)
    if not names or per_class < 1:
        raise ValueError("make_imagenet_folder needs at least one class and one image per class")
    rng = np.random.default_rng(seed)
    counts = {}
    for split in splits:
        n = per_class if split == splits[0] or val_per_class is None else val_per_class
        for k, name in enumerate(names):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                path = folder / f"{name}_{split}_{i:05d}.JPEG"
                if not cv2.imwrite(str(path), _class_image(rng, k, len(names), size), [cv2.IMWRITE_JPEG_QUALITY, 90]):
                    raise OSError(f"could not write {path}")
        counts[split] = n * len(names)
    return {"root": str(root), "classes": names, "counts": counts}
