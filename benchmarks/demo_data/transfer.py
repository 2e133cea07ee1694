"""Small transfer sets generated in the official on-disk layouts that ``torchvision.datasets`` reads
(CIFAR-10/100 pickled batches, Flowers102, Oxford-IIIT Pet, FGVC-Aircraft, Stanford Cars devkit), for
tests and seconds-long demos of ``configs/transfer``.

Each writer returns ``{"root", "classes", "train": [(file or None, label), ...], "test": [...]}`` with the
samples in the order the set's own split files list them (the order torchvision reads them in), so a
test can check every image and label a reader hands back.  Class ``k`` has its own colour and stripe
orientation (:mod:`benchmarks.demo_data.imagenet`), so a classifier can learn it.  Command line:
``tools/make_transfer_demo.py``.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .imagenet import _class_image

__all__ = ["TRANSFER_WRITERS", "make_transfer_set", "make_cifar", "make_flowers102", "make_pets", "make_aircraft",
           "make_cars"]


def _rgb(rng: np.random.Generator, cls: int, num_classes: int, size: int) -> np.ndarray:
    return np.ascontiguousarray(_class_image(rng, cls, num_classes, size)[..., ::-1])


def _write_jpeg(path: Path, rgb: np.ndarray) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=90)
    return str(path)


def _labels(classes: int, per_class: int, rng: np.random.Generator) -> list[int]:
    """``per_class`` of each class, shuffled (the official lists are not sorted by class)."""
    labels = np.repeat(np.arange(classes), per_class)
    return [int(v) for v in rng.permutation(labels)]


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_cifar(root: str | os.PathLike, name: str = "cifar10", classes: int = 10, train_per_class: int = 5,
               test_per_class: int = 2, seed: int = 0) -> dict[str, Any]:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` or
    ``root/cifar-100-python/{train, test, meta}``: pickled dicts of uint8 rows (3 x 32 x 32, channel-major)."""
    rng = np.random.default_rng(seed)
    hundred = name == "cifar100"
    names = [f"{'fine' if hundred else 'class'}_{k}" for k in range(classes)]
    key = "fine_labels" if hundred else "labels"

    def batch(labels: list[int], tag: str) -> tuple[dict[str, Any], list[np.ndarray]]:
        images = [_rgb(rng, c, classes, 32) for c in labels]
        rows = np.stack([im.transpose(2, 0, 1).reshape(-1) for im in images]) if images else \
            np.zeros((0, 3072), np.uint8)
        entry = {"batch_label": tag, key: labels, "data": rows,
                 "filenames": [f"{tag}_{i}.png" for i in range(len(labels))]}
        if hundred:
            entry["coarse_labels"] = [c % 20 for c in labels]
        return entry, images

    train_labels, test_labels = _labels(classes, train_per_class, rng), _labels(classes, test_per_class, rng)
    out: dict[str, Any] = {"root": str(root), "classes": names}
    if hundred:
        folder = Path(root) / "cifar-100-python"
        train, train_images = batch(train_labels, "training batch 1 of 1")
        test, test_images = batch(test_labels, "testing batch 1 of 1")
        _dump(folder / "train", train)
        _dump(folder / "test", test)
        _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"coarse_{k}" for k in range(20)]})
    else:
        folder = Path(root) / "cifar-10-batches-py"
        train_images = []
        for b, part in enumerate(np.array_split(np.array(train_labels, dtype=np.int64), 5), start=1):
            entry, images = batch([int(v) for v in part], f"training batch {b} of 5")
            _dump(folder / f"data_batch_{b}", entry)
            train_images += images
        test, test_images = batch(test_labels, "testing batch 1 of 1")
        _dump(folder / "test_batch", test)
        _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": len(train_labels) // 5,
                                        "num_vis": 3072})
    out["train"] = list(zip(train_images, train_labels))
    out["test"] = list(zip(test_images, test_labels))
    return out


