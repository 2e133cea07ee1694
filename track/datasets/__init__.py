"""Tracking dataset readers, looked up by name (``build_dataset("lasot", root=..., split=...)``)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .lasot import LasotDataset, LasotSequence, load_sequence, read_image

DATASETS: dict[str, Callable[..., Any]] = {"lasot": LasotDataset}


def register_dataset(name: str, factory: Callable[..., Any]) -> None:
    """Make a dataset reader available to ``build_dataset`` under ``name``."""
    if name in DATASETS:
        raise KeyError(f"dataset {name!r} is already registered")
    DATASETS[name] = factory


def build_dataset(name: str, **kwargs: Any) -> Any:
    """Instantiate the reader registered as ``name`` with ``kwargs``."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)


__all__ = ["DATASETS", "LasotDataset", "LasotSequence", "build_dataset", "load_sequence",
           "read_image", "register_dataset"]

# Training readers (one interface for the pair sampler, see track.datasets.base).
from .base import SequenceReader  # noqa: E402
from .coco import CocoDataset  # noqa: E402
from .got10k import Got10kDataset  # noqa: E402
from .trackingnet import TrackingNetDataset  # noqa: E402
from .training import TRAIN_DATASETS, LasotTrainDataset, build_train_dataset  # noqa: E402

register_dataset("got10k", Got10kDataset)
register_dataset("trackingnet", TrackingNetDataset)
register_dataset("coco", CocoDataset)
__all__ += ["CocoDataset", "Got10kDataset", "LasotTrainDataset", "SequenceReader",
            "TRAIN_DATASETS", "TrackingNetDataset", "build_train_dataset"]
