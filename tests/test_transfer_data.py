"""Transfer-set readers on small sets written in their official layouts, the clear errors for a wrong
root, and the seeded class-stratified subset (the data-scale axis)."""
from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.demo_data.imagenet import make_imagenet_folder
from benchmarks.demo_data.transfer import make_transfer_set
from pretrain.data import SkippedImage, eval_transform
from pretrain.datasets import (TRANSFER_SETS, SubsetSpec, TransferDataset, build_datasets, parse_subset,
                               stratified_subset)

NAMES = sorted(TRANSFER_SETS)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, dict]:
    """Every transfer set, 3 classes, 4 training / 2 test images a class, under one root each."""
    out = {}
    for name in NAMES:
        root = tmp_path_factory.mktemp(name)
        info = make_transfer_set(name, root, classes=3, train_per_class=4, test_per_class=2, seed=1)
        out[name] = info
    return out


def _pixels(source) -> np.ndarray:
    return source if isinstance(source, np.ndarray) else np.asarray(Image.open(source).convert("RGB"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_reader_returns_every_written_image_with_its_label(generated, name, split):
    info = generated[name]
    ds = TransferDataset(name, info["root"], split)
    assert len(ds) == len(info[split]) == (12 if split == "train" else 6)
    assert ds.labels == [label for _, label in info[split]]
    assert ds.classes == info["classes"]
    for i, (source, label) in enumerate(info[split]):
        img, got = ds[i]
        assert got == label and img.mode == "RGB"
        assert np.array_equal(np.asarray(img), _pixels(source))


@pytest.mark.parametrize("name", ["cifar100", "flowers102"])
def test_reader_augments_per_sample_seed_and_epoch(generated, name):
    ds = TransferDataset(name, generated[name]["root"], "train", eval_transform(32), seed=3)
    first, label = ds[2]
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32 and label == ds.labels[2]
    assert torch.equal(ds[2][0], first)
    from timm.data import create_transform

    ds.transform = create_transform(32, is_training=True)
    a = ds[2][0]
    assert torch.equal(ds[2][0], a)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], a)


@pytest.mark.parametrize("name", NAMES)
def test_empty_root_names_every_expected_file(tmp_path, name):
    spec = TRANSFER_SETS[name]
    with pytest.raises(FileNotFoundError) as err:
        TransferDataset(name, tmp_path, "train")
    message = str(err.value)
    assert spec.title in message and f"data.dataset={name!r}" in message and str(tmp_path) in message
    for file in spec.files:
        assert file in message


@pytest.mark.parametrize("name", NAMES)
def test_root_missing_one_file_names_it(tmp_path, name):
    spec = TRANSFER_SETS[name]
    make_transfer_set(name, tmp_path, classes=2, train_per_class=2, test_per_class=1)
    gone = tmp_path / spec.folder / spec.files[-1].rstrip("/")
    if gone.is_dir():
        for f in gone.iterdir():
            f.unlink()
        gone.rmdir()
    else:
        gone.unlink()
    with pytest.raises(FileNotFoundError, match="missing " + str(gone).replace("\\", "\\\\")):
        TransferDataset(name, tmp_path, "train")


def test_a_set_given_the_root_of_another_is_refused(generated):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        TransferDataset("cifar10", generated["cifar100"]["root"], "train")


def test_unreadable_files_are_named(tmp_path):
    info = make_transfer_set("pets", tmp_path, classes=2, train_per_class=2, test_per_class=1)
    broken = info["train"][1][0]
    Path(broken).write_bytes(b"not a jpeg")
    ds = TransferDataset("pets", tmp_path, "train")
    out = ds[1]
    assert isinstance(out, SkippedImage) and out.path == broken
    bad_batch = Path(tmp_path) / "cifar-100-python"
    make_transfer_set("cifar100", tmp_path, classes=2, train_per_class=2, test_per_class=1)
    (bad_batch / "train").write_bytes(b"\x80\x04truncated")
    with pytest.raises(ValueError, match=r"CIFAR-100 at .*cifar-100-python: its train split could not be read"):
        TransferDataset("cifar100", tmp_path, "train")


def test_unknown_data_set_is_named(tmp_path):
    with pytest.raises(KeyError, match="data.dataset='stl10'.*cifar10"):
        build_datasets({"dataset": "stl10", "root": str(tmp_path)}, None, None)
    with pytest.raises(ValueError, match="data.root is not set"):
        build_datasets({"dataset": "cifar10"}, None, None)


# -- the subset ---------------------------------------------------------------------------------------------

LABELS = [c for c, n in enumerate([10, 7, 3, 25]) for _ in range(n)]
random.Random(0).shuffle(LABELS)


def _per_class(indices: list[int]) -> dict[int, int]:
    return dict(sorted(Counter(LABELS[i] for i in indices).items()))


def test_fraction_is_stratified_by_class():
    chosen = stratified_subset(LABELS, SubsetSpec(fraction=0.3, seed=0))
    assert _per_class(chosen) == {0: 3, 1: 2, 2: 1, 3: 8}  # round(0.3 n), at least one
    assert chosen == sorted(set(chosen))
    assert stratified_subset(LABELS, SubsetSpec(fraction=1.0, seed=5)) == list(range(len(LABELS)))


