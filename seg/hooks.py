"""An mmengine hook that writes colour overlays of test predictions (via :mod:`seg.visualize`).

The configs list it in ``default_hooks`` switched off (``out_dir=None``); turn it on for a test
run of mmseg's own ``tools/test.py`` with

    --cfg-options default_hooks.overlay.out_dir=work_dirs/overlays

Each test image gives one PNG panel: image | prediction overlay | ground-truth overlay, at the
image's original resolution, in the dataset's palette.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from .visualize import save_overlays

__all__ = ["SegOverlayHook"]


@HOOKS.register_module()
class SegOverlayHook(Hook):
    """Write image | prediction | GT overlays for the first ``max_images`` test images.

    Args:
        out_dir: output folder; ``None`` disables the hook.
        max_images: stop after this many images (``None``: all).
        alpha: colour weight of the overlay.
    """

    priority = "LOW"

    def __init__(self, out_dir: str | None = None, max_images: int | None = None, alpha: float = 0.5) -> None:
        self.out_dir = None if out_dir in (None, "") else Path(out_dir)
        self.max_images = max_images
        self.alpha = alpha
        self._written = 0

    def before_test(self, runner) -> None:
        self._written = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict | None = None,
                        outputs: Sequence | None = None) -> None:
        if self.out_dir is None or not outputs:
            return
        meta = runner.test_loop.dataloader.dataset.metainfo
        palette, ignore_index = meta.get("palette"), meta.get("ignore_index", 255)
        images, preds, gts, names = [], [], [], []
        for sample in outputs:
            if self.max_images is not None and self._written + len(images) >= self.max_images:
                break
            path = sample.img_path
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"SegOverlayHook: cannot read test image {path}")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            preds.append(sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64))
            gts.append(sample.gt_sem_seg.data[0].cpu().numpy().astype(np.int64)
                       if "gt_sem_seg" in sample else None)
            names.append(Path(path).stem)
        if not images:
            return
        has_gt = all(g is not None for g in gts)
        save_overlays(images, preds, gts if has_gt else None, self.out_dir, palette=palette, names=names,
                      alpha=self.alpha, ignore_index=ignore_index)
        self._written += len(images)
