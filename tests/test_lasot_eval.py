"""LaSOT evaluation: real annotations through the CLI, and every rule on hand-computed cases."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.annotations import read_boxes
from evaluation.boxes import box_iou
from evaluation.lasot import (SUCCESS_THRESHOLDS, evaluate_sequence, evaluate_tracker, load_annotations,
                              success_auc, success_curve)

REPO = Path(__file__).resolve().parents[1]
EVAL_CLI = REPO / "tools" / "eval_lasot.py"
PERFECT = 100 * 20 / 21  # IoU 1 passes every threshold but 1.0


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EVAL_CLI), "--quiet", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def write_boxes(path: Path, boxes, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(str(v) for v in row) + "\n" for row in boxes))
    return path


def write_toolkit(root: Path, sequences: dict[str, tuple], attributes: dict | None = None) -> Path:
    """Toolkit layout: <seq>.txt, absent/<seq>.txt [, att/<seq>.txt], testing_set.txt."""
    for name, (gt, absent) in sequences.items():
        write_boxes(root / f"{name}.txt", gt)
        (root / "absent").mkdir(parents=True, exist_ok=True)
        (root / "absent" / f"{name}.txt").write_text("".join(f"{int(a)}\n" for a in absent))
        if attributes and name in attributes:
            (root / "att").mkdir(exist_ok=True)
            (root / "att" / f"{name}.txt").write_text(",".join(map(str, attributes[name])))
    (root / "testing_set.txt").write_text("".join(f"{n}\n" for n in sequences))
    return root


GT4 = np.array([[1, 1, 10, 10], [3, 2, 10, 10], [6, 4, 12, 10], [8, 6, 12, 11]], float)


# --------------------------------------------------------------------------- real annotations
@pytest.fixture(scope="module")
def shared_annos(shared_dir: Path) -> Path:
    annos = shared_dir / "data" / "lasot_test_annos"
    if not (annos / "testing_set.txt").is_file():
        pytest.skip(f"shared LaSOT annotations not found at {annos}")
    return annos


def test_ground_truth_as_results_on_real_lasot(shared_annos: Path, tmp_path: Path) -> None:
    names = [n.strip() for n in (shared_annos / "testing_set.txt").read_text().split()]
    assert len(names) == 280
    results = tmp_path / "gt_tracker"
    results.mkdir()
    valid_fraction = []
    for name in names:
        shutil.copy(shared_annos / f"{name}.txt", results / f"{name}.txt")
        gt = np.loadtxt(shared_annos / f"{name}.txt", delimiter=",", ndmin=2)
        absent = np.loadtxt(shared_annos / "absent" / f"{name}.txt", ndmin=1).astype(bool)
        valid_fraction.append(np.mean((gt > 0).all(axis=1) & ~absent))
    expected = PERFECT * np.mean(valid_fraction)  # independent of the code under test

    out = tmp_path / "default.json"
    proc = run_cli("--results", results, "--annos", shared_annos, "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert {"AUC", "P", "NP", "per_sequence", "per_attribute"} <= set(data)
    assert round(data["AUC"], 2) == 92.74
    assert data["AUC"] == pytest.approx(expected, abs=1e-9)
    assert len(data["per_sequence"]) == 280
    assert set(data["per_sequence"]["airplane-1"]) == {"AUC", "P", "NP"}
    assert len(data["per_attribute"]) == 14 and data["per_attribute"]["FOC"]["AUC"] < PERFECT
    assert "| gt_tracker | 92.74 |" in proc.stdout

    out = tmp_path / "valid.json"
    proc = run_cli("--results", results, "--annos", shared_annos, "--exclude-invalid",
                   "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert round(data["AUC"], 2) == 95.24 and data["AUC"] == pytest.approx(PERFECT)
    assert data["P"] == pytest.approx(100) and data["NP"] == pytest.approx(100)


# --------------------------------------------------------------------------- IoU and curves
def pixel_iou(a, b) -> float:
    """The LaSOT toolkit's formula written out: +1-pixel overlap sides, plain w*h areas."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    side_x = max(0, min(ax + aw - 1, bx + bw - 1) - max(ax, bx) + 1)
    side_y = max(0, min(ay + ah - 1, by + bh - 1) - max(ay, by) + 1)
    return side_x * side_y / (aw * ah + bw * bh - side_x * side_y)


