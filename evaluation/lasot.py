"""LaSOT one-pass evaluation: success (AUC), precision (P@20 px) and normalised precision (NP@0.2).

Written here rather than taken from a toolkit because the numbers must follow the benchmark's
rules exactly, and the two reference implementations differ in small ways selected by
``protocol``:

``"official"`` (the benchmark's MATLAB toolkit)
    * a prediction row with a NaN or a non-positive width/height is replaced by the previous
      row (frame 2 onwards, before frame 1 itself is replaced by the ground truth);
    * a frame is *valid* when the target is present (not fully occluded / out of view) and
      all four ground-truth values are > 0;
    * absent frames are failures for success and precision; present frames whose box has a
      value <= 0 are failures for success but *hits* for (normalised) precision (error -1);
    * when averaging over sequences, a sequence whose whole curve sums to ~0 is left out
      (separately for each curve: success, precision, normalised precision).
``"pytracking"`` (pytracking / OSTrack ``extract_results``)
    * a NaN or a negative width/height raises an error naming the file and line; a zero
      width/height row is replaced by the previous row;
    * a frame is valid when the target is present and the box has w > 0 and h > 0;
    * invalid frames are failures for success and precision; for normalised precision a
      present frame with a degenerate box is a hit (error -1) and an absent one a failure;
    * every sequence counts in the averages.

Common to both: frame 1 is replaced by the ground truth; rows beyond the ground truth are
cut, fewer rows are an error; IoU uses the +1-pixel overlap convention with plain w*h areas
(numerically the continuous IoU, see :func:`evaluation.boxes.box_iou`);
a frame succeeds when IoU > threshold (strict), thresholds 0:0.05:1; centres are
``xy + (wh - 1) / 2`` and a frame is precise when its centre error <= threshold (0..50 px,
normalised 0..0.5 by the ground-truth w, h); curves are per-frame counts divided by the
sequence length, then averaged over sequences; AUC is the mean of the 21-point success curve.
``exclude_invalid`` counts valid frames only (numerators and denominators).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fileio import atomic_path
from fileio.progress import progress as progress_bar

from .annotations import read_boxes, read_flags, read_lasot_annotation, read_sequence_list, sequence_class
from .boxes import box_iou

SUCCESS_THRESHOLDS = np.arange(21) * 0.05           # 0:0.05:1
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)  # 0..50 px
NORM_PRECISION_THRESHOLDS = np.arange(51) / 100.0   # 0..0.5
PRECISION_INDEX = 20  # P reported at 20 px, NP at 0.20
PROTOCOLS = ("official", "pytracking")
ATTRIBUTES = (
    ("IV", "Illumination Variation"), ("POC", "Partial Occlusion"), ("DEF", "Deformation"),
    ("MB", "Motion Blur"), ("CM", "Camera Motion"), ("ROT", "Rotation"),
    ("BC", "Background Clutter"), ("VC", "Viewpoint Change"), ("SV", "Scale Variation"),
    ("FOC", "Full Occlusion"), ("FM", "Fast Motion"), ("OV", "Out-of-View"),
    ("LR", "Low Resolution"), ("ARC", "Aspect Ratio Change"),
)
_ZERO_CURVE_EPS = np.finfo(np.float64).eps
__all__ = [
    "ATTRIBUTES", "EvalResult", "SequenceAnnotation", "attribute_table", "evaluate_sequence",
    "evaluate_tracker", "load_annotations", "markdown_table", "read_boxes",
    "results_to_json", "save_plots", "success_auc", "success_curve",
]


# --------------------------------------------------------------------------- per-frame measures
def box_centres(boxes: np.ndarray) -> np.ndarray:
    """Centres ``xy + (wh - 1) / 2`` of x,y,w,h boxes (..., 4) -> (..., 2)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return boxes[..., :2] + (boxes[..., 2:] - 1) / 2


