"""Training readers by name: ``build_train_dataset("got10k", root=..., split_file=...)``.

All of them answer the interface of :class:`track.datasets.base.SequenceReader`; LaSOT's
evaluation reader is wrapped here so that training and evaluation read LaSOT the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import SequenceReader, make_info
from .coco import CocoDataset
from .got10k import Got10kDataset
from .lasot import LasotDataset
from .trackingnet import TrackingNetDataset


class LasotTrainDataset(SequenceReader):
    """LaSOT sequences of a split (default "train": ``training_set.txt``, or every sequence not
    in ``testing_set.txt``) behind the training-reader interface.

    Visible = not fully occluded, not out of view, positive width and height.
    """

    name = "lasot"
    is_video = True

    def __init__(self, root: str | Path, split: str | None = "train",
                 check_images: bool = False) -> None:
        super().__init__()
        self.lasot = LasotDataset(root, split=split, check_images=check_images)
        if len(self.lasot) == 0:
            raise FileNotFoundError(f"no LaSOT sequences for split {split!r} under {root}")

    def __len__(self) -> int:
        return len(self.lasot)

    def sequence_name(self, index: int) -> str:
        return self.lasot.sequence_names[index]

    def _load_info(self, index: int) -> dict[str, np.ndarray]:
        sequence = self.lasot[index]
        return make_info(sequence.gt_boxes, ~sequence.absent)

    def _frame_paths(self, index: int, ids: Sequence[int]) -> list[Path]:
        frames = self.lasot[index].frames
        return [frames[i] for i in ids]


TRAIN_DATASETS: dict[str, Callable[..., SequenceReader]] = {
    "lasot": LasotTrainDataset,
    "got10k": Got10kDataset,
    "trackingnet": TrackingNetDataset,
    "coco": CocoDataset,
}


def build_train_dataset(name: str, **kwargs: Any) -> SequenceReader:
    """Instantiate the training reader registered as ``name`` with ``kwargs``.

    Raises KeyError naming the known readers, and ValueError when ``root`` is missing.
    """
    if name not in TRAIN_DATASETS:
        raise KeyError(f"unknown training dataset {name!r}; known: {sorted(TRAIN_DATASETS)}")
    if kwargs.get("root") in (None, ""):
        raise ValueError(f"training dataset {name!r} has no root: set it in the config "
                         f"(data.datasets) or on the command line (--{name.replace('_', '-')}-root)")
    return TRAIN_DATASETS[name](**kwargs)
