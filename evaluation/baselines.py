"""Trivial tracking baselines and paired comparisons with them, scored by :mod:`evaluation.lasot`.

The *static box* reports frame 1's ground-truth box in every frame: what "not tracking at all"
scores on a set of sequences. A trained tracker is said to beat it only when the mean of the
per-sequence differences (tracker minus static box, the same sequences on both sides) exceeds
``z`` times its standard error: the two scores share every sequence, so the paired difference
removes the spread between easy and hard sequences that the two separate standard errors carry.

Both result folders go through :func:`evaluation.lasot.evaluate_tracker` with the same protocol,
so the baseline obeys exactly the rules the trackers are scored by (frame 1 replaced by the ground
truth, absent frames as failures, ...).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fileio import atomic_write_text

from .lasot import EvalResult, SequenceAnnotation, evaluate_tracker, load_annotations

__all__ = ["PairedDifference", "StaticBoxComparison", "compare_with_static_box", "paired_difference",
           "static_box_boxes", "write_static_box_results"]


def static_box_boxes(gt_boxes: np.ndarray) -> np.ndarray:
    """Frame 1's box repeated for every frame: (N, 4) -> (N, 4) float64."""
    gt = np.asarray(gt_boxes, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 4 or len(gt) == 0:
        raise ValueError(f"expected (N, 4) ground-truth boxes with N >= 1, got shape {gt.shape}")
    return np.repeat(gt[:1], len(gt), axis=0)


def write_static_box_results(annos: Mapping[str, SequenceAnnotation], out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<seq>.txt`` (tracker result layout) holding the static box of every
    sequence of ``annos`` (from :func:`evaluation.lasot.load_annotations`); returns ``out_dir``."""
    out_dir = Path(out_dir)
    for name, anno in annos.items():
        rows = static_box_boxes(anno.gt_boxes)
        atomic_write_text(out_dir / f"{name}.txt",
                          "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in rows))
    return out_dir


@dataclass(frozen=True)
class PairedDifference:
    """Per-sequence differences ``a - b`` of one score over the sequences both results hold.

    ``mean``: their mean (percent points); ``standard_error``: sample standard deviation / sqrt(n)
    (NaN for n < 2); ``z``: mean / standard error (inf when every difference is the same nonzero
    value, NaN when all are 0 or n < 2).
    """

    metric: str
    sequences: tuple[str, ...]
    differences: np.ndarray
    mean: float
    standard_error: float
    z: float

    def beats(self, z: float = 2.0) -> bool:
        """True when ``a`` exceeds ``b`` by more than ``z`` standard errors of the difference."""
        return bool(self.mean > z * self.standard_error) if math.isfinite(self.standard_error) else False

    def to_dict(self) -> dict:
        return {"metric": self.metric, "num_sequences": len(self.sequences), "mean": self.mean,
                "standard_error": self.standard_error, "z": self.z,
                "per_sequence": dict(zip(self.sequences, self.differences.tolist()))}


def paired_difference(a: EvalResult, b: EvalResult, metric: str = "AUC") -> PairedDifference:
    """Paired difference of ``metric`` ("AUC", "P" or "NP", per sequence) of two evaluations.

    Uses every sequence present in both ``per_sequence`` tables (an error when they share none).
    The mean equals ``a.AUC - b.AUC`` when both hold the same sequences and the official
    protocol dropped none of them (its zero-curve rule); a dropped sequence counts here with its
    score 0, the failure it is.
    """
    if metric not in ("AUC", "P", "NP"):
        raise ValueError(f"metric must be 'AUC', 'P' or 'NP', got {metric!r}")
    common = tuple(s for s in a.per_sequence if s in b.per_sequence)
    if not common:
        raise ValueError(f"{a.name} and {b.name} share no sequence")
    diff = np.array([a.per_sequence[s][metric] - b.per_sequence[s][metric] for s in common], dtype=np.float64)
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
    if not math.isfinite(se):
        z = math.nan
    elif se > 0:
        z = mean / se
    else:
        z = math.copysign(math.inf, mean) if mean else math.nan
    return PairedDifference(metric, common, diff, mean, se, z)


@dataclass(frozen=True)
class StaticBoxComparison:
    """Evaluations of the trackers and of the static box, and each tracker's paired difference."""

    trackers: dict[str, EvalResult]
    static: EvalResult
    differences: dict[str, PairedDifference]

    def to_dict(self) -> dict:
        return {"static_box": {"AUC": self.static.AUC, "P": self.static.P, "NP": self.static.NP},
                "trackers": {name: {"AUC": r.AUC, "P": r.P, "NP": r.NP,
                                    "minus_static_box": self.differences[name].to_dict()}
                             for name, r in self.trackers.items()}}


def compare_with_static_box(results: Mapping[str, str | Path], annos: Mapping[str, SequenceAnnotation] | str | Path,
                            static_dir: str | Path, protocol: str = "official",
                            metric: str = "AUC", name: str = "static box") -> StaticBoxComparison:
    """Score result folders and the static box on the same sequences; paired ``metric`` differences.

    Args:
        results: tracker name -> folder of ``<seq>.txt`` result files (every sequence of ``annos``).
        annos: output of :func:`evaluation.lasot.load_annotations`, or a folder to load it from.
        static_dir: where the static box's result files are written (then scored from there).
        protocol: passed to :func:`evaluation.lasot.evaluate_tracker`.
        metric: the per-sequence score compared ("AUC", "P" or "NP").
        name: the static box's name in its :class:`EvalResult`.
    """
    if not isinstance(annos, Mapping):
        annos = load_annotations(annos)
    static = evaluate_tracker(write_static_box_results(annos, static_dir), annos, protocol=protocol,
                              name=name, progress=False)
    trackers = {key: evaluate_tracker(folder, annos, protocol=protocol, name=key, progress=False)
                for key, folder in results.items()}
    return StaticBoxComparison(trackers, static,
                               {key: paired_difference(r, static, metric) for key, r in trackers.items()})
