"""The training and evaluation sets a config names, and the data-scale axis.

* ``data.dataset = "imagenet"`` (default): ImageNet-layout folders, ``root/<split>/<class>/*``
  (:class:`pretrain.data.ImageFolderDataset`).
* ``data.dataset`` one of :data:`TRANSFER_SETS` (``cifar10``, ``cifar100``, ``flowers102``, ``pets``,
  ``aircraft``, ``cars``): the study's transfer sets, read by ``torchvision.datasets`` from their
  official on-disk layouts under ``data.root`` (``download=False``).  What must be there is checked
  first and a missing piece is an error that names every expected file, since torchvision's own
  message ("Dataset not found") does not say where it looked or for what.  Training uses the split
  MAE-Lite trains on (Flowers102: train + val; Pets, Aircraft: trainval), evaluation the test split.
* ``data.subset = dict(fraction=0.1, seed=0)`` or ``dict(per_class=10, seed=0)``: a seeded,
  class-stratified subset of the training set (any of the above), the same on every call and every
  rank, since it depends on the labels and the seed only.

Checksums are not verified: torchvision checks MD5s for CIFAR and Flowers102 only, and doing so would
refuse re-packed copies and generated test sets while the presence check already names what is
missing; a file that is present but unreadable is reported with the split and root it belongs to.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd

from .data import ImageFolderDataset, SkippedImage, seeded_transform

__all__ = ["TRANSFER_SETS", "DATASETS", "TransferSpec", "TransferDataset", "SubsetSpec", "SubsetView",
           "DataSets", "parse_subset", "stratified_subset", "check_transfer_root", "build_datasets"]


# torchvision's readers with their MD5 lists emptied (``check_integrity(path, None)`` tests presence).
class _CIFAR10(tvd.CIFAR10):
    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100(tvd.CIFAR100):
    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _Flowers102(tvd.Flowers102):
    _file_dict = {key: (name, None) for key, (name, _) in tvd.Flowers102._file_dict.items()}


@dataclass(frozen=True)
class TransferSpec:
    """One transfer set: where torchvision reads it and which splits MAE-Lite trains / tests on.

    ``files`` are relative to ``root/folder``; a trailing ``/`` marks a folder.  ``train`` and
    ``test`` build the torchvision dataset(s) of a split from the root (several are concatenated).
    """

    title: str
    num_classes: int
    folder: str
    files: tuple[str, ...]
    train_split: str
    test_split: str
    train: Callable[[str], list[Dataset]]
    test: Callable[[str], list[Dataset]]


TRANSFER_SETS: dict[str, TransferSpec] = {
    "cifar10": TransferSpec(
        "CIFAR-10", 10, "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        "train (50,000)", "test (10,000)",
        lambda root: [_CIFAR10(root, train=True)], lambda root: [_CIFAR10(root, train=False)]),
    "cifar100": TransferSpec(
        "CIFAR-100", 100, "cifar-100-python", ("train", "test", "meta"), "train (50,000)", "test (10,000)",
        lambda root: [_CIFAR100(root, train=True)], lambda root: [_CIFAR100(root, train=False)]),
    "flowers102": TransferSpec(
        "Flowers102", 102, "flowers-102", ("jpg/", "imagelabels.mat", "setid.mat"),
        "train + val (2,040)", "test (6,149)",
        lambda root: [_Flowers102(root, split="train"), _Flowers102(root, split="val")],
        lambda root: [_Flowers102(root, split="test")]),
    "pets": TransferSpec(
        "Oxford-IIIT Pet", 37, "oxford-iiit-pet", ("images/", "annotations/trainval.txt", "annotations/test.txt"),
        "trainval (3,680)", "test (3,669)",
        lambda root: [tvd.OxfordIIITPet(root, split="trainval")], lambda root: [tvd.OxfordIIITPet(root, split="test")]),
    "aircraft": TransferSpec(
        "FGVC-Aircraft (variant)", 100, "fgvc-aircraft-2013b",
        ("data/images/", "data/variants.txt", "data/images_variant_trainval.txt", "data/images_variant_test.txt"),
        "trainval (6,667)", "test (3,333)",
        lambda root: [tvd.FGVCAircraft(root, split="trainval", annotation_level="variant")],
        lambda root: [tvd.FGVCAircraft(root, split="test", annotation_level="variant")]),
    "cars": TransferSpec(
        "Stanford Cars", 196, "stanford_cars",
        ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train/", "cars_test/",
         "cars_test_annos_withlabels.mat"),
        "train (8,144)", "test (8,041)",
        lambda root: [tvd.StanfordCars(root, split="train")], lambda root: [tvd.StanfordCars(root, split="test")]),
}
DATASETS = ("imagenet", *TRANSFER_SETS)


def _missing_files(base: Path, files: Sequence[str]) -> list[str]:
    return [f for f in files if not ((base / f.rstrip("/")).is_dir() if f.endswith("/") else (base / f).is_file())]


def check_transfer_root(name: str, root: str | os.PathLike) -> Path:
    """``root/<folder>`` of transfer set ``name`` if every file torchvision reads is there; else a
    FileNotFoundError naming the data set, the root, what is missing and the whole expected layout."""
    spec = TRANSFER_SETS[name]
    base = Path(root) / spec.folder
    missing = _missing_files(base, spec.files)
    if missing:
        raise FileNotFoundError(
            f"data.root={os.fspath(root)!r} is not a {spec.title} root (data.dataset={name!r}, torchvision layout, "
            f"nothing is downloaded): missing {', '.join(str(base / f) for f in missing)}; expected "
            f"{base}/{{{', '.join(spec.files)}}}")
    return base


def _labels_of(ds: Dataset) -> list[int]:
    """Class indices of a torchvision classification set, read without decoding any image."""
    if hasattr(ds, "targets"):
        return [int(t) for t in ds.targets]
    if hasattr(ds, "_labels"):
        return [int(t) for t in ds._labels]
    if hasattr(ds, "_samples"):
        return [int(t) for _, t in ds._samples]
    raise TypeError(f"{type(ds).__name__}: no label list to read")


def _path_of(ds: Dataset, index: int) -> str:
    for attr in ("_image_files", "_images"):
        if hasattr(ds, attr):
            return str(getattr(ds, attr)[index])
    if hasattr(ds, "_samples"):
        return str(ds._samples[index][0])
    return f"{type(ds).__name__}[{index}]"


class TransferDataset(Dataset):
    """One split of a transfer set, with the same contract as :class:`pretrain.data.ImageFolderDataset`:
    ``classes``, ``labels``, ``location``, ``set_epoch``; each sample's augmentation seeded by
    (seed, epoch, index); an unreadable image comes back as a :class:`SkippedImage`.

    Args:
        name: a key of :data:`TRANSFER_SETS`.
        root: the folder holding the set's official folder (e.g. ``root/cifar-100-python``).
        split: ``"train"`` (the split MAE-Lite trains on) or ``"test"``.
    """

    def __init__(self, name: str, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 seed: int = 0) -> None:
        if name not in TRANSFER_SETS:
            raise KeyError(f"data.dataset={name!r}: transfer sets are {', '.join(TRANSFER_SETS)}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        spec = TRANSFER_SETS[name]
        base = check_transfer_root(name, root)
        try:
            self.parts = (spec.train if split == "train" else spec.test)(os.fspath(root))
        except (RuntimeError, OSError, ValueError, KeyError, IndexError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"{spec.title} at {base}: its {split} split could not be read "
                             f"({type(e).__name__}: {e})") from e
        self.index = [(p, j) for p, part in enumerate(self.parts) for j in range(len(part))]
        self._labels = [label for part in self.parts for label in _labels_of(part)]
        if not self.index:
            raise ValueError(f"{spec.title} at {base}: its {split} split lists no images")
        classes = getattr(self.parts[0], "classes", None)
        if classes is None or len(classes) <= max(self._labels):
            classes = [str(c) for c in range(max(self._labels) + 1)]
        self.name, self.split, self.spec = name, split, spec
        self.classes = list(classes)
        self.location = f"{base} ({spec.title}, {spec.train_split if split == 'train' else spec.test_split} split)"
        self.transform, self.seed, self.epoch = transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def labels(self) -> list[int]:
        return list(self._labels)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | SkippedImage:
        part, local = self.index[index]
        try:
            img, label = self.parts[part][local]
            img = img.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            return SkippedImage(_path_of(self.parts[part], local), f"{type(e).__name__}: {e}")
        return seeded_transform(self.transform, img, self.seed, self.epoch, index), int(label)


@dataclass(frozen=True)
class SubsetSpec:
    """``data.subset``: a fraction of each class or a number of images per class, and the seed."""

    fraction: float | None = None
    per_class: int | None = None
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "per_class": self.per_class, "seed": self.seed}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def parse_subset(value: Any, option: str = "data.subset") -> SubsetSpec | None:
    """Check ``data.subset`` (None, ``dict(fraction=f, seed=s)`` or ``dict(per_class=n, seed=s)``;
    seed 0 when not given); errors name the option and the bad value."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{option} must be dict(fraction=..., seed=...) or dict(per_class=..., seed=...), "
                        f"got {value!r}")
    unknown = sorted(set(value) - {"fraction", "per_class", "seed"})
    if unknown:
        raise ValueError(f"{option}: unknown key(s) {unknown} (known: fraction, per_class, seed)")
    fraction, per_class, seed = value.get("fraction"), value.get("per_class"), value.get("seed", 0)
    if (fraction is None) == (per_class is None):
        raise ValueError(f"{option} needs exactly one of fraction and per_class, got {dict(value)}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{option}.seed={seed!r} must be a non-negative integer")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"{option}.fraction={fraction!r} must be in (0, 1]")
        return SubsetSpec(fraction=float(fraction), seed=int(seed))
    if not _is_int(per_class) or per_class < 1:
        raise ValueError(f"{option}.per_class={per_class!r} must be a positive integer")
    return SubsetSpec(per_class=int(per_class), seed=int(seed))


