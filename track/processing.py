"""Crops, box mappings and image normalisation shared by tracker training and inference.

Coordinates: boxes are ``(x, y, w, h)`` in continuous image pixels (the left edge of pixel
column 0 is x = 0), as OSTrack treats LaSOT boxes. A crop of ``factor`` times the target's
geometric-mean size is cut around the box centre, zero-padded where it leaves the image and
resized to ``out_size`` (OSTrack's ``sample_target``). Network outputs are boxes normalised to
the crop: ``(cx, cy, w, h)`` in [0, 1] of the crop side.

Box conversions work on numpy arrays and torch tensors alike (last dimension = 4).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence, TypeVar

import cv2
import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

BoxArray = TypeVar("BoxArray", np.ndarray, torch.Tensor)


# ---------------------------------------------------------------------------- box conversions

def _stack(parts: Sequence, like: BoxArray) -> BoxArray:
    if isinstance(like, torch.Tensor):
        return torch.stack(list(parts), dim=-1)
    return np.stack(parts, axis=-1)


def _as_boxes(boxes) -> np.ndarray | torch.Tensor:
    if isinstance(boxes, (np.ndarray, torch.Tensor)):
        return boxes
    return np.asarray(boxes, dtype=np.float64)


def box_xywh_to_cxcywh(boxes: BoxArray) -> BoxArray:
    """``(x, y, w, h)`` -> ``(cx, cy, w, h)``."""
    b = _as_boxes(boxes)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([x + 0.5 * w, y + 0.5 * h, w, h], b)


def box_cxcywh_to_xywh(boxes: BoxArray) -> BoxArray:
    """``(cx, cy, w, h)`` -> ``(x, y, w, h)``."""
    b = _as_boxes(boxes)
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([cx - 0.5 * w, cy - 0.5 * h, w, h], b)


def box_cxcywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    b = _as_boxes(boxes)
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], b)


def box_xyxy_to_cxcywh(boxes: BoxArray) -> BoxArray:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``."""
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1], b)


def box_xywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """``(x, y, w, h)`` -> ``(x1, y1, x2, y2)``."""
    b = _as_boxes(boxes)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([x, y, x + w, y + h], b)


def box_xyxy_to_xywh(boxes: BoxArray) -> BoxArray:
    """``(x1, y1, x2, y2)`` -> ``(x, y, w, h)``."""
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack([x1, y1, x2 - x1, y2 - y1], b)


# ---------------------------------------------------------------------------- crop geometry

class CropBox(NamedTuple):
    """Square crop window in image pixels: top-left corner and side (may leave the image)."""

    x1: int
    y1: int
    side: int


class Crop(NamedTuple):
    """Result of ``crop_and_resize``; unpacks as ``crop, scale, crop_box``.

    ``image``: the resized crop (out_size, out_size, C) uint8; ``scale``: out_size / crop side
    (crop pixels per image pixel); ``crop_box``: the window cut from the image.
    """

    image: np.ndarray
    scale: float
    crop_box: CropBox