def test_iou_plus_one_convention() -> None:
    iou = box_iou
    box = np.array([1, 1, 10, 10])
    # columns 1..10 vs 6..15: 5 x 5 overlap, areas 100 + 100
    assert iou(box, [6, 6, 10, 10]) == pytest.approx(25 / 175)
    assert iou(box, [10, 1, 10, 10]) == pytest.approx(10 / 190)  # one shared column
    assert iou(box, [11, 1, 10, 10]) == 0.0                        # touching only
    assert iou(box, [30, 30, 5, 5]) == 0.0
    assert iou(box, box) == 1.0
    pairs = iou(np.stack([box, box]), np.array([[6, 6, 10, 10], [1, 1, 10, 5]]))
    np.testing.assert_allclose(pairs, [25 / 175, 0.5])
    rng = np.random.default_rng(0)  # the toolkit's formula, written out, agrees on random boxes
    boxes = np.concatenate([rng.uniform(0, 50, (200, 2, 2)), rng.uniform(1, 30, (200, 2, 2))], axis=2)
    np.testing.assert_allclose(box_iou(boxes[:, 0], boxes[:, 1]), [pixel_iou(a, b) for a, b in boxes])


def test_continuous_iou() -> None:
    """Without the pixel convention a box covers [x, x + w): touching boxes do not overlap."""
    box = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(box, [5, 5, 10, 10]) == pytest.approx(25 / 175)
    assert box_iou(box, [10, 0, 10, 10]) == 0.0
    assert box_iou(box, [2.5, 0, 5, 10]) == pytest.approx(0.5)
    assert box_iou(box, box) == 1.0
    np.testing.assert_allclose(box_iou(np.stack([box, box]), [[0, 0, 10, 5], [20, 20, 1, 1]]), [0.5, 0.0])
    assert np.isnan(box_iou([0, 0, 0, 0], [0, 0, 0, 0]))
    assert box_iou(np.zeros((5, 1, 4)), np.ones((1, 3, 4))).shape == (5, 3)  # broadcasting
    with pytest.raises(ValueError, match="x, y, w, h"):
        box_iou(np.zeros(3), box)


def test_success_threshold_is_strict() -> None:
    iou = box_iou(np.array([1, 1, 10, 10]), np.array([1, 1, 10, 5]))
    assert iou == 0.5
    curve = success_curve([iou])
    assert curve.shape == (21,)
    np.testing.assert_array_equal(curve, (SUCCESS_THRESHOLDS < 0.5).astype(float))
    assert curve[10] == 0.0  # threshold 0.5 itself fails
    np.testing.assert_array_equal(success_curve([1.0]), [1.0] * 20 + [0.0])
    assert success_auc(success_curve([1.0])) == pytest.approx(PERFECT)
    assert success_auc(np.stack([success_curve([1.0]), np.zeros(21)])) == pytest.approx(PERFECT / 2)


def test_absent_frames_fail_and_exclude_invalid() -> None:
    absent = np.array([False, False, True, False])
    scores = evaluate_sequence(GT4, GT4, absent)
    assert scores["success"].shape == (21,) and scores["precision"].shape == (51,)
    assert scores["norm_precision"].shape == (51,)
    np.testing.assert_allclose(scores["success"], [0.75] * 20 + [0.0])
    np.testing.assert_allclose(scores["precision"], 0.75)       # absent: a miss at any distance
    np.testing.assert_allclose(scores["norm_precision"], 0.75)
    np.testing.assert_array_equal(scores["iou"], [1, 1, -1, 1])
    valid_only = evaluate_sequence(GT4, GT4, absent, exclude_invalid=True)
    np.testing.assert_allclose(valid_only["success"], [1.0] * 20 + [0.0])
    np.testing.assert_allclose(valid_only["precision"], 1.0)
    for protocol in ("official", "pytracking"):
        same = evaluate_sequence(GT4, GT4, absent, protocol=protocol)
        np.testing.assert_allclose(same["success"], scores["success"])


