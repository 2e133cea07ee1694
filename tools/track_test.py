"""Run the tracker on LaSOT test sequences and write one result file per sequence.

    python tools/track_test.py configs/track/<config>.py work_dirs/<run>/best.pth \
        --lasot-root data/lasot --out results/<run> [--device auto] [--dtype auto] [--backend auto] \
        [--batch-sequences 16] [--workers 2]

Writes ``<out>/<seq>.txt`` (x,y,w,h floats a line, comma-separated, frame 1 = the GT box) and
``<out>/<seq>_time.txt`` (seconds a frame), each atomically once the sequence is done;
sequences whose two files exist are skipped, so a killed run continues where it stopped.
Score the folder with ``tools/eval_lasot.py --results <out> --annos <lasot root or toolkit annos>``.

``--batch-sequences N`` tracks N sequences in lock-step with one network call per step (a
finished sequence's slot takes the next one); frames are decoded ahead by ``--decode-threads``
threads. Each sequence's boxes are those of tracking it alone; its ``_time.txt`` then holds each
step's time divided by the sequences in it. ``--workers N`` runs N processes pulling sequences
from one queue (on several GPUs, worker i uses ``cuda:{i % GPUs}``). A sequence that fails
(missing or corrupt frame, bad annotation) stops with its error, the others go on; the errors
are listed at the end and the exit status is 1 (nothing finished is lost, a rerun retries
only the missing sequences).

CHECKPOINT is a tracker checkpoint (ours, or OSTrack / MAE-Lite tracking ``{"net": ...}``
files), a backbone checkpoint (pre-training export, MAE-Lite, DeiT/timm: the head stays
untrained, for pipeline checks only), or the literal ``none`` (the config's ``pretrained``
backbone, if any, and an untrained head).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from track.runtime import add_runtime_arguments, resolve_runtime  # noqa: E402

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
    add_runtime_arguments(parser)
    parser.add_argument("--batch-sequences", type=int, default=1,
                        help="sequences tracked together, one network call per step (default 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes pulling sequences from one queue (spread over the visible GPUs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / workers)")
    parser.add_argument("--decode-threads", type=int, default=None,
                        help="threads decoding frames ahead, per process (default: cores / workers)")
    parser.add_argument("--lost-threshold", type=float, default=None, help="override the config's")
    parser.add_argument("--stats-json", type=Path, default=None,
                        help="write the run's timings (decode, crop, network, frames/s) here")
    return parser.parse_args(argv)


def result_paths(out: Path, name: str) -> tuple[Path, Path]:
    return out / f"{name}.txt", out / f"{name}_time.txt"


def is_finished(out: Path, name: str) -> bool:
    return all(p.is_file() for p in result_paths(out, name))


def lasot_jobs(root: Path, names: Iterator[str]) -> Iterator[Any]:
    """``SequenceJob`` per LaSOT sequence name (read lazily; a sequence that cannot be read becomes
    a job holding its error)."""
    from track.batched import SequenceJob
    from track.datasets.lasot import load_sequence, sequence_class

    for name in names:
        try:
            sequence = load_sequence(root / sequence_class(name) / name)
        except (OSError, ValueError) as error:
            yield SequenceJob(name, error=f"{type(error).__name__}: {error}")
            continue
        yield SequenceJob(name, sequence.frames, sequence.gt_boxes[0])


def run_worker(index: int, settings: dict[str, Any], names: Iterator[str], report: Callable[[tuple], None]) -> None:
    """Build the tracker of one worker and track the sequences ``names`` yields; every event goes to
    ``report``: ("done", name, frames, fps), ("error", name, message), ("stats", dict)."""
    import torch

    from fileio import atomic_write_text
    from track.batched import track_sequences
    from track.config import load_config, model_from_checkpoint, tracker_kwargs
    from track.tracker import BatchedTracker

    torch.set_num_threads(settings["threads"])
    cfg = load_config(settings["config"])
    model, source = model_from_checkpoint(cfg, settings["checkpoint"])
    kwargs = tracker_kwargs(cfg)
    if settings["lost_threshold"] is not None:
        kwargs["lost_threshold"] = settings["lost_threshold"]
    device = settings["devices"][index % len(settings["devices"])]
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    tracker = BatchedTracker(model, settings["batch_sequences"], dtype=settings["dtype"], backend=settings["backend"],
                             compile=settings["compile"] or False, device=device,
                             cuda_graph=not settings["no_cuda_graph"],
                             crop_threads=settings["crop_threads"], **kwargs)
    report(("weights", f"worker {index} on {device} ({tracker.dtype}, {settings['backend']}): {source}"))
    tracker.warm_up()  # compile / capture before the first sequence, so that _time.txt holds tracking times
    out = Path(settings["out"])

    def write(result) -> None:
        box_path, time_path = result_paths(out, result.name)
        atomic_write_text(box_path, "".join(",".join(f"{v:.4f}" for v in box) + "\n" for box in result.boxes))
        atomic_write_text(time_path, "".join(f"{t:.6f}\n" for t in result.seconds))
        report(("done", result.name, len(result.boxes), float(len(result.seconds) / max(result.seconds.sum(), 1e-9))))

    stats = track_sequences(tracker, lasot_jobs(Path(settings["root"]), names), write,
                            decode_threads=settings["decode_threads"],
                            on_error=lambda name, message: report(("error", name, message)),
                            on_frames=lambda n: report(("frames", n)))
    tracker.close()
    report(("stats", stats.as_dict()))


def _process_main(index: int, settings: dict[str, Any], tasks: Any, events: Any) -> None:
    try:
        run_worker(index, settings, iter(tasks.get, None), events.put)
    except BaseException:  # noqa: BLE001 - handed to the parent, which reports it and fails
        events.put(("fatal", index, traceback.format_exc()))
    finally:
        events.put(("exit", index))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from track.batched import RunStats
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
    for option in ("batch_sequences", "workers"):
        if getattr(args, option) < 1:
            raise SystemExit(f"error: --{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    device, dtype, backend = resolve_runtime(args.device, args.dtype, args.backend, args.compile)
    out.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not is_finished(out, n)]
    print(f"{len(names)} sequences, {len(names) - len(todo)} already finished in {out}, {len(todo)} to run")
    summary: dict[str, Any] = {"done": [], "errors": {}, "stats": None}
    if not todo:
        return summary
    workers = max(1, min(args.workers, len(todo)))
    cores = os.cpu_count() or 1
    if device.startswith("cuda") and args.device.strip().lower() in ("auto", "cuda"):
        import torch

        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [device]
    settings = {"config": str(args.config), "checkpoint": args.checkpoint, "root": str(args.lasot_root),
                "out": str(out), "dtype": dtype, "backend": backend, "compile": args.compile, "devices": devices,
                "no_cuda_graph": args.no_cuda_graph, "lost_threshold": args.lost_threshold,
                "batch_sequences": args.batch_sequences,
                "threads": args.threads or max(1, cores // workers),
                "decode_threads": args.decode_threads or max(1, cores // workers),
                "crop_threads": min(4, max(0, cores // workers - 1)) if device.startswith("cuda") else 0}
    stats = RunStats()
    progress = tqdm(total=len(todo), desc="sequences", unit="seq")
    frames = tqdm(desc="frames", unit="frame", leave=False)
    failures: list[str] = []
    start = time.perf_counter()

    def handle(event: tuple) -> None:
        kind = event[0]
        if kind == "weights":
            progress.write(event[1])
        elif kind == "frames":
            frames.update(event[1])
        elif kind == "done":
            _, name, count, fps = event
            summary["done"].append(name)
            progress.set_postfix_str(f"{name}: {count} frames, {fps:.1f} fps")
            progress.update()
        elif kind == "error":
            summary["errors"][event[1]] = event[2]
            progress.write(f"error: {event[1]}: {event[2]}")
            progress.update()
        elif kind == "stats":
            stats.merge(event[1])
        elif kind == "fatal":
            failures.append(f"worker {event[1]} failed:\n{event[2]}")

    if workers == 1:
        try:
            run_worker(0, settings, iter(todo), handle)
        except BaseException:
            progress.close()
            frames.close()
            raise
    else:
        context = mp.get_context("spawn")
        tasks, events = context.Queue(), context.Queue()
        for name in todo:
            tasks.put(name)
        for _ in range(workers):
            tasks.put(None)
        processes = [context.Process(target=_process_main, args=(i, settings, tasks, events), daemon=True)
                     for i in range(workers)]
        for process in processes:
            process.start()
        running, silent = set(range(workers)), set()
        while running:
            try:
                event = events.get(timeout=2.0)
            except queue.Empty:  # a worker killed without a word (out of memory, a crash) counts as failed
                for index in [i for i in running if not processes[i].is_alive()]:
                    if index in silent:
                        failures.append(f"worker {index} died (exit code {processes[index].exitcode})")
                        running.discard(index)
                    silent.add(index)
                continue
            if event[0] == "exit":
                running.discard(event[1])
            else:
                handle(event)
        for process in processes:
            process.join()
    frames.close()
    progress.close()
    summary["stats"] = {**stats.as_dict(), "command_wall": time.perf_counter() - start}
    summary["errors"].update(stats.errors)
    if args.stats_json:
        from fileio import atomic_write_text

        atomic_write_text(args.stats_json, json.dumps({**summary["stats"], "device": device, "dtype": dtype,
                                                        "backend": backend, "batch_sequences": args.batch_sequences,
                                                        "workers": workers}, indent=2))
    print(f"tracked {len(summary['done'])} sequences ({stats.frames} frames) in {stats.wall:.1f} s of tracking "
          f"({stats.fps:.1f} frames/s; decode {stats.decode:.1f} s in threads, waited for {stats.decode_wait:.1f} s; "
          f"crop {stats.crop:.1f} s; network {stats.network:.1f} s) -> {out}")
    if failures:
        raise SystemExit("error: " + "\n".join(failures))
    if summary["errors"]:
        listing = "\n".join(f"  {name}: {message}" for name, message in sorted(summary["errors"].items()))
        print(f"error: {len(summary['errors'])} sequence(s) failed (no result files written for them):\n{listing}",
              file=sys.stderr)
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
