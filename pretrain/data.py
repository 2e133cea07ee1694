"""ImageNet-layout image folders, MAE / MoCo-v3 / fine-tuning transforms.

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
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.transforms import InterpolationMode

__all__ = ["ImageFolderDataset", "SkippedImage", "Batch", "collate_skipping", "mae_train_transform",
           "mocov3_train_transform", "TwoViews", "finetune_train_transform", "eval_transform",
           "seeded_random_state", "seeded_transform", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


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

    torchvision transforms draw from torch, timm's RandAugment from python and numpy. Only the CPU torch
    generator is seeded (``torch.manual_seed`` would also reseed every GPU's, which the training step
    draws its masks from when images load in the main process).
    """
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
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


def seeded_transform(transform: Callable | None, img: Image.Image, seed: int, epoch: int, index: int) -> Any:
    """``transform(img)`` with every RNG it may draw from seeded by (seed, epoch, index) only, so
    a sample's augmentation is the same whatever the worker, rank layout or resume point."""
    if transform is None:
        return img
    with seeded_random_state(_sample_seed(seed, epoch, index)):
        return transform(img)


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
        self.location = str(folder)
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

    @property
    def labels(self) -> list[int]:
        """Every sample's class index, in sample order."""
        return [label for _, label in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | SkippedImage:
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")  # forces the full decode: truncated files fail here
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return SkippedImage(path, f"{type(e).__name__}: {e}")
        return seeded_transform(self.transform, img, self.seed, self.epoch, index), label


def collate_skipping(samples: Sequence[tuple[torch.Tensor, int] | SkippedImage]) -> Batch:
    """Stack the decodable samples; report the rest by path."""
    good = [s for s in samples if not isinstance(s, SkippedImage)]
    skipped = [s for s in samples if isinstance(s, SkippedImage)]
    if not good:
        return Batch(None, None, skipped)
    images = torch.stack([img for img, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.long)
    return Batch(images, labels, skipped)


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


class TwoViews:
    """Two augmented views of one image, stacked: [2, 3, H, W] (a batch is then [B, 2, 3, H, W])."""

    def __init__(self, first: Callable, second: Callable) -> None:
        self.first, self.second = first, second

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.stack([self.first(img), self.second(img)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n  first={self.first},\n  second={self.second})"


def mocov3_train_transform(img_size: int = 224, scale: tuple[float, float] = (0.08, 1.0),
                           blur_kernel: int | None = None) -> TwoViews:
    """MoCo-v3's asymmetric pair of views (BYOL's augmentations, as MAE-Lite's ``ssl_transform``).

    Both views: RandomResizedCrop (bilinear, ``scale``), colour jitter (0.4, 0.4, 0.2, 0.1) with
    p 0.8, grayscale p 0.2, horizontal flip p 0.5. Gaussian blur (sigma uniform in [0.1, 2]) with
    p 1.0 in the first view, 0.1 in the second; solarisation (threshold 128) with p 0.2 in the
    second only. The blur is torchvision's Gaussian kernel (``blur_kernel`` pixels wide, odd;
    default about a tenth of the crop as in BYOL, 23 at 224 px) where the reference filters with
    PIL's ``GaussianBlur(radius=sigma)``; at 224 px the kernel reaches past 5 sigma.
    """
    kernel = blur_kernel or max(3, int(0.1 * img_size) // 2 * 2 + 1)
    if kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be odd, got {kernel}")

    def view(blur: float, solarize: float) -> transforms.Compose:
        steps = [
            transforms.RandomResizedCrop(img_size, scale=tuple(scale), interpolation=InterpolationMode.BILINEAR),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            transforms.RandomApply([transforms.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur),
            transforms.RandomGrayscale(p=0.2),
            transforms.RandomHorizontalFlip(),
        ]
        if solarize:
            steps.append(transforms.RandomSolarize(128, p=solarize))
        return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    return TwoViews(view(blur=1.0, solarize=0.0), view(blur=0.1, solarize=0.2))


def finetune_train_transform(img_size: int = 224, auto_augment: str | None = "rand-m10-mstd0.5",
                             color_jitter: float | None = 0.3, re_prob: float = 0.0, re_mode: str = "pixel",
                             interpolation: str = "bicubic", scale: tuple[float, float] | None = None,
                             hflip: float = 0.5) -> Callable:
    """Fine-tuning augmentation through timm's ``create_transform``.

    As in the reference (and timm), the colour jitter is not applied while RandAugment is on;
    ``auto_augment=None, color_jitter=None`` leaves RandomResizedCrop + flip (MAE-Lite's transfer
    recipe).  Random erasing fills with per-pixel noise (``re_mode="pixel"``) as DeiT and MAE-Lite do
    (timm's own default is a constant).
    """
    from timm.data import create_transform

    return create_transform(img_size, is_training=True, auto_augment=auto_augment, color_jitter=color_jitter,
                            re_prob=re_prob, re_mode=re_mode, interpolation=interpolation, scale=scale, hflip=hflip,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)


def eval_transform(img_size: int = 224, crop_pct: float = 0.875, interpolation: str = "bicubic") -> Callable:
    """Resize the short side to img_size / crop_pct, centre crop img_size (timm's eval transform)."""
    from timm.data import create_transform

    return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation=interpolation,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)
