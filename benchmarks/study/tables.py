"""The study's tables, each with the sentences computed from its numbers underneath.

Every function scores what it is given with the shared evaluators (:mod:`evaluation.lasot`,
:mod:`evaluation.miou`) or takes the engines' own metrics, and returns ``(Markdown, data)``; the
sentences come from :mod:`.scoring` (a difference is called one only beyond the noise).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .scoring import (Estimate, baseline_sentence, compare_paired, compare_to_value, fmt, ordered_steps,
                      ranking_sentence)
from .settings import PUBLISHED

SEED_NOISE = "Welch, over seeds"


def classification_table(runs: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]], scales: Mapping[str, str],
                         title: str, majority: Mapping[str, float] | None = None) -> tuple[str, dict, list[str]]:
    """Top-1 of a downstream task: rows = models, one column per data scale, ``mean ± std`` over seeds.

    ``runs``: model -> scale -> one metrics dict per seed (``top1``, ``top5``); ``scales``: scale ->
    column label; ``majority``: scale -> the majority-class top-1 every row is compared with.
    Under the table, per scale: the rows in order with each step's verdict, then the baseline's.
    Returns (Markdown, rows, sentences).
    """
    lines = ["| model | " + " | ".join(f"top-1, {label}" for label in scales.values()) + " |",
             "|---|" + "---:|" * len(scales)]
    data: dict[str, Any] = {}
    for name, by_scale in runs.items():
        cells = []
        data[name] = {}
        for scale in scales:
            metrics = by_scale.get(scale, [])
            top1 = Estimate.of(m["top1"] for m in metrics)
            top5 = [float(m.get("top5", math.nan)) for m in metrics]
            data[name][scale] = {"top1": list(top1.values), "top5": top5, "top1_mean": top1.mean,
                                 "top1_std": top1.std, "seeds": top1.n}
            cells.append(top1.cell() + (f" (n={top1.n})" if top1.n > 1 else "") if metrics else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sentences = []
    for scale, label in scales.items():
        estimates = {n: Estimate.of(data[n][scale]["top1"]) for n in runs if data[n][scale]["top1"]}
        if len(estimates) > 1:
            best = max(estimates, key=lambda k: estimates[k].mean)
            sentences.append(f"{label}: " + ranking_sentence(ordered_steps(estimates), (best, estimates[best].mean),
                                                            "Top-1", SEED_NOISE))
        if majority and scale in majority and estimates:
            sentences.append(f"{label}: " + baseline_sentence(
                [compare_to_value(n, e, "majority class", majority[scale]) for n, e in estimates.items()],
                "the majority class", majority[scale], "standard error of the seed mean"))
    return _with_sentences(title, lines, sentences), data, sentences


def seg_table(rows: Mapping[str, Path], gt_dir: Path, num_classes: int, class_names: Sequence[str], title: str,
              baseline: tuple[str, Path] | None = None) -> tuple[str, dict, list[str]]:
    """Score prediction folders (encoded like the annotations, as mmseg writes them) with
    :func:`evaluation.miou.evaluate_folders`; one row each, the baseline's last. One seed a row:
    the sentence compares each row with the baseline and calls no ranking. Returns (Markdown, rows,
    sentences)."""
    from evaluation.miou import evaluate_folders

    lines = ["| model | mIoU | aAcc | mAcc | classes present |", "|---|---:|---:|---:|---:|"]
    data = {}
    entries = list(rows.items()) + ([baseline] if baseline else [])
    for name, preds in entries:
        result = evaluate_folders(preds, gt_dir, num_classes, reduce_zero_label=True, pred_raw=True,
                                  class_names=list(class_names), progress=False)
        present = sum(1 for v in result["per_class"].values() if v["IoU"] is not None and math.isfinite(v["IoU"]))
        data[name] = {**result, "classes_present": present, "predictions": str(preds)}
        lines.append(f"| {name} | {result['mIoU']:.2f} | {result['aAcc']:.2f} | {result['mAcc']:.2f} | {present} |")
    sentences = []
    if baseline and rows:
        floor = data[baseline[0]]["mIoU"]
        above = [n for n in rows if data[n]["mIoU"] > floor]
        below = [n for n in rows if data[n]["mIoU"] <= floor]
        text = f"Against {baseline[0]} (mIoU {floor:.2f}), one seed a row (no noise estimate): "
        text += "; ".join(part for part in (
            ("above it: " + ", ".join(f"{n} ({data[n]['mIoU'] - floor:+.2f})" for n in above)) if above else "",
            ("not above it: " + ", ".join(f"{n} ({data[n]['mIoU'] - floor:+.2f})" for n in below)) if below else "")
            if part) + "."
        sentences.append(text)
    return _with_sentences(title, lines, sentences), data, sentences


def lasot_table(rows: Mapping[str, Path], annos_root: Path, title: str, fps: Mapping[str, float] | None = None,
                baseline: tuple[str, Path] | None = None, plots: Path | None = None
                ) -> tuple[str, dict, list[str], list[Path]]:
    """Score result folders with :func:`evaluation.lasot.evaluate_tracker` (official protocol).

    AUC comes with its standard error over sequences. Under the table: the trackers in order,
    each step judged by the paired per-sequence AUC differences, and each tracker against the
    baseline (a static box) the same way. Returns (Markdown, rows, sentences, plot files).
    """
    from evaluation.lasot import evaluate_tracker, load_annotations, save_plots

    annos = load_annotations(annos_root)
    evaluated = [evaluate_tracker(folder, annos, name=name, progress=False) for name, folder in rows.items()]
    base = evaluate_tracker(baseline[1], annos, name=baseline[0], progress=False) if baseline else None
    lines = ["| model | AUC | ± s.e. | P | NP | sequences | fps |", "|---|---:|---:|---:|---:|---:|---:|"]
    data: dict[str, Any] = {}
    per_sequence = {}
    for r in evaluated + ([base] if base else []):
        per_sequence[r.name] = [r.per_sequence[s]["AUC"] for s in r.sequences]
        aucs = np.array(per_sequence[r.name])
        se = float(aucs.std(ddof=1) / np.sqrt(len(aucs))) if len(aucs) > 1 else math.nan
        speed = (fps or {}).get(r.name)
        data[r.name] = {**r.to_dict(), "AUC_standard_error": se, "fps": speed}
        lines.append(f"| {r.name} | {r.AUC:.2f} | {fmt(se, 2)} | {r.P:.2f} | {r.NP:.2f} | {len(r.sequences)} | "
                     f"{fmt(speed)} |")
    sentences = []
    noise = "standard error of the paired per-sequence difference"
    if len(evaluated) > 1:
        order = sorted(evaluated, key=lambda r: -r.AUC)
        steps = [compare_paired(a.name, per_sequence[a.name], b.name, per_sequence[b.name])
                 for a, b in zip(order, order[1:])]
        sentences.append(ranking_sentence(steps, (order[0].name, order[0].AUC), "AUC", noise, digits=2))
    if base is not None and evaluated:
        sentences.append(baseline_sentence(
            [compare_paired(r.name, per_sequence[r.name], base.name, per_sequence[base.name]) for r in evaluated],
            base.name, base.AUC, noise, digits=2))
    written = save_plots(evaluated + ([base] if base else []), plots, title=title.split(" (")[0]) if plots else []
    return _with_sentences(title, lines, sentences), data, sentences, written


def _with_sentences(title: str, lines: Sequence[str], sentences: Sequence[str]) -> str:
    return f"**{title}**\n\n" + "\n".join(lines) + "".join(f"\n\n{s}" for s in sentences)


def published_table() -> str:
    lines = ["| published model (ViT-Tiny, 5.7M) | ImageNet-1k fine-tune top-1 | ADE20K mIoU | LaSOT AUC |",
             "|---|---:|---:|---:|"]
    lines += [f"| {m} | {a} | {b} | {c} |" for m, a, b, c in PUBLISHED]
    return ("**Published figures (MAE-Lite's papers; full-scale runs: 400-epoch ImageNet pre-training, "
            "Semantic FPN 160k on ADE20K, OSTrack-CE on LaSOT) - for reference, not comparable with "
            "the toy runs above**\n\n" + "\n".join(lines))


def summary_table(names: Sequence[str], classification: Mapping[str, Mapping[str, Any]], seg: Mapping,
                  track: Mapping, sizes: Mapping | None, title: str) -> str:
    """One row per model: every classification column (``task, scale`` -> mean ± std), mIoU, AUC,
    tracker fps, and the backbone's size."""
    columns = [(task, scale) for task, rows in classification.items()
               for scale in dict.fromkeys(s for row in rows.values() for s in row)]
    head = "| model | " + "".join(f"{task} top-1, {scale} | " for task, scale in columns) + "mIoU | AUC | tracker fps |"
    if sizes:
        head += " backbone params (M) | backbone GFLOPs |"
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for name in names:
        cells = []
        for task, scale in columns:
            entry = classification[task].get(name, {}).get(scale)
            cells.append(Estimate.of(entry["top1"]).cell() if entry and entry["top1"] else "-")
        cells += [fmt(seg.get(name, {}).get("mIoU"), 2), fmt(track.get(name, {}).get("AUC"), 2),
                  fmt(track.get(name, {}).get("fps"))]
        if sizes:
            cells += [f"{sizes['backbone']['params'] / 1e6:.2f}", f"{sizes['backbone']['flops'] / 1e9:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"**{title}**\n\n" + "\n".join(lines)


def sizes_table(sizes: Mapping[str, Any]) -> str:
    lines = ["| model | input | params (M) | GFLOPs |", "|---|---|---:|---:|"]
    for name, label in (("backbone", "ViT-Tiny, 4 blocks"), ("segmentor", "UperNet (64 ch) on it, no aux head"),
                        ("tracker", "one-stream tracker on it (CE)")):
        s = sizes[name]
        lines.append(f"| {label} | {s['input']} | {s['params'] / 1e6:.2f} | {s['flops'] / 1e9:.3f} |")
    return ("**The study's models (FLOPs: torch's counter, 1 multiply-add = 2 FLOPs, batch 1)**\n\n"
            + "\n".join(lines))


def stage_table(records: Sequence[Mapping[str, Any]], elapsed_s: float | None = None, jobs: int = 1,
                threads: int = 1) -> str:
    """Each stage's wall and CPU seconds; ``elapsed_s``: the study's own wall time with ``jobs``
    stages at once of ``threads`` threads each (the stages' wall times then add up to more)."""
    lines = ["| stage | wall s | CPU s | estimate s | |", "|---|---:|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['label']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['estimate_s']:.0f} | "
                     f"{'cached (time of the run that made it)' if r.get('cached') else 'this run'} |")
    total = sum(r["wall_s"] for r in records if not r.get("cached"))
    text = f"\n\nWall time of the stages run now: {total:.0f} s"
    if elapsed_s is not None:
        text += (f", in {elapsed_s:.0f} s with {jobs} stages at once (worker processes of {threads} thread(s) each)"
                 if jobs > 1 else f" ({elapsed_s:.0f} s elapsed)")
    return "\n".join(lines) + text + "."
