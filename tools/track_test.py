"""Run the tracker on LaSOT test sequences and write one result file per sequence.

    python tools/track_test.py configs/track/<config>.py work_dirs/<run>/best.pth \
        --lasot-root data/lasot --out results/<run> --workers 2 --threads 1 --dtype fp32

Writes ``<out>/<seq>.txt`` (x,y,w,h floats a line, comma-separated, frame 1 = the GT box) and
``<out>/<seq>_time.txt`` (seconds a frame), each atomically once the sequence is done;
sequences whose two files exist are skipped, so a killed run continues where it stopped.
Score the folder with ``tools/eval_lasot.py --results <out> --annos <lasot root or toolkit annos>``.

CHECKPOINT is a tracker checkpoint (ours, or OSTrack / MAE-Lite tracking ``{"net": ...}``
files), a backbone checkpoint (pre-training export, MAE-Lite, DeiT/timm: the head stays
untrained, for pipeline checks only), or the literal ``none`` (the config's ``pretrained``
backbone, if any, and an untrained head).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

_WORKER: dict = {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="tracker config (configs/track/*.py)")
    parser.add_argument("checkpoint", help="tracker or backbone checkpoint, or 'none'")
    parser.add_argument("--lasot-root", required=True, type=Path, help="LaSOT dataset root")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"),
                        help="sequence list (default: testing_set.txt)")
    parser.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: results/<config name>)")
    parser.add_argument("--workers", type=int, default=1, help="processes, each tracking one sequence")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / workers)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                        help="network runtime (onnxruntime: fp32 only)")
    parser.add_argument("--compile", nargs="?", const="default", default=None,
                        choices=("default", "max-autotune"),
                        help="torch.compile the per-frame network, fastest on CPU: default (~15 s to "
                             "compile per worker) or max-autotune (~1 min; faster in bf16)")
    parser.add_argument("--lost-threshold", type=float, default=None, help="override the config's")
    return parser.parse_args(argv)


def result_paths(out: Path, name: str) -> tuple[Path, Path]:
    return out / f"{name}.txt", out / f"{name}_time.txt"


def is_finished(out: Path, name: str) -> bool:
    return all(p.is_file() for p in result_paths(out, name))


def _init_worker(config: str, checkpoint: str, dtype: str, threads: int, lost_threshold: float | None,
                 backend: str = "torch", compile: str | None = None) -> None:
    import torch

    from track.config import load_config, model_from_checkpoint, tracker_kwargs
    from track.tracker import Tracker

    torch.set_num_threads(threads)
    cfg = load_config(config)
    model, source = model_from_checkpoint(cfg, checkpoint)
    kwargs = tracker_kwargs(cfg)
    if lost_threshold is not None:
        kwargs["lost_threshold"] = lost_threshold
    tracker = Tracker(model, dtype=dtype, backend=backend, compile=compile or False, **kwargs)
    if compile:  # compile before the first sequence, so that its _time.txt holds tracking times
        tracker.warm_up()
    _WORKER.update(tracker=tracker, source=source)


def track_sequence(task: tuple[str, str, str, bool]) -> tuple[str, int, float]:
    """Track one sequence in this process and write its two files; returns (name, frames, fps)."""
    root, name, out, show_frames = task
    from fileio import atomic_write_text
    from track.datasets.lasot import load_sequence, sequence_class

    sequence = load_sequence(Path(root) / sequence_class(name) / name)
    tracker = _WORKER["tracker"]
    frames = (sequence.image(i) for i in range(len(sequence)))
    if show_frames:
        frames = tqdm(frames, total=len(sequence), desc=name, leave=False, unit="frame")
    boxes, _, seconds = tracker.track_sequence(frames, sequence.gt_boxes[0])
    box_path, time_path = result_paths(Path(out), name)
    atomic_write_text(box_path, "".join(",".join(f"{v:.4f}" for v in box) + "\n" for box in boxes))
    atomic_write_text(time_path, "".join(f"{t:.6f}\n" for t in seconds))
    return name, len(boxes), float(len(seconds) / max(seconds.sum(), 1e-9))


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    from track.datasets.lasot import list_sequences

    out = args.out or Path("results") / args.config.stem
    try:
        names = list_sequences(args.lasot_root, None if args.split == "all" else args.split)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.sequences:
        unknown = sorted(set(args.sequences) - set(names))
        if unknown:
            raise SystemExit(f"error: not in the {args.split} split of {args.lasot_root}: {', '.join(unknown)}")
        names = [n for n in names if n in set(args.sequences)]
    if not args.config.is_file():
        raise SystemExit(f"error: config not found: {args.config}")
    if args.checkpoint.lower() != "none" and not Path(args.checkpoint).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.checkpoint}")
    out.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not is_finished(out, n)]
    print(f"{len(names)} sequences, {len(names) - len(todo)} already finished in {out}, {len(todo)} to run")
    if not todo:
        return []
    workers = max(1, min(args.workers, len(todo)))
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    init = (str(args.config), args.checkpoint, args.dtype, threads, args.lost_threshold, args.backend, args.compile)
    tasks = [(str(args.lasot_root), n, str(out), workers == 1) for n in todo]
    start = time.perf_counter()
    done = []
    progress = tqdm(total=len(tasks), desc="sequences", unit="seq")
    if workers == 1:
        _init_worker(*init)
        print(f"weights: {_WORKER['source']}")
        results = map(track_sequence, tasks)
        for name, count, fps in results:
            done.append(name)
            progress.set_postfix_str(f"{name}: {count} frames, {fps:.1f} fps")
            progress.update()
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for name, count, fps in pool.imap_unordered(track_sequence, tasks):
                done.append(name)
                progress.set_postfix_str(f"{name}: {count} frames, {fps:.1f} fps")
                progress.update()
    progress.close()
    frames = sum(len(np.loadtxt(result_paths(out, n)[1], ndmin=1)) for n in done)
    print(f"tracked {len(done)} sequences ({frames} frames) in {time.perf_counter() - start:.1f} s -> {out}")
    return done


if __name__ == "__main__":
    main()
