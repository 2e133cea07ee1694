"""The study's data: generated photo sets in the real layouts, and the trivial baselines computed on them.

The three sets come from the photos scikit-image ships (:mod:`benchmarks.demo_data.photos`): an
ImageNet-layout folder of crops (pre-training, probe, fine-tune), ADE20K-layout composites
(segmentation) and LaSOT-layout sequences (tracking); evaluation images always come from the
photos' held-out regions. The baselines a trained model has to beat are computed from the data,
as results in the evaluators' formats: a static box (frame 1's box repeated) for tracking, the
most frequent training class everywhere for segmentation, the majority class for classification.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fileio import atomic_write_bytes, atomic_write_text

from .settings import TRACK_CONFIG

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def make_photos(work: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    from benchmarks.demo_data.photos import make_photo_imagenet

    return make_photo_imagenet(work / "imagenet", **settings) | {"root": str(work / "imagenet")}


def make_ade20k(work: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    from benchmarks.demo_data.ade20k import make_ade20k_dataset
    from benchmarks.demo_data.photos import PHOTOS

    return {"root": str(make_ade20k_dataset(work, photos=list(PHOTOS), num_classes=len(PHOTOS), **settings))}


def lasot_generation(track_options: Mapping[str, Any]) -> dict[str, Any]:
    """The tracker config's ``data.generate`` (with the study's overrides): what the LaSOT-layout
    set is made of."""
    from track.config import load_config

    cfg = load_config(TRACK_CONFIG)
    cfg.merge_from_dict(dict(track_options))
    generate = dict(cfg.data.generate)
    generate.pop("dirname", None)
    generate["size"] = tuple(generate["size"])
    return generate


def make_lasot(work: Path, generate: Mapping[str, Any]) -> dict[str, Any]:
    from benchmarks.demo_data.lasot import make_lasot_dataset

    return {"root": str(work / "lasot"), "sequences": make_lasot_dataset(work / "lasot", **generate)}


def static_box_results(lasot_root: Path, out: Path) -> Path:
    """Frame 1's ground-truth box repeated on every frame of every test sequence, written as a
    tracker's result folder: the floor a tracker has to beat."""
    from evaluation.annotations import read_boxes, sequence_class
    from evaluation.baselines import static_box_boxes
    from track.datasets.lasot import list_sequences

    for name in list_sequences(lasot_root, "test"):
        gt = read_boxes(lasot_root / sequence_class(name) / name / "groundtruth.txt")
        rows = static_box_boxes(gt)
        atomic_write_text(out / f"{name}.txt", "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rows))
    return out


def most_frequent_class_predictions(ade_root: Path, out: Path) -> tuple[Path, int]:
    """The training annotations' most frequent class (raw value, 0 = "other" left out as the
    loader's ``reduce_zero_label`` does) painted over every validation image, encoded like the
    annotations (as mmseg writes predictions). Returns the folder and that raw class value."""
    import cv2

    from evaluation.miou import read_label_map

    counts = np.zeros(256, np.int64)
    train = sorted((ade_root / "annotations" / "training").glob("*.png"))
    if not train:
        raise FileNotFoundError(f"no training annotations in {ade_root / 'annotations' / 'training'}")
    for path in train:
        counts += np.bincount(read_label_map(path).ravel(), minlength=256)
    counts[0] = 0
    value = int(np.argmax(counts))
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ade_root / "annotations" / "validation").glob("*.png")):
        constant = np.full_like(read_label_map(path), value)
        ok, encoded = cv2.imencode(".png", constant)
        if not ok:
            raise RuntimeError(f"could not encode a PNG for {path.name}")
        atomic_write_bytes(out / path.name, encoded.tobytes())
    return out, value


def class_counts(folder: Path) -> Counter:
    """Images per class of an ImageNet-layout split folder (``<folder>/<class>/*``)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder not found: {folder}")
    return Counter({c.name: sum(1 for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                    for c in sorted(folder.iterdir()) if c.is_dir()})


def majority_class_top1(root: Path, train_split: str, val_split: str) -> dict[str, Any]:
    """Top-1 (%) on ``val_split`` of always answering the class with the most training images
    (ties: the first in sorted order, as an ImageFolder numbers classes)."""
    train, val = class_counts(root / train_split), class_counts(root / val_split)
    most = max(train.values())
    majority = next(c for c in sorted(train) if train[c] == most)
    total = sum(val.values())
    if total == 0:
        raise ValueError(f"no images in {root / val_split}")
    return {"class": majority, "top1": 100.0 * val.get(majority, 0) / total, "val_images": total}
