"""mIoU evaluation: hand-computed values, parity with mmseg's IoUMetric, the CLI, bad input."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from evaluation.miou import (apply_reduce_zero_label, evaluate_folders, intersect_and_union,
                            read_label_map, summarize)
from conftest import load_tool

REPO = Path(__file__).resolve().parents[1]


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def random_case(rng: np.random.Generator, num_images: int, num_classes: int, used: int,
                raw: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predictions in [0, used) and GT with ignore pixels; classes >= used never occur anywhere.

    With ``raw`` the GT is ADE20K-encoded: 0 = other, 1..used = classes.
    """
    preds, gts = [], []
    for _ in range(num_images):
        h, w = rng.integers(20, 50, size=2)
        gt = rng.integers(0, used, size=(h, w))
        pred = np.where(rng.random((h, w)) < 0.6, gt, rng.integers(0, used, size=(h, w)))
        if raw:
            gt = gt + 1
            gt[rng.random((h, w)) < 0.1] = 0
        gt[rng.random((h, w)) < 0.05] = 255
        preds.append(pred.astype(np.uint8))
        gts.append(gt.astype(np.uint8))
    return preds, gts


def test_hand_computed_2x3():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    label = np.array([[0, 1, 1], [1, 2, 255]])
    inter, union, area_pred, area_label = intersect_and_union(pred, label, num_classes=4)
    # The pixel whose GT is ignored (pred 2) counts nowhere; class 3 never occurs.
    np.testing.assert_array_equal(inter, [1, 2, 1, 0])
    np.testing.assert_array_equal(area_pred, [2, 2, 1, 0])
    np.testing.assert_array_equal(area_label, [1, 3, 1, 0])
    np.testing.assert_array_equal(union, [2, 3, 1, 0])
    assert inter.dtype == np.int64

    result = summarize(inter, union, area_pred, area_label, ["a", "b", "c", "d"])
    assert result["aAcc"] == pytest.approx(80.0)
    assert result["mIoU"] == pytest.approx((0.5 + 2 / 3 + 1) / 3 * 100)
    assert result["mAcc"] == pytest.approx((1 + 2 / 3 + 1) / 3 * 100)
    assert result["per_class"]["a"] == pytest.approx({"IoU": 50.0, "Acc": 100.0})
    assert result["per_class"]["b"]["IoU"] == pytest.approx(200 / 3)
    absent = result["per_class"]["d"]
    assert math.isnan(absent["IoU"]) and math.isnan(absent["Acc"])


def test_predicted_but_absent_class_has_zero_iou_and_nan_acc():
    pred = np.array([[0, 1]])
    label = np.array([[0, 0]])
    result = summarize(*intersect_and_union(pred, label, num_classes=2))
    assert result["per_class"]["class_1"]["IoU"] == 0.0
    assert math.isnan(result["per_class"]["class_1"]["Acc"])
    assert result["mIoU"] == pytest.approx(25.0)  # (1/2 + 0) / 2
    assert result["mAcc"] == pytest.approx(50.0)  # class_1's NaN is skipped


