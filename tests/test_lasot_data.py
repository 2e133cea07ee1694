"""Synthetic LaSOT-layout sequences, the LaSOT reader and its errors, and an end-to-end score."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from track.datasets import LasotDataset, build_dataset, load_sequence, read_image
from evaluation.lasot import evaluate_tracker, load_annotations
from benchmarks.demo_data.lasot import make_lasot_dataset

REPO = Path(__file__).resolve().parents[1]
W, H = 320, 240
FRAMES = 60
NAMES = ["car-1", "car-2", "dog-1", "dog-2"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lasot") / "LaSOT"
    assert make_lasot_dataset(root, ("car", "dog"), seqs_per_class=2, num_frames=FRAMES,
                              size=(W, H), seed=0) == NAMES
    return root


def copy_sequence(demo_root: Path, tmp_path: Path, name: str = "car-1") -> Path:
    target = tmp_path / "LaSOT" / name.rsplit("-", 1)[0] / name
    shutil.copytree(demo_root / name.rsplit("-", 1)[0] / name, target)
    return target


# --------------------------------------------------------------------------- generator
def test_layout_is_exact(demo_root: Path) -> None:
    assert (demo_root / "testing_set.txt").read_text() == "car-1\ndog-1\n"
    assert (demo_root / "training_set.txt").read_text() == "car-2\ndog-2\n"
    assert sorted(p.name for p in demo_root.iterdir()) == [
        "car", "dog", "testing_set.txt", "training_set.txt"]
    for name in NAMES:
        seq = demo_root / name.split("-")[0] / name
        assert sorted(p.name for p in seq.iterdir()) == [
            "full_occlusion.txt", "groundtruth.txt", "img", "nlp.txt", "out_of_view.txt"]
        frames = sorted(p.name for p in (seq / "img").iterdir())
        assert frames == [f"{i:08d}.jpg" for i in range(1, FRAMES + 1)]
        gt_lines = (seq / "groundtruth.txt").read_text().splitlines()
        assert len(gt_lines) == FRAMES
        assert all(re.fullmatch(r"\d+,\d+,\d+,\d+", line) for line in gt_lines)
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            rows = (seq / flag_file).read_text().splitlines()
            assert len(rows) == 1 and re.fullmatch(r"[01](,[01])*", rows[0])
            assert len(rows[0].split(",")) == FRAMES
        nlp = (seq / "nlp.txt").read_text().splitlines()
        assert len(nlp) == 1 and len(nlp[0]) > 10


def test_images_and_boxes(demo_root: Path) -> None:
    for sequence in LasotDataset(demo_root, split=None):
        assert len(sequence.frames) == FRAMES and sequence.gt_boxes.shape == (FRAMES, 4)
        for index in (0, FRAMES // 2, FRAMES - 1):
            image = sequence.image(index)
            assert image.shape == (H, W, 3) and image.dtype == np.uint8
        boxes = sequence.gt_boxes
        visible = sequence.visible
        x, y, w, h = boxes[visible].T
        assert (w > 0).all() and (h > 0).all()
        assert (x >= 1).all() and (y >= 1).all()
        assert (x + w - 1 <= W).all() and (y + h - 1 <= H).all()
        assert (sequence.full_occlusion | sequence.out_of_view)[~visible].all()
        np.testing.assert_array_equal(boxes[sequence.out_of_view], 0)
        # every 60-frame sequence leaves the view once and is fully occluded once
        assert sequence.out_of_view.any() and sequence.full_occlusion.any()
        assert not (sequence.out_of_view & sequence.full_occlusion).any()
        assert visible[0] and visible.mean() > 0.6
        # the object moves smoothly: visible-to-visible centre jumps stay small
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        both = visible[1:] & visible[:-1]
        jumps = np.linalg.norm(np.diff(centres, axis=0), axis=1)[both]
        assert jumps.max() < 0.15 * W


def test_object_is_where_the_box_says(demo_root: Path) -> None:
    """Pixels inside a visible box differ from the same pixels of a frame without the object."""
    sequence = LasotDataset(demo_root)["car-1"]
    frame = sequence.image(0).astype(np.float32)
    x, y, w, h = sequence.gt_boxes[0].astype(int)
    inside = frame[y - 1:y - 1 + h, x - 1:x - 1 + w]
    gone = int(np.flatnonzero(sequence.out_of_view)[0])
    background = sequence.image(gone).astype(np.float32)[y - 1:y - 1 + h, x - 1:x - 1 + w]
    # slight camera panning moves the background by a few pixels only
    assert np.abs(inside - background).mean() > 20


def test_determinism_by_seed(demo_root: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    again = make_lasot_dataset(tmp_path / "again", ("car",), seqs_per_class=1,
                               num_frames=FRAMES, size=(W, H), seed=0)
    elapsed = time.perf_counter() - start
    assert again == ["car-1"]
    assert elapsed < 2.0, f"one {FRAMES}-frame sequence took {elapsed:.2f} s"
    for name in ("groundtruth.txt", "full_occlusion.txt", "out_of_view.txt", "nlp.txt",
                 "img/00000001.jpg", "img/00000037.jpg"):
        assert (tmp_path / "again/car/car-1" / name).read_bytes() == \
            (demo_root / "car/car-1" / name).read_bytes()
    make_lasot_dataset(tmp_path / "other", ("car",), seqs_per_class=1, num_frames=FRAMES,
                       size=(W, H), seed=1)
    assert (tmp_path / "other/car/car-1/groundtruth.txt").read_text() != \
        (demo_root / "car/car-1/groundtruth.txt").read_text()


def test_sequences_without_events(demo_root: Path, tmp_path: Path) -> None:
    """events=False: no exit and no occlusion (every frame visible, no flag set); the same object
    and motion otherwise, so the frames before the first event are the same as with events."""
    make_lasot_dataset(tmp_path / "calm", ("car",), seqs_per_class=1, num_frames=FRAMES, size=(W, H),
                       seed=0, events=False)
    calm = LasotDataset(tmp_path / "calm")["car-1"]
    eventful = LasotDataset(demo_root)["car-1"]
    assert not calm.full_occlusion.any() and not calm.out_of_view.any() and calm.visible.all()
    assert eventful.out_of_view.any() and eventful.full_occlusion.any()
    np.testing.assert_array_equal(calm.gt_boxes[:2], eventful.gt_boxes[:2])   # events start at frame 3
    assert (calm.frames[1].read_bytes() == eventful.frames[1].read_bytes())
    still = ~(eventful.out_of_view | eventful.full_occlusion)
    assert not np.array_equal(calm.gt_boxes[still], eventful.gt_boxes[still])  # the exit moved it
    centres = calm.gt_boxes[:, :2] + calm.gt_boxes[:, 2:] / 2
    sizes = np.sqrt(calm.gt_boxes[:, 2] * calm.gt_boxes[:, 3])
    assert (np.linalg.norm(np.diff(centres, axis=0), axis=1) < 0.5 * sizes[1:]).all()  # no jump


def test_make_lasot_demo_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_lasot_demo.py"), "--out", tmp_path / "d",
         "--classes", "cat", "--seqs-per-class", "2", "--frames", "12", "--width", "96",
         "--height", "64", "--seed", "3"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    sequence = LasotDataset(tmp_path / "d", split="train")["cat-2"]
    assert len(sequence) == 12 and sequence.image(11).shape == (64, 96, 3)
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "make_lasot_demo.py"), "--out",
                          tmp_path / "e", "--frames", "1"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert bad.returncode != 0 and "at least 2 frames" in bad.stderr


# --------------------------------------------------------------------------- reader
def test_reader_splits(demo_root: Path, tmp_path: Path) -> None:
    assert LasotDataset(demo_root, split="test").sequence_names == ["car-1", "dog-1"]
    assert LasotDataset(demo_root, split="train").sequence_names == ["car-2", "dog-2"]
    assert LasotDataset(demo_root, split=None).sequence_names == NAMES
    dataset = build_dataset("lasot", root=demo_root, split="test")
    sequence = dataset[1]
    assert sequence.name == "dog-1" and sequence.class_name == "dog"
    assert sequence.gt_boxes.dtype == np.float64 and sequence.visible.dtype == bool
    assert sequence.frames[0] == demo_root / "dog/dog-1/img/00000001.jpg"
    assert sequence.nlp and [s.name for s in dataset] == ["car-1", "dog-1"]
    # no training_set.txt: train = every sequence folder not in testing_set.txt
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    (root / "training_set.txt").unlink()
    assert LasotDataset(root, split="train").sequence_names == ["car-2", "dog-2"]
    (root / "testing_set.txt").unlink()
    assert LasotDataset(root, split="test").sequence_names == NAMES
    (root / "testing_set.txt").write_text("car-1\nbird-3\n")
    with pytest.raises(FileNotFoundError, match=r"bird-3.*testing_set\.txt"):
        LasotDataset(root, split="test")
    with pytest.raises(ValueError, match="unknown split"):
        LasotDataset(root, split="val")


def test_reader_errors(demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="LaSOT root not found"):
        LasotDataset(tmp_path / "nowhere")
    seq = copy_sequence(demo_root, tmp_path)
    assert len(load_sequence(seq)) == FRAMES

    gt = seq / "groundtruth.txt"
    lines = gt.read_text().splitlines()
    gt.write_text("\n".join(lines[:4] + ["12,30,x,40"] + lines[5:]) + "\n")
    with pytest.raises(ValueError, match=r"groundtruth\.txt:5: expected 4 numbers"):
        load_sequence(seq)
    gt.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=rf"full_occlusion\.txt: {FRAMES} flags but "
                                         rf"groundtruth\.txt has {FRAMES - 1} rows"):
        load_sequence(seq)
    gt.write_text("\n".join(lines) + "\n")

    out_of_view = seq / "out_of_view.txt"
    flags = out_of_view.read_text().strip().split(",")
    out_of_view.write_text(",".join(flags[:-2]) + "\n")
    with pytest.raises(ValueError, match=r"out_of_view\.txt: 58 flags"):
        load_sequence(seq)
    out_of_view.write_text(",".join(flags[:-1] + ["2"]) + "\n")
    with pytest.raises(ValueError, match=r"out_of_view\.txt:1: entry 60 is '2'"):
        load_sequence(seq)
    out_of_view.write_text(",".join(flags) + "\n")

    (seq / "img" / "00000017.jpg").unlink()
    with pytest.raises(ValueError, match=r"img: 59 JPEG frames .*missing 00000017\.jpg"):
        load_sequence(seq)
    assert len(load_sequence(seq, check_images=False)) == FRAMES
    shutil.copy(seq / "img" / "00000016.jpg", seq / "img" / "00000017.jpg")

    (seq / "groundtruth.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"car-1/groundtruth\.txt"):
        load_sequence(seq)


def test_read_image_errors(demo_root: Path, tmp_path: Path) -> None:
    source = (demo_root / "car/car-1/img/00000001.jpg").read_bytes()
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image" * 50)
    with pytest.raises(ValueError, match=r"cannot decode image .*garbage\.jpg: cannot identify"):
        read_image(garbage)
    # cut in the middle of the scan, and only the end-of-image marker missing: the decoder's own report
    for name, data in (("half.jpg", source[:len(source) // 2]), ("no_end.jpg", source[:-2])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"cannot decode image .*{name}: image file is truncated"):
            read_image(tmp_path / name)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        read_image(empty)
    trailing = tmp_path / "trailing.jpg"  # bytes after the end marker are harmless
    trailing.write_bytes(source + b"\x00" * 16)
    assert read_image(trailing).shape == (H, W, 3)


def test_read_image_matches_opencv(demo_root: Path, tmp_path: Path) -> None:
    """The same RGB pixels as OpenCV's decoder, grayscale files as three channels, and the EXIF
    orientation applied as OpenCV applies it."""
    import cv2
    from PIL import Image

    path = demo_root / "car/car-1/img/00000001.jpg"
    np.testing.assert_array_equal(read_image(path), cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    gray = tmp_path / "gray.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20), dtype=np.uint8)).save(gray)
    np.testing.assert_array_equal(read_image(gray), cv2.cvtColor(cv2.imread(str(gray)), cv2.COLOR_BGR2RGB))
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                                   # stored sideways: turn 90 degrees clockwise
    Image.open(path).save(rotated, exif=exif, quality=95)
    expected = cv2.cvtColor(cv2.imread(str(rotated)), cv2.COLOR_BGR2RGB)
    assert expected.shape == (W, H, 3)
    np.testing.assert_array_equal(read_image(rotated), expected)


# --------------------------------------------------------------------------- end to end
def test_ground_truth_results_score_from_visible_fraction(
        demo_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "gt_tracker"
    results.mkdir()
    expected_curves = []
    test_set = LasotDataset(demo_root, split="test")
    for sequence in test_set:
        shutil.copy(sequence.path / "groundtruth.txt", results / f"{sequence.name}.txt")
        visible_fraction = sequence.visible.mean()
        expected_curves.append([visible_fraction] * 20 + [0.0])
    expected_auc = 100 * np.mean(expected_curves)
    result = evaluate_tracker(results, load_annotations(demo_root), progress=False)
    assert result.sequences == test_set.sequence_names
    assert result.AUC == pytest.approx(expected_auc)
    assert result.AUC == pytest.approx(100 * 20 / 21 * np.mean(
        [s.visible.mean() for s in test_set]))
    assert result.P == pytest.approx(100 * np.mean([s.visible.mean() for s in test_set]))
    assert 50 < result.AUC < 100 * 20 / 21
