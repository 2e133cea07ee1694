"""The study behind the project: what each pre-training recipe of one backbone does downstream.

For each recipe of the backbone (none = random init, MAE, D-MAE, D²-MAE) the tables put the
downstream results side by side: classification (linear probe top-1; with real data the ImageNet
fine-tune / probe top-1), segmentation mIoU, tracking AUC, with the models' sizes and speed. The
published figures sit in their own labelled table.

**Embedded default** (no data given): one run of the whole job at toy scale on real photographs
(the sample photos scikit-image ships, :mod:`benchmarks.demo_data.photos`), every step through the
project's own paths and configs (``configs/study/``):

1. data: an ImageNet-layout folder of photo crops (one class per photo), an ADE20K-layout set of
   photo composites (each photo a class) and LaSOT-layout sequences of objects cut from photos
   moving over photos; evaluation data always comes from the photos' held-out regions;
2. pre-training with ``pretrain.engine.run``: a wider ViT teacher (ViT-Small width, 4 blocks) by
   MAE, then the 4-block ViT-Tiny student by MAE, D-MAE and D²-MAE (teacher = that MAE teacher),
   each exported to ``backbone.pth``;
3. from each export and from random init: the linear probe (``pretrain.engine.run``, two seeds),
   UperNet through mmseg's runner (``tools/seg_train.py``; predictions written by mmseg's
   IoUMetric at the final validation), the tracker (``track.train.train``, then
   ``tools/track_test.py``); scored by :mod:`evaluation.miou` and :mod:`evaluation.lasot`.

Every step is a cached :class:`benchmarks.stages.Stage` (keyed by its resolved config and its
inputs' keys) under ``$LITEVIT_CACHE/benchmark``, so a second run re-scores in seconds.

**Data given**: results of real runs are scored instead and nothing is generated or trained:
``imagenet_results`` (``metrics.json`` of ``tools/pretrain.py`` fine-tuning / probing runs),
``ade20k_results`` (prediction folders of ``tools/seg_test.py --out``) with the ADE20K
annotations, ``lasot_results`` (result folders of ``tools/track_test.py``) with the LaSOT
annotations, ``backbones`` (checkpoints, for the size table). A task with nothing given is left
out with a note.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fileio import atomic_path

from .stages import (Stage, StageProgress, StageRunner, config_digest, default_cache, digest,
                     file_digest)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "study"
TEACHER_CONFIG = CONFIGS / "pretrain" / "mae_vit_small-d4_teacher_photos-64px.py"
PRETRAIN_CONFIGS = {
    "mae": CONFIGS / "pretrain" / "mae_vit_tiny-d4_photos-64px.py",
    "dmae": CONFIGS / "pretrain" / "dmae_vit_tiny-d4_photos-64px.py",
    "d2mae": CONFIGS / "pretrain" / "d2mae_vit_tiny-d4_photos-64px.py",
}
PROBE_CONFIG = CONFIGS / "linprobe_vit_tiny-d4_photos-64px.py"
SEG_CONFIG = CONFIGS / "seg" / "upernet_vit-tiny-d4_photos-64x64.py"
TRACK_CONFIG = CONFIGS / "track" / "vit_tiny-d4_ce_photos.py"
RECIPES = {"none": "none (random init)", "mae": "MAE", "dmae": "D-MAE", "d2mae": "D²-MAE"}
DEMO_DATA = REPO / "benchmarks" / "demo_data"

# Published figures (PROTOCOLS.md: MAE-Lite's papers and code), never mixed with ours.
# (model, ImageNet-1k fine-tune top-1, ADE20K mIoU (Semantic FPN, 160k), LaSOT AUC (OSTrack-CE))
PUBLISHED = [
    ("DeiT-Tiny (supervised ImageNet init)", "75.8", "38.0", "64.1"),
    ("MAE-Tiny", "78.0", "-", "-"),
    ("D-MAE-Tiny", "78.4", "-", "65.8"),
    ("D²-MAE-Tiny", "78.7", "39.0", "66.1"),
    ("DeiT-Tiny + RPE, fine-tuned", "-", "41.5", "-"),
    ("D²-MAE-Tiny + RPE, ImageNet fine-tuned (1000 ep)", "79.4", "42.8", "-"),
]


@dataclass(frozen=True)
class StudySettings:
    """What the embedded study runs: recipes, generated data sizes, probe seeds, config overrides
    (mmengine ``--cfg-options`` style, applied on top of ``configs/study``) and per-stage time
    estimates (seconds on a quiet 2-core AVX2 CPU, for the progress bar's ETA)."""

    recipes: tuple[str, ...] = tuple(RECIPES)
    photos: Mapping[str, Any] = field(default_factory=lambda: dict(
        per_class=128, probe_per_class=32, val_per_class=20, size=80, seed=0))
    ade20k: Mapping[str, Any] = field(default_factory=lambda: dict(
        num_train=96, num_val=24, size=(128, 96), seed=0))
    probe_seeds: tuple[int, ...] = (0, 1)
    pretrain_options: Mapping[str, Any] = field(default_factory=dict)
    probe_options: Mapping[str, Any] = field(default_factory=dict)
    seg_options: Mapping[str, Any] = field(default_factory=dict)
    track_options: Mapping[str, Any] = field(default_factory=dict)
    estimates: Mapping[str, float] = field(default_factory=lambda: dict(
        photos=2, ade20k=1, lasot=2, teacher=35, mae=12, dmae=20, d2mae=20, probe=4, seg=22,
        track_train=22, track_test=10, sizes=8))
    title: str = "embedded study"


# One recipe, a few steps each: the same code end to end in well under a minute (tests, --study smoke).
SMOKE = StudySettings(
    recipes=("mae",),
    photos=dict(per_class=8, probe_per_class=2, val_per_class=1, size=72, seed=0),
    ade20k=dict(num_train=4, num_val=2, size=(96, 72), seed=0),
    probe_seeds=(0,),
    pretrain_options={"schedule.epochs": 1, "schedule.warmup_epochs": 0, "data.batch_size": 16,
                      "runtime.log_every": 1, "runtime.checkpoint_every": None},
    probe_options={"schedule.epochs": 1, "schedule.warmup_epochs": 0, "data.batch_size": 14,
                   "runtime.eval_every": 1},
    seg_options={"train_cfg.max_iters": 2, "train_cfg.val_interval": 2, "train_dataloader.batch_size": 2,
                 "default_hooks.checkpoint.interval": 2, "default_hooks.logger.interval": 1},
    track_options={"train.epochs": 1, "train.batch_size": 8, "data.samples_per_epoch": 16,
                   "data.num_workers": 0, "train.log_interval": 1, "data.generate.seqs_per_class": 2,
                   "data.generate.test_per_class": 1, "data.generate.num_frames": 6,
                   "data.generate.size": (96, 72),
                   "data.generate.classes": ["astronaut", "brick", "coffee", "rocket"]},
    estimates=dict(photos=1, ade20k=1, lasot=1, teacher=5, mae=3, dmae=4, d2mae=4, probe=2, seg=15,
                   track_train=4, track_test=3, sizes=6),
    title="smoke run of the study (one recipe, a few steps: checks the pipeline, measures nothing)",
)


@dataclass
class GivenResults:
    """Results of real runs to tabulate instead of the embedded study (names -> paths)."""

    imagenet_results: dict[str, Path] = field(default_factory=dict)
    ade20k_results: dict[str, Path] = field(default_factory=dict)
    ade20k_annos: Path | None = None
    lasot_results: dict[str, Path] = field(default_factory=dict)
    lasot_annos: Path | None = None
    backbones: dict[str, Path] = field(default_factory=dict)

    def any(self) -> bool:
        return bool(self.imagenet_results or self.ade20k_results or self.lasot_results or self.backbones)

    def check(self) -> None:
        """Every path exists and every result kind has its annotations, before any work."""
        for option, entries in (("--imagenet-results", self.imagenet_results),
                                ("--ade20k-results", self.ade20k_results),
                                ("--lasot-results", self.lasot_results), ("--backbone", self.backbones)):
            for name, path in entries.items():
                if not Path(path).exists():
                    raise FileNotFoundError(f"{option} {name}={path}: not found")
        if self.ade20k_results and self.ade20k_annos is None:
            raise ValueError("--ade20k-results needs the ADE20K annotations: --ade20k ROOT (the "
                             "ADEChallengeData2016 folder or its annotations/validation)")
        if self.lasot_results and self.lasot_annos is None:
            raise ValueError("--lasot-results needs the LaSOT annotations: --lasot-annos DIR "
                             "(a LaSOT root or the toolkit's annos/), or LITEVIT_LASOT_ANNOS")
        for option, path in (("--ade20k", self.ade20k_annos), ("--lasot-annos", self.lasot_annos)):
            if path is not None and not Path(path).is_dir():
                raise FileNotFoundError(f"{option} {path}: not a folder")


# ------------------------------------------------------------------------------------- running
def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    return {**dict(base), **dict(extra)}


def _run_pretrain(config: Path, options: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """``pretrain.engine.run`` on a config + options (resuming in ``work``); summary with the loss."""
    from mmengine.config import Config

    from pretrain.engine import read_log, run

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(dict(options))
    cfg.work_dir = str(work)
    cfg.recipe = cfg.get("recipe") or config.stem
    summary = run(cfg.to_dict(), resume=True)
    losses = [r["loss"] for r in read_log(work / "log.jsonl") if r.get("event") == "train"]
    out = {"updates": summary.get("update"), "finished": summary.get("finished"),
           "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    for key in ("export", "top1", "top5", "images"):
        if key in summary:
            out[key] = summary[key]
    return out


def _load_tool(name: str):
    """A script of ``tools/`` as a module, to call its ``main(argv)`` in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_litevit_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_cli_value(v) for v in value) + ",)"
    return str(value)


def _check_cli_path(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ",=() "):
        raise ValueError(f"{text}: mmengine's --cfg-options cannot carry a path with ',', '=', "
                         "brackets or spaces; set LITEVIT_CACHE to a plain path")
    return text


def _run_seg_train(config: Path, options: Mapping[str, Any], backbone: Path | None, data_root: Path,
                   work: Path, threads: int) -> dict[str, Any]:
    """mmseg's own training script (``tools/seg_train.py``) in a subprocess; the final validation
    writes the predictions (``val_evaluator.output_dir``, encoded like the annotations)."""
    preds = work / "preds"
    cli = {**dict(options), "val_evaluator.output_dir": _check_cli_path(preds)}
    if backbone is not None:
        cli["model.pretrained"] = _check_cli_path(backbone)
    mmseg_dir = work / "mmseg"
    cmd = [sys.executable, str(REPO / "tools" / "seg_train.py"), str(config), "--work-dir", str(mmseg_dir)]
    if (mmseg_dir / "last_checkpoint").is_file():
        cmd.append("--resume")
    cmd += ["--cfg-options", *(f"{k}={_cli_value(v)}" for k, v in cli.items())]
    env = {**os.environ, "LITEVIT_ADE20K": str(data_root), "OMP_NUM_THREADS": str(threads)}
    print("$", " ".join(cmd), flush=True)
    sys.stdout.flush()
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=sys.stdout, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"tools/seg_train.py exited with {done.returncode}")
    checkpoints = sorted(mmseg_dir.glob("iter_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    if not checkpoints or not preds.is_dir():
        raise RuntimeError(f"mmseg finished without a checkpoint or predictions in {work}")
    return {"preds": str(preds), "checkpoint": str(checkpoints[-1]), "work_dir": str(mmseg_dir)}


def _track_config(options: Mapping[str, Any]):
    from track.config import load_config

    cfg = load_config(TRACK_CONFIG)
    cfg.merge_from_dict(dict(options))
    return cfg


def _run_track_train(options: Mapping[str, Any], backbone: Path | None, lasot_root: Path, work: Path,
                     threads: int) -> dict[str, Any]:
    from track.train import LATEST, train

    cfg = _track_config(options)
    cfg.model.pretrained = str(backbone) if backbone is not None else None
    for entry in cfg.data.datasets:
        entry.root = str(lasot_root)
    cfg.train.num_threads = threads
    summary = train(cfg, work, resume="auto" if (work / LATEST).is_file() else None)
    if not summary.get("final_checkpoint"):
        raise RuntimeError(f"tracker training stopped early: {summary}")
    return {"checkpoint": summary["final_checkpoint"], "steps": summary["global_step"],
            "last": summary.get("last", {})}


def _run_track_test(checkpoint: Path, lasot_root: Path, work: Path, threads: int) -> dict[str, Any]:
    results = work / "results"
    _load_tool("track_test").main([str(TRACK_CONFIG), str(checkpoint), "--lasot-root", str(lasot_root),
                                   "--out", str(results), "--workers", "1", "--threads", str(threads)])
    times = np.concatenate([np.loadtxt(p, ndmin=1) for p in sorted(results.glob("*_time.txt"))])
    return {"results": str(results), "frames": int(times.size), "fps": float(times.size / times.sum())}


def _static_box_results(lasot_root: Path, out: Path) -> Path:
    """Frame 1's ground-truth box repeated: the floor a tracker has to beat."""
    from evaluation.annotations import read_boxes, sequence_class
    from fileio import atomic_write_text
    from track.datasets.lasot import list_sequences

    for name in list_sequences(lasot_root, "test"):
        gt = read_boxes(lasot_root / sequence_class(name) / name / "groundtruth.txt")
        rows = np.repeat(gt[:1], len(gt), axis=0)
        atomic_write_text(out / f"{name}.txt", "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in rows))
    return out


def _sizes(threads: int) -> dict[str, Any]:
    """Parameters and FLOPs of the study's three models at the study's input sizes."""
    import torch

    from backbones import build_backbone
    from benchmarks.seg_speed import count_flops, seg_model_stats
    from track.config import build_model

    torch.set_num_threads(threads)
    backbone = build_backbone("vit_tiny", num_classes=0, depth=4, img_size=64).eval()
    backbone_flops, _ = count_flops(lambda: backbone(torch.zeros(1, 3, 64, 64)))
    tracker = build_model(_track_config({}), pretrained=None).eval()
    t, s = tracker.template_size, tracker.search_size
    tracker_flops, _ = count_flops(lambda: tracker(torch.zeros(1, 3, t, t), torch.zeros(1, 3, s, s)))
    seg = seg_model_stats(SEG_CONFIG, size=(64, 64))
    return {"backbone": {"params": sum(p.numel() for p in backbone.parameters()), "flops": backbone_flops,
                         "input": "64x64"},
            "tracker": {"params": sum(p.numel() for p in tracker.parameters()), "flops": tracker_flops,
                        "input": f"template {t}x{t} + search {s}x{s}"},
            "segmentor": {"params": seg["params_inference"], "flops": seg["flops"], "input": "64x64"}}


@dataclass
class StudyPlan:
    """The stages of the embedded study, in running order, and where each table reads from."""

    settings: StudySettings
    stages: list[Stage]
    data: dict[str, Stage]
    backbones: dict[str, Stage | None]
    probes: dict[str, list[Stage]]
    segs: dict[str, Stage]
    track_tests: dict[str, Stage]
    sizes: Stage


def plan_study(settings: StudySettings, runner: StageRunner, threads: int = 2) -> StudyPlan:
    """Build every stage with its content key (nothing runs here)."""
    from benchmarks.demo_data.ade20k import make_ade20k_dataset
    from benchmarks.demo_data.lasot import make_lasot_dataset
    from benchmarks.demo_data.photos import PHOTOS, make_photo_imagenet

    unknown = [r for r in settings.recipes if r not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    est = settings.estimates
    photos_src = file_digest(DEMO_DATA / "photos.py")
    photos = Stage("data-photos", "generate the photo crops (ImageNet layout)",
                   digest("photos", dict(settings.photos), photos_src), est["photos"],
                   lambda work: make_photo_imagenet(work / "imagenet", **settings.photos)
                   | {"root": str(work / "imagenet")})
    ade_settings = dict(settings.ade20k)
    ade20k = Stage("data-ade20k", "generate the photo composites (ADE20K layout)",
                   digest("ade20k", ade_settings, photos_src, file_digest(DEMO_DATA / "ade20k.py")),
                   est["ade20k"],
                   lambda work: {"root": str(make_ade20k_dataset(work, photos=list(PHOTOS),
                                                                 num_classes=len(PHOTOS), **ade_settings))})
    generate = dict(_track_config(settings.track_options).data.generate)
    generate.pop("dirname", None)
    generate["size"] = tuple(generate["size"])
    lasot = Stage("data-lasot", "generate the photo sequences (LaSOT layout)",
                  digest("lasot", generate, photos_src, file_digest(DEMO_DATA / "lasot.py")), est["lasot"],
                  lambda work: {"root": str(work / "lasot"),
                                "sequences": make_lasot_dataset(work / "lasot", **generate)})
    photos_root = runner.folder(photos) / "imagenet"
    ade_root = runner.folder(ade20k) / "ADEChallengeData2016"
    lasot_root = runner.folder(lasot) / "lasot"
    stages = [photos, ade20k, lasot]

    pretrain_options = _merged({"data.root": "<photos>"}, settings.pretrain_options)
    backbones: dict[str, Stage | None] = {"none": None}
    teacher = None
    if any(r in ("dmae", "d2mae") for r in settings.recipes):
        teacher = Stage("pretrain-teacher", "MAE pre-training of the teacher (ViT-Small width, 4 blocks)",
                        digest(config_digest(TEACHER_CONFIG, pretrain_options), photos.key), est["teacher"],
                        lambda work: _run_pretrain(TEACHER_CONFIG, {**pretrain_options, "data.root": str(photos_root)},
                                                   work))
        stages.append(teacher)
    for recipe in ("mae", "dmae", "d2mae"):
        if recipe not in settings.recipes:
            continue
        config = PRETRAIN_CONFIGS[recipe]
        run_options = {**pretrain_options, "data.root": str(photos_root)}
        inputs = [photos.key]
        if recipe != "mae":
            run_options["distill.teacher_ckpt"] = str(runner.folder(teacher) / "backbone.pth")
            inputs.append(teacher.key)
        stage = Stage(f"pretrain-{recipe}", f"{RECIPES[recipe]} pre-training of the 4-block ViT-Tiny",
                      digest(config_digest(config, pretrain_options), *inputs), est[recipe],
                      lambda work, c=config, o=run_options: _run_pretrain(c, o, work))
        stages.append(stage)
        backbones[recipe] = stage

    def export_of(recipe: str) -> Path | None:
        stage = backbones[recipe]
        return None if stage is None else runner.folder(stage) / "backbone.pth"

    def key_of(recipe: str) -> str:
        stage = backbones[recipe]
        return "random-init" if stage is None else stage.key

    probes: dict[str, list[Stage]] = {}
    segs: dict[str, Stage] = {}
    trains: dict[str, Stage] = {}
    tests: dict[str, Stage] = {}
    probe_key = config_digest(PROBE_CONFIG, _merged({"data.root": "<photos>"}, settings.probe_options))
    seg_key = config_digest(SEG_CONFIG, settings.seg_options)
    track_key = config_digest(TRACK_CONFIG, settings.track_options)
    for recipe in settings.recipes:
        probes[recipe] = []
        for seed in settings.probe_seeds:
            options = {**settings.probe_options, "data.root": str(photos_root), "runtime.seed": seed}
            if export_of(recipe) is not None:
                options["model.pretrained"] = str(export_of(recipe))
            probes[recipe].append(Stage(
                f"probe-{recipe}-seed{seed}", f"linear probe of {RECIPES[recipe]}, seed {seed}",
                digest(probe_key, seed, key_of(recipe), photos.key), est["probe"],
                lambda work, o=options: _run_pretrain(PROBE_CONFIG, o, work)))
        segs[recipe] = Stage(
            f"seg-{recipe}", f"UperNet (mmseg runner) from {RECIPES[recipe]}",
            digest(seg_key, key_of(recipe), ade20k.key), est["seg"],
            lambda work, r=recipe: _run_seg_train(SEG_CONFIG, settings.seg_options, export_of(r), ade_root,
                                                  work, threads))
        trains[recipe] = Stage(
            f"track-train-{recipe}", f"tracker training from {RECIPES[recipe]}",
            digest(track_key, key_of(recipe), lasot.key), est["track_train"],
            lambda work, r=recipe: _run_track_train(settings.track_options, export_of(r), lasot_root, work,
                                                    threads))
        tests[recipe] = Stage(
            f"track-test-{recipe}", f"tracking the test sequences from {RECIPES[recipe]}",
            digest(trains[recipe].key, lasot.key), est["track_test"],
            lambda work, r=recipe: _run_track_test(runner.folder(trains[r]) / "tracker_final.pth", lasot_root,
                                                   work, threads))
    for recipe in settings.recipes:  # all probes first: the cheapest complete table comes first
        stages.extend(probes[recipe])
    for recipe in settings.recipes:
        stages.append(segs[recipe])
    for recipe in settings.recipes:
        stages += [trains[recipe], tests[recipe]]
    sizes = Stage("sizes", "parameters and FLOPs of the study's models",
                  digest(config_digest(SEG_CONFIG), track_key, file_digest(REPO / "backbones" / "vit.py")),
                  est["sizes"], lambda work: _sizes(threads))
    stages.append(sizes)
    return StudyPlan(settings, stages, {"photos": photos, "ade20k": ade20k, "lasot": lasot}, backbones,
                     probes, segs, tests, sizes)


# -------------------------------------------------------------------------------------- tables
def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def noise_verdict(means: Mapping[str, float], noise: Mapping[str, float], what: str) -> str:
    """'within noise' when the gap between the best and worst row is at most twice the largest
    noise estimate (seed half-range or standard error) of any row."""
    finite = {k: v for k, v in means.items() if v is not None and math.isfinite(v)}
    if len(finite) < 2:
        return ""
    gap = max(finite.values()) - min(finite.values())
    bound = 2 * max((noise.get(k) or 0.0) for k in finite)
    if bound == 0:
        return f"; no noise estimate ({what})"
    if gap <= bound:
        return f"; differences within noise (gap {gap:.1f} <= 2 x {bound / 2:.1f}, {what})"
    return f"; the gap between rows ({gap:.1f}) exceeds 2 x the noise ({bound / 2:.1f}, {what})"


def probe_table(rows: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> tuple[str, dict]:
    """Rows: name -> one metrics dict per seed (``top1``, ``top5``)."""
    seeds = max((len(v) for v in rows.values()), default=0)
    header = "| model | " + " | ".join(f"top-1 seed {i}" for i in range(seeds)) + " | top-1 mean | top-5 mean |"
    lines = [header, "|---|" + "---:|" * (seeds + 2)]
    data, means, spreads = {}, {}, {}
    for name, runs in rows.items():
        top1 = [float(r["top1"]) for r in runs]
        top5 = [float(r.get("top5", math.nan)) for r in runs]
        means[name] = float(np.mean(top1))
        spreads[name] = (max(top1) - min(top1)) / 2 if len(top1) > 1 else 0.0
        data[name] = {"top1": top1, "top5": top5, "top1_mean": means[name], "top1_half_range": spreads[name],
                      "top5_mean": float(np.mean(top5))}
        cells = [_fmt(v) for v in top1] + ["-"] * (seeds - len(top1))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_fmt(means[name])} | {_fmt(data[name]['top5_mean'])} |")
    verdict = noise_verdict(means, spreads, "half the range over seeds") if seeds > 1 else \
        ("; one seed, no noise estimate" if len(rows) > 1 else "")
    return f"**{title}{verdict}**\n\n" + "\n".join(lines), data


def seg_table(rows: Mapping[str, Path], gt_dir: Path, num_classes: int, class_names: Sequence[str],
              title: str) -> tuple[str, dict]:
    """Score prediction folders (encoded like the annotations, as mmseg writes them) with
    :func:`evaluation.miou.evaluate_folders`; one row each."""
    from evaluation.miou import evaluate_folders

    lines = ["| model | mIoU | aAcc | mAcc | classes present |", "|---|---:|---:|---:|---:|"]
    data = {}
    for name, preds in rows.items():
        result = evaluate_folders(preds, gt_dir, num_classes, reduce_zero_label=True, pred_raw=True,
                                  class_names=list(class_names), progress=False)
        present = sum(1 for v in result["per_class"].values() if v["IoU"] is not None and math.isfinite(v["IoU"]))
        data[name] = {**result, "classes_present": present, "predictions": str(preds)}
        lines.append(f"| {name} | {result['mIoU']:.2f} | {result['aAcc']:.2f} | {result['mAcc']:.2f} | {present} |")
    return f"**{title}**\n\n" + "\n".join(lines), data


def lasot_table(rows: Mapping[str, Path], annos_root: Path, title: str, fps: Mapping[str, float] | None = None,
                baseline: tuple[str, Path] | None = None, plots: Path | None = None) -> tuple[str, dict, list]:
    """Score result folders with :func:`evaluation.lasot.evaluate_tracker` (official protocol).

    AUC comes with its standard error over sequences (a sampling-noise estimate of the test set).
    """
    from evaluation.lasot import evaluate_tracker, load_annotations, save_plots

    annos = load_annotations(annos_root)
    evaluated = [evaluate_tracker(folder, annos, name=name, progress=False) for name, folder in rows.items()]
    base = evaluate_tracker(baseline[1], annos, name=baseline[0], progress=False) if baseline else None
    lines = ["| model | AUC | ± s.e. | P | NP | sequences | fps |", "|---|---:|---:|---:|---:|---:|---:|"]
    data, means, errors = {}, {}, {}
    for r in evaluated + ([base] if base else []):
        aucs = np.array([s["AUC"] for s in r.per_sequence.values()])
        se = float(aucs.std(ddof=1) / np.sqrt(len(aucs))) if len(aucs) > 1 else math.nan
        speed = (fps or {}).get(r.name)
        data[r.name] = {**r.to_dict(), "AUC_standard_error": se, "fps": speed}
        if r is not base:
            means[r.name], errors[r.name] = r.AUC, se if math.isfinite(se) else 0.0
        lines.append(f"| {r.name} | {r.AUC:.2f} | {_fmt(se, 2)} | {r.P:.2f} | {r.NP:.2f} | {len(r.sequences)} | "
                     f"{_fmt(speed)} |")
    verdict = noise_verdict(means, errors, "standard error over sequences")
    if base is not None and means and max(means.values()) <= base.AUC:
        verdict += (f"; no tracker beats the static box ({base.AUC:.2f}): at this training budget the "
                    "column checks the pipeline, it does not rank the recipes")
    written = save_plots(evaluated + ([base] if base else []), plots, title=title.split(" (")[0]) if plots else []
    return f"**{title}{verdict}**\n\n" + "\n".join(lines), data, written


def published_table() -> str:
    lines = ["| published model (ViT-Tiny, 5.7M) | ImageNet-1k fine-tune top-1 | ADE20K mIoU | LaSOT AUC |",
             "|---|---:|---:|---:|"]
    lines += [f"| {m} | {a} | {b} | {c} |" for m, a, b, c in PUBLISHED]
    return ("**Published figures (MAE-Lite's papers; full-scale runs: 400-epoch ImageNet pre-training, "
            "Semantic FPN 160k on ADE20K, OSTrack-CE on LaSOT) - for reference, not comparable with "
            "the toy runs above**\n\n" + "\n".join(lines))


def summary_table(names: Sequence[str], probe: Mapping, seg: Mapping, track: Mapping, sizes: Mapping | None,
                  title: str) -> str:
    """One row per model: the three tasks side by side, with size and speed."""
    head = "| model | probe top-1 | mIoU | AUC | tracker fps |"
    if sizes:
        head += " backbone params (M) | backbone GFLOPs |"
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for name in names:
        cells = [_fmt(probe.get(name, {}).get("top1_mean")), _fmt(seg.get(name, {}).get("mIoU"), 2),
                 _fmt(track.get(name, {}).get("AUC"), 2), _fmt(track.get(name, {}).get("fps"))]
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


def stage_table(records: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| stage | wall s | CPU s | estimate s | |", "|---|---:|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['label']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['estimate_s']:.0f} | "
                     f"{'cached (time of the run that made it)' if r.get('cached') else 'this run'} |")
    total = sum(r["wall_s"] for r in records if not r.get("cached"))
    return "\n".join(lines) + f"\n\nWall time of the stages run now: {total:.0f} s."


# ------------------------------------------------------------------------------------- pictures
def _savefig(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_summary(names: Sequence[str], probe: Mapping, seg: Mapping, track: Mapping, path: Path,
                 baseline_auc: float | None = None) -> Path:
    """Three bar panels (probe top-1 with the seed range, mIoU, AUC with its standard error and
    the static-box floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("linear probe top-1 (%)", {n: probe[n]["top1_mean"] for n in names if n in probe},
               {n: probe[n]["top1_half_range"] for n in names if n in probe}),
              ("segmentation mIoU (%)", {n: seg[n]["mIoU"] for n in names if n in seg}, {}),
              ("tracking AUC (%)", {n: track[n]["AUC"] for n in names if n in track},
               {n: track[n]["AUC_standard_error"] for n in names if n in track})]
    for ax, (label, values, errors) in zip(axes, panels):
        keys = [n for n in names if n in values]
        ax.bar(range(len(keys)), [values[k] for k in keys],
               yerr=[errors.get(k, 0) or 0 for k in keys] if errors else None, capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(keys)), keys, rotation=20, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.grid(True, axis="y", linestyle=":")
    if baseline_auc is not None:
        axes[2].axhline(baseline_auc, color="#c44e52", linestyle="--", label="static box")
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    return _savefig(fig, path)


def plot_pretrain_losses(logs: Mapping[str, Path], path: Path) -> Path:
    """Pre-training curves against updates: the MAE term of every run, and (log scale) the
    distillation term of the distilled ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pretrain.engine import read_log

    fig, (ax_mae, ax_attn) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, log in logs.items():
        records = [r for r in read_log(log) if r.get("event") == "train"]
        updates = [r["update"] for r in records]
        ax_mae.plot(updates, [r.get("loss_mae", r["loss"]) for r in records], label=name)
        if any("loss_attn" in r for r in records):
            ax_attn.plot(updates, [r.get("loss_attn", math.nan) for r in records], label=name)
    ax_mae.set(xlabel="update", ylabel="MAE loss (norm-pix MSE)", title="masked-patch reconstruction")
    ax_attn.set(xlabel="update", ylabel="attention-logit MSE", yscale="log", title="distillation term")
    for ax in (ax_mae, ax_attn):
        ax.grid(True, linestyle=":")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _savefig(fig, path)


def seg_overlay_grid(ade_root: Path, preds: Mapping[str, Path], palette: Sequence[Sequence[int]], path: Path,
                     count: int = 4) -> Path:
    """Rows = the first ``count`` validation images; columns = image, ground truth, then each
    model's prediction, as colour overlays (ignored pixels show the bare image)."""
    import cv2

    from evaluation.miou import apply_reduce_zero_label, read_label_map
    from fileio import atomic_write_png
    from seg.visualize import overlay

    images = sorted((ade_root / "images" / "validation").glob("*.jpg"))[:count]
    rows = []
    for image_path in images:
        rgb = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        gt = apply_reduce_zero_label(read_label_map(ade_root / "annotations" / "validation" / f"{image_path.stem}.png"))
        panels = [rgb, overlay(rgb, gt, palette)]
        for folder in preds.values():
            panels.append(overlay(rgb, apply_reduce_zero_label(read_label_map(folder / f"{image_path.stem}.png")),
                                  palette))
        size = (96, int(round(96 * rgb.shape[0] / rgb.shape[1])))
        panels = [cv2.resize(p, size, interpolation=cv2.INTER_NEAREST) for p in panels]
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    header = np.full((14, width, 3), 255, np.uint8)
    for i, title in enumerate(["image", "ground truth", *preds]):
        cv2.putText(header, title.replace("²", "2")[:16], (96 * i + 2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.concatenate([header] + [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                                      for r in rows], axis=0)
    return atomic_write_png(path, grid)


# ---------------------------------------------------------------------------------- the section
def pending_estimate(settings: StudySettings, cache: Path | None = None) -> float:
    """Estimated seconds of the stages not yet in the cache (quiet 2-core CPU)."""
    runner = StageRunner((Path(cache) if cache is not None else default_cache()) / "study", Path("."))
    return runner.pending_estimate(plan_study(settings, runner).stages)


def run_embedded(out: Path, settings: StudySettings = StudySettings(), threads: int = 2,
                 cache: Path | None = None, progress: bool = True, terminal: Any = None) -> tuple[str, dict]:
    """Run (or reuse from the cache) every stage of the embedded study and build its tables.

    ``cache`` is the benchmark cache root (default ``$LITEVIT_CACHE/benchmark``); the stages live
    in its ``study/`` folder. ``terminal``: stream of the stage progress bar.
    """
    from benchmarks.demo_data.photos import PHOTOS

    cache = (Path(cache) if cache is not None else default_cache()).resolve()
    _check_cli_path(cache)  # before any work: the seg stages hand paths under it to mmseg's command line
    out = Path(out)
    study_out = out / "study"
    runner = StageRunner(cache / "study", out / "logs" / "study")
    plan = plan_study(settings, runner, threads)
    runner.progress = StageProgress(runner.pending_estimate(plan.stages), enabled=progress, stream=terminal,
                                    position=1)
    started = time.perf_counter()
    try:
        summaries = {stage.name: runner.run(stage) for stage in plan.stages}
    finally:
        runner.progress.close("study: done")
    wall = time.perf_counter() - started

    names = {r: RECIPES[r] for r in settings.recipes}
    photo_classes = list(PHOTOS)
    probe_md, probe = probe_table(
        {names[r]: [summaries[s.name] for s in plan.probes[r]] for r in settings.recipes},
        f"Linear probe on the {len(photo_classes)} photo classes (frozen 4-block ViT-Tiny, 64 px; trained on "
        f"crops of the photos' training regions, scored on {settings.photos['val_per_class'] * len(photo_classes)} "
        f"crops of their held-out regions; {len(settings.probe_seeds)} seed(s))")
    ade_root = Path(summaries["data-ade20k"]["root"])
    seg_md, seg = seg_table(
        {names[r]: Path(summaries[f"seg-{r}"]["preds"]) for r in settings.recipes},
        ade_root / "annotations" / "validation", len(photo_classes), photo_classes,
        f"Segmentation of photo composites (ADE20K layout, {len(photo_classes)} classes = photos, "
        f"{settings.ade20k['num_val']} held-out images; UperNet, mmseg runner, 64x64 crops; one seed, "
        "no noise estimate)")
    lasot_root = Path(summaries["data-lasot"]["root"])
    static = _static_box_results(lasot_root, study_out / "static_box_results")
    track_md, track, plots = lasot_table(
        {names[r]: Path(summaries[f"track-test-{r}"]["results"]) for r in settings.recipes}, lasot_root,
        "Tracking photo sequences (LaSOT layout and protocol, objects and scenes from the photos' held-out "
        f"regions; tracker with 64/128 px crops; fps = frames / second while tracking them, {threads} threads, "
        "timed alongside whatever else ran on the machine: the track section times speed under control)",
        fps={names[r]: summaries[f"track-test-{r}"]["fps"] for r in settings.recipes},
        baseline=("static box (frame 1 repeated)", static), plots=study_out / "lasot_plots")
    sizes = summaries["sizes"]
    pictures = [plot_summary(list(names.values()), probe, seg, track, study_out / "summary.png",
                             track["static box (frame 1 repeated)"]["AUC"]),
                seg_overlay_grid(ade_root, {names[r]: Path(summaries[f"seg-{r}"]["preds"]) for r in settings.recipes},
                                 _photo_palette(), study_out / "seg_overlays.png"), *plots]
    pretrain_logs = {("teacher" if s.name == "pretrain-teacher" else RECIPES[s.name.split("-", 1)[1]]):
                     runner.folder(s) / "log.jsonl" for s in plan.stages if s.name.startswith("pretrain-")}
    if pretrain_logs:
        pictures.append(plot_pretrain_losses(pretrain_logs, study_out / "pretrain_loss.png"))
    summary_md = summary_table(list(names.values()), probe, seg, track, sizes,
                               f"The study ({settings.title}): each pre-training recipe of the 4-block ViT-Tiny "
                               "and what it gives downstream")
    relative = [str(p.relative_to(out)) for p in pictures]
    analysis_md, analysis = _analyses(plan, runner, names, Path(summaries["data-photos"]["root"]) / "val",
                                      study_out / "analysis", out)
    text = "\n\n".join([
        summary_md, probe_md, seg_md, track_md, analysis_md, sizes_table(sizes), published_table(),
        "Pictures: " + ", ".join(f"`{p}`" for p in relative) + ". Seg overlays: rows = held-out images; "
        "columns = image, ground truth, then " + ", ".join(names.values()) + ".",
        f"**Stages** (cache `{runner.cache}`; logs `{runner.logs}`)\n\n" + stage_table(runner.records),
        _pretraining_note(summaries, settings)])
    data = {"mode": "embedded", "settings": {k: v for k, v in vars(settings).items()}, "probe": probe, "seg": seg,
            "lasot": track, "sizes": sizes, "stages": runner.records, "wall_s": wall, "pictures": relative,
            "pretraining": {n: summaries[n] for n in summaries if n.startswith("pretrain-")},
            "analysis": analysis}
    return text, data


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
            models[name] = build_backbone("vit_tiny", num_classes=0, depth=4, img_size=64)
        else:
            models[name] = load_backbone(runner.folder(stage) / "backbone.pth", num_classes=0)
    text, data = report_section(models, images, out_dir, max_images=64, link_root=report_root)
    return ("### Analyses of the encoders (layer CKA, attention distance and entropy; tools/analyze.py)\n\n"
            + text), data


def _photo_palette() -> list[list[int]]:
    from mmengine.config import Config

    return [list(c) for c in Config.fromfile(str(SEG_CONFIG)).photo_classes["palette"]]


def _pretraining_note(summaries: Mapping[str, Any], settings: StudySettings) -> str:
    runs = {n: s for n, s in summaries.items() if n.startswith("pretrain-")}
    if not runs:
        return "No pre-training in this run (random init only)."
    parts = [f"{n.removeprefix('pretrain-')}: {s['updates']} updates, loss {_fmt(s['loss_first'], 3)} -> "
             f"{_fmt(s['loss_last'], 3)}" for n, s in runs.items()]
    return ("Pre-training (configs/study/pretrain; D-MAE / D²-MAE losses include the distillation term): "
            + "; ".join(parts) + ".")


def run_given(out: Path, given: GivenResults) -> tuple[str, dict]:
    """Tables from results of real runs; nothing is trained or generated."""
    given.check()
    out = Path(out)
    parts, data = [], {"mode": "given"}
    probe = seg = track = {}
    if given.imagenet_results:
        rows = {}
        for name, path in given.imagenet_results.items():
            path = Path(path)
            metrics = path / "metrics.json" if path.is_dir() else path
            if not metrics.is_file():
                raise FileNotFoundError(f"--imagenet-results {name}={path}: no metrics.json (written by "
                                        "tools/pretrain.py at the end of fine-tuning / probing)")
            import json

            rows[name] = [json.loads(metrics.read_text(encoding="utf-8"))]
        md, probe = probe_table(rows, "ImageNet top-1 of the given fine-tuning / probing runs (their metrics.json)")
        parts.append(md)
    else:
        parts.append("ImageNet: no results given (--imagenet-results NAME=metrics.json): left out.")
    if given.ade20k_results:
        from evaluation.miou import ade20k_class_names

        annos = Path(given.ade20k_annos)
        gt = annos / "annotations" / "validation" if (annos / "annotations" / "validation").is_dir() else annos
        md, seg = seg_table(given.ade20k_results, gt, 150, ade20k_class_names(),
                            f"ADE20K mIoU of the given predictions (scored against {gt})")
        parts.append(md)
    else:
        parts.append("ADE20K: no predictions given (--ade20k-results NAME=DIR --ade20k ROOT): left out.")
    if given.lasot_results:
        md, track, plots = lasot_table(given.lasot_results, Path(given.lasot_annos),
                                       f"LaSOT (official protocol) of the given result folders (annotations "
                                       f"{given.lasot_annos})", plots=out / "study" / "lasot_plots")
        for r in track.values():
            r["fps"] = None
        parts.append(md)
        data["pictures"] = [str(p.relative_to(out)) for p in plots]
    else:
        parts.append("LaSOT: no result folders given (--lasot-results NAME=DIR --lasot-annos DIR): left out.")
    names = list(dict.fromkeys([*probe, *seg, *track]))
    if names:
        parts.insert(0, summary_table(names, probe, seg, track, None, "Given results, side by side"))
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
                   progress: bool = True, terminal: Any = None) -> tuple[str, dict]:
    """The study as a report section (Markdown, JSON data): the given results when any, else the
    embedded study (``quick`` does not shorten it: its training is cached after the first run)."""
    if given is not None and given.any():
        return run_given(out_dir, given)
    return run_embedded(out_dir, settings or StudySettings(), threads, cache, progress, terminal)
