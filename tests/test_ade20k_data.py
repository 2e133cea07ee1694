"""The synthetic ADE20K-layout dataset (layout, determinism, mmseg loads it) and the overlays."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.miou import apply_reduce_zero_label, evaluate_folders, read_label_map
from benchmarks.demo_data.ade20k import demo_classes, make_ade20k_dataset
from seg.visualize import colorize, overlay, save_overlays

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_ade20k_dataset(tmp_path_factory.mktemp("ade"), num_train=8, num_val=4, seed=0)


def test_layout_and_names(dataset):
    assert dataset.name == "ADEChallengeData2016"
    expected = {
        "images/training": [f"ADE_train_{i:08d}.jpg" for i in range(1, 9)],
        "images/validation": [f"ADE_val_{i:08d}.jpg" for i in range(1, 5)],
        "annotations/training": [f"ADE_train_{i:08d}.png" for i in range(1, 9)],
        "annotations/validation": [f"ADE_val_{i:08d}.png" for i in range(1, 5)],
    }
    for folder, names in expected.items():
        assert sorted(p.name for p in (dataset / folder).iterdir()) == names
    assert sorted(p.name for p in dataset.iterdir()) == ["annotations", "images"]


def test_images_and_labels_agree(dataset):
    painted = set(demo_classes(seed=0))
    assert len(painted) == 5 and painted <= set(range(1, 151))
    sizes = set()
    for image_path in sorted((dataset / "images").rglob("*.jpg")):
        split = image_path.parent.name
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3
        label = read_label_map(dataset / "annotations" / split / f"{image_path.stem}.png")
        assert label.dtype == np.uint8 and label.shape == image.shape[:2]
        values = set(np.unique(label).tolist())
        assert values <= painted | {0}
        assert 0 in values and len(values - {0}) >= 1
        sizes.add(label.shape)
        assert 0.8 * 120 <= label.shape[0] <= 1.2 * 120 and 0.8 * 160 <= label.shape[1] <= 1.2 * 160
    assert len(sizes) > 6  # sizes vary across the 12 images


def test_deterministic_by_seed(dataset, tmp_path):
    again = make_ade20k_dataset(tmp_path / "again", num_train=8, num_val=4, seed=0)
    other = make_ade20k_dataset(tmp_path / "other", num_train=1, num_val=0, seed=1)
    for path in sorted(dataset.rglob("*.*")):
        assert (again / path.relative_to(dataset)).read_bytes() == path.read_bytes()
    first = "annotations/training/ADE_train_00000001.png"
    assert (other / first).read_bytes() != (dataset / first).read_bytes()


def test_learnable_by_colour_alone(dataset, tmp_path):
    """A nearest-mean-colour pixel classifier fit on training scores well on validation."""
    painted = [0] + demo_classes(seed=0)
    sums, counts = np.zeros((len(painted), 3)), np.zeros(len(painted))
    for image_path in sorted((dataset / "images" / "training").glob("*.jpg")):
        image = cv2.imread(str(image_path)).reshape(-1, 3).astype(np.float64)
        label = read_label_map(dataset / "annotations" / "training" / f"{image_path.stem}.png")
        index = np.searchsorted(painted, label.reshape(-1))
        np.add.at(sums, index, image)
        counts += np.bincount(index, minlength=len(painted))
    means = sums / counts[:, None]
    (tmp_path / "pred").mkdir()
    for image_path in sorted((dataset / "images" / "validation").glob("*.jpg")):
        image = cv2.imread(str(image_path)).astype(np.float64)
        nearest = np.argmin(((image[:, :, None, :] - means) ** 2).sum(-1), axis=-1)
        pred = np.asarray(painted)[nearest]
        reduced = apply_reduce_zero_label(pred)  # predicted "other" -> 255: a miss
        assert cv2.imwrite(str(tmp_path / "pred" / f"{image_path.stem}.png"),
                           reduced.astype(np.uint8))
    result = evaluate_folders(tmp_path / "pred", dataset / "annotations" / "validation", 150,
                              reduce_zero_label=True, progress=False)
    assert result["aAcc"] > 85 and result["mIoU"] > 75


@pytest.mark.filterwarnings("ignore:`reduce_zero_label` will be deprecated")
def test_mmseg_ade20k_dataset_loads_it(dataset):
    pytest.importorskip("mmseg")
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    loaded = ADE20KDataset(
        data_root=str(dataset),
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        pipeline=[dict(type="LoadImageFromFile"),
                  dict(type="LoadAnnotations", reduce_zero_label=True),
                  dict(type="PackSegInputs")])
    assert len(loaded) == 4
    for i in range(len(loaded)):
        sample = loaded[i]
        stem = Path(sample["data_samples"].img_path).stem
        raw = read_label_map(dataset / "annotations" / "validation" / f"{stem}.png")
        gt = sample["data_samples"].gt_sem_seg.data.numpy()[0]
        assert sample["inputs"].shape == (3,) + raw.shape
        np.testing.assert_array_equal(gt, apply_reduce_zero_label(raw))
        assert (gt[raw == 0] == 255).all() and (gt != 255).any()


def test_cli_writes_dataset(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_ade20k_demo",
                                                  REPO / "tools" / "make_ade20k_demo.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    root = cli.main(["--out", str(tmp_path), "--num-train", "2", "--num-val", "1", "--seed", "3"])
    assert root == tmp_path / "ADEChallengeData2016"
    assert len(list((root / "images" / "training").glob("*.jpg"))) == 2
    assert (root / "annotations" / "validation" / "ADE_val_00000001.png").is_file()
    assert str(demo_classes(seed=3)) in capsys.readouterr().out


PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def test_colorize_and_overlay_values():
    labels = np.array([[0, 1], [2, 255]])
    np.testing.assert_array_equal(colorize(labels, PALETTE),
                                  [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 0, 0]]])
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    blended = overlay(image, labels, PALETTE, alpha=0.5)
    np.testing.assert_array_equal(blended[0, 0], [178, 50, 50])  # round(0.5*100 + 0.5*255)
    np.testing.assert_array_equal(blended[1, 1], image[1, 1])  # ignored: image colour kept
    with pytest.raises(ValueError, match="differs"):
        overlay(image, np.zeros((3, 2), int), PALETTE)


def test_save_overlays_writes_panels(dataset, tmp_path):
    image_paths = sorted((dataset / "images" / "validation").glob("*.jpg"))[:2]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in image_paths]
    gts = [apply_reduce_zero_label(read_label_map(
        dataset / "annotations" / "validation" / f"{p.stem}.png")) for p in image_paths]
    preds = [np.where(gt == 255, 0, gt) for gt in gts]
    palette = np.random.default_rng(0).integers(0, 256, (150, 3)).astype(np.uint8)
    paths = save_overlays(images, preds, gts, tmp_path / "vis", palette,
                          names=[p.stem for p in image_paths])
    assert [p.name for p in paths] == [f"{p.stem}.png" for p in image_paths]
    for path, image, gt in zip(paths, images, gts):
        panel = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        assert panel.shape == (h, 3 * w, 3)
        np.testing.assert_array_equal(panel[:, :w], image)
        gt_panel = panel[:, 2 * w:]
        np.testing.assert_array_equal(gt_panel[gt == 255], image[gt == 255])
        assert (gt_panel[gt != 255] != image[gt != 255]).any()
    two = save_overlays(images[:1], preds[:1], None, tmp_path / "vis2", palette)
    assert cv2.imread(str(two[0])).shape == (images[0].shape[0], 2 * images[0].shape[1], 3)


def test_ade20k_palette_from_mmseg():
    pytest.importorskip("mmseg")
    from seg.visualize import ade20k_palette

    from mmseg.datasets import ADE20KDataset

    palette = ade20k_palette()
    assert palette.shape == (150, 3) and palette.dtype == np.uint8
    np.testing.assert_array_equal(palette, ADE20KDataset.METAINFO["palette"])
    np.testing.assert_array_equal(palette[0], [120, 120, 120])  # wall
    assert len({tuple(c) for c in palette}) >= 149  # mmseg's list repeats one colour