def test_reduce_zero_label_matches_ade20k_convention():
    raw = np.array([[0, 1, 2], [3, 255, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(apply_reduce_zero_label(raw), [[255, 0, 1], [2, 255, 0]])
    pred = np.array([[2, 0, 1], [0, 0, 0]])
    inter, _, area_pred, area_label = intersect_and_union(pred, raw, 3, reduce_zero_label=True)
    np.testing.assert_array_equal(area_label, [2, 1, 1])
    np.testing.assert_array_equal(area_pred, [3, 1, 0])
    np.testing.assert_array_equal(inter, [2, 1, 0])


def test_prediction_may_hold_ignore_index_as_a_miss():
    pred = np.array([[255, 1]])
    label = np.array([[0, 1]])
    inter, union, area_pred, area_label = intersect_and_union(pred, label, 2)
    np.testing.assert_array_equal(area_pred, [0, 1])
    np.testing.assert_array_equal(area_label, [1, 1])
    np.testing.assert_array_equal(union, [1, 1])


@pytest.mark.filterwarnings("ignore:`reduce_zero_label` will be deprecated")
@pytest.mark.parametrize("reduce", [False, True])
def test_parity_with_mmseg_iou_metric(tmp_path, reduce):
    """Same PNGs through mmseg (LoadAnnotations + IoUMetric) and through evaluate_folders."""
    torch = pytest.importorskip("torch")
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.evaluation.metrics import IoUMetric

    num_classes, used = 10, 7  # classes 7..9 never occur: NaN, skipped by the means
    rng = np.random.default_rng(1 + reduce)
    preds, gts = random_case(rng, 5, num_classes, used, raw=reduce)
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        write_png(tmp_path / "pred" / f"img{i}.png", pred)
        write_png(tmp_path / "gt" / f"img{i}.png", gt)
    names = [f"c{i}" for i in range(num_classes)]

    load = LoadAnnotations(reduce_zero_label=reduce)
    metric = IoUMetric(ignore_index=255)
    metric.dataset_meta = {"classes": names}
    for i, pred in enumerate(preds):
        loaded = load({"seg_map_path": str(tmp_path / "gt" / f"img{i}.png"),
                       "reduce_zero_label": reduce, "seg_fields": []})
        sample = {"pred_sem_seg": {"data": torch.from_numpy(pred[None].astype(np.int64))},
                  "gt_sem_seg": {"data": torch.from_numpy(loaded["gt_seg_map"][None])}}
        metric.process({}, [sample])
        ours = intersect_and_union(pred, read_label_map(tmp_path / "gt" / f"img{i}.png"),
                                   num_classes, reduce_zero_label=reduce)
        for mine, theirs in zip(ours, metric.results[-1]):
            np.testing.assert_array_equal(mine, theirs.numpy().astype(np.int64))

    result = evaluate_folders(tmp_path / "pred", tmp_path / "gt", num_classes,
                              reduce_zero_label=reduce, class_names=names, progress=False)
    totals = [sum(r[k] for r in metric.results) for k in range(4)]
    reference = IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    ref_iou, ref_acc = reference["IoU"] * 100, reference["Acc"] * 100
    our_iou = np.array([result["per_class"][n]["IoU"] for n in names])
    our_acc = np.array([result["per_class"][n]["Acc"] for n in names])
    assert np.isnan(our_iou[used:]).all() and np.isnan(ref_iou[used:]).all()
    np.testing.assert_allclose(our_iou, ref_iou, rtol=0, atol=1e-4)  # percent: 1e-6 as fraction
    np.testing.assert_allclose(our_acc, ref_acc, rtol=0, atol=1e-4)
    assert result["aAcc"] == pytest.approx(float(reference["aAcc"]) * 100, abs=1e-4)
    assert result["mIoU"] == pytest.approx(float(np.nanmean(ref_iou)), abs=1e-4)
    assert result["mAcc"] == pytest.approx(float(np.nanmean(ref_acc)), abs=1e-4)

    summary = metric.compute_metrics(metric.results)  # mmseg rounds to 2 decimals
    for key in ("aAcc", "mIoU", "mAcc"):
        assert abs(result[key] - summary[key]) <= 0.005 + 1e-6
    assert result["num_images"] == 5


def test_cli_writes_json_equal_to_library(tmp_path):
    rng = np.random.default_rng(7)
    preds, gts = random_case(rng, 3, 6, 5, raw=True)
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        write_png(tmp_path / "pred" / f"ADE_val_{i:08d}.png", pred)
        write_png(tmp_path / "gt" / f"ADE_val_{i:08d}.png", gt)
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(["wall", "floor", "tree", "sky", "road", "lamp"]) + "\n")
    out = tmp_path / "out" / "miou.json"
    plot = tmp_path / "out" / "iou.png"
    run = subprocess.run([sys.executable, str(REPO / "tools" / "eval_miou.py"),
                          "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                          "--num-classes", "6", "--reduce-zero-label",
                          "--class-names", str(names_file), "--json", str(out),
                          "--plot", str(plot)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "mIoU" in run.stdout and "lamp" in run.stdout

    saved = json.loads(out.read_text())
    expected = evaluate_folders(tmp_path / "pred", tmp_path / "gt", 6, reduce_zero_label=True,
                                class_names=names_file.read_text().split(), progress=False)
    assert {"aAcc", "mIoU", "mAcc", "per_class"} <= set(saved)
    for key in ("aAcc", "mIoU", "mAcc"):
        assert saved[key] == pytest.approx(expected[key], abs=1e-12)
    assert saved["per_class"]["lamp"] == {"IoU": None, "Acc": None}  # class 5 never occurs
    assert saved["per_class"]["wall"]["IoU"] == pytest.approx(expected["per_class"]["wall"]["IoU"])
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[2] == 3


def test_ade20k_class_names_are_mmsegs():
    from mmseg.datasets import ADE20KDataset

    from evaluation.miou import ade20k_class_names

    assert ade20k_class_names() == list(ADE20KDataset.METAINFO["classes"])


def test_cli_ade20k_class_names(tmp_path, capsys):
    eval_miou = load_tool("eval_miou")
    gt = np.array([[0, 1, 150], [2, 2, 255]], dtype=np.uint8)
    pred = np.array([[0, 0, 149], [1, 0, 0]], dtype=np.uint8)
    write_png(tmp_path / "gt" / "a.png", gt)
    write_png(tmp_path / "pred" / "a.png", pred)
    result = eval_miou.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                             "--num-classes", "150", "--reduce-zero-label",
                             "--class-names", "ade20k"])
    names = list(result["per_class"])
    assert len(names) == 150 and names[0] == "wall" and names[-1] == "flag"
    assert result["per_class"]["wall"]["IoU"] == pytest.approx(50.0)  # raw 1 -> class 0
    assert result["per_class"]["flag"]["IoU"] == pytest.approx(100.0)  # raw 150 -> class 149
    assert result["per_class"]["building"]["IoU"] == pytest.approx(50.0)
    assert "flag" in capsys.readouterr().out


def test_label_map_reading(tmp_path):
    labels = np.array([[0, 3, 7], [200, 1, 255]], dtype=np.uint8)
    palette_png = tmp_path / "palette.png"
    image = Image.fromarray(labels, mode="P")
    image.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, i)])
    image.save(palette_png)
    np.testing.assert_array_equal(read_label_map(palette_png), labels)  # indices, not colours

    wide = np.array([[0, 300], [1000, 65535]], dtype=np.uint16)
    read = read_label_map(write_png(tmp_path / "wide.png", wide))
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, wide)

    grey_rgb = write_png(tmp_path / "grey_rgb.png", np.repeat(labels[..., None], 3, axis=2))
    np.testing.assert_array_equal(read_label_map(grey_rgb), labels)