def jittered_box(box_xywh: Sequence[float], jitter_center: Sequence[float] | None = None,
                 jitter_scale: Sequence[float] | None = None) -> tuple[float, float, float, float]:
    """Apply the training jitter of OSTrack's sampler to a box (x, y, w, h).

    ``jitter_scale = (sx, sy)`` multiplies w and h; ``jitter_center = (dx, dy)`` then moves the
    centre by ``(dx, dy) * sqrt(w' h')`` with the jittered size ``w', h'``. ``random_jitter``
    draws both as OSTrack does.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    if jitter_scale is not None:
        w, h = w * float(jitter_scale[0]), h * float(jitter_scale[1])
    if jitter_center is not None:
        size = math.sqrt(max(w * h, 0.0))
        cx, cy = cx + float(jitter_center[0]) * size, cy + float(jitter_center[1]) * size
    return cx - 0.5 * w, cy - 0.5 * h, w, h


def random_jitter(rng: np.random.Generator, center_factor: float = 3.0,
                  scale_factor: float = 0.25) -> tuple[tuple[float, float], tuple[float, float]]:
    """Draw ``(jitter_center, jitter_scale)`` for ``crop_and_resize`` (search-region jitter).

    Sizes scale by ``exp(N(0, 1) * scale_factor)`` per axis; the centre moves by
    ``center_factor * U(-0.5, 0.5)`` per axis, in units of the jittered ``sqrt(w h)``.
    """
    scale = np.exp(rng.standard_normal(2) * scale_factor)
    center = center_factor * (rng.random(2) - 0.5)
    return (float(center[0]), float(center[1])), (float(scale[0]), float(scale[1]))


def crop_window(box_xywh: Sequence[float], factor: float,
                jitter_center: Sequence[float] | None = None,
                jitter_scale: Sequence[float] | None = None) -> CropBox:
    """The square window OSTrack's ``sample_target`` cuts around a (jittered) box.

    Side = ``ceil(sqrt(w h) * factor)``; top-left = ``round(centre - side / 2)``.
    Raises ValueError for a non-finite box or one whose crop would be empty.
    """
    x, y, w, h = jittered_box(box_xywh, jitter_center, jitter_scale)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box is not finite: {tuple(box_xywh)}")
    if w <= 0 or h <= 0:
        raise ValueError(f"box needs a positive width and height, got {tuple(box_xywh)}")
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        raise ValueError(f"crop of box {tuple(box_xywh)} with factor {factor} is empty")
    x1 = round(x + 0.5 * w - 0.5 * side)
    y1 = round(y + 0.5 * h - 0.5 * side)
    return CropBox(int(x1), int(y1), int(side))


def crop_visible_fraction(crop_box: CropBox, image_shape: Sequence[int]) -> float:
    """Fraction of the crop window that lies inside an image of shape (H, W, ...); 0 = all padding."""
    height, width = int(image_shape[0]), int(image_shape[1])
    x1, y1, side = crop_box
    inside_w = max(0, min(x1 + side, width) - max(x1, 0))
    inside_h = max(0, min(y1 + side, height) - max(y1, 0))
    return inside_w * inside_h / float(side * side)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) / (H, W, 1) -> 3 channels; RGBA -> RGB; RGB unchanged (no copy)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    raise ValueError(f"expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                     f"got shape {image.shape}")


def crop_and_resize(image: np.ndarray, box_xywh: Sequence[float], factor: float, out_size: int,
                    jitter_center: Sequence[float] | None = None,
                    jitter_scale: Sequence[float] | None = None,
                    out: np.ndarray | None = None) -> Crop:
    """Cut the ``factor``-times context window around a box, zero-pad, resize to ``out_size``.

    Same window as OSTrack's ``sample_target`` (see ``crop_window``). The crop and the resize
    are one ``cv2.warpAffine`` (bilinear, constant zero border) mapping pixel centres as
    ``cv2.resize`` does, so only the ``out_size**2`` output pixels are computed however large the
    window is (no padded copy of the image). Grayscale and RGBA images are turned into RGB.

    Args:
        image: uint8 (H, W, 3) RGB, or (H, W) / (H, W, 1) / (H, W, 4).
        box_xywh: target box in image pixels.
        factor: context factor (2 for the template, 4 for the search region).
        out_size: side of the output crop in pixels.
        jitter_center, jitter_scale: optional training jitter (see ``jittered_box``).
        out: optional preallocated (out_size, out_size, 3) uint8 array to write into.

    Returns:
        ``Crop(image, scale, crop_box)``.
    """
    image = _as_rgb(np.asarray(image))
    crop_box = crop_window(box_xywh, factor, jitter_center, jitter_scale)
    scale = out_size / crop_box.side
    # inverse map (output pixel -> image pixel), pixel centres aligned like cv2.resize:
    # x_img = (u + 0.5) / scale - 0.5 + x1
    inv = 1.0 / scale
    matrix = np.array([[inv, 0.0, crop_box.x1 + 0.5 * inv - 0.5],
                       [0.0, inv, crop_box.y1 + 0.5 * inv - 0.5]], dtype=np.float64)
    if out is None:
        out = np.empty((out_size, out_size, 3), dtype=np.uint8)
    cv2.warpAffine(image, matrix, (out_size, out_size), dst=out,
                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return Crop(out, scale, crop_box)


# ---------------------------------------------------------------------------- box mapping

def map_box_to_crop(box_xywh: Sequence[float], crop_box: CropBox, out_size: int,
                    normalised: bool = True) -> np.ndarray:
    """A box in image pixels -> the same box in crop coordinates.

    Returns ``(cx, cy, w, h)`` normalised to the crop side when ``normalised`` (the network's
    target), else ``(x, y, w, h)`` in output-crop pixels.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    x1, y1, side = crop_box
    if normalised:
        return np.array([(x + 0.5 * w - x1) / side, (y + 0.5 * h - y1) / side,
                         w / side, h / side], dtype=np.float64)
    scale = out_size / side
    return np.array([(x - x1) * scale, (y - y1) * scale, w * scale, h * scale], dtype=np.float64)