def success_curve(ious: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """Fraction of frames with IoU > t for t in 0:0.05:1 -> (21,).

    The denominator is ``num_frames`` (default: ``len(ious)``).
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    total = len(ious) if num_frames is None else num_frames
    if total <= 0:
        raise ValueError("success_curve needs at least one frame")
    return (ious[:, None] > SUCCESS_THRESHOLDS[None, :]).sum(axis=0) / total


def precision_curve(errors: np.ndarray, thresholds: np.ndarray,
                    num_frames: int | None = None) -> np.ndarray:
    """Fraction of frames whose centre error <= t for each threshold t."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    total = len(errors) if num_frames is None else num_frames
    if total <= 0:
        raise ValueError("precision_curve needs at least one frame")
    return (errors[:, None] <= thresholds[None, :]).sum(axis=0) / total


def success_auc(curves: np.ndarray) -> float:
    """AUC in percent: the mean of a 21-point success curve, or of the mean of (S, 21) curves."""
    curves = np.asarray(curves, dtype=np.float64)
    if curves.shape[-1] != len(SUCCESS_THRESHOLDS) or curves.ndim not in (1, 2):
        raise ValueError(f"expected a (21,) or (S, 21) success curve array, got {curves.shape}")
    if curves.ndim == 2:
        curves = curves.mean(axis=0)
    return float(100.0 * curves.mean())


def _forward_fill(boxes: np.ndarray, replace: np.ndarray) -> np.ndarray:
    """Replace each flagged row by the nearest earlier unflagged row (row 0 is never replaced)."""
    replace = replace.copy()
    replace[0] = False
    if not replace.any():
        return boxes
    source = np.where(replace, 0, np.arange(len(boxes)))
    return boxes[np.maximum.accumulate(source)]


def clean_predictions(pred_boxes: np.ndarray, gt_boxes: np.ndarray, protocol: str = "official",
                      source: str = "predictions") -> np.ndarray:
    """Apply the protocol's rules to raw predictions (N', 4) -> (N, 4), N = len(gt_boxes).

    Cuts extra rows, replaces invalid rows by the previous one, puts the ground truth in
    frame 1. Raises ValueError naming ``source`` for too few rows and (pytracking) for NaN or
    negative sizes, with the 1-based row (= line) number.
    """
    _check_protocol(protocol)
    pred = np.asarray(pred_boxes, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] != 4:
        raise ValueError(f"{source}: expected (N, 4) boxes, got shape {pred.shape}")
    if len(pred) < len(gt):
        raise ValueError(f"{source}: {len(pred)} result rows but the ground truth has "
                         f"{len(gt)} frames")
    pred = pred[:len(gt)].copy()
    if protocol == "official":
        replace = np.isnan(pred).any(axis=1) | (pred[:, 2] <= 0) | (pred[:, 3] <= 0)
    else:
        for bad, what in ((np.isnan(pred).any(axis=1), "NaN"),
                          ((pred[:, 2:] < 0).any(axis=1), "negative width/height")):
            if bad.any():
                row = int(bad.argmax())
                raise ValueError(f"{source}:{row + 1}: {what} in box {pred[row].tolist()} "
                                 "(the pytracking protocol rejects it)")
        replace = (pred[:, 2:] == 0).any(axis=1)
    pred = _forward_fill(pred, replace)
    pred[0] = gt[0]
    return pred


def evaluate_sequence(pred_boxes: np.ndarray, gt_boxes: np.ndarray, absent: np.ndarray,
                      protocol: str = "official", exclude_invalid: bool = False,
                      source: str = "predictions") -> dict[str, np.ndarray]:
    """Score one sequence.

    Args:
        pred_boxes: (N', 4) raw predictions x,y,w,h (N' >= N).
        gt_boxes: (N, 4) ground truth.
        absent: (N,) bool, target fully occluded or out of view.
        protocol: "official" or "pytracking" (see the module docstring).
        exclude_invalid: divide by the valid frames only.
        source: name used in error messages (the result file).

    Returns:
        dict with ``success`` (21,), ``precision`` (51,), ``norm_precision`` (51,) curves as
        fractions, per-frame ``iou`` (N,) (-1 on invalid frames) and the ``valid`` mask (N,).
    """
    gt = np.asarray(gt_boxes, dtype=np.float64)
    absent = np.asarray(absent, dtype=bool).reshape(-1)
    if len(absent) != len(gt):
        raise ValueError(f"{source}: {len(absent)} absent flags for {len(gt)} ground-truth rows")
    pred = clean_predictions(pred_boxes, gt, protocol, source)

    iou = box_iou(pred, gt)
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = box_centres(pred) - box_centres(gt)
        error = np.hypot(offset[:, 0], offset[:, 1])
        norm_offset = offset / gt[:, 2:]
        norm_error = np.hypot(norm_offset[:, 0], norm_offset[:, 1])

    if protocol == "official":
        positive = (gt > 0).all(axis=1)
        valid = positive & ~absent
        error[~positive] = -1.0
        norm_error[~positive] = -1.0
    else:
        valid = (gt[:, 2:] > 0).all(axis=1) & ~absent
        error[~valid] = np.inf
        norm_error[~valid] = -1.0
    error[absent] = np.inf
    norm_error[absent] = np.inf
    iou[~valid] = -1.0

    if exclude_invalid:
        if not valid.any():
            raise ValueError(f"{source}: no valid frame to evaluate with exclude_invalid")
        iou_counted, error, norm_error = iou[valid], error[valid], norm_error[valid]
    else:
        iou_counted = iou
    return {
        "success": success_curve(iou_counted),
        "precision": precision_curve(error, PRECISION_THRESHOLDS),
        "norm_precision": precision_curve(norm_error, NORM_PRECISION_THRESHOLDS),
        "iou": iou,
        "valid": valid,
    }


# --------------------------------------------------------------------------- annotations
@dataclass
class SequenceAnnotation:
    """Ground truth of one sequence for evaluation."""

    name: str
    gt_boxes: np.ndarray                    # (N, 4) float64, x,y,w,h 1-based
    absent: np.ndarray                      # (N,) bool
    attributes: np.ndarray | None = None    # (14,) bool, order of ATTRIBUTES
    source: str = ""                        # the ground-truth file, for messages


def _read_attributes(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    values = read_flags(path)
    if len(values) != len(ATTRIBUTES):
        raise ValueError(f"{path}: {len(values)} attribute flags, expected {len(ATTRIBUTES)}")
    return values


def _check_gt(path: Path, boxes: np.ndarray) -> None:
    if len(boxes) == 0:
        raise ValueError(f"{path}: no ground-truth boxes")
    nan_rows = np.isnan(boxes).any(axis=1)
    if nan_rows.any():
        raise ValueError(f"{path}:{int(nan_rows.argmax()) + 1}: NaN in a ground-truth box")


def _load_toolkit_sequence(root: Path, name: str) -> SequenceAnnotation:
    gt_path = root / f"{name}.txt"
    boxes = read_boxes(gt_path)
    _check_gt(gt_path, boxes)
    absent_path = root / "absent" / f"{name}.txt"
    absent = read_flags(absent_path)
    if len(absent) != len(boxes):
        raise ValueError(f"{absent_path}: {len(absent)} flags but {gt_path} has "
                         f"{len(boxes)} rows")
    return SequenceAnnotation(name, boxes, absent,
                              _read_attributes(root / "att" / f"{name}.txt"), str(gt_path))


def _load_dataset_sequence(root: Path, name: str) -> SequenceAnnotation:
    seq_dir = root / sequence_class(name) / name
    if not seq_dir.is_dir() and (root / f"{name}.txt").is_file():
        raise FileNotFoundError(f"{root / 'absent'} not found: the toolkit layout needs "
                                f"absent/<seq>.txt beside {root / (name + '.txt')}")
    boxes, full_occlusion, out_of_view = read_lasot_annotation(seq_dir)
    return SequenceAnnotation(name, boxes, full_occlusion | out_of_view,
                              _read_attributes(root / "att" / f"{name}.txt"), str(seq_dir / "groundtruth.txt"))


def load_annotations(root: str | Path, sequences: Sequence[str] | None = None,
                     progress: bool = False) -> dict[str, SequenceAnnotation]:
    """Read the ground truth of every sequence under ``root``.

    ``root`` is either the toolkit layout (``<seq>.txt`` + ``absent/<seq>.txt`` [+
    ``att/<seq>.txt``]) or a LaSOT dataset root (``<class>/<seq>/groundtruth.txt`` +
    ``full_occlusion.txt`` + ``out_of_view.txt``; absent = either flag; attributes only from an
    optional ``<root>/att/<seq>.txt``). Sequences: ``sequences``, else ``testing_set.txt``,
    else every sequence found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {root}")
    toolkit_layout = (root / "absent").is_dir()
    if sequences is None:
        if (root / "testing_set.txt").is_file():
            sequences = read_sequence_list(root / "testing_set.txt")
        elif toolkit_layout:
            sequences = sorted(p.stem for p in root.glob("*.txt")
                               if (root / "absent" / p.name).is_file())
        else:
            sequences = [p.parent.name for p in sorted(root.glob("*/*/groundtruth.txt"))]
    if not sequences:
        raise FileNotFoundError(
            f"no sequences under {root}: expected <seq>.txt + absent/<seq>.txt (toolkit layout) "
            "or <class>/<class>-<id>/groundtruth.txt (dataset layout)")
    loader = _load_toolkit_sequence if toolkit_layout else _load_dataset_sequence
    names = progress_bar(sequences, desc="annotations", unit="seq", enabled=progress, leave=False)
    return {name: loader(root, name) for name in names}


# --------------------------------------------------------------------------- tracker evaluation
@dataclass
class EvalResult:
    """Scores of one tracker (percent) with the curves behind them."""

    name: str
    AUC: float
    P: float
    NP: float
    success_curve: np.ndarray          # (21,) fraction, averaged over the kept sequences
    precision_curve: np.ndarray        # (51,)
    norm_precision_curve: np.ndarray   # (51,)
    per_sequence: dict[str, dict[str, float]]
    per_attribute: dict[str, dict[str, float | int | str]]
    sequences: list[str]
    sequence_curves: dict[str, np.ndarray] = field(repr=False)  # curve name -> (S, T)
    skipped: list[str] = field(default_factory=list)   # result file missing (skip_missing)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # official zero-curve rule
    protocol: str = "official"
    exclude_invalid: bool = False

    def to_dict(self) -> dict:
        """JSON-ready summary: AUC, P, NP, per_sequence, per_attribute, curves, settings."""
        return {
            "AUC": self.AUC, "P": self.P, "NP": self.NP,
            "per_sequence": self.per_sequence,
            "per_attribute": self.per_attribute,
            "curves": {
                "success": {"thresholds": SUCCESS_THRESHOLDS.tolist(),
                            "values": self.success_curve.tolist()},
                "precision": {"thresholds": PRECISION_THRESHOLDS.tolist(),
                              "values": self.precision_curve.tolist()},
                "norm_precision": {"thresholds": NORM_PRECISION_THRESHOLDS.tolist(),
                                   "values": self.norm_precision_curve.tolist()},
            },
            "num_sequences": len(self.sequences),
            "skipped": self.skipped,
            "dropped": self.dropped,
            "protocol": self.protocol,
            "exclude_invalid": self.exclude_invalid,
        }


_CURVES = ("success", "precision", "norm_precision")


def _average(curves: np.ndarray, drop_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean over sequences of (S, T) curves and the mask of sequences kept."""
    kept = curves.sum(axis=1) > _ZERO_CURVE_EPS if drop_zero else np.ones(len(curves), bool)
    if not kept.any():
        return np.zeros(curves.shape[1]), kept
    return curves[kept].mean(axis=0), kept


def _summarise(curves: dict[str, np.ndarray], drop_zero: bool) -> tuple[dict, dict]:
    """AUC / P / NP (percent) and the kept masks from per-sequence curves."""
    means, kept = {}, {}
    for key in _CURVES:
        means[key], kept[key] = _average(curves[key], drop_zero)
    scores = {"AUC": float(100 * means["success"].mean()),
              "P": float(100 * means["precision"][PRECISION_INDEX]),
              "NP": float(100 * means["norm_precision"][PRECISION_INDEX])}
    return {"scores": scores, "means": means}, kept


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {PROTOCOLS}")


def missing_results(results_dir: str | Path, sequences: Sequence[str]) -> list[str]:
    """Sequences without a ``<results_dir>/<seq>.txt`` file."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    return [s for s in sequences if not (results_dir / f"{s}.txt").is_file()]


def evaluate_tracker(results_dir: str | Path,
                     annos: Mapping[str, SequenceAnnotation] | str | Path,
                     protocol: str = "official", exclude_invalid: bool = False,
                     skip_missing: bool = False, sequences: Sequence[str] | None = None,
                     name: str | None = None, progress: bool = True) -> EvalResult:
    """Score the result files ``<results_dir>/<seq>.txt`` of one tracker.

    Args:
        results_dir: folder of result files (``<seq>_time.txt`` files are ignored).
        annos: output of ``load_annotations`` or a folder to load it from.
        protocol: "official" or "pytracking".
        exclude_invalid: count valid frames only.
        skip_missing: leave out sequences without a result file instead of raising.
        sequences: evaluate these sequences only (default: all of ``annos``).
        name: tracker name (default: the folder name).
        progress: show a progress bar over sequences (:func:`fileio.progress.progress`).
    """
    _check_protocol(protocol)
    results_dir = Path(results_dir)
    if not isinstance(annos, Mapping):
        annos = load_annotations(annos)
    names = list(annos) if sequences is None else list(sequences)
    unknown = [s for s in names if s not in annos]
    if unknown:
        raise KeyError(f"no annotation for sequences: {', '.join(unknown[:10])}")
    missing = missing_results(results_dir, names)
    if missing and not skip_missing:
        listed = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise FileNotFoundError(f"{results_dir}: no result file for {len(missing)} of "
                                f"{len(names)} sequences: {listed} (skip them with "
                                "--skip-missing / skip_missing=True)")
    missing_set = set(missing)
    names = [s for s in names if s not in missing_set]
    if not names:
        raise FileNotFoundError(f"{results_dir}: no result file for any sequence")

    name = name or results_dir.name
    curves = {key: np.zeros((len(names), n)) for key, n in
              zip(_CURVES, (len(SUCCESS_THRESHOLDS), len(PRECISION_THRESHOLDS),
                            len(NORM_PRECISION_THRESHOLDS)))}
    for i, seq in enumerate(progress_bar(names, desc=f"evaluating {name}", unit="seq", enabled=progress)):
        path = results_dir / f"{seq}.txt"
        anno = annos[seq]
        scores = evaluate_sequence(read_boxes(path), anno.gt_boxes, anno.absent, protocol,
                                   exclude_invalid, source=str(path))
        for key in _CURVES:
            curves[key][i] = scores[key]

    drop_zero = protocol == "official"
    summary, kept = _summarise(curves, drop_zero)
    per_sequence = {seq: {"AUC": float(100 * curves["success"][i].mean()),
                          "P": float(100 * curves["precision"][i, PRECISION_INDEX]),
                          "NP": float(100 * curves["norm_precision"][i, PRECISION_INDEX])}
                    for i, seq in enumerate(names)}
    per_attribute: dict[str, dict[str, float | int | str]] = {}
    attributes = [annos[s].attributes for s in names]
    if all(a is not None for a in attributes):
        table = np.stack(attributes)
        for k, (abbr, long_name) in enumerate(ATTRIBUTES):
            subset = table[:, k]
            if subset.any():
                sub, _ = _summarise({key: c[subset] for key, c in curves.items()}, drop_zero)
                per_attribute[abbr] = {"name": long_name, "num_sequences": int(subset.sum()),
                                       **sub["scores"]}
    dropped = {key: [s for s, keep in zip(names, kept[key]) if not keep]
               for key in _CURVES} if drop_zero else {}
    return EvalResult(name=name, **summary["scores"],
                      success_curve=summary["means"]["success"],
                      precision_curve=summary["means"]["precision"],
                      norm_precision_curve=summary["means"]["norm_precision"],
                      per_sequence=per_sequence, per_attribute=per_attribute, sequences=names,
                      sequence_curves=curves, skipped=missing, dropped=dropped,
                      protocol=protocol, exclude_invalid=exclude_invalid)


# --------------------------------------------------------------------------- reports
def markdown_table(results: Sequence[EvalResult]) -> str:
    """Markdown table: tracker, AUC, P, NP (percent, 2 decimals), number of sequences."""
    lines = ["| Tracker | AUC | P | NP | Sequences |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.AUC:.2f} | {r.P:.2f} | {r.NP:.2f} | {len(r.sequences)} |"
              for r in results]
    return "\n".join(lines)


def attribute_table(results: Sequence[EvalResult]) -> str:
    """Markdown table of per-attribute AUC (one row per tracker); empty without attributes."""
    present = [abbr for abbr, _ in ATTRIBUTES if any(abbr in r.per_attribute for r in results)]
    if not present:
        return ""
    counts = [next(r.per_attribute[a]["num_sequences"] for r in results if a in r.per_attribute)
              for a in present]
    header = "| Tracker | " + " | ".join(f"{a} ({n})" for a, n in zip(present, counts)) + " |"
    lines = [header, "|---|" + "---:|" * len(present)]
    for r in results:
        cells = [f"{r.per_attribute[a]['AUC']:.2f}" if a in r.per_attribute else "-"
                 for a in present]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_to_json(results: Sequence[EvalResult]) -> dict:
    """One tracker: its dict; several: tracker name -> dict."""
    if len(results) == 1:
        return results[0].to_dict()
    return {r.name: r.to_dict() for r in results}


def save_plots(results: Sequence[EvalResult], out_dir: str | Path,
               title: str = "LaSOT") -> list[Path]:
    """Success, precision and normalised precision plots (PNG), legend sorted by score."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    specs = (
        ("success_plot.png", "success_curve", SUCCESS_THRESHOLDS, "AUC",
         "Overlap threshold", "Success rate", f"Success plots of OPE on {title}"),
        ("precision_plot.png", "precision_curve", PRECISION_THRESHOLDS, "P",
         "Location error threshold (px)", "Precision", f"Precision plots of OPE on {title}"),
        ("norm_precision_plot.png", "norm_precision_curve", NORM_PRECISION_THRESHOLDS, "NP",
         "Normalised location error threshold", "Normalised precision",
         f"Normalised precision plots of OPE on {title}"),
    )
    written = []
    for file_name, curve_attr, thresholds, score_attr, x_label, y_label, plot_title in specs:
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
        for r in sorted(results, key=lambda r: -getattr(r, score_attr)):
            ax.plot(thresholds, getattr(r, curve_attr), linewidth=2,
                    label=f"[{getattr(r, score_attr):.2f}] {r.name}")
        ax.set(xlim=(thresholds[0], thresholds[-1]), ylim=(0, 1), xlabel=x_label,
               ylabel=y_label, title=plot_title)
        ax.grid(True, linestyle=":")
        ax.legend(loc="lower left" if score_attr == "AUC" else "lower right", fontsize=8)
        fig.tight_layout()
        path = out_dir / file_name
        try:
            with atomic_path(path) as temp:
                fig.savefig(temp, format="png")
        finally:
            plt.close(fig)
        written.append(path)
    return written
