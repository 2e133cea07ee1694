"""Static-box baseline and paired differences (evaluation.baselines) on hand-computed sequences."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.annotations import read_boxes
from evaluation.baselines import compare_with_static_box, paired_difference, static_box_boxes
from evaluation.lasot import evaluate_tracker, load_annotations

# Three sequences, toolkit layout. The success curve counts a frame at threshold t when IoU > t,
# t = 0, 0.05, ..., 1 (21 points); AUC = mean of the curve. Frame 1 always scores 20 of 21.
BOX = [1, 1, 10, 10]
SEQUENCES = {
    # static box: IoU 1 (20 points), 1/3 (t <= 0.30: 7), 0 (0), 1 (20); frame 5 absent (0 for anyone)
    "walk-1": ([BOX, [6, 1, 10, 10], [11, 1, 10, 10], BOX, BOX], [0, 0, 0, 0, 1]),
    # the object never moves: the static box is perfect
    "still-1": ([BOX, BOX, BOX], [0, 0, 0]),
    # the object doubles its height: IoU 1/2 (t <= 0.45: 10)
    "grow-1": ([BOX, [1, 1, 10, 20]], [0, 0]),
}
STATIC_AUC = {"walk-1": 100 * 47 / 105, "still-1": 100 * 20 / 21, "grow-1": 100 * 30 / 42}
PERFECT_AUC = {"walk-1": 100 * 80 / 105, "still-1": 100 * 20 / 21, "grow-1": 100 * 40 / 42}


def write_toolkit(root: Path) -> Path:
    (root / "absent").mkdir(parents=True)
    for name, (gt, absent) in SEQUENCES.items():
        (root / f"{name}.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in gt))
        (root / "absent" / f"{name}.txt").write_text("".join(f"{a}\n" for a in absent))
    (root / "testing_set.txt").write_text("".join(f"{n}\n" for n in SEQUENCES))
    return root


def write_results(folder: Path, boxes: dict[str, list]) -> Path:
    folder.mkdir(parents=True)
    for name, rows in boxes.items():
        (folder / f"{name}.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in rows))
    return folder


def test_static_box_boxes_repeat_frame_one() -> None:
    gt = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 0, 0]], float)
    np.testing.assert_array_equal(static_box_boxes(gt), [[1, 2, 3, 4]] * 3)
    with pytest.raises(ValueError, match="N >= 1"):
        static_box_boxes(np.zeros((0, 4)))


def test_static_box_and_paired_difference_on_known_boxes(tmp_path: Path) -> None:
    annos = write_toolkit(tmp_path / "annos")
    perfect = write_results(tmp_path / "perfect", {n: gt for n, (gt, _) in SEQUENCES.items()})
    # a tracker that stays on frame 1's box except in walk-1's frame 2, where it is perfect
    lagging = {n: [gt[0]] * len(gt) for n, (gt, _) in SEQUENCES.items()}
    lagging["walk-1"][1] = SEQUENCES["walk-1"][0][1]
    lagging_dir = write_results(tmp_path / "lagging", lagging)

    result = compare_with_static_box({"perfect": perfect, "lagging": lagging_dir}, annos, tmp_path / "static")

    for name, (gt, _) in SEQUENCES.items():  # the written baseline: frame 1's box in every row
        np.testing.assert_array_equal(read_boxes(tmp_path / "static" / f"{name}.txt"), [gt[0]] * len(gt))
    for name in SEQUENCES:
        assert result.static.per_sequence[name]["AUC"] == pytest.approx(STATIC_AUC[name])
    assert result.static.AUC == pytest.approx(np.mean(list(STATIC_AUC.values())))

    diff = result.differences["perfect"]
    expected = np.array([PERFECT_AUC[n] - STATIC_AUC[n] for n in SEQUENCES])  # 33/105, 0, 10/42
    assert diff.sequences == tuple(SEQUENCES)
    np.testing.assert_allclose(diff.differences, expected)
    mean = (100 * 33 / 105 + 100 * 10 / 42) / 3
    se = math.sqrt(sum((d - mean) ** 2 for d in expected) / 2) / math.sqrt(3)
    assert diff.mean == pytest.approx(mean)
    assert diff.mean == pytest.approx(result.trackers["perfect"].AUC - result.static.AUC)
    assert diff.standard_error == pytest.approx(se)
    assert diff.z == pytest.approx(mean / se)
    assert diff.beats(z=1.0) == (mean > se) and diff.beats(z=2.0) == (mean > 2 * se)

    # normalised precision (centre error <= 0.2 of the ground-truth size): walk-1's static box misses
    # frames 2 and 3 (0.5 and 1.0) and the absent frame 5, grow-1's misses frame 2 (5 px / 20 = 0.25)
    np.testing.assert_allclose(paired_difference(result.trackers["perfect"], result.static, "NP").differences,
                               [100 * 2 / 5, 0, 100 * 1 / 2])
    np.testing.assert_allclose(paired_difference(result.trackers["perfect"], result.static, "P").differences, 0)

    # lagging: walk-1's frame 2 goes from 7 to 20 points, nothing else changes
    lag = result.differences["lagging"]
    np.testing.assert_allclose(lag.differences, [100 * 13 / 105, 0, 0])
    assert lag.standard_error == pytest.approx(100 * 13 / 105 / 3)   # sd of (c, 0, 0) = c / sqrt(3)
    assert not lag.beats(2.0) and lag.beats(0.9)
    record = result.to_dict()
    assert record["trackers"]["lagging"]["minus_static_box"]["per_sequence"]["walk-1"] == pytest.approx(1300 / 105)


def test_paired_difference_edge_cases(tmp_path: Path) -> None:
    annos = load_annotations(write_toolkit(tmp_path / "annos"))
    static = compare_with_static_box({}, annos, tmp_path / "static").static
    same = paired_difference(static, static)
    assert same.mean == 0 and same.standard_error == 0 and math.isnan(same.z) and not same.beats()
    only = evaluate_tracker(tmp_path / "static", annos, sequences=["grow-1"], name="one", progress=False)
    single = paired_difference(only, static)
    assert single.sequences == ("grow-1",) and math.isnan(single.standard_error) and not single.beats()
    other = evaluate_tracker(tmp_path / "static", annos, sequences=["still-1"], name="other", progress=False)
    with pytest.raises(ValueError, match="share no sequence"):
        paired_difference(only, other)
    with pytest.raises(ValueError, match="metric"):
        paired_difference(static, static, metric="IoU")
