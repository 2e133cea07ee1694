"""Semantic-segmentation scores (aAcc, mIoU, mAcc) computed exactly as mmseg 1.2.2's ``IoUMetric``.

Our own implementation because it scores PNG folders without building an mmseg dataset/runner,
counts areas in int64 (mmseg's ``torch.histc`` counts in float32) and turns bad input into errors
that name the file. The conventions it must share with mmseg:

* GT pixels equal to ``ignore_index`` are dropped, together with the prediction at those pixels.
* Per image: histograms over classes of the intersection (pred == GT), the prediction and the GT;
  union = pred + GT - intersection. Areas are summed over the dataset before any division.
* IoU = I / U, Acc = I / GT area per class; a class with 0/0 is NaN and skipped by the means;
  aAcc = sum(I) / sum(GT area); mIoU / mAcc = nanmean over classes.
* ``reduce_zero_label`` (ADE20K) is applied to the raw GT as mmseg's ``LoadAnnotations`` does:
  0 ("other") becomes the ignore index, every other label shifts down by one, and a raw
  ignore label stays ignored.

Stricter than mmseg on purpose: a label outside ``[0, num_classes)`` is an error instead of being
silently dropped by the histogram. A prediction may carry the ignore index ("no prediction"):
like mmseg, such a pixel counts in the GT area but in no prediction area (a miss).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from fileio import atomic_path
from fileio.progress import progress as progress_bar

AreaTuple = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# The 150 ADE20K classes in mmseg's order (``ADE20KDataset.METAINFO``, "bed " with its space), index 0 =
# raw label 1; data so that scoring needs no mmseg (a test checks it against mmseg's list).
ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass', 'cabinet',
    'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence',
    'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column',
    'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator',
    'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway',
    'river', 'bridge', 'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier', 'awning',
    'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land',
    'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain',
    'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket',
    'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name',
    'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor',
    'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag',
)


def ade20k_class_names() -> list[str]:
    """The 150 ADE20K class names in mmseg's order (index 0 = label 1 of the raw annotations)."""
    return list(ADE20K_CLASSES)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one a line; trailing blank lines are dropped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}: line {number} is empty (expected one class name a line)")
    return [line.strip() for line in lines]


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read a label-map image as a 2-D ``uint8`` / ``uint16`` array of class indices.

    Read with Pillow (as mmseg's ``LoadAnnotations`` does) so that a palette PNG yields its indices,
    not its colours. A multi-channel image is accepted only when all its channels are equal (a grey
    map saved as RGB); anything else is an error, since colours are not class indices.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.array(image)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such label map") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: unreadable or corrupt image ({error})") from error
    if mode == "F" or np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: floating-point image (mode {mode}) is not a label map")
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[2])):
            raise ValueError(
                f"{path}: {array.shape[2]}-channel image (mode {mode}) whose channels differ; "
                "a label map must be single-channel class indices, not colours")
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D label map, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype in (np.uint8, np.uint16):
        return array
    if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{path}: label values outside [0, 65535] (mode {mode})")
    return array.astype(np.uint16)