def make_flowers102(root: str | os.PathLike, classes: int = 102, train_per_class: int = 2, test_per_class: int = 1,
                    size: int = 48, seed: int = 0) -> dict[str, Any]:
    """``root/flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat}``: 1-based labels of every
    image, and the 1-based image ids of the ``trnid`` / ``valid`` / ``tstid`` splits.  Training reads
    train then val (``train_per_class`` split between them).  With fewer than 102 classes the labels
    are the first ones of the official 102."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(root) / "flowers-102"
    n_train_part = (train_per_class + 1) // 2
    splits = {"trnid": _labels(classes, n_train_part, rng),
              "valid": _labels(classes, train_per_class - n_train_part, rng),
              "tstid": _labels(classes, test_per_class, rng)}
    order = [(split, c) for split in ("trnid", "valid", "tstid") for c in splits[split]]
    ids = rng.permutation(len(order)) + 1  # image numbers are not grouped by split
    labels = np.zeros(len(order), np.uint8)
    files: dict[str, list] = {"trnid": [], "valid": [], "tstid": []}
    for (split, c), image_id in zip(order, ids):
        labels[image_id - 1] = c + 1
        path = _write_jpeg(folder / "jpg" / f"image_{image_id:05d}.jpg", _rgb(rng, c, classes, size))
        files[split].append((path, c, int(image_id)))
    savemat(folder / "imagelabels.mat", {"labels": labels.reshape(1, -1)})
    savemat(folder / "setid.mat", {split: np.array([i for _, _, i in files[split]], np.uint16).reshape(1, -1)
                                   for split in files})
    from torchvision.datasets import Flowers102

    # The label file carries no names: readers use the 102 official ones, whatever labels occur.
    return {"root": str(root), "classes": list(Flowers102.classes),
            "train": [(p, c) for p, c, _ in files["trnid"] + files["valid"]],
            "test": [(p, c) for p, c, _ in files["tstid"]]}


def make_pets(root: str | os.PathLike, classes: int = 37, train_per_class: int = 2, test_per_class: int = 1,
              size: int = 48, seed: int = 0) -> dict[str, Any]:
    """``root/oxford-iiit-pet/{images/<Breed>_<n>.jpg, annotations/trainval.txt, annotations/test.txt}``;
    each list line is ``<image id> <class 1..37> <species 1 cat / 2 dog> <breed id>``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "oxford-iiit-pet"
    breeds = [f"Cat_breed_{k}" if k % 3 == 0 else f"dog_breed_{k}" for k in range(classes)]
    counters = [0] * classes
    out: dict[str, Any] = {"root": str(root), "classes": [b.replace("_", " ").title() for b in breeds]}
    for split, per_class in (("trainval", train_per_class), ("test", test_per_class)):
        lines, samples = [], []
        for c in _labels(classes, per_class, rng):
            counters[c] += 1
            image_id = f"{breeds[c]}_{counters[c]}"
            species = 1 if breeds[c][0].isupper() else 2
            samples.append((_write_jpeg(folder / "images" / f"{image_id}.jpg", _rgb(rng, c, classes, size)), c))
            lines.append(f"{image_id} {c + 1} {species} {counters[c]}")
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        out["train" if split == "trainval" else "test"] = samples
    return out


