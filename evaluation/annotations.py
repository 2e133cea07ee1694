"""Annotation text files of tracking datasets: box rows, 0/1 flags, sequence lists, and a LaSOT sequence's
ground truth (``groundtruth.txt``, ``full_occlusion.txt``, ``out_of_view.txt``).

Shared by the evaluation (ground truth and tracker result files are read with the same rules) and the
dataset readers of :mod:`track.datasets`; numpy only, no image decoding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["read_boxes", "read_flags", "read_lasot_annotation", "read_sequence_list", "sequence_class",
           "split_fields", "text_lines"]


def split_fields(line: str) -> list[str]:
    """Fields of one text line separated by commas, tabs or spaces (any mix)."""
    return line.replace(",", " ").replace("\t", " ").split()


def text_lines(path: Path) -> list[str]:
    """Lines of a text file without the trailing blank ones; names the file when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_boxes(path: str | Path) -> np.ndarray:
    """Read one ``x,y,w,h`` box a line (comma, tab or whitespace separated, floats allowed).

    Returns a float64 array (N, 4); ``nan`` entries are kept (the metric decides what they
    mean). Raises ValueError naming the file and the 1-based line number of a malformed line
    (blank lines are only allowed at the end of the file).
    """
    path = Path(path)
    rows = [split_fields(line) for line in text_lines(path)]
    if not rows:
        return np.zeros((0, 4), dtype=np.float64)
    if {len(row) for row in rows} == {4}:
        try:
            return np.array(rows, dtype=np.float64)
        except ValueError:
            pass
    for number, row in enumerate(rows, start=1):  # slow path: find the offending line
        try:
            if len(row) != 4:
                raise ValueError
            [float(value) for value in row]
        except ValueError:
            text = " ".join(row) if row else "<blank>"
            raise ValueError(f"{path}:{number}: expected 4 numbers x,y,w,h separated by commas, "
                             f"tabs or spaces, got {text!r}") from None
    raise AssertionError("unreachable")


def read_flags(path: str | Path) -> np.ndarray:
    """Read 0/1 flags: one comma-separated row (LaSOT) or one flag a line (toolkit ``absent/``).

    Returns a bool array (N,). Raises ValueError naming the file, line and entry of any value
    other than 0 or 1.
    """
    path = Path(path)
    flags: list[bool] = []
    for number, line in enumerate(text_lines(path), start=1):
        for position, value in enumerate(split_fields(line), start=1):
            try:
                number_value = float(value)
            except ValueError:
                number_value = -1.0
            if number_value not in (0.0, 1.0):
                raise ValueError(f"{path}:{number}: entry {position} is {value!r}, "
                                 "expected 0 or 1")
            flags.append(number_value == 1.0)
    return np.array(flags, dtype=bool)


def read_sequence_list(path: str | Path) -> list[str]:
    """Sequence names of a split file, one a line (blank lines ignored)."""
    return [line.strip() for line in text_lines(Path(path)) if line.strip()]


def sequence_class(name: str) -> str:
    """Class of a LaSOT sequence name: ``"airplane-1"`` -> ``"airplane"``."""
    class_name, sep, index = name.rpartition("-")
    if not sep or not class_name or not index:
        raise ValueError(f"not a LaSOT sequence name (<class>-<id>): {name!r}")
    return class_name


def read_lasot_annotation(seq_dir: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth of one LaSOT ``<class>/<class>-<id>`` folder: boxes (N, 4) float64 (1-based x, y, w, h),
    ``full_occlusion`` (N,) bool and ``out_of_view`` (N,) bool.

    Raises FileNotFoundError / ValueError naming the file at fault: a missing folder or file, no boxes,
    a NaN in a box, a flag file whose length differs from the boxes.
    """
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {seq_dir}")
    gt_path = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt_path)
    if len(boxes) == 0:
        raise ValueError(f"{gt_path}: no boxes")
    nan_rows = np.isnan(boxes).any(axis=1)
    if nan_rows.any():
        raise ValueError(f"{gt_path}:{int(nan_rows.argmax()) + 1}: NaN in a ground-truth box")
    flags = []
    for flag_name in ("full_occlusion", "out_of_view"):
        flag_path = seq_dir / f"{flag_name}.txt"
        values = read_flags(flag_path)
        if len(values) != len(boxes):
            raise ValueError(f"{flag_path}: {len(values)} flags but {gt_path.name} has {len(boxes)} rows")
        flags.append(values)
    return boxes, flags[0], flags[1]