def apply_reduce_zero_label(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """ADE20K's label reduction: 0 -> ``ignore_index``, k -> k - 1, ``ignore_index`` kept."""
    label = np.asarray(label)
    reduced = label.astype(np.int64) - 1
    reduced[(label == 0) | (label == ignore_index)] = ignore_index
    return reduced


def _check_labels(values: np.ndarray, num_classes: int, ignore_index: int, what: str) -> None:
    """Raise if ``values`` hold labels outside ``[0, num_classes)`` other than ``ignore_index``."""
    bad = ((values < 0) | (values >= num_classes)) & (values != ignore_index)
    if bad.any():
        found = np.unique(values[bad])
        shown = ", ".join(str(v) for v in found[:10]) + (" ..." if found.size > 10 else "")
        raise ValueError(f"{what} holds labels outside [0, {num_classes}) other than the ignore "
                         f"index {ignore_index}: {shown}")


def intersect_and_union(pred: np.ndarray, label: np.ndarray, num_classes: int,
                        ignore_index: int = 255, reduce_zero_label: bool = False) -> AreaTuple:
    """Per-class pixel areas of one image: (intersection, union, prediction, GT), int64 [C].

    Args:
        pred: [H, W] predicted class indices in ``[0, num_classes)`` (or ``ignore_index``).
        label: [H, W] GT label map; raw dataset labels when ``reduce_zero_label`` is set.
        num_classes: number of evaluated classes.
        ignore_index: GT value whose pixels are left out of every area.
        reduce_zero_label: first reduce ``label`` as ADE20K's loader does
            (:func:`apply_reduce_zero_label`).
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from GT shape {label.shape}")
    if reduce_zero_label:
        label = apply_reduce_zero_label(label, ignore_index)
    _check_labels(label, num_classes, ignore_index, "GT")
    _check_labels(pred, num_classes, ignore_index, "prediction")

    valid = label != ignore_index
    gt = label[valid].astype(np.int64, copy=False)
    pr = pred[valid].astype(np.int64, copy=False)
    area_label = np.bincount(gt, minlength=num_classes)
    area_pred = np.bincount(pr[pr != ignore_index], minlength=num_classes)
    area_intersect = np.bincount(gt[pr == gt], minlength=num_classes)
    area_union = area_pred + area_label - area_intersect
    return area_intersect, area_union, area_pred, area_label


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator with NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without a warning) when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def summarize(area_intersect: np.ndarray, area_union: np.ndarray, area_pred: np.ndarray,
              area_label: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """Scores from dataset-summed areas, in percent and unrounded.

    Returns ``{"aAcc", "mIoU", "mAcc", "per_class": {name: {"IoU", "Acc"}}}``; absent classes have
    NaN entries, skipped by the means. mmseg rounds its summary to 2 decimals; we keep full
    precision and round only when printing.
    """
    num_classes = len(area_label)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class names must be unique (they key the per-class results)")
    iou = _ratio(area_intersect, area_union)
    acc = _ratio(area_intersect, area_label)
    all_acc = _ratio(np.sum(area_intersect), np.sum(area_label))
    return {
        "aAcc": float(all_acc) * 100,
        "mIoU": _nanmean(iou) * 100,
        "mAcc": _nanmean(acc) * 100,
        "per_class": {name: {"IoU": float(i) * 100, "Acc": float(a) * 100}
                      for name, i, a in zip(class_names, iou, acc)},
    }


def _pngs_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    return {p.stem: p for p in sorted(folder.glob("*.png"))}


def _stem_list(stems: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(stems[:limit])
    return shown + (f" ... ({len(stems)} in all)" if len(stems) > limit else "")


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, num_classes: int,
                     reduce_zero_label: bool = False, ignore_index: int = 255,
                     class_names: Sequence[str] | None = None, pred_raw: bool = False,
                     progress: bool = True) -> dict:
    """Score every ``<stem>.png`` of ``gt_dir`` against ``pred_dir/<stem>.png``.

    Args:
        pred_dir: predicted label maps, class indices in the evaluated (reduced) space.
        gt_dir: raw dataset annotations.
        num_classes: number of evaluated classes (150 for ADE20K).
        reduce_zero_label: reduce the GT as ADE20K's loader does.
        ignore_index: GT value left out of the scores.
        class_names: names keying ``per_class`` (default ``class_0 ...``).
        pred_raw: predictions are encoded like the raw GT (as mmseg's ``IoUMetric(output_dir=...)``
            writes them for ADE20K: class + 1) and get the same reduction; a no-op without
            ``reduce_zero_label``.
        progress: show a progress bar over images (:func:`fileio.progress.progress`).

    Returns:
        :func:`summarize`'s dict plus ``num_images``.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names given for {num_classes} classes")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    gts = _pngs_by_stem(gt_dir, "GT")
    preds = _pngs_by_stem(pred_dir, "prediction")
    if not gts:
        raise FileNotFoundError(f"no GT label maps (*.png) in {gt_dir}")
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise FileNotFoundError(f"{len(missing)} GT file(s) of {gt_dir} have no prediction in "
                                f"{pred_dir}: {_stem_list(missing)}")
    extra = sorted(set(preds) - set(gts))
    if extra:
        raise ValueError(f"{len(extra)} prediction(s) in {pred_dir} have no GT in {gt_dir}: "
                         f"{_stem_list(extra)}")

    totals = [np.zeros(num_classes, dtype=np.int64) for _ in range(4)]
    for stem in progress_bar(sorted(gts), desc="mIoU", unit="img", enabled=progress):
        gt = read_label_map(gts[stem])
        pred = read_label_map(preds[stem])
        if pred.shape != gt.shape:
            raise ValueError(f"{preds[stem]}: prediction size {pred.shape[1]}x{pred.shape[0]} "
                             f"differs from its GT {gts[stem]} ({gt.shape[1]}x{gt.shape[0]})")
        if reduce_zero_label:
            gt = apply_reduce_zero_label(gt, ignore_index)
            if pred_raw:
                pred = apply_reduce_zero_label(pred, ignore_index)
        reduced = ", after reduce_zero_label" if reduce_zero_label else ""
        _check_labels(gt, num_classes, ignore_index, f"{gts[stem]} (GT{reduced})")
        _check_labels(pred, num_classes, ignore_index, f"{preds[stem]} (prediction)")
        areas = intersect_and_union(pred, gt, num_classes, ignore_index)
        for total, area in zip(totals, areas):
            total += area
    result = summarize(*totals, class_names=class_names)
    result["num_images"] = len(gts)
    return result



def format_table(result: dict) -> str:
    """Per-class table (name, IoU, Acc in percent, 2 decimals) followed by the summary line."""
    names = list(result["per_class"])
    width = max([len("class")] + [len(n) for n in names])

    def cell(v: float) -> str:
        return f"{v:7.2f}" if math.isfinite(v) else f"{'nan':>7}"

    lines = [f"{'class':<{width}}  {'IoU':>7}  {'Acc':>7}", "-" * (width + 18)]
    for name in names:
        scores = result["per_class"][name]
        lines.append(f"{name:<{width}}  {cell(scores['IoU'])}  {cell(scores['Acc'])}")
    lines.append("-" * (width + 18))
    lines.append(f"aAcc {cell(result['aAcc']).strip()}  mIoU {cell(result['mIoU']).strip()}  "
                 f"mAcc {cell(result['mAcc']).strip()}")
    return "\n".join(lines)


def plot_per_class_iou(result: dict, path: str | os.PathLike, max_classes: int = 60) -> Path:
    """Horizontal bar chart of per-class IoU (sorted, absent classes left out) as a PNG.

    ``result`` is :func:`summarize`'s dict. With many classes only the
    ``max_classes`` best and worst halves are drawn, so the chart stays readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [(name, v["IoU"]) for name, v in result["per_class"].items()
              if v["IoU"] is not None and math.isfinite(v["IoU"])]
    scores.sort(key=lambda item: item[1], reverse=True)
    if len(scores) > max_classes:
        half = max_classes // 2
        scores = scores[:half] + [("...", 0.0)] + scores[-half:]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * max(len(scores), 1)))
    ax.barh(range(len(scores)), [s for _, s in scores], color="tab:blue")
    ax.set_yticks(range(len(scores)), [n for n, _ in scores], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_title(f"mIoU {result['mIoU']:.2f}  aAcc {result['aAcc']:.2f}  "
                 f"mAcc {result['mAcc']:.2f}")
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=120)
    plt.close(fig)
    return Path(path)
