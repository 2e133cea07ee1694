"""A tiny synthetic dataset in ADE20K's on-disk layout, for tests and smoke runs of segmentation.

    <root>/ADEChallengeData2016/images/training/ADE_train_00000001.jpg
    <root>/ADEChallengeData2016/annotations/training/ADE_train_00000001.png
    ... validation/ADE_val_00000001.{jpg,png}

Annotations are uint8 PNGs with ADE20K's raw encoding: 0 = "other", classes 1..num_classes.
The images are learnable: only a few classes appear, laid out as wavy horizontal bands plus
ellipses and polygons, with some "other" regions in between, so a tiny model can fit them.
Two sources paint the classes:

* ``photos=None`` (default): a few random labels of the 150, each with its own colour and
  texture (stripes, checkerboard, dots, ...);
* ``photos=[name, ...]``: label ``k`` (1-based) is the k-th photo of :mod:`.photos`, every region
  of it filled with a random crop of that photograph (training images crop the photos' training
  regions, validation images their held-out regions), so segmenting needs the photos' texture and
  appearance, not a colour look-up.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fileio import atomic_write_bytes

from .photos import photo_region, random_crop

ADE_DIRNAME = "ADEChallengeData2016"
SPLITS = {"training": "ADE_train", "validation": "ADE_val"}
TEXTURES = ("stripes", "checker", "dots", "rings", "plain", "grid")


def demo_classes(seed: int = 0, num_classes: int = 150, count: int = 5) -> list[int]:
    """The raw labels (in ``1..num_classes``) the dataset of this seed paints, sorted."""
    if not 1 <= count <= num_classes:
        raise ValueError(f"count must be in [1, {num_classes}], got {count}")
    rng = np.random.default_rng([seed, 0xADE])
    return sorted(int(c) for c in rng.choice(np.arange(1, num_classes + 1), count, replace=False))


def _class_appearance(index: int, count: int, seed: int) -> dict:
    """Colour (BGR) and texture of the ``index``-th painted class: hues spread round the wheel."""
    rng = np.random.default_rng([seed, 0xC01, index])
    hue = int((180 * index / count + rng.uniform(-6, 6)) % 180)
    hsv = np.array([[[hue, 200, 210]]], dtype=np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    return {"colour": colour, "texture": TEXTURES[index % len(TEXTURES)],
            "period": float(rng.uniform(6, 12)), "angle": float(rng.uniform(0, np.pi))}


def _texture(kind: str, period: float, angle: float, height: int, width: int) -> np.ndarray:
    """A [H, W] pattern in [0, 1] of the given kind."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == "dots":
        return ((np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)) > 0.5
                ).astype(np.float32)
    if kind == "rings":
        return 0.5 + 0.5 * np.cos(2 * np.pi * np.hypot(x - width / 2, y - height / 2) / period)
    if kind == "grid":
        return ((np.abs(np.sin(np.pi * u / period)) < 0.3) | (np.abs(np.sin(np.pi * v / period))
                                                              < 0.3)).astype(np.float32)
    return np.full((height, width), 0.5, dtype=np.float32)


def _draw_layout(rng: np.random.Generator, labels: list[int], height: int,
                 width: int) -> np.ndarray:
    """A [H, W] uint8 raw label map: wavy bands, then ellipses / polygons, one "other" (0) shape."""
    layout = np.zeros((height, width), dtype=np.uint8)
    choices = labels + [0]
    cuts = np.sort(rng.uniform(0.2, 0.8, size=int(rng.integers(1, 3)))) * height
    y, x = np.mgrid[0:height, 0:width]
    band = np.zeros((height, width), dtype=np.int64)
    for cut in cuts:
        wave = cut + rng.uniform(3, 10) * np.sin(2 * np.pi * x / rng.uniform(40, 120)
                                                  + rng.uniform(0, 2 * np.pi))
        band += (y > wave).astype(np.int64)
    band_labels = rng.choice(labels, size=len(cuts) + 1)
    layout[:] = np.asarray(band_labels, dtype=np.uint8)[band]

    shape_labels = list(rng.choice(choices, size=int(rng.integers(2, 5)))) + [0]
    for label in shape_labels:
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        radius = rng.uniform(0.12, 0.3) * min(width, height)
        if rng.random() < 0.5:
            axes = (int(radius), int(radius * rng.uniform(0.5, 1.0)))
            cv2.ellipse(layout, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360,
                        int(label), thickness=-1)
        else:
            corners = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            radii = radius * rng.uniform(0.6, 1.2, corners)
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
            cv2.fillPoly(layout, [np.round(points).astype(np.int32)], int(label))
    return layout