def make_aircraft(root: str | os.PathLike, classes: int = 100, train_per_class: int = 2, test_per_class: int = 1,
                  size: int = 48, seed: int = 0) -> dict[str, Any]:
    """``root/fgvc-aircraft-2013b/data/``: ``images/<7-digit id>.jpg``, the class lists
    ``variants.txt`` / ``families.txt`` / ``manufacturers.txt`` and, for each level and split
    (``train``, ``val``, ``trainval``, ``test``), ``images_<level>_<split>.txt`` of ``<id> <name>`` lines.
    ``trainval`` is ``train`` followed by ``val``."""
    rng = np.random.default_rng(seed)
    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    variants = [f"A{300 + k}-{k % 7}00" for k in range(classes)]  # names with spaces / dashes are allowed
    families = sorted({f"A{300 + k - k % 4}" for k in range(classes)})
    family_of = {v: f"A{300 + k - k % 4}" for k, v in enumerate(variants)}
    maker_of = {f: f"Maker {i % 5}" for i, f in enumerate(families)}
    levels = {"variant": (variants, lambda v: v), "family": (families, family_of.get),
              "manufacturer": (sorted(set(maker_of.values())), lambda v: maker_of[family_of[v]])}
    data.mkdir(parents=True, exist_ok=True)
    for level, file in (("variant", "variants.txt"), ("family", "families.txt"), ("manufacturer", "manufacturers.txt")):
        (data / file).write_text("\n".join(levels[level][0]) + "\n")
    n_train = (train_per_class + 1) // 2
    next_id = 1000000 + int(rng.integers(0, 1000))
    samples: dict[str, list] = {}
    for split, per_class in (("train", n_train), ("val", train_per_class - n_train), ("test", test_per_class)):
        samples[split] = []
        for c in _labels(classes, per_class, rng):
            image_id = f"{next_id:07d}"
            next_id += int(rng.integers(1, 40))
            path = _write_jpeg(data / "images" / f"{image_id}.jpg", _rgb(rng, c, classes, size))
            samples[split].append((image_id, path, c))
    samples["trainval"] = samples["train"] + samples["val"]
    for level, (_, name_of) in levels.items():
        for split in ("train", "val", "trainval", "test"):
            lines = [f"{image_id} {name_of(variants[c])}" for image_id, _, c in samples[split]]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
    return {"root": str(root), "classes": variants, "train": [(p, c) for _, p, c in samples["trainval"]],
            "test": [(p, c) for _, p, c in samples["test"]]}


def make_cars(root: str | os.PathLike, classes: int = 196, train_per_class: int = 2, test_per_class: int = 1,
              size: int = 48, seed: int = 0) -> dict[str, Any]:
    """``root/stanford_cars/``: ``devkit/cars_meta.mat`` (``class_names``), ``devkit/cars_train_annos.mat``
    and ``cars_test_annos_withlabels.mat`` (``annotations``: struct array of ``bbox_x1 .. bbox_y2``,
    1-based ``class`` and ``fname``), images in ``cars_train/`` and ``cars_test/``."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = Path(root) / "stanford_cars"
    names = [f"Make{k % 9} Model{k} {2000 + k % 13}" for k in range(classes)]
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object).reshape(1, -1)})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    out: dict[str, Any] = {"root": str(root), "classes": names}
    for split, per_class, annos in (("train", train_per_class, base / "devkit" / "cars_train_annos.mat"),
                                    ("test", test_per_class, base / "cars_test_annos_withlabels.mat")):
        records, samples = [], []
        for i, c in enumerate(_labels(classes, per_class, rng), start=1):
            fname = f"{i:05d}.jpg"
            samples.append((_write_jpeg(base / f"cars_{split}" / fname, _rgb(rng, c, classes, size)), c))
            records.append((np.uint8(1), np.uint8(1), np.uint8(size - 2), np.uint8(size - 2), np.uint8(c + 1), fname))
        savemat(annos, {"annotations": np.array(records, dtype=fields).reshape(1, -1)})
        out[split] = samples
    return out


TRANSFER_WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    "cifar10": lambda root, **kw: make_cifar(root, "cifar10", **{"classes": 10, **kw}),
    "cifar100": lambda root, **kw: make_cifar(root, "cifar100", **{"classes": 100, **kw}),
    "flowers102": make_flowers102,
    "pets": make_pets,
    "aircraft": make_aircraft,
    "cars": make_cars,
}


def make_transfer_set(name: str, root: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Write a small ``name`` set (a key of ``pretrain.datasets.TRANSFER_SETS``) under ``root``."""
    if name not in TRANSFER_WRITERS:
        raise KeyError(f"unknown transfer set {name!r}: one of {', '.join(TRANSFER_WRITERS)}")
    return TRANSFER_WRITERS[name](root, **kwargs)