def test_zero_size_ground_truth_official_hit_pytracking_miss() -> None:
    gt = GT4.copy()
    gt[2] = [6, 4, 0, 0]
    absent = np.zeros(4, bool)
    official = evaluate_sequence(GT4, gt, absent, protocol="official")
    pytracking = evaluate_sequence(GT4, gt, absent, protocol="pytracking")
    for scores in (official, pytracking):
        np.testing.assert_allclose(scores["success"], [0.75] * 20 + [0.0])
    np.testing.assert_allclose(official["precision"], 1.0)    # error -1 counts as a hit
    np.testing.assert_allclose(pytracking["precision"], 0.75)  # error inf is a miss
    np.testing.assert_allclose(official["norm_precision"], 1.0)
    # pytracking: a present frame with a degenerate box is a hit for normalised precision only
    np.testing.assert_allclose(pytracking["norm_precision"], 1.0)
    # official: any value <= 0 makes the frame invalid; pytracking looks at w, h only
    gt_x0 = GT4.copy()
    gt_x0[3] = [0, 6, 12, 11]
    np.testing.assert_allclose(evaluate_sequence(gt_x0, gt_x0, absent)["success"][0], 0.75)
    np.testing.assert_allclose(
        evaluate_sequence(gt_x0, gt_x0, absent, protocol="pytracking")["success"][0], 1.0)


def test_centre_errors_and_normalised_precision() -> None:
    gt = np.array([[1, 1, 10, 10], [21, 11, 10, 20]], float)
    pred = gt + [[0, 0, 0, 0], [3, 4, 0, 0]]  # frame 2: 5 px off; normalised (0.3, 0.2) -> 0.3606
    scores = evaluate_sequence(pred, gt, np.zeros(2, bool))
    np.testing.assert_allclose(scores["precision"][:5], 0.5)
    np.testing.assert_allclose(scores["precision"][5:], 1.0)
    norm = np.hypot(0.3, 0.2)
    thresholds = np.arange(51) / 100
    np.testing.assert_allclose(scores["norm_precision"], np.where(thresholds >= norm, 1.0, 0.5))
    # centre = xy + (wh - 1) / 2: a 1-px wider box moves the centre by half a pixel
    wider = evaluate_sequence(gt + [[0, 0, 0, 0], [0, 0, 1, 0]], gt, np.zeros(2, bool))
    assert wider["precision"][0] == 0.5 and wider["precision"][1] == 1.0


def test_invalid_predictions_official_vs_pytracking() -> None:
    gt = np.array([[1, 1, 10, 10], [1, 1, 10, 10], [6, 6, 10, 10]], float)
    absent = np.zeros(3, bool)
    pred = gt.copy()
    pred[2] = np.nan  # official: replaced by frame 2's box -> IoU 1/7 passes 0, 0.05, 0.1
    expected = np.array([3] * 3 + [2] * 17 + [0]) / 3
    np.testing.assert_allclose(evaluate_sequence(pred, gt, absent)["success"], expected)
    with pytest.raises(ValueError, match=r"res\.txt:3: NaN"):
        evaluate_sequence(pred, gt, absent, protocol="pytracking", source="res.txt")

    negative = gt.copy()
    negative[2] = [6, 6, -3, 10]
    np.testing.assert_allclose(evaluate_sequence(negative, gt, absent)["success"], expected)
    with pytest.raises(ValueError, match=r"res\.txt:3: negative"):
        evaluate_sequence(negative, gt, absent, protocol="pytracking", source="res.txt")

    zero = gt.copy()
    zero[2] = [6, 6, 0, 10]
    for protocol in ("official", "pytracking"):
        np.testing.assert_allclose(evaluate_sequence(zero, gt, absent, protocol)["success"],
                                   expected)
    # a run of invalid rows takes the last good row
    run = np.array([[1, 1, 10, 10], [6, 6, 10, 10], [0, 0, 0, 0], [np.nan] * 4], float)
    gt_run = np.array([[1, 1, 10, 10], [6, 6, 10, 10], [6, 6, 10, 10], [6, 6, 10, 10]], float)
    np.testing.assert_allclose(evaluate_sequence(run, gt_run, np.zeros(4, bool))["iou"], 1.0)