def render_sample(seed: int, split: str, index: int, size: tuple[int, int] = (160, 120),
                  num_classes: int = 150) -> tuple[np.ndarray, np.ndarray]:
    """One (BGR uint8 image [H, W, 3], raw uint8 label map [H, W]) pair, deterministic by its key.

    Each image has its own generator (seeded by seed, split, index), so adding images leaves the
    earlier ones unchanged. Its size varies by up to +-15% around ``size`` = (W, H).
    """
    labels = demo_classes(seed, num_classes)
    rng = np.random.default_rng([seed, list(SPLITS).index(split), index])
    width = max(16, int(round(size[0] * rng.uniform(0.85, 1.15))))
    height = max(16, int(round(size[1] * rng.uniform(0.85, 1.15))))
    layout = _draw_layout(rng, labels, height, width)

    image = np.empty((height, width, 3), dtype=np.float32)
    other = 90 + 40 * rng.random((height // 4 + 1, width // 4 + 1)).astype(np.float32)
    image[layout == 0] = cv2.resize(other, (width, height), interpolation=cv2.INTER_NEAREST
                                    )[layout == 0][:, None]
    for index_in_set, label in enumerate(labels):
        mask = layout == label
        if not mask.any():
            continue
        look = _class_appearance(index_in_set, len(labels), seed)
        pattern = _texture(look["texture"], look["period"], look["angle"], height, width)[mask]
        shade = 0.55 + 0.45 * pattern[:, None]
        image[mask] = look["colour"][None, :] * shade
    image *= rng.uniform(0.85, 1.15)
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), layout


def render_photo_sample(seed: int, split: str, index: int, photos: Sequence[str],
                        size: tuple[int, int] = (128, 96)) -> tuple[np.ndarray, np.ndarray]:
    """One (BGR image, raw label map) pair whose class ``k`` (1-based) shows photo ``photos[k-1]``.

    Same layouts as :func:`render_sample`; each present class is filled with one crop of its
    photo (10-60 % of the region's area, so texture stays visible at this size); "other" keeps
    the grey blocks. Validation images crop the photos' held-out regions.
    """
    labels = list(range(1, len(photos) + 1))
    rng = np.random.default_rng([seed, list(SPLITS).index(split), index, 0xF07])
    width = max(16, int(round(size[0] * rng.uniform(0.85, 1.15))))
    height = max(16, int(round(size[1] * rng.uniform(0.85, 1.15))))
    layout = _draw_layout(rng, labels, height, width)
    region = "train" if split == "training" else "heldout"
    image = np.empty((height, width, 3), dtype=np.uint8)
    other = (90 + 40 * rng.random((height // 4 + 1, width // 4 + 1))).astype(np.uint8)
    image[layout == 0] = cv2.resize(other, (width, height), interpolation=cv2.INTER_NEAREST
                                    )[layout == 0][:, None]
    for label in labels:
        mask = layout == label
        if mask.any():
            crop = random_crop(rng, photo_region(photos[label - 1], region), (width, height), (0.1, 0.6))
            image[mask] = crop[mask]
    noisy = image.astype(np.float32) + rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8), layout


def make_ade20k_dataset(root: str | os.PathLike, num_train: int = 8, num_val: int = 4,
                        size: tuple[int, int] = (160, 120), num_classes: int = 150,
                        seed: int = 0, photos: Sequence[str] | None = None) -> Path:
    """Write the synthetic dataset under ``root`` and return ``root/ADEChallengeData2016``.

    Args:
        root: output folder (created; existing files of the same names are overwritten).
        num_train / num_val: images in the training / validation split.
        size: nominal (W, H); each image varies by up to +-15%.
        num_classes: classes of the raw label space (labels ``1..num_classes``, 0 = other).
        seed: everything is deterministic given the seed.
        photos: paint these photographs (:data:`.photos.PHOTOS` names) as classes
            ``1..len(photos)`` instead of textures (``len(photos) <= num_classes``).
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"image counts must be >= 0, got {num_train} and {num_val}")
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in [1, 255] (uint8 annotations), got {num_classes}")
    if photos is not None and not 1 <= len(photos) <= num_classes:
        raise ValueError(f"{len(photos)} photos do not fit the {num_classes} classes")
    data_root = Path(root) / ADE_DIRNAME
    for split, count in (("training", num_train), ("validation", num_val)):
        image_dir = data_root / "images" / split
        label_dir = data_root / "annotations" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for index in range(1, count + 1):
            image, label = (render_sample(seed, split, index, size, num_classes) if photos is None
                            else render_photo_sample(seed, split, index, photos, size))
            stem = f"{SPLITS[split]}_{index:08d}"
            ok_jpg, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            ok_png, png = cv2.imencode(".png", label)
            if not (ok_jpg and ok_png):
                raise RuntimeError(f"OpenCV failed to encode {stem}")
            atomic_write_bytes(image_dir / f"{stem}.jpg", jpg.tobytes())
            atomic_write_bytes(label_dir / f"{stem}.png", png.tobytes())
    return data_root