def stratified_subset(labels: Sequence[int], spec: SubsetSpec, classes: Sequence[str] | None = None,
                      option: str = "data.subset") -> list[int]:
    """Sorted indices of a class-stratified subset of a training set.

    Class ``c`` keeps ``per_class`` images, or ``round(fraction x n_c)`` of its ``n_c`` (at least one),
    drawn by a generator seeded with ``(seed, c)`` alone: the subset depends on the labels and the seed
    only (the same on every rank and every call), and with one seed a smaller subset is contained in
    a larger one.  More images per class than a class has is an error naming the class and the counts.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(classes) if classes is not None else int(labels.max()) + 1
    names = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
    chosen, short = [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        n = len(members)
        if spec.per_class is not None:
            k = spec.per_class
        else:
            k = min(n, max(1, math.floor(spec.fraction * n + 0.5)))
        if k > n:
            short.append((names[c], c, n))
            continue
        order = np.random.default_rng([spec.seed, c]).permutation(n)
        chosen.append(members[order[:k]])
    if short:
        listed = ", ".join(f"{name!r} (class {c}) has {n}" for name, c, n in short[:5])
        more = f" and {len(short) - 5} more classes" if len(short) > 5 else ""
        raise ValueError(f"{option}.per_class={spec.per_class} is more images than a class has: {listed}{more}")
    return sorted(int(i) for i in np.concatenate(chosen)) if chosen else []


class SubsetView(Dataset):
    """The chosen indices of a training set, passing ``classes`` / ``set_epoch`` through (the
    augmentation seed stays the full set's index, so a sample is augmented alike in every subset)."""

    def __init__(self, base: Dataset, indices: Sequence[int], spec: SubsetSpec) -> None:
        self.base, self.indices, self.spec = base, list(indices), spec
        self.classes = base.classes
        what = f"fraction {spec.fraction}" if spec.fraction is not None else f"{spec.per_class} per class"
        self.location = f"{base.location}, subset: {what}, seed {spec.seed}"

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    @property
    def labels(self) -> list[int]:
        full = self.base.labels
        return [full[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.base[self.indices[index]]


@dataclass
class DataSets:
    """What :func:`build_datasets` returns: the training set (subset applied), the evaluation set
    (None when not asked for) and what the metrics file records about them."""

    train: Dataset
    val: Dataset | None
    info: dict[str, Any]


def build_datasets(data_cfg: Mapping[str, Any], train_transform: Callable | None, eval_transform: Callable | None,
                   seed: int = 0, with_val: bool = True) -> DataSets:
    """The ``data`` section's training and evaluation sets (see the module docstring)."""
    name = data_cfg.get("dataset") or "imagenet"
    root = data_cfg.get("root")
    if not root:
        raise ValueError("data.root is not set (config key data.root or --data)")
    val: Dataset | None = None
    if name == "imagenet":
        train: Dataset = ImageFolderDataset(root, data_cfg.get("train_split") or "train", train_transform, seed=seed)
        val_split = data_cfg.get("val_split", "val")
        if with_val and val_split:
            val = ImageFolderDataset(root, val_split, eval_transform, seed=seed, classes=train.classes)
    elif name in TRANSFER_SETS:
        train = TransferDataset(name, root, "train", train_transform, seed=seed)
        if with_val:
            val = TransferDataset(name, root, "test", eval_transform, seed=seed)
    else:
        raise KeyError(f"data.dataset={name!r}: one of {', '.join(DATASETS)}")
    total = len(train)
    subset = parse_subset(data_cfg.get("subset"))
    if subset is not None:
        train = SubsetView(train, stratified_subset(train.labels, subset, train.classes), subset)
    info = {"dataset": name, "data_root": os.fspath(root), "num_classes": len(train.classes),
            "train_images": len(train), "train_images_total": total,
            "subset": subset.as_dict() if subset is not None else None}
    return DataSets(train, val, info)
