"""The shared evaluation runs where torch, mmcv and mmseg cannot be imported: both command-line scorers,
end to end on files in the real layouts, in a Python whose import system refuses those packages."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "mmcv", "mmseg", "mmengine", "timm", "cv2")

def test_blocker_really_blocks(tmp_path, run_blocked):
    run = run_blocked("import torch", tmp_path, BLOCKED)
    assert run.returncode != 0 and "torch is blocked" in run.stderr


def test_scoring_tools_run_without_torch_mmcv_mmseg(tmp_path, run_blocked):
    # a LaSOT-layout sequence (annotations only) and one tracker's results
    seq = tmp_path / "lasot" / "cat" / "cat-1"
    seq.mkdir(parents=True)
    gt = np.array([[10, 10, 20, 20], [12, 10, 20, 20], [14, 10, 20, 20], [0, 0, 0, 0]])
    (seq / "groundtruth.txt").write_text("".join(",".join(map(str, r)) + "\n" for r in gt))
    (seq / "full_occlusion.txt").write_text("0,0,0,0\n")
    (seq / "out_of_view.txt").write_text("0,0,0,1\n")
    results = tmp_path / "results" / "mine"
    results.mkdir(parents=True)
    (results / "cat-1.txt").write_text("10,10,20,20\n12,10,20,20\n40,40,20,20\n1,1,5,5\n")
    # label maps, both ADE20K-encoded (0 = other); evaluated classes 0 wall, 1 building, 2 sky, 3 floor
    for folder, array in (("gt", [[1, 2], [3, 3]]), ("pred", [[1, 2], [2, 3]])):
        (tmp_path / folder).mkdir()
        assert cv2.imwrite(str(tmp_path / folder / "a.png"), np.array(array, dtype=np.uint8))

    run = run_blocked(f"""
        import runpy, sys
        sys.argv = ["eval_lasot.py", "--results", "{results}", "--annos", "{tmp_path / 'lasot'}",
                    "--json", "lasot.json", "--plots", "plots", "--quiet"]
        runpy.run_path("{REPO / 'tools' / 'eval_lasot.py'}", run_name="__main__")
        sys.argv = ["eval_miou.py", "--pred", "{tmp_path / 'pred'}", "--gt", "{tmp_path / 'gt'}",
                    "--num-classes", "150", "--reduce-zero-label", "--pred-raw", "--class-names", "ade20k",
                    "--json", "miou.json", "--plot", "iou.png"]
        runpy.run_path("{REPO / 'tools' / 'eval_miou.py'}", run_name="__main__")
    """, tmp_path, BLOCKED)
    assert run.returncode == 0, run.stderr
    lasot = json.loads((tmp_path / "lasot.json").read_text())
    # frames 1-2 hit exactly, frame 3 misses, frame 4 is absent: 2 of 4 frames pass every threshold < 1
    assert lasot["AUC"] == pytest.approx(100 * (2 / 4) * 20 / 21)
    miou = json.loads((tmp_path / "miou.json").read_text())
    assert miou["per_class"]["wall"]["IoU"] == 100.0 and miou["per_class"]["building"]["IoU"] == 50.0
    assert miou["per_class"]["sky"]["IoU"] == 50.0 and miou["per_class"]["floor"]["IoU"] is None
    for picture in ("plots/success_plot.png", "iou.png"):
        assert (tmp_path / picture).stat().st_size > 1000
