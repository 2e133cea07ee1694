"""The project's tables in one run: model sizes, speed against in-run baselines, and evaluation.

    python tools/benchmark.py                       # everything, embedded demo data
    python tools/benchmark.py --sections speed      # only the speed tables
    python tools/benchmark.py --lasot-results R1 R2 --lasot-annos DIR   # score real LaSOT results

Sections:
  models    parameters and FLOPs of every backbone (torch's flop counter, fused attention included)
  pretrain  MAE-Tiny / D²-MAE-Tiny training-step throughput, fp32 and bf16, vs a reference-style step
  seg       parameters and FLOPs of every segmentation config at 512x512; CPU latency of our
            ViT-Tiny UperNet vs mmseg's built-in MAE backbone with the same neck and head
  track     tracking speed (full step and network, fp32 / bf16) vs a reference-style step
  lasot     LaSOT-protocol table: the given result folders, or (no data configured) a tiny tracker
            trained on generated LaSOT-layout sequences vs a static-box baseline
  ade20k    mIoU table: a tiny UperNet trained by mmseg's runner on a generated ADE20K-layout set

Heavy demo training runs are cached under $LITEVIT_CACHE (default ~/.cache/litevit/benchmark),
keyed by the config's content, so a second run only re-measures and re-scores.
Writes OUT/report.md, OUT/report.json and the pictures each section makes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("models", "pretrain", "seg", "track", "lasot", "ade20k")
GROUPS = {"speed": ("pretrain", "seg", "track"), "eval": ("lasot", "ade20k"), "all": SECTIONS}
CACHE = Path(os.environ.get("LITEVIT_CACHE", Path.home() / ".cache" / "litevit")) / "benchmark"
TRACK_DEMO_CONFIG = REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py"
SEG_DEMO_CONFIG = REPO / "configs/seg/upernet_vit-tiny_1xb4-400iter_ade20k-demo-64x64.py"

# Published figures (papers and their public code), shown beside ours for context only.
PUBLISHED_LASOT = [("MAE-Lite ViT-Tiny OSTrack-CE, D²-MAE init", "66.1", "-", "-"),
                   ("HiT-Base", "64.6", "68.1", "73.3"), ("MixFormerV2-S", "60.6", "60.4", "69.9"),
                   ("E.T.Track", "59.1", "-", "-"), ("FEAR-XS", "53.5", "54.5", "-"),
                   ("OSTrack-256 (ViT-B)", "69.1", "75.2", "78.7")]
PUBLISHED_ADE20K = [("DeiT-Tiny, Semantic FPN", "38.0"), ("D²-MAE-Tiny, Semantic FPN", "39.0"),
                    ("DeiT-Tiny-FT-RPE, Semantic FPN", "41.5"), ("D²-MAE-Tiny-FT-RPE, Semantic FPN", "42.8")]


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run one of the project's command-line tools; its output goes to ``log`` (and on failure,
    the end of it to the terminal)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("  $", " ".join(map(str, cmd)), flush=True)
    with open(log, "w") as f:
        done = subprocess.run([str(c) for c in cmd], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{cmd[1]} failed (exit {done.returncode}), log {log}:\n" + "\n".join(tail))


def content_key(*paths: Path) -> str:
    """Hash of config files and everything they inherit from (their folders' _base_)."""
    h = hashlib.sha256()
    for path in paths:
        for p in sorted([path, *path.parent.joinpath("_base_").glob("*.py")]):
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


# ------------------------------------------------------------------------------------ sections
def section_models(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    import torch

    from backbones import build_backbone
    from benchmarks.seg_speed import count_flops

    rows, data = ["| backbone | params (M) | GFLOPs @224 | params with 1000-class head |",
                  "|---|---:|---:|---:|"], {}
    for name in ("vit_tiny", "vit_tiny_rpe", "hiera_tiny", "vit_small", "vit_base", "hiera_base"):
        with_head = sum(p.numel() for p in build_backbone(name).parameters())
        model = build_backbone(name, num_classes=0).eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            flops, _ = count_flops(lambda: model(torch.zeros(1, 3, 224, 224)))
        data[name] = {"params": params, "params_with_head": with_head, "flops": flops}
        rows.append(f"| {name} | {params / 1e6:.2f} | {flops / 1e9:.2f} | {with_head:,} |")
    return "\n".join(rows), data


def section_pretrain(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    from benchmarks.pretrain_speed import main

    steps = ["--steps", "3", "--warmup", "1"] if args.quick else []
    results = main(["--out", str(out / "pretrain_throughput"), "--threads", str(args.threads), "--breakdown",
                    *steps])
    return (out / "pretrain_throughput.md").read_text(), results


def section_seg(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    from benchmarks.seg_speed import main

    report = main(["--out", str(out / "seg"), "--threads", str(args.threads),
                   "--repeats", "3" if args.quick else "10"])
    return (out / "seg.md").read_text(), report


def section_track(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    from benchmarks.track_speed import main

    compiler = shutil.which("c++") or shutil.which("g++")
    results = main(["--frames", "40" if args.quick else "150", "--threads", str(args.threads),
                    *(["--compile", "default", "max-autotune"] if compiler else []),
                    "--json", str(out / "track_speed.json"), "--plot", str(out / "track_speed.png")])
    rows = ["| precision | network runs | full step fps | network fps | reference-style full step fps | "
            "reference-style network fps | full speed-up | network speed-up |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        runtime = f"torch.compile, {r['compile']}" if r.get("compile") else "eager"
        rows.append(f"| {r['dtype']} | {runtime} | {r['full_fps']:.1f} | {r['network_fps']:.1f} | "
                    f"{r.get('baseline_full_fps', float('nan')):.1f} | "
                    f"{r.get('baseline_network_fps', float('nan')):.1f} | "
                    f"{r.get('full_speedup', float('nan')):.2f}x | {r.get('network_speedup', float('nan')):.2f}x |")
    rows.append(f"\nbatch 1, {args.threads} threads, 640x360 frames; full step = crop, normalise, network, "
                "decode, map back (`Tracker.track`); compiled = `Tracker(compile=True)` (default) or "
                "`Tracker(compile='max-autotune')`. Reference-style = the same network run the way the "
                "reference code does, timed in the same run."
                + ("" if compiler else " No C++ compiler found: the compiled rows are left out."))
    return "\n".join(rows), results


def _static_results(lasot_root: Path, out: Path) -> None:
    """Frame 1's ground-truth box repeated: the floor a tracker has to beat."""
    import numpy as np

    from evaluation.annotations import read_boxes
    from track.datasets.lasot import list_sequences

    out.mkdir(parents=True, exist_ok=True)
    for name in list_sequences(lasot_root, "test"):
        cls = name.rsplit("-", 1)[0]
        gt = read_boxes(lasot_root / cls / name / "groundtruth.txt")
        np.savetxt(out / f"{name}.txt", np.repeat(gt[:1], len(gt), axis=0), fmt="%.4f", delimiter=",")


def section_lasot(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    from evaluation.lasot import (attribute_table, evaluate_tracker, load_annotations, markdown_table,
                                  results_to_json, save_plots)
    from fileio import atomic_write_json

    py = sys.executable
    if args.lasot_results:
        if args.lasot_annos is None:
            raise SystemExit("error: --lasot-results needs --lasot-annos (or LITEVIT_LASOT_ANNOS)")
        folders, annos_root, note = args.lasot_results, args.lasot_annos, f"annotations: {args.lasot_annos}"
    else:
        work = CACHE / f"track_demo-{content_key(TRACK_DEMO_CONFIG)}"
        checkpoint = work / "tracker_final.pth"
        if not checkpoint.is_file():
            print(f"training the demo tracker once ({TRACK_DEMO_CONFIG.name}); cached in {work}", flush=True)
            run([py, "tools/track_train.py", TRACK_DEMO_CONFIG, "--work-dir", work], out / "logs/track_train.log")
        annos_root = work / "synthetic_lasot"
        results = out / "lasot_results"
        shutil.rmtree(results, ignore_errors=True)
        run([py, "tools/track_test.py", TRACK_DEMO_CONFIG, checkpoint, "--lasot-root", annos_root,
             "--out", results / "tiny_tracker"], out / "logs/track_test.log")
        _static_results(annos_root, results / "static_box")
        folders = [results / "tiny_tracker", results / "static_box"]
        note = (f"demo: {TRACK_DEMO_CONFIG.name} trained on generated LaSOT-layout sequences, scored on "
                "its held-out generated test split (not LaSOT: the numbers check the pipeline, they are "
                "not comparable with the published ones)")
    annos = load_annotations(annos_root)
    evaluated = [evaluate_tracker(f, annos, progress=False) for f in folders]
    atomic_write_json(out / "lasot.json", results_to_json(evaluated))
    save_plots(evaluated, out / "lasot_plots")
    table = markdown_table(evaluated)
    attributes = attribute_table(evaluated)
    published = "\n".join(["| published tracker | AUC | P | NP |", "|---|---:|---:|---:|"] +
                          [f"| {n} | {a} | {p} | {np_} |" for n, a, p, np_ in PUBLISHED_LASOT])
    text = f"{table}\n\n{note}\n" + (f"\n{attributes}\n" if attributes else "") + \
        f"\nPublished LaSOT numbers, for reference:\n\n{published}"
    return text, results_to_json(evaluated)


def section_ade20k(out: Path, args: argparse.Namespace) -> tuple[str, Any]:
    py = sys.executable
    work = CACHE / f"seg_demo-{content_key(SEG_DEMO_CONFIG)}"
    data_root = CACHE / "ade20k_demo"
    if not (data_root / "ADEChallengeData2016").is_dir():
        run([py, "tools/make_ade20k_demo.py", "--out", data_root, "--num-train", "48", "--num-val", "8"],
            out / "logs/make_ade20k.log")
    env = {"LITEVIT_ADE20K": str(data_root / "ADEChallengeData2016")}
    checkpoint = work / "iter_400.pth"
    if not checkpoint.is_file():
        print(f"training the demo segmentor once ({SEG_DEMO_CONFIG.name}); cached in {work}", flush=True)
        run([py, "tools/seg_train.py", SEG_DEMO_CONFIG, "--work-dir", work], out / "logs/seg_train.log", env)
    pred = out / "ade20k_pred"
    shutil.rmtree(pred, ignore_errors=True)
    run([py, "tools/seg_test.py", SEG_DEMO_CONFIG, checkpoint, "--work-dir", out / "ade20k_test", "--out", pred,
         "--cfg-options", f"default_hooks.overlay.out_dir={out / 'ade20k_overlays'}"], out / "logs/seg_test.log", env)
    run([py, "tools/eval_miou.py", "--pred", pred, "--gt", data_root / "ADEChallengeData2016/annotations/validation",
         "--num-classes", "150", "--reduce-zero-label", "--pred-raw", "--class-names", "ade20k",
         "--json", out / "ade20k.json", "--plot", out / "ade20k_iou.png"], out / "logs/eval_miou.log")
    result = json.loads((out / "ade20k.json").read_text())
    present = {k: v for k, v in result["per_class"].items() if v["IoU"] is not None}
    rows = ["| model | data | aAcc | mIoU | mAcc | classes present |", "|---|---|---:|---:|---:|---:|",
            f"| ViT-Tiny UperNet (demo, from scratch) | generated ADE20K layout | {result['aAcc']:.2f} | "
            f"{result['mIoU']:.2f} | {result['mAcc']:.2f} | {len(present)} |"]
    published = "\n".join(["| published (ADE20K val) | mIoU |", "|---|---:|"] +
                          [f"| {n} | {m} |" for n, m in PUBLISHED_ADE20K])
    note = (f"demo: {SEG_DEMO_CONFIG.name} trained by mmseg's runner; mIoU over the classes present "
            "(the generated set paints a few of the 150). Overlays: ade20k_overlays/.")
    return "\n".join(rows) + f"\n\n{note}\n\nPublished numbers, for reference:\n\n{published}", result


HANDLERS: dict[str, Callable[[Path, argparse.Namespace], tuple[str, Any]]] = {
    "models": section_models, "pretrain": section_pretrain, "seg": section_seg, "track": section_track,
    "lasot": section_lasot, "ade20k": section_ade20k}
TITLES = {"models": "Backbones", "pretrain": "Pre-training throughput (batch 64, 224x224, CPU)",
          "seg": "Segmentation models (512x512)", "track": "Tracking speed (CPU)",
          "lasot": "LaSOT protocol", "ade20k": "Semantic segmentation (mIoU)"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sections", nargs="+", default=["all"], choices=[*SECTIONS, *GROUPS],
                        help="what to run (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the speed sections")
    parser.add_argument("--quick", action="store_true", help="fewer timing repeats")
    parser.add_argument("--lasot-results", nargs="+", type=Path, default=None,
                        help="result folders (<seq>.txt) to score instead of the demo tracker")
    parser.add_argument("--lasot-annos", type=Path, default=os.environ.get("LITEVIT_LASOT_ANNOS"),
                        help="LaSOT root or toolkit annotation folder (env LITEVIT_LASOT_ANNOS)")
    args = parser.parse_args(argv)
    sections = [s for s in SECTIONS if any(s == x or s in GROUPS.get(x, ()) for x in args.sections)]
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": {"threads": args.threads, "cpu_count": os.cpu_count(),
                                          "torch": torch.__version__}}
    parts = [f"# Benchmark report\n\ntorch {torch.__version__}, {args.threads} threads, "
             f"{os.cpu_count()} logical CPUs, {time.strftime('%Y-%m-%d %H:%M')}\n"]
    for name in sections:
        print(f"\n== {TITLES[name]}", flush=True)
        start = time.perf_counter()
        text, data = HANDLERS[name](args.out, args)
        seconds = time.perf_counter() - start
        report[name] = data
        parts.append(f"## {TITLES[name]}\n\n{text}\n\n_({seconds:.0f} s)_\n")
        print(text, flush=True)
    (args.out / "report.md").write_text("\n".join(parts))
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.out / 'report.md'} and report.json")
    return report

