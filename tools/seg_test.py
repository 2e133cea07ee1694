"""Test a segmentor checkpoint with mmsegmentation's own ``tools/test.py`` (shipped in the mmseg
wheel), with this repository importable so that the configs' ``custom_imports=["seg"]`` find it.

    python tools/seg_test.py CONFIG work_dirs/run/iter_160000.pth --work-dir work_dirs/test \\
        --out work_dirs/test/preds \\
        --cfg-options default_hooks.overlay.out_dir=work_dirs/test/overlays
    python tools/eval_miou.py --pred work_dirs/test/preds --pred-raw --reduce-zero-label \\
        --gt data/ade/ADEChallengeData2016/annotations/validation --num-classes 150

``--out DIR`` writes one PNG per image encoded like the ADE20K annotations (class + 1, mmseg's
IoUMetric ``output_dir``), hence ``--pred-raw`` for tools/eval_miou.py. Every argument goes to
mmseg's script unchanged (see its ``--help``).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seg_train import run_mmseg_tool  # noqa: E402

if __name__ == "__main__":
    run_mmseg_tool("test")
