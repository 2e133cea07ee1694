"""Running the study: the embedded run (every stage, cached) or the given results, as a report section."""
from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..stages import StageProgress, StageRunner, default_cache
from . import data as study_data
from .drivers import check_cli_path
from .findings import findings, findings_table
from .plan import StudyPlan, plan_study, study_stages
from .plots import photo_palette, plot_pretrain_losses, plot_summary, seg_overlay_grid
from .scoring import fmt
from .settings import BACKBONE, CKA_PAIRS, DOWNSTREAM, RECIPES, SCALES, TEACHER, GivenResults, StudySettings
from .tables import (classification_table, lasot_table, published_table, seg_table, sizes_table, stage_table,
                     summary_table)

__all__ = ["pending_estimate", "pretraining_note", "report_section", "run_embedded", "run_given"]

STATIC_BOX = "static box (frame 1 repeated)"
MOST_FREQUENT = "most frequent class everywhere"


def pending_estimate(settings: StudySettings, cache: Path | None = None) -> float:
    """Estimated seconds of the stages not yet in the cache (quiet 2-core CPU)."""
    runner = StageRunner((Path(cache) if cache is not None else default_cache()) / "study", Path("."))
    return runner.pending_estimate(plan_study(settings, runner).stages)


def study_jobs(threads: int, jobs: int | None = None) -> tuple[int, int]:
    """(stages at once, torch threads each) for ``threads`` threads in all: by default one
    single-threaded stage per thread, at most 4 and no more than the CPUs (the study's stages are
    small: two 1-thread processes use two cores better than one 2-thread process)."""
    if jobs is None:
        jobs = max(1, min(threads, 4, os.cpu_count() or 1))
    if jobs < 1:
        raise ValueError(f"study jobs must be >= 1, got {jobs}")
    return jobs, max(1, threads // jobs)


def run_embedded(out: Path, settings: StudySettings = StudySettings(), threads: int = 2,
                 cache: Path | None = None, progress: bool = True, terminal: Any = None,
                 jobs: int | None = None) -> tuple[str, dict]:
    """Run (or reuse from the cache) every stage of the embedded study and build its tables.

    ``cache`` is the benchmark cache root (default ``$LITEVIT_CACHE/benchmark``); the stages live
    in its ``study/`` folder. ``terminal``: stream of the stage progress bar. ``jobs``: stages run
    at once in worker processes, sharing ``threads`` (default :func:`study_jobs`; 1: one at a time
    in this process).
    """
    from benchmarks.demo_data.photos import PHOTOS

    cache = (Path(cache) if cache is not None else default_cache()).resolve()
    check_cli_path(cache)  # before any work: the seg stages hand paths under it to mmseg's command line
    out = Path(out)
    study_out = out / "study"
    runner = StageRunner(cache / "study", out / "logs" / "study")
    jobs, threads_each = study_jobs(threads, jobs)
    plan = plan_study(settings, runner, threads_each)
    runner.progress = StageProgress(runner.pending_estimate(plan.stages), enabled=progress, stream=terminal,
                                    position=1)
    started = time.perf_counter()
    try:
        summaries = runner.run_all(plan.stages, jobs, partial(study_stages, settings, runner.cache, threads_each),
                                   threads_each)
    finally:
        runner.progress.close("study: done")
    wall = time.perf_counter() - started

    names = {r: RECIPES[r].label for r in settings.recipes}
    photo_classes = list(PHOTOS)
    photos_root = Path(summaries["data-photos"]["root"])
    classification, sentences, baselines, parts = {}, {}, {}, []
    for task_name, by_scale in plan.downstream.items():
        task = DOWNSTREAM[task_name]
        split = _splits(task.config)
        majority = baselines[f"majority class, {task_name}"] = study_data.majority_class_top1(photos_root, *split)
        runs = {names[r]: {scale: [summaries[s.name] for s in by_scale[scale][r]] for scale in by_scale}
                for r in settings.recipes}
        md, classification[task_name], sentences[task_name] = classification_table(
            runs, {s: scale_label(s, [m for r in runs.values() for m in r[s]], task.label) for s in by_scale},
            f"{task.label.capitalize()} on the {len(photo_classes)} photo classes (4-block ViT-Tiny, 64 px; trained "
            f"on crops of the photos' training regions, scored on {majority['val_images']} crops of their held-out "
            f"regions; top-1 %, mean ± standard deviation over {len(settings.seeds)} seed(s))",
            {s: majority["top1"] for s in by_scale})
        parts.append(md)
    ade_root = Path(summaries["data-ade20k"]["root"])
    floor, floor_value = study_data.most_frequent_class_predictions(ade_root, study_out / "most_frequent_class")
    baselines["most frequent class"] = {"class": photo_classes[floor_value - 1], "predictions": str(floor)}
    seg_md, seg, sentences["seg"] = seg_table(
        {names[r]: Path(summaries[f"seg-{r}"]["preds"]) for r in settings.recipes},
        ade_root / "annotations" / "validation", len(photo_classes), photo_classes,
        f"Segmentation of photo composites (ADE20K layout, {len(photo_classes)} classes = photos, "
        f"{settings.ade20k['num_val']} held-out images; UperNet, mmseg runner, 64x64 crops; one seed)",
        baseline=(f"{MOST_FREQUENT} ({photo_classes[floor_value - 1]})", floor))
    lasot_root = Path(summaries["data-lasot"]["root"])
    static = study_data.static_box_results(lasot_root, study_out / "static_box_results")
    track_md, track, sentences["lasot"], plots = lasot_table(
        {names[r]: Path(summaries[f"track-test-{r}"]["results"]) for r in settings.recipes}, lasot_root,
        "Tracking photo sequences (LaSOT layout and protocol, objects and scenes from the photos' held-out "
        "regions; tracking probe: the pre-trained backbone frozen, the centre head trained, 64/128 px crops; "
        f"fps = frames / second while tracking them, {threads_each} "
        "thread(s), timed alongside whatever else ran on the machine (other stages too): the track section "
        "times speed under control)",
        fps={names[r]: summaries[f"track-test-{r}"]["fps"] for r in settings.recipes},
        baseline=(STATIC_BOX, static), plots=study_out / "lasot_plots")
    sizes = summaries["sizes"]
    probe = classification.get("probe", {})
    pictures = [plot_summary(list(names.values()), probe, seg, track, study_out / "summary.png",
                             track[STATIC_BOX]["AUC"], scale=settings.scales[0]),
                seg_overlay_grid(ade_root, {names[r]: Path(summaries[f"seg-{r}"]["preds"]) for r in settings.recipes},
                                 photo_palette(), study_out / "seg_overlays.png"), *plots]
    pretrain_logs = {(TEACHER.label if s is plan.teacher else RECIPES[r].label): runner.folder(s) / "log.jsonl"
                     for r, s in [("teacher", plan.teacher), *plan.backbones.items()] if s is not None}
    if pretrain_logs:
        pictures.append(plot_pretrain_losses(pretrain_logs, study_out / "pretrain_loss.png"))
    summary_md = summary_table(list(names.values()), classification, seg, track, sizes,
                               f"The study ({settings.title}): each pre-training recipe of the 4-block ViT-Tiny "
                               "and what it gives downstream (top-1: mean ± std over seeds)")
    relative = [str(p.relative_to(out)) for p in pictures]
    analysis_md, analysis = _analyses(plan, runner, names, photos_root / "val", study_out / "analysis", out)
    per_sequence = {n: [track[n]["per_sequence"][s]["AUC"] for s in sorted(track[n]["per_sequence"])]
                    for n in names.values()}
    findings_md, findings_data = findings_table(findings(
        classification, {s: SCALES[s].label for s in settings.scales}, seg, per_sequence,
        analysis["cka"]["pairs"]))
    not_run = [f"{r.label} ({r.missing()})" for n, r in RECIPES.items()
               if n not in settings.recipes and not r.available()]
    text = "\n\n".join([
        summary_md, findings_md, *parts, seg_md, track_md, analysis_md, sizes_table(sizes), published_table(),
        "Pictures: " + ", ".join(f"`{p}`" for p in relative) + ". Seg overlays: rows = held-out images; "
        "columns = image, ground truth, then " + ", ".join(names.values()) + ".",
        *([f"Recipes not run: {', '.join(not_run)}."] if not_run else []),
        f"**Stages** (cache `{runner.cache}`; logs `{runner.logs}`)\n\n"
        + stage_table(runner.records, wall, jobs, threads_each),
        pretraining_note(summaries)])
    data = {"mode": "embedded", "settings": {k: v for k, v in vars(settings).items()}, "classification": classification,
            "seg": seg, "lasot": track, "sizes": sizes, "stages": runner.records, "wall_s": wall,
            "jobs": jobs, "threads_per_job": threads_each,
            "pictures": relative, "pretraining": {n: summaries[n] for n in summaries if n.startswith("pretrain-")},
            "analysis": analysis, "findings": findings_data, "recipes_not_run": not_run, "sentences": sentences,
            "baselines": baselines}
    return text, data


def scale_label(scale: str, records: Sequence[Mapping[str, Any]], task: str) -> str:
    """A data scale's column label with the images its runs trained on, read from their metrics
    (``train_images`` of ``train_images_total``); refused when a run's ``subset`` is not the scale's."""
    from pretrain.datasets import parse_subset

    spec = parse_subset(SCALES[scale].options.get("data.subset"))
    wanted = spec.as_dict() if spec is not None else None
    used = set()
    for record in records:
        if "subset" not in record:
            raise RuntimeError(f"{task}, {scale}: a run's summary records no subset (metrics.json missing)")
        if (record["subset"] or None) != wanted:
            raise RuntimeError(f"{task}, {scale}: a run trained on subset {record['subset']}, the scale asks for "
                               f"{wanted}")
        used.add((record["train_images"], record["train_images_total"]))
    counts = "; ".join(f"{n} of {total} images" for n, total in sorted(used))
    return f"{SCALES[scale].label}{': ' + counts if counts else ''}"


def _splits(config: Path) -> tuple[str, str]:
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    return cfg.data.train_split, cfg.data.val_split


def _analyses(plan: StudyPlan, runner: StageRunner, names: Mapping[str, str], images: Path, out_dir: Path,
              report_root: Path) -> tuple[str, dict]:
    """Layer CKA and attention distance / entropy of the study's encoders (random init and each export)
    over the held-out photo crops (``analysis.report_section``; seconds at this scale)."""
    import torch

    from analysis import report_section
    from backbones import build_backbone, load_backbone

    models = {}
    for recipe, name in names.items():
        stage = plan.backbones.get(recipe)
        if stage is None:
            torch.manual_seed(0)
            models[name] = build_backbone(BACKBONE["arch"], num_classes=0, depth=BACKBONE["depth"],
                                          img_size=BACKBONE["img_size"])
        else:
            models[name] = load_backbone(runner.folder(stage) / "backbone.pth", num_classes=0)
    pairs = [(names[a], names[b]) for a, b in CKA_PAIRS if a in names and b in names]
    text, data = report_section(models, images, out_dir, max_images=64, link_root=report_root, pairs=pairs or None)
    return ("### Analyses of the encoders (layer CKA of the pairs the paper shows, attention distance and "
            "entropy; tools/analyze.py)\n\n" + text), data


def pretraining_note(summaries: Mapping[str, Any]) -> str:
    """One line per pre-training run: its updates and its first and last logged loss."""
    runs = {n: s for n, s in summaries.items() if n.startswith("pretrain-")}
    if not runs:
        return "No pre-training in this run (random init only)."
    parts = [f"{n.removeprefix('pretrain-')}: {s['updates']} updates, loss {fmt(s['loss_first'], 3)} -> "
             f"{fmt(s['loss_last'], 3)}" for n, s in runs.items()]
    return ("Pre-training (configs/study/pretrain; D-MAE / D²-MAE losses include the distillation term): "
            + "; ".join(parts) + ".")


def run_given(out: Path, given: GivenResults) -> tuple[str, dict]:
    """Tables from results of real runs; nothing is trained or generated."""
    given.check()
    out = Path(out)
    parts, data = [], {"mode": "given"}
    probe = seg = track = {}
    classification = {}
    if given.imagenet_results:
        rows = {}
        for name, path in given.imagenet_results.items():
            path = Path(path)
            metrics = path / "metrics.json" if path.is_dir() else path
            if not metrics.is_file():
                raise FileNotFoundError(f"--imagenet-results {name}={path}: no metrics.json (written by "
                                        "tools/pretrain.py at the end of fine-tuning / probing)")
            rows[name] = {"given": [json.loads(metrics.read_text(encoding="utf-8"))]}
        md, probe, _ = classification_table(
            rows, {"given": "given run"}, "ImageNet top-1 of the given fine-tuning / probing runs (their metrics.json)")
        classification["imagenet"] = probe
        parts.append(md)
    else:
        parts.append("ImageNet: no results given (--imagenet-results NAME=metrics.json): left out.")
    if given.ade20k_results:
        from evaluation.miou import ade20k_class_names

        annos = Path(given.ade20k_annos)
        gt = annos / "annotations" / "validation" if (annos / "annotations" / "validation").is_dir() else annos
        md, seg, _ = seg_table(given.ade20k_results, gt, 150, ade20k_class_names(),
                            f"ADE20K mIoU of the given predictions (scored against {gt})")
        parts.append(md)
    else:
        parts.append("ADE20K: no predictions given (--ade20k-results NAME=DIR --ade20k ROOT): left out.")
    if given.lasot_results:
        md, track, _, plots = lasot_table(given.lasot_results, Path(given.lasot_annos),
                                       f"LaSOT (official protocol) of the given result folders (annotations "
                                       f"{given.lasot_annos})", plots=out / "study" / "lasot_plots")
        parts.append(md)
        data["pictures"] = [str(p.relative_to(out)) for p in plots]
    else:
        parts.append("LaSOT: no result folders given (--lasot-results NAME=DIR --lasot-annos DIR): left out.")
    names = list(dict.fromkeys([*probe, *seg, *track]))
    if names:
        parts.insert(0, summary_table(names, classification, seg, track, None, "Given results, side by side"))
    if given.backbones:
        parts.append(_checkpoint_sizes(given.backbones))
    parts.append(published_table())
    data.update(probe=probe, seg=seg, lasot=track)
    return "\n\n".join(parts), data


def _checkpoint_sizes(backbones: Mapping[str, Path]) -> str:
    """Parameters and FLOPs at 224 px of given backbone checkpoints (architecture from the export)."""
    import torch

    from backbones import load_backbone
    from benchmarks.seg_speed import count_flops

    lines = ["| checkpoint | arch | params (M) | GFLOPs @224 |", "|---|---|---:|---:|"]
    for name, path in backbones.items():
        model = load_backbone(path, num_classes=0).eval()
        flops, _ = count_flops(lambda: model(torch.zeros(1, 3, 224, 224)))
        lines.append(f"| {name} | {getattr(model, 'arch', '?')} | "
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} | {flops / 1e9:.2f} |")
    return "**Given checkpoints**\n\n" + "\n".join(lines)


def report_section(out_dir: Path, threads: int = 2, quick: bool = False, given: GivenResults | None = None,
                   settings: StudySettings | None = None, cache: Path | None = None,
                   progress: bool = True, terminal: Any = None, jobs: int | None = None) -> tuple[str, dict]:
    """The study as a report section (Markdown, JSON data): the given results when any, else the
    embedded study (``quick`` does not shorten it: its training is cached after the first run)."""
    if given is not None and given.any():
        return run_given(out_dir, given)
    return run_embedded(out_dir, settings or StudySettings(), threads, cache, progress, terminal, jobs)