def test_per_class_takes_that_many_of_each_class():
    chosen = stratified_subset(LABELS, SubsetSpec(per_class=3, seed=0))
    assert _per_class(chosen) == {0: 3, 1: 3, 2: 3, 3: 3}


def test_subset_is_seeded_repeatable_and_independent_of_global_rngs():
    spec = SubsetSpec(fraction=0.5, seed=7)
    first = stratified_subset(LABELS, spec)
    np.random.seed(123)
    torch.manual_seed(123)
    random.seed(123)
    assert stratified_subset(LABELS, spec) == first
    assert stratified_subset(list(LABELS), SubsetSpec(fraction=0.5, seed=7)) == first
    others = {tuple(stratified_subset(LABELS, SubsetSpec(fraction=0.5, seed=s))) for s in range(8)}
    assert len(others) == 8  # another seed, another subset
    assert _per_class(list(others.pop())) == _per_class(first)


def test_with_one_seed_a_smaller_subset_lies_inside_a_larger_one():
    small = set(stratified_subset(LABELS, SubsetSpec(fraction=0.2, seed=3)))
    large = set(stratified_subset(LABELS, SubsetSpec(fraction=0.6, seed=3)))
    assert small < large
    assert set(stratified_subset(LABELS, SubsetSpec(per_class=2, seed=3))) < \
        set(stratified_subset(LABELS, SubsetSpec(per_class=3, seed=3)))


@pytest.mark.parametrize("value, match", [
    (dict(fraction=0.0, seed=0), r"data.subset.fraction=0.0 must be in \(0, 1\]"),
    (dict(fraction=1.5, seed=0), r"data.subset.fraction=1.5 must be in \(0, 1\]"),
    (dict(fraction=-0.1), r"fraction=-0.1 must be in \(0, 1\]"),
    (dict(fraction=math.nan), r"fraction=nan must be in \(0, 1\]"),
    (dict(fraction="0.1"), r"fraction='0.1' must be in \(0, 1\]"),
    (dict(fraction=True), r"fraction=True must be in \(0, 1\]"),
    (dict(per_class=0), r"data.subset.per_class=0 must be a positive integer"),
    (dict(per_class=2.5), r"per_class=2.5 must be a positive integer"),
    (dict(fraction=0.1, per_class=2), "exactly one of fraction and per_class"),
    (dict(seed=0), "exactly one of fraction and per_class"),
    (dict(fraction=0.1, sed=0), r"unknown key\(s\) \['sed'\]"),
    (dict(fraction=0.1, seed=-1), "data.subset.seed=-1 must be a non-negative integer"),
    (0.1, "data.subset must be dict"),
])
def test_bad_subset_options_are_named(value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        parse_subset(value)


def test_more_per_class_than_a_class_has_names_the_class_and_counts():
    classes = ["daisy", "rose", "tulip", "iris"]
    with pytest.raises(ValueError, match=r"data.subset.per_class=8 .*'rose' \(class 1\) has 7, 'tulip' \(class 2\) "
                                         r"has 3") as err:
        stratified_subset(LABELS, SubsetSpec(per_class=8, seed=0), classes)
    assert "daisy" not in str(err.value) and "iris" not in str(err.value)


def test_imagenet_folders_take_the_subset_too(tmp_path):
    make_imagenet_folder(tmp_path, classes=3, per_class=5, size=32, val_per_class=2)
    cfg = {"root": str(tmp_path), "subset": {"per_class": 2, "seed": 4}}
    data = build_datasets(cfg, None, None, with_val=True)
    assert len(data.train) == 6 and len(data.val) == 6
    assert Counter(data.train.labels) == {0: 2, 1: 2, 2: 2}
    assert data.info == {"dataset": "imagenet", "data_root": str(tmp_path), "num_classes": 3, "train_images": 6,
                         "train_images_total": 15, "subset": {"fraction": None, "per_class": 2, "seed": 4}}
    again = build_datasets(cfg, None, None, with_val=False)
    assert again.train.indices == data.train.indices and again.val is None
    for i, full_index in enumerate(data.train.indices):  # the view hands back the full set's samples
        assert data.train[i][1] == data.train.base.samples[full_index][1]
    with pytest.raises(ValueError, match=r"per_class=6 .*has 5"):
        build_datasets({**cfg, "subset": {"per_class": 6}}, None, None)


def test_transfer_sets_take_the_subset(generated):
    info = generated["aircraft"]
    data = build_datasets({"dataset": "aircraft", "root": info["root"], "subset": {"fraction": 0.5, "seed": 0}},
                          None, None)
    assert Counter(data.train.labels) == {0: 2, 1: 2, 2: 2} and len(data.val) == 6
    assert data.info["train_images_total"] == 12 and data.info["subset"]["fraction"] == 0.5
    assert [data.train[i][1] for i in range(len(data.train))] == data.train.labels