def test_first_frame_replaced_and_extra_rows_cut() -> None:
    absent = np.zeros(4, bool)
    pred = GT4.copy()
    pred[0] = [500, 500, 1, 1]
    for protocol in ("official", "pytracking"):
        scores = evaluate_sequence(pred, GT4, absent, protocol)
        np.testing.assert_allclose(scores["iou"], 1.0)
    longer = np.vstack([GT4, [[900, 900, 5, 5], [np.nan] * 4]])
    np.testing.assert_allclose(evaluate_sequence(longer, GT4, absent, "pytracking")["success"],
                               [1.0] * 20 + [0.0])
    with pytest.raises(ValueError, match=r"short\.txt: 3 result rows but the ground truth has 4"):
        evaluate_sequence(GT4[:3], GT4, absent, source="short.txt")


# --------------------------------------------------------------------------- files
def test_read_boxes_separators_and_errors(tmp_path: Path) -> None:
    boxes = [[1.5, 2, 30, 40.25], [3, 4, 5, 6]]
    comma = read_boxes(write_boxes(tmp_path / "comma.txt", boxes, ","))
    np.testing.assert_array_equal(comma, boxes)
    np.testing.assert_array_equal(read_boxes(write_boxes(tmp_path / "tab.txt", boxes, "\t")),
                                  boxes)
    np.testing.assert_array_equal(read_boxes(write_boxes(tmp_path / "space.txt", boxes, " ")),
                                  boxes)
    (tmp_path / "mixed.txt").write_text("1.5, 2,\t30,40.25\r\n3\t4 5,6\n\n")
    np.testing.assert_array_equal(read_boxes(tmp_path / "mixed.txt"), boxes)
    (tmp_path / "nan.txt").write_text("1,2,3,4\nnan,nan,nan,nan\n")
    assert np.isnan(read_boxes(tmp_path / "nan.txt")[1]).all()

    (tmp_path / "short_line.txt").write_text("1,2,3,4\n5,6,7\n")
    with pytest.raises(ValueError, match=r"short_line\.txt:2: expected 4 numbers"):
        read_boxes(tmp_path / "short_line.txt")
    (tmp_path / "text.txt").write_text("1,2,3,4\n1,2,3,4\n1,2,x,4\n")
    with pytest.raises(ValueError, match=r"text\.txt:3:.*'1 2 x 4'"):
        read_boxes(tmp_path / "text.txt")
    (tmp_path / "blank.txt").write_text("1,2,3,4\n\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"blank\.txt:2"):
        read_boxes(tmp_path / "blank.txt")
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        read_boxes(tmp_path / "nothing.txt")


def _two_sequence_annos(root: Path) -> Path:
    gt_b = GT4 + [100, 50, 0, 0]
    return write_toolkit(root, {"cat-1": (GT4, [0, 0, 1, 0]), "cat-2": (gt_b, [0, 0, 0, 0])})


def test_evaluate_tracker_files_and_errors(tmp_path: Path) -> None:
    annos_dir = _two_sequence_annos(tmp_path / "annos")
    annos = load_annotations(annos_dir)
    assert list(annos) == ["cat-1", "cat-2"]
    np.testing.assert_array_equal(annos["cat-1"].absent, [0, 0, 1, 0])
    results = tmp_path / "tracker"
    write_boxes(results / "cat-1.txt", GT4, "\t")
    (results / "cat-1_time.txt").write_text("0.1\n0.1\n0.1\n0.1\n")

    with pytest.raises(FileNotFoundError, match=r"no result file for 1 of 2 sequences: cat-2"):
        evaluate_tracker(results, annos, progress=False)
    partial = evaluate_tracker(results, annos, skip_missing=True, progress=False)
    assert partial.sequences == ["cat-1"] and partial.skipped == ["cat-2"]
    assert partial.AUC == pytest.approx(PERFECT * 3 / 4)

    # 5 px to the right: IoU 5/15 = 1/3 for w = 10 (frame 2), 7/17 for w = 12 (frames 3, 4)
    shifted = annos["cat-2"].gt_boxes + [5, 0, 0, 0]
    write_boxes(results / "cat-2.txt", shifted)
    result = evaluate_tracker(results, annos_dir, progress=False)
    curve_b = np.array([4] * 7 + [3] * 2 + [1] * 11 + [0]) / 4
    assert result.AUC == pytest.approx(100 * np.mean([[0.75] * 20 + [0], curve_b]))
    assert result.per_sequence["cat-2"]["AUC"] == pytest.approx(100 * curve_b.mean())
    assert result.P == pytest.approx(100 * np.mean([0.75, 1.0]))  # 5 px < 20 px
    assert result.per_attribute == {}

    write_boxes(results / "cat-2.txt", shifted[:2])
    with pytest.raises(ValueError, match=r"cat-2\.txt: 2 result rows but the ground truth has 4"):
        evaluate_tracker(results, annos, progress=False)
    (results / "cat-2.txt").write_text("1,1,10,10\n2,2,10,10\n3;3;10;10\n4,4,10,10\n")
    with pytest.raises(ValueError, match=r"cat-2\.txt:3"):
        evaluate_tracker(results, annos, progress=False)


def test_official_drops_all_zero_sequences_pytracking_keeps_them(tmp_path: Path) -> None:
    sequences = {"cat-1": (GT4, [0, 0, 0, 0]), "cat-2": (GT4, [1, 1, 1, 1])}
    annos = write_toolkit(tmp_path / "annos", sequences)
    results = tmp_path / "tracker"
    write_boxes(results / "cat-1.txt", GT4)
    write_boxes(results / "cat-2.txt", GT4)
    official = evaluate_tracker(results, annos, protocol="official", progress=False)
    assert official.AUC == pytest.approx(PERFECT)
    assert official.dropped["success"] == ["cat-2"]
    pytracking = evaluate_tracker(results, annos, protocol="pytracking", progress=False)
    assert pytracking.AUC == pytest.approx(PERFECT / 2) and pytracking.dropped == {}


def test_per_attribute_auc(tmp_path: Path) -> None:
    attributes = {"cat-1": [1] + [0] * 13, "cat-2": [1, 1] + [0] * 12}
    sequences = {"cat-1": (GT4, [0, 0, 1, 0]), "cat-2": (GT4, [0, 0, 0, 0])}
    annos = write_toolkit(tmp_path / "annos", sequences, attributes)
    results = tmp_path / "tracker"
    write_boxes(results / "cat-1.txt", GT4)
    write_boxes(results / "cat-2.txt", GT4)
    result = evaluate_tracker(results, annos, progress=False)
    assert set(result.per_attribute) == {"IV", "POC"}
    assert result.per_attribute["IV"]["num_sequences"] == 2
    assert result.per_attribute["IV"]["AUC"] == pytest.approx(PERFECT * (0.75 + 1) / 2)
    assert result.per_attribute["POC"]["AUC"] == pytest.approx(PERFECT)
    assert result.per_attribute["POC"]["name"] == "Partial Occlusion"
    (tmp_path / "annos" / "att" / "cat-1.txt").write_text("1,0,1")
    with pytest.raises(ValueError, match=r"att/cat-1\.txt: 3 attribute flags, expected 14"):
        load_annotations(annos)


def test_dataset_root_layout_matches_toolkit_layout(tmp_path: Path) -> None:
    occlusion = [0, 0, 1, 0]
    out_of_view = [0, 0, 0, 1]
    gt = GT4.copy()
    gt[3] = 0
    seq = tmp_path / "lasot" / "cat" / "cat-1"
    write_boxes(seq / "groundtruth.txt", gt.astype(int))
    (seq / "full_occlusion.txt").write_text(",".join(map(str, occlusion)))
    (seq / "out_of_view.txt").write_text(",".join(map(str, out_of_view)))
    dataset_annos = load_annotations(tmp_path / "lasot")
    np.testing.assert_array_equal(dataset_annos["cat-1"].absent, [0, 0, 1, 1])
    toolkit = write_toolkit(tmp_path / "toolkit", {"cat-1": (gt.astype(int), [0, 0, 1, 1])})
    results = tmp_path / "tracker"
    write_boxes(results / "cat-1.txt", GT4 + [1, 0, 0, 0])
    a = evaluate_tracker(results, dataset_annos, progress=False)
    b = evaluate_tracker(results, toolkit, progress=False)
    assert a.AUC == b.AUC and a.P == b.P and a.NP == b.NP
    np.testing.assert_array_equal(a.success_curve, b.success_curve)


# --------------------------------------------------------------------------- CLI
def test_cli_several_trackers_json_table_and_plots(tmp_path: Path) -> None:
    annos = _two_sequence_annos(tmp_path / "annos")
    gt = load_annotations(annos)
    good, bad = tmp_path / "good", tmp_path / "bad"
    for name, anno in gt.items():
        write_boxes(good / f"{name}.txt", anno.gt_boxes, "\t")
        write_boxes(bad / f"{name}.txt", anno.gt_boxes + [5, 0, 0, 0])
    out = tmp_path / "scores.json"
    plots = tmp_path / "plots"
    proc = run_cli("--results", good, bad, "--annos", annos, "--names", "Good", "Bad",
                   "--json", out, "--plots", plots)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"Good", "Bad"}
    assert data["Good"]["AUC"] == pytest.approx(PERFECT * (0.75 + 1) / 2)
    # frame 1 = GT; IoU 1/3 (w = 10) and 7/17 (w = 12) elsewhere; cat-1 frame 3 absent
    curve_a = np.array([3] * 7 + [2] * 2 + [1] * 11 + [0]) / 4
    curve_b = np.array([4] * 7 + [3] * 2 + [1] * 11 + [0]) / 4
    assert data["Bad"]["AUC"] == pytest.approx(100 * np.mean([curve_a, curve_b]))
    assert data["Bad"]["AUC"] < data["Good"]["AUC"]
    assert f"| Good | {data['Good']['AUC']:.2f} |" in proc.stdout
    assert f"| Bad | {data['Bad']['AUC']:.2f} |" in proc.stdout
    for name in ("success_plot.png", "precision_plot.png"):
        path = plots / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.std() > 0

    proc = run_cli("--results", good, "--annos", annos, "--protocol", "pytracking",
                   "--json", tmp_path / "one.json")
    assert proc.returncode == 0, proc.stderr
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["protocol"] == "pytracking" and one["AUC"] == pytest.approx(data["Good"]["AUC"])


def test_cli_missing_results_error_and_skip(tmp_path: Path) -> None:
    annos = _two_sequence_annos(tmp_path / "annos")
    results = tmp_path / "tracker"
    write_boxes(results / "cat-1.txt", GT4)
    proc = run_cli("--results", results, "--annos", annos)
    assert proc.returncode != 0 and "cat-2" in proc.stderr and "--skip-missing" in proc.stderr
    proc = run_cli("--results", results, "--annos", annos, "--skip-missing",
                   "--json", tmp_path / "s.json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert list(data["per_sequence"]) == ["cat-1"] and data["skipped"] == ["cat-2"]
    (results / "cat-1.txt").write_text("1,1,10,10\n1,1,10\n")
    proc = run_cli("--results", results, "--annos", annos, "--skip-missing")
    assert proc.returncode != 0 and "cat-1.txt:2" in proc.stderr
