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
