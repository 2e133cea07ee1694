"""The small interface every training-data reader answers, shared by the pair sampler.

A reader holds a list of *sequences* (videos, or single images for COCO) and exposes:

* ``name``: registry name of the dataset ("lasot", "got10k", "trackingnet", "coco");
* ``is_video``: False for image datasets, whose pairs are static (template = search frame);
* ``len(reader)``: number of sequences;
* ``sequence_name(i)``: a name for messages;
* ``sequence_info(i)``: ``{"boxes": (N, 4) float64 x,y,w,h in image pixels, "visible": (N,)
  bool, "valid": (N,) bool}`` (``valid`` = positive width and height; ``visible`` also
  requires the target to be present);
* ``frames(i, ids)``: the frames ``ids`` (0-based) of sequence ``i`` as RGB uint8 arrays.

Boxes are passed on exactly as the dataset writes them (LaSOT's 1-based pixels included): the
tracker sees the same convention at test time, as OSTrack does.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.annotations import text_lines

from .lasot import read_image


class SequenceReader:
    """Base of the training readers: caches ``sequence_info`` and checks frame ids."""

    name: str = ""
    is_video: bool = True

    def __init__(self) -> None:
        self._info_cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def sequence_name(self, index: int) -> str:
        raise NotImplementedError

    def _load_info(self, index: int) -> dict[str, np.ndarray]:
        """Read the annotations of sequence ``index`` (no cache); implemented by each reader."""
        raise NotImplementedError

    def _frame_paths(self, index: int, ids: Sequence[int]) -> list[Path]:
        """Paths of frames ``ids`` of sequence ``index``; implemented by video readers."""
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: sequence index {index} out of range [0, {len(self)})")
        return index

    def sequence_info(self, index: int) -> dict[str, np.ndarray]:
        """Boxes (N, 4), ``visible`` and ``valid`` flags (N,) of sequence ``index`` (cached)."""
        index = self._check_index(index)
        if index not in self._info_cache:
            self._info_cache[index] = self._load_info(index)
        return self._info_cache[index]

    def frames(self, index: int, ids: Sequence[int]) -> list[np.ndarray]:
        """Frames ``ids`` (0-based) of sequence ``index`` as RGB uint8 (H, W, 3) arrays."""
        index = self._check_index(index)
        count = len(self.sequence_info(index)["boxes"])
        for frame_id in ids:
            if not 0 <= int(frame_id) < count:
                raise IndexError(f"{self.name}/{self.sequence_name(index)}: frame {frame_id} "
                                 f"out of range [0, {count})")
        paths = self._frame_paths(index, [int(i) for i in ids])
        cache: dict[Path, np.ndarray] = {}
        for path in paths:
            if path not in cache:
                cache[path] = read_image(path)
        return [cache[path] for path in paths]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} sequences)"


def make_info(boxes: np.ndarray, present: np.ndarray | None = None) -> dict[str, Any]:
    """``sequence_info`` dict from boxes (N, 4) and optional presence flags (N,)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    valid = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    visible = valid.copy() if present is None else valid & np.asarray(present, dtype=bool)
    return {"boxes": boxes, "visible": visible, "valid": valid}


def check_box_rows(boxes: np.ndarray, path: Path) -> None:
    """Raise ValueError naming ``path`` and the 1-based line of the first row holding a NaN/inf."""
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}:{int(bad.argmax()) + 1}: box is not finite: "
                         f"{boxes[int(bad.argmax())].tolist()}")


def read_int_lines(path: Path, count: int | None = None) -> np.ndarray:
    """One integer a line (GOT-10k's ``*.label`` files) -> int64 (N,).

    Raises FileNotFoundError naming the file, ValueError naming file and line of a bad entry,
    or a row count different from ``count``.
    """
    path = Path(path)
    lines = text_lines(path)
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        try:
            value = float(text)
            if value != int(value):
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{number}: expected an integer, got {text!r}") from None
        values.append(int(value))
    if count is not None and len(values) != count:
        raise ValueError(f"{path}: {len(values)} rows but the ground truth has {count}")
    return np.array(values, dtype=np.int64)
