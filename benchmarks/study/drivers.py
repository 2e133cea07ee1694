"""The study's training drivers: each runs one kind of training or testing through the project's
own entry points and returns a JSON-able summary (what the stage records).

* :func:`run_pretrain`: ``pretrain.engine.run`` on a config + options (pre-training, supervised,
  probe, fine-tune), resuming in its folder;
* :func:`run_seg_train`: mmseg's own training script (``tools/seg_train.py``) in a subprocess;
* :func:`run_track_train` / :func:`run_track_test`: ``track.train.train`` and
  ``track.runner.run_lasot``;
* :func:`model_sizes`: parameters and FLOPs of the study's three models.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .settings import BACKBONE, REPO, SEG_CONFIG, TRACK_CONFIG


def train_records(log: Path) -> list[dict[str, Any]]:
    """The ``"train"`` records of an engine ``log.jsonl``."""
    from engine import read_log

    return [r for r in read_log(log) if r.get("event") == "train"]


def run_pretrain(config: Path, options: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """``pretrain.engine.run`` on a config + options (resuming in ``work``); summary with the first
    and last training loss of its log."""
    from mmengine.config import Config

    from pretrain.engine import run

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(dict(options))
    cfg.work_dir = str(work)
    cfg.recipe = cfg.get("recipe") or config.stem
    summary = run(cfg.to_dict(), resume=True)
    losses = [r["loss"] for r in train_records(work / "log.jsonl")]
    out = {"updates": summary.get("update"), "finished": summary.get("finished"),
           "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    for key in ("export", "top1", "top5", "images"):
        if key in summary:
            out[key] = summary[key]
    metrics = work / "metrics.json"
    if metrics.is_file():  # what the run trained on (a data scale's subset is checked against it)
        record = json.loads(metrics.read_text(encoding="utf-8"))
        out.update({k: record.get(k) for k in ("train_images", "train_images_total", "subset")})
    return out


def run_recipe(config: Path, options: Mapping[str, Any], work: Path) -> dict[str, Any]:
    """A recipe's run: :func:`run_pretrain`, which must leave the encoder in ``work/backbone.pth``."""
    summary = run_pretrain(config, options, work)
    if not (work / "backbone.pth").is_file():
        raise RuntimeError(f"{config}: the run finished without exporting its encoder to {work / 'backbone.pth'} "
                           "(a recipe must end with a backbone export)")
    return summary


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_cli_value(v) for v in value) + ",)"
    return str(value)


def check_cli_path(path: Path) -> str:
    """``path`` as text, refused when mmengine's ``--cfg-options`` could not carry it."""
    text = str(path)
    if any(c in text for c in ",=() "):
        raise ValueError(f"{text}: mmengine's --cfg-options cannot carry a path with ',', '=', "
                         "brackets or spaces; set LITEVIT_CACHE to a plain path")
    return text


def run_seg_train(options: Mapping[str, Any], backbone: Path | None, data_root: Path, work: Path,
                  threads: int) -> dict[str, Any]:
    """mmseg's own training script (``tools/seg_train.py``) in a subprocess; the final validation
    writes the predictions (``val_evaluator.output_dir``, encoded like the annotations)."""
    preds = work / "preds"
    cli = {**dict(options), "val_evaluator.output_dir": check_cli_path(preds)}
    if backbone is not None:
        cli["model.pretrained"] = check_cli_path(backbone)
    mmseg_dir = work / "mmseg"
    cmd = [sys.executable, str(REPO / "tools" / "seg_train.py"), str(SEG_CONFIG), "--work-dir", str(mmseg_dir)]
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


def track_config(options: Mapping[str, Any]):
    """The study's tracker config with ``options`` merged."""
    from track.config import load_config

    cfg = load_config(TRACK_CONFIG)
    cfg.merge_from_dict(dict(options))
    return cfg


def run_track_train(options: Mapping[str, Any], backbone: Path | None, lasot_root: Path, work: Path,
                    threads: int) -> dict[str, Any]:
    from engine import find_checkpoint
    from track.train import train

    cfg = track_config(options)
    cfg.model.pretrained = str(backbone) if backbone is not None else None
    for entry in cfg.data.datasets:
        entry.root = str(lasot_root)
    cfg.train.num_threads = threads
    summary = train(cfg, work, resume="auto" if find_checkpoint(work) else None)
    if not summary.get("final_checkpoint"):
        raise RuntimeError(f"tracker training stopped early: {summary}")
    return {"checkpoint": summary["final_checkpoint"], "updates": summary["update"],
            "last": summary.get("last", {})}


def run_track_test(checkpoint: Path, lasot_root: Path, work: Path, threads: int) -> dict[str, Any]:
    """The tracker over the test sequences (:func:`track.runner.run_lasot`, one worker)."""
    from track.runner import run_lasot

    results = work / "results"
    summary = run_lasot(TRACK_CONFIG, checkpoint, lasot_root, results, workers=1, threads=threads)
    if summary["errors"]:
        raise RuntimeError(f"tracking failed on {len(summary['errors'])} sequence(s): {summary['errors']}")
    times = np.concatenate([np.loadtxt(p, ndmin=1) for p in sorted(results.glob("*_time.txt"))])
    return {"results": str(results), "frames": int(times.size), "fps": float(times.size / times.sum()),
            "runtime": {k: summary[k] for k in ("device", "dtype", "backend")}}


def model_sizes(threads: int) -> dict[str, Any]:
    """Parameters and FLOPs of the study's three models at the study's input sizes."""
    import torch

    from backbones import build_backbone
    from benchmarks.seg_speed import count_flops, seg_model_stats
    from track.config import build_model

    torch.set_num_threads(threads)
    size = BACKBONE["img_size"]
    backbone = build_backbone(BACKBONE["arch"], num_classes=0, depth=BACKBONE["depth"], img_size=size).eval()
    backbone_flops, _ = count_flops(lambda: backbone(torch.zeros(1, 3, size, size)))
    tracker = build_model(track_config({}), pretrained=None).eval()
    t, s = tracker.template_size, tracker.search_size
    tracker_flops, _ = count_flops(lambda: tracker(torch.zeros(1, 3, t, t), torch.zeros(1, 3, s, s)))
    seg = seg_model_stats(SEG_CONFIG, size=(size, size))
    return {"backbone": {"params": sum(p.numel() for p in backbone.parameters()), "flops": backbone_flops,
                         "input": f"{size}x{size}"},
            "tracker": {"params": sum(p.numel() for p in tracker.parameters()), "flops": tracker_flops,
                        "input": f"template {t}x{t} + search {s}x{s}"},
            "segmentor": {"params": seg["params_inference"], "flops": seg["flops"], "input": f"{size}x{size}"}}
