"""GOT-10k training-set reader.

Layout (as distributed)::

    <root>/train/list.txt                                  sequence folder names, one a line
    <root>/train/GOT-10k_Train_000001/00000001.jpg ...     8-digit, 1-based frames
    <root>/train/GOT-10k_Train_000001/groundtruth.txt      x,y,w,h a line (floats, commas)
    <root>/train/GOT-10k_Train_000001/absence.label        0/1 a line (1 = target absent)
    <root>/train/GOT-10k_Train_000001/cover.label          0..8 a line (visible fraction x 8)
    <root>/train/GOT-10k_Train_000001/cut_by_image.label   0/1 a line
    <root>/train/GOT-10k_Train_000001/meta_info.ini

The tracking recipe trains on the "vot-train" split: the train sequences minus those that
overlap the VOT challenges. That list is not part of the GOT-10k download; pass it as
``split_file`` (one entry a line: either a sequence folder name, or an integer that indexes
the ``list.txt`` order from 0, the form pytracking's ``got10k_vot_train_split.txt`` uses).
Without a split file every train sequence is used and a warning says so.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluation.annotations import read_boxes, read_sequence_list

from .base import SequenceReader, check_box_rows, make_info, read_int_lines

FRAME_NAME = "{:08d}.jpg"


def read_split_file(path: str | Path, all_names: Sequence[str]) -> list[str]:
    """Sequence names selected by a split file of names or 0-based ``list.txt`` indices."""
    path = Path(path)
    entries = read_sequence_list(path)
    known = set(all_names)
    names = []
    for number, entry in enumerate(entries, start=1):
        if entry.isdigit():
            index = int(entry)
            if index >= len(all_names):
                raise ValueError(f"{path}:{number}: index {index} out of range; list.txt has "
                                 f"{len(all_names)} sequences")
            names.append(all_names[index])
        elif entry in known:
            names.append(entry)
        else:
            raise ValueError(f"{path}:{number}: {entry!r} is neither a sequence of list.txt "
                             "nor a 0-based index into it")
    return names


class Got10kDataset(SequenceReader):
    """GOT-10k train sequences (or a subset chosen by ``split_file``).

    Args:
        root: dataset root (holding ``train/``).
        split: sub-folder to read ("train"; "val" has the same layout).
        split_file: optional list of the sequences to keep (see the module docstring).
    """

    name = "got10k"
    is_video = True

    def __init__(self, root: str | Path, split: str = "train",
                 split_file: str | Path | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.split_dir = self.root / split
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"GOT-10k split folder not found: {self.split_dir}")
        list_file = self.split_dir / "list.txt"
        if list_file.is_file():
            all_names = read_sequence_list(list_file)
        else:
            all_names = sorted(p.parent.name for p in self.split_dir.glob("*/groundtruth.txt"))
            if not all_names:
                raise FileNotFoundError(f"{list_file} not found and no sequence folders "
                                        f"under {self.split_dir}")
        if split_file is not None:
            self.sequence_names = read_split_file(split_file, all_names)
        else:
            warnings.warn(f"GOT-10k: no split_file given, training on all {len(all_names)} "
                          f"sequences of {self.split_dir} (the recipe uses the vot-train split, "
                          "which excludes sequences overlapping VOT)", stacklevel=2)
            self.sequence_names = list(all_names)
        for name in self.sequence_names:
            if not (self.split_dir / name).is_dir():
                raise FileNotFoundError(f"sequence folder not found: {self.split_dir / name} "
                                        f"(listed in {list_file})")

    def __len__(self) -> int:
        return len(self.sequence_names)

    def sequence_name(self, index: int) -> str:
        return self.sequence_names[index]

    def _load_info(self, index: int) -> dict[str, np.ndarray]:
        seq_dir = self.split_dir / self.sequence_names[index]
        gt_path = seq_dir / "groundtruth.txt"
        boxes = read_boxes(gt_path)
        if len(boxes) == 0:
            raise ValueError(f"{gt_path}: no boxes")
        check_box_rows(boxes, gt_path)
        absent = read_int_lines(seq_dir / "absence.label", len(boxes))
        present = absent == 0
        cover_path = seq_dir / "cover.label"
        if cover_path.is_file():
            present &= read_int_lines(cover_path, len(boxes)) > 0
        return make_info(boxes, present)

    def _frame_paths(self, index: int, ids: Sequence[int]) -> list[Path]:
        seq_dir = self.split_dir / self.sequence_names[index]
        return [seq_dir / FRAME_NAME.format(i + 1) for i in ids]
