"""Train a segmentor with mmsegmentation's own ``tools/train.py`` (shipped in the mmseg wheel),
with this repository importable so that the configs' ``custom_imports=["seg"]`` find it.

    python tools/seg_train.py configs/seg/upernet_vit-tiny_d2mae_8xb2-160k_ade20k-512x512.py \\
        --cfg-options model.pretrained=checkpoints/vit_tiny_d2mae.pth
    torchrun --nproc_per_node=8 tools/seg_train.py CONFIG --launcher pytorch
    python tools/seg_train.py CONFIG --work-dir work_dirs/run --resume

Every argument goes to mmseg's script unchanged (see its ``--help``).
"""
from __future__ import annotations

import os
import runpy
import sys
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mmseg_tool(name: str) -> Path:
    """Path of ``mmseg/.mim/tools/<name>.py`` inside the installed mmsegmentation package."""
    spec = find_spec("mmseg")
    if spec is None or spec.origin is None:
        raise SystemExit("error: mmsegmentation is not installed (pip install mmsegmentation==1.2.2)")
    path = Path(spec.origin).parent / ".mim" / "tools" / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; this mmsegmentation install lacks its tools")
    return path


def run_mmseg_tool(name: str) -> None:
    """Put the repository on PYTHONPATH (for this process and its workers) and run the tool as
    ``__main__`` with this process's arguments."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(REPO))
    tool = mmseg_tool(name)
    sys.argv[0] = str(tool)
    runpy.run_path(str(tool), run_name="__main__")


if __name__ == "__main__":
    run_mmseg_tool("train")
