"""TrackingNet training-set reader.

Layout (as distributed, one folder per chunk)::

    <root>/TRAIN_<k>/anno/<video>.txt          x,y,w,h a line (floats, commas)
    <root>/TRAIN_<k>/frames/<video>/0.jpg ...  0-based, no zero padding

Chunks (0..11 for the full train set) are chosen in the config. TrackingNet has no absence
flags: a frame is visible when its box has a positive width and height.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.annotations import read_boxes

from .base import SequenceReader, check_box_rows, make_info

ALL_TRAIN_CHUNKS = tuple(range(12))


class TrackingNetDataset(SequenceReader):
    """Videos of the TrackingNet ``TRAIN_<k>`` chunks listed in ``chunks``.

    Args:
        root: dataset root holding the ``TRAIN_<k>`` folders.
        chunks: chunk numbers to read (default all twelve).
    """

    name = "trackingnet"
    is_video = True

    def __init__(self, root: str | Path, chunks: Sequence[int] = ALL_TRAIN_CHUNKS) -> None:
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"TrackingNet root not found: {self.root}")
        self.chunks = [int(c) for c in chunks]
        self.videos: list[tuple[Path, str]] = []  # (chunk folder, video name)
        for chunk in self.chunks:
            anno_dir = self.root / f"TRAIN_{chunk}" / "anno"
            if not anno_dir.is_dir():
                raise FileNotFoundError(f"TrackingNet annotation folder not found: {anno_dir}")
            self.videos += [(anno_dir.parent, p.stem) for p in sorted(anno_dir.glob("*.txt"))]
        if not self.videos:
            raise FileNotFoundError(f"no annotation files in {self.root}/TRAIN_<k>/anno for "
                                    f"chunks {self.chunks}")

    def __len__(self) -> int:
        return len(self.videos)

    def sequence_name(self, index: int) -> str:
        chunk_dir, video = self.videos[index]
        return f"{chunk_dir.name}/{video}"

    def _load_info(self, index: int) -> dict[str, np.ndarray]:
        chunk_dir, video = self.videos[index]
        anno_path = chunk_dir / "anno" / f"{video}.txt"
        boxes = read_boxes(anno_path)
        if len(boxes) == 0:
            raise ValueError(f"{anno_path}: no boxes")
        check_box_rows(boxes, anno_path)
        return make_info(boxes)

    def _frame_paths(self, index: int, ids: Sequence[int]) -> list[Path]:
        chunk_dir, video = self.videos[index]
        return [chunk_dir / "frames" / video / f"{i}.jpg" for i in ids]