def make_folders(tmp_path: Path, stems_pred: list[str], stems_gt: list[str]) -> tuple[Path, Path]:
    label = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    (tmp_path / "pred").mkdir(exist_ok=True)
    for stem in stems_pred:
        write_png(tmp_path / "pred" / f"{stem}.png", np.zeros((2, 2), np.uint8))
    for stem in stems_gt:
        write_png(tmp_path / "gt" / f"{stem}.png", label)
    return tmp_path / "pred", tmp_path / "gt"


def test_error_missing_prediction_lists_stems(tmp_path):
    pred, gt = make_folders(tmp_path, ["a"], ["a", "b", "c"])
    with pytest.raises(FileNotFoundError, match=r"2 GT file\(s\).*b, c"):
        evaluate_folders(pred, gt, 3, progress=False)


def test_error_prediction_without_gt(tmp_path):
    pred, gt = make_folders(tmp_path, ["a", "zz"], ["a"])
    with pytest.raises(ValueError, match=r"1 prediction\(s\).*no GT.*zz"):
        evaluate_folders(pred, gt, 3, progress=False)


def test_error_missing_folder(tmp_path):
    _, gt = make_folders(tmp_path, [], ["a"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        evaluate_folders(tmp_path / "nowhere", gt, 3, progress=False)


def test_error_size_mismatch_names_file(tmp_path):
    pred, gt = make_folders(tmp_path, [], ["a"])
    write_png(pred / "a.png", np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png.*size 2x3.*\(2x2\)"):
        evaluate_folders(pred, gt, 3, progress=False)


def test_error_out_of_range_labels_name_file(tmp_path):
    pred, gt = make_folders(tmp_path, ["a"], ["a"])
    write_png(pred / "a.png", np.array([[0, 5], [1, 2]], np.uint8))
    with pytest.raises(ValueError, match=r"pred[/\\]a\.png \(prediction\).*outside \[0, 3\).*5"):
        evaluate_folders(pred, gt, 3, progress=False)
    write_png(pred / "a.png", np.zeros((2, 2), np.uint8))
    write_png(gt / "a.png", np.array([[0, 9], [1, 2]], np.uint8))
    with pytest.raises(ValueError, match=r"gt[/\\]a\.png \(GT\).*9"):
        evaluate_folders(pred, gt, 3, progress=False)
    # Raw ADE20K label 3 is class 2 after the reduction: out of range for 2 classes.
    write_png(gt / "a.png", np.array([[0, 3], [1, 2]], np.uint8))
    with pytest.raises(ValueError, match=r"after reduce_zero_label.*outside \[0, 2\).*2"):
        evaluate_folders(pred, gt, 2, reduce_zero_label=True, progress=False)
    with pytest.raises(ValueError, match="outside"):
        intersect_and_union(np.array([[4]]), np.array([[0]]), 3)


def test_error_corrupt_png_names_file(tmp_path):
    pred, gt = make_folders(tmp_path, ["a"], ["a"])
    data = (gt / "a.png").read_bytes()
    (gt / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"a\.png: unreadable or corrupt"):
        evaluate_folders(pred, gt, 3, progress=False)
    (pred / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"pred[/\\]a\.png: unreadable or corrupt"):
        read_label_map(pred / "a.png")


def test_error_colour_png_names_file(tmp_path):
    pred, gt = make_folders(tmp_path, ["a"], ["a"])
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (10, 20, 30)
    write_png(pred / "a.png", colour)
    with pytest.raises(ValueError, match=r"a\.png: 3-channel image .* channels differ"):
        evaluate_folders(pred, gt, 3, progress=False)


def test_error_class_names_count(tmp_path):
    pred, gt = make_folders(tmp_path, ["a"], ["a"])
    with pytest.raises(ValueError, match="2 class names given for 3 classes"):
        evaluate_folders(pred, gt, 3, class_names=["x", "y"], progress=False)


def test_cli_error_exits_with_message(tmp_path):
    pred, gt = make_folders(tmp_path, [], ["a"])
    eval_miou = load_tool("eval_miou")
    with pytest.raises(SystemExit, match=r"error: 1 GT file\(s\).*no prediction.*: a"):
        eval_miou.main(["--pred", str(pred), "--gt", str(gt), "--num-classes", "3"])
