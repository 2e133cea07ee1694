"""ImageNet-layout image folders, MAE / fine-tuning transforms, and a generator of test folders.

Layout: ``root/<split>/<class>/<image>.JPEG`` (any of .jpeg/.jpg/.png/.bmp/.webp, any case),
classes sorted by folder name.  Images are decoded for real (PIL); one that cannot be read is
skipped, never a crash: the dataset hands back a :class:`SkippedImage` that
:func:`collate_skipping` drops from the batch and reports by path, so the trainer can count and
log it.

Every sample's random augmentation is seeded from (seed, epoch, index), so the images a run sees
do not depend on the number of loader workers, on the rank layout, or on where a run was resumed.
"""
from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms
from torchvision.transforms import InterpolationMode

__all__ = ["ImageFolderDataset", "SkippedImage", "Batch", "collate_skipping", "mae_train_transform",
           "finetune_train_transform", "eval_transform", "make_imagenet_folder", "SkipSampler",
           "seeded_random_state", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SkippedImage(NamedTuple):
    """An image that could not be decoded: its path and why."""

    path: str
    reason: str


class Batch(NamedTuple):
    images: torch.Tensor | None  # [B, 3, H, W], None if every image of the batch was unreadable
    labels: torch.Tensor | None  # [B]
    skipped: list[SkippedImage]


@contextlib.contextmanager
def seeded_random_state(seed: int) -> Iterator[None]:
    """Seed torch, numpy and python RNGs for a block, restoring the caller's states afterwards.

    torchvision transforms draw from torch, timm's RandAugment from python and numpy.
    """
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ImageFolderDataset(Dataset):
    """Images under ``root/<split>/<class>/`` with integer labels (sorted class order).

    Args:
        root: dataset root holding ``<split>`` folders.
        split: e.g. ``"train"`` or ``"val"``.
        transform: applied to the decoded RGB PIL image.
        seed: base seed of the per-sample augmentation RNG.
        classes: class folder names to use (default: every folder of the split, sorted);
            pass the training classes to a validation set so labels agree.
    """

    def __init__(self, root: str | os.PathLike, split: str, transform: Callable | None = None, seed: int = 0,
                 classes: Sequence[str] | None = None) -> None:
        folder = Path(root) / split
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {folder} "
                                    f"(expected {Path(root)}/{split}/<class>/<image>.JPEG)")
        found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        if classes is None:
            classes = found
        else:
            missing = sorted(set(classes) - set(found))
            if missing:
                raise FileNotFoundError(f"{folder}: class folders missing: {missing[:8]}")
        if not classes:
            raise ValueError(f"{folder}: no class folders (expected {folder}/<class>/<image>.JPEG)")
        self.root, self.split, self.folder = Path(root), split, folder
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for cls in self.classes:
            names = sorted(e.name for e in os.scandir(folder / cls)
                           if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
            self.samples += [(str(folder / cls / n), self.class_to_idx[cls]) for n in names]
        if not self.samples:
            raise ValueError(f"{folder}: no images ({', '.join(IMG_EXTENSIONS)}) in its {len(self.classes)} "
                             f"class folder(s)")
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's augmentation draws (call before creating the epoch's loader iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | SkippedImage:
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")  # forces the full decode: truncated files fail here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return SkippedImage(path, f"{type(e).__name__}: {e}")
        if self.transform is not None:
            with seeded_random_state(_sample_seed(self.seed, self.epoch, index)):
                img = self.transform(img)
        return img, label


def collate_skipping(samples: Sequence[tuple[torch.Tensor, int] | SkippedImage]) -> Batch:
    """Stack the decodable samples; report the rest by path."""
    good = [s for s in samples if not isinstance(s, SkippedImage)]
    skipped = [s for s in samples if isinstance(s, SkippedImage)]
    if not good:
        return Batch(None, None, skipped)
    images = torch.stack([img for img, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.long)
    return Batch(images, labels, skipped)


class SkipSampler(Sampler):
    """Yields a sampler's indices after dropping the first ``skip`` (resuming inside an epoch)."""

    def __init__(self, sampler: Sampler, skip: int = 0) -> None:
        self.sampler, self.skip = sampler, skip

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        yield from it

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def mae_train_transform(img_size: int = 224, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5) -> transforms.Compose:
    """MAE-Lite pre-training augmentation: RandomResizedCrop (bicubic) + horizontal flip, nothing else."""
    return transforms.Compose([
        transforms.RandomResizedCrop(img_size, scale=tuple(scale), ratio=tuple(ratio),
                                     interpolation=InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(hflip),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def finetune_train_transform(img_size: int = 224, auto_augment: str | None = "rand-m10-mstd0.5",
                             color_jitter: float | None = 0.3, re_prob: float = 0.0,
                             interpolation: str = "bicubic", scale: tuple[float, float] | None = None,
                             hflip: float = 0.5) -> Callable:
    """Fine-tuning augmentation through timm's ``create_transform``.

    As in the reference (and timm), the colour jitter is not applied while RandAugment is on.
    """
    from timm.data import create_transform

    return create_transform(img_size, is_training=True, auto_augment=auto_augment, color_jitter=color_jitter,
                            re_prob=re_prob, interpolation=interpolation, scale=scale, hflip=hflip,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)


def eval_transform(img_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bicubic") -> Callable:
    """Resize the short side to img_size / crop_pct, centre crop img_size (timm's eval transform)."""
    from timm.data import create_transform

    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)


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


def main(argv: list[str] | None = None) -> None:
    """``python -m pretrain.data OUT [--classes 4 --per-class 16 --size 80]``: write a demo folder."""
    import argparse

    parser = argparse.ArgumentParser(description="write a small ImageNet-layout folder of generated JPEGs")
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--val-per-class", type=int, default=4)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = make_imagenet_folder(args.out, args.classes, args.per_class, args.size, args.seed,
                                val_per_class=args.val_per_class)
    print(f"wrote {info['counts']} images of {len(info['classes'])} classes under {info['root']}")


if __name__ == "__main__":
    main()
