"""Images for the analyses: any folder of images (ImageNet layout or flat), any size.

Every image is decoded once and turned into one tensor per model input size by the evaluation
transform of fine-tuning (resize the short side to ``size / 0.875``, centre crop ``size``,
ImageNet normalisation), so models with different input sizes see the same crop of each image.
An image that cannot be decoded is skipped and reported by path, as in pre-training.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pretrain.data import IMAGENET_MEAN, IMAGENET_STD, IMG_EXTENSIONS, SkippedImage, eval_transform

__all__ = ["ImageBatch", "ImageList", "even_batches", "image_loader", "list_images", "spread", "to_rgb_uint8"]

Size = tuple[int, int]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file below ``folder`` (sub-folders and symbolic links followed), sorted by path."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"--images must be a folder, got a file: {folder}")
    paths = [Path(root) / name
             for root, _, names in os.walk(folder, followlinks=True)
             for name in names if name.lower().endswith(IMG_EXTENSIONS)]
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in it or its sub-folders")
    return sorted(paths, key=lambda p: p.relative_to(folder).as_posix())


def spread(paths: Sequence[Path], max_images: int | None) -> list[Path]:
    """At most ``max_images`` paths evenly spaced over the sorted list, so that an ImageNet-layout
    folder contributes images of many classes rather than the first class only."""
    if max_images is None or max_images >= len(paths):
        return list(paths)
    if max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {max_images}")
    index = np.unique(np.linspace(0, len(paths) - 1, max_images).round().astype(int))
    return [paths[i] for i in index]


class ImageBatch(NamedTuple):
    indices: list[int]  # positions in the image list of the decoded images, in batch order
    images: dict[Size, torch.Tensor]  # input size -> [B, 3, H, W] normalised
    skipped: list[SkippedImage]


class ImageList(Dataset):
    """Decoded RGB images of a path list, each as ``{size: normalised [3, H, W] tensor}``."""

    def __init__(self, paths: Sequence[str | os.PathLike], sizes: Sequence[Size]) -> None:
        self.paths = [str(p) for p in paths]
        self.transforms = {tuple(s): eval_transform(tuple(s)) for s in sizes}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, dict[Size, torch.Tensor]] | SkippedImage:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")  # full decode: truncated files fail here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return SkippedImage(path, f"{type(e).__name__}: {e}")
        return index, {size: transform(img) for size, transform in self.transforms.items()}


def _collate(samples: Sequence[tuple[int, dict[Size, torch.Tensor]] | SkippedImage]) -> ImageBatch:
    good = [s for s in samples if not isinstance(s, SkippedImage)]
    skipped = [s for s in samples if isinstance(s, SkippedImage)]
    sizes = good[0][1].keys() if good else ()
    return ImageBatch([i for i, _ in good], {s: torch.stack([t[s] for _, t in good]) for s in sizes}, skipped)


def even_batches(count: int, batch_size: int) -> list[list[int]]:
    """Consecutive index batches of near-equal size, none larger than ``batch_size``
    (65 images at 64 -> 32 + 33, never 64 + 1: minibatch CKA needs at least 4 per batch)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    num = -(-count // batch_size)
    bounds = np.linspace(0, count, num + 1).round().astype(int)
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def image_loader(paths: Sequence[Path], sizes: Sequence[Size], batch_size: int, workers: int = 0) -> DataLoader:
    """Batches (:class:`ImageBatch`) of the images in order, decoded in ``workers`` processes."""
    return DataLoader(ImageList(paths, sizes), batch_sampler=even_batches(len(paths), batch_size),
                      num_workers=workers, collate_fn=_collate)


def to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """Normalised [3, H, W] tensor -> [H, W, 3] uint8 RGB (what the model saw, for overlays)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
