"""mmseg's own tools/train.py and tools/test.py on our configs, end to end on a generated dataset.

Train a few iterations (checkpoints), test a checkpoint (mIoU, prediction PNGs, overlays), resume
training from the checkpoint: each through tools/seg_train.py / tools/seg_test.py, which hand over
to the scripts shipped inside the mmseg wheel, in a subprocess with the project's python.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

import seg  # noqa: F401  (mmengine checkpoints allow-listed for torch.load(weights_only=True))
from evaluation.miou import evaluate_folders
from benchmarks.demo_data.ade20k import make_ade20k_dataset

REPO = Path(__file__).resolve().parents[1]
TINY_VIT = REPO / "configs" / "seg" / "upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py"
TINY_HIERA = REPO / "configs" / "seg" / "upernet_hiera-tiny_1xb2-20iter_ade20k-demo-64x64.py"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_ade20k_dataset(tmp_path_factory.mktemp("ade"), num_train=4, num_val=2, size=(96, 72))


def _run(tool: str, *args: str, data_root: Path) -> str:
    env = dict(os.environ, LITEVIT_ADE20K=str(data_root), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / tool), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{tool} failed:\n{output[-4000:]}"
    return output


def test_train_test_resume_with_mmseg_tools(tmp_path, data_root):
    work = tmp_path / "train"
    log = _run("seg_train.py", TINY_VIT, "--work-dir", work, "--cfg-options", "train_cfg.max_iters=2",
               "train_cfg.val_interval=2", "default_hooks.checkpoint.interval=1", "default_hooks.logger.interval=1",
               data_root=data_root)
    assert "Iter(val) [2/2]" in log and "mIoU" in log
    assert (work / "iter_1.pth").is_file() and (work / "iter_2.pth").is_file()
    best = work / "best_mIoU_iter_2.pth"  # its message hub holds numpy scalars of two dtypes
    assert best.is_file()
    assert (work / "last_checkpoint").read_text().strip().endswith("iter_2.pth")

    # torch.load(weights_only=True) refuses mmengine checkpoints without seg's allow-list
    probe = ("import torch, sys\ntry:\n    torch.load(sys.argv[1], weights_only=True)\nexcept Exception as e:\n"
             "    print('refused', 'HistoryBuffer' in str(e))\nelse:\n    print('loaded')\n")
    plain = subprocess.run([sys.executable, "-c", probe, str(best)], capture_output=True, text=True,
                           timeout=120)
    assert plain.stdout.strip().splitlines()[-1] == "refused True"

    test_dir, preds, overlays = tmp_path / "test", tmp_path / "preds", tmp_path / "overlays"
    _run("seg_test.py", TINY_VIT, best, "--work-dir", test_dir, "--out", preds,
         "--cfg-options", f"default_hooks.overlay.out_dir={overlays}", data_root=data_root)
    metrics = json.loads(next(test_dir.glob("*/*.json")).read_text())
    assert 0.0 <= metrics["mIoU"] <= 100.0 and 0.0 <= metrics["aAcc"] <= 100.0
    # mmseg's IoUMetric (rounded to 2 decimals) and ours agree on the PNGs mmseg wrote
    ours = evaluate_folders(preds, data_root / "annotations" / "validation", 150, reduce_zero_label=True,
                            pred_raw=True)
    assert ours["num_images"] == 2
    for key in ("aAcc", "mIoU", "mAcc"):
        assert ours[key] == pytest.approx(metrics[key], abs=0.006), key
    for image in sorted((data_root / "images" / "validation").glob("*.jpg")):
        panel = cv2.imread(str(overlays / f"{image.stem}.png"))
        h, w = cv2.imread(str(image)).shape[:2]
        assert panel is not None and panel.shape == (h, 3 * w, 3)

    log = _run("seg_train.py", TINY_VIT, "--work-dir", work, "--resume", "--cfg-options",
               "train_cfg.max_iters=3", "train_cfg.val_begin=100", "default_hooks.checkpoint.interval=1",
               "default_hooks.logger.interval=1", data_root=data_root)
    assert "resumed epoch: 0, iter: 2" in log
    assert "Iter(train) [3/3]" in log and "Iter(train) [1/3]" not in log
    checkpoint = torch.load(work / "iter_3.pth", map_location="cpu", weights_only=True)
    assert checkpoint["meta"]["iter"] == 3


def test_hiera_tiny_config_trains_and_slide_tests_in_process(tmp_path, data_root):
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(TINY_HIERA))
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.test_dataloader.dataset.indices = 1
    cfg.work_dir = str(tmp_path / "hiera")
    cfg.train_cfg.update(max_iters=1, val_begin=100)
    cfg.default_hooks.checkpoint.interval = 100
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert runner.iter == 1 and 0.0 <= metrics["mIoU"] <= 100.0