def map_crop_box_to_image(box_cxcywh_normalised: Sequence[float], crop_box: CropBox) -> np.ndarray:
    """A box normalised to the crop, ``(cx, cy, w, h)`` -> ``(x, y, w, h)`` in image pixels."""
    cx, cy, w, h = (float(v) for v in box_cxcywh_normalised)
    x1, y1, side = crop_box
    return np.array([x1 + (cx - 0.5 * w) * side, y1 + (cy - 0.5 * h) * side,
                     w * side, h * side], dtype=np.float64)


def clip_box(box_xywh: Sequence[float], image_height: int, image_width: int,
             margin: float = 10.0) -> np.ndarray:
    """Clip a box to the image keeping at least ``margin`` pixels of it inside (OSTrack's clip_box).

    The top-left corner is clamped to [0, W - margin], the bottom-right to [margin, W] (same for
    y), and width / height are at least ``margin``: a box that left the image keeps a
    ``margin``-pixel sliver at the border, so the next search crop still sees the image.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    x2, y2 = x + w, y + h
    x1c = min(max(0.0, x), image_width - margin)
    x2c = max(min(float(image_width), x2), margin)
    y1c = min(max(0.0, y), image_height - margin)
    y2c = max(min(float(image_height), y2), margin)
    return np.array([x1c, y1c, max(margin, x2c - x1c), max(margin, y2c - y1c)], dtype=np.float64)


# ---------------------------------------------------------------------------- images, windows

def normalise(images: np.ndarray | torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 RGB images (H, W, 3) or (B, H, W, 3) -> float32 (3, H, W) / (B, 3, H, W), ImageNet-normalised.

    ``out`` (same shape as the result, float32) avoids an allocation per call in the tracker.
    """
    data = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if data.ndim not in (3, 4) or data.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3) or (B, H, W, 3), got {tuple(data.shape)}")
    chw = data.permute(2, 0, 1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    shape = (3, 1, 1) if data.ndim == 3 else (1, 3, 1, 1)
    # (x / 255 - mean) / std == x * a + b with a = 1 / (255 std), b = -mean / std
    scale = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_DEFAULT_STD]).view(shape)
    shift = torch.tensor([-m / s for m, s in zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)]).view(shape)
    if out is None:
        out = torch.empty(chw.shape, dtype=torch.float32)
    out.copy_(chw)
    return out.mul_(scale).add_(shift)


def hann_window(n: int) -> torch.Tensor:
    """OSTrack's Hann window ``0.5 (1 - cos(2 pi k / (n + 1)))`` for k = 1..n (float32, (n,)).

    This is not ``np.hanning(n)`` (which is zero at both ends): no entry is zero here.
    """
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return (0.5 * (1.0 - torch.cos(2.0 * math.pi * k / (n + 1)))).float()


def hann_window_2d(n: int) -> torch.Tensor:
    """Outer product of ``hann_window(n)`` with itself, (n, n)."""
    window = hann_window(n)
    return window[:, None] * window[None, :]
