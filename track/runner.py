"""Track LaSOT-layout sequences with a checkpoint and write one result file per sequence.

:func:`run_lasot` is what ``tools/track_test.py`` runs and what the main job's study calls as a
library function. It writes ``<out>/<seq>.txt`` (x,y,w,h a line, comma-separated, frame 1 = the
ground-truth box) and ``<out>/<seq>_time.txt`` (seconds a frame), each atomically once its sequence
is done; sequences whose two files exist are skipped, so a killed run continues where it stopped.

``batch_sequences`` sequences are tracked in lock-step with one network call per step (a finished
sequence's slot takes the next one); each keeps the boxes of tracking it alone, and its
``_time.txt`` holds each step's time divided by the sequences in it. ``workers`` processes pull
sequences from one queue (worker i on ``cuda:{i % GPUs}`` when several GPUs are visible). A
sequence that fails (missing or corrupt frame, bad annotation) stops with its error and the others
go on; the errors are returned.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fileio.progress import progress

from .runtime import resolve_runtime

__all__ = ["is_finished", "lasot_jobs", "result_paths", "run_lasot"]


def result_paths(out: Path, name: str) -> tuple[Path, Path]:
    """``(<out>/<name>.txt, <out>/<name>_time.txt)``."""
    return out / f"{name}.txt", out / f"{name}_time.txt"


def is_finished(out: Path, name: str) -> bool:
    return all(p.is_file() for p in result_paths(out, name))


def lasot_jobs(root: Path, names: Iterator[str]) -> Iterator[Any]:
    """``SequenceJob`` per LaSOT sequence name (read lazily; a sequence that cannot be read becomes
    a job holding its error)."""
    from .batched import SequenceJob
    from .datasets.lasot import load_sequence, sequence_class

    for name in names:
        try:
            sequence = load_sequence(root / sequence_class(name) / name)
        except (OSError, ValueError) as error:
            yield SequenceJob(name, error=f"{type(error).__name__}: {error}")
            continue
        yield SequenceJob(name, sequence.frames, sequence.gt_boxes[0])


def _run_worker(index: int, settings: dict[str, Any], names: Iterator[str], report: Callable[[tuple], None]) -> None:
    """Build the tracker of one worker and track the sequences ``names`` yields; every event goes to
    ``report``: ("done", name, frames, fps), ("error", name, message), ("frames", n), ("stats", dict)."""
    import torch

    from fileio import atomic_write_text

    from .batched import track_sequences
    from .config import load_config, model_from_checkpoint, tracker_kwargs
    from .tracker import BatchedTracker

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
                             cuda_graph=settings["cuda_graph"], crop_threads=settings["crop_threads"],
                             calibration=settings["calibration"], **kwargs)
    int8 = f"; {tracker.network.int8_source}" if tracker.network.int8_source else ""
    report(("weights", f"worker {index} on {device} ({tracker.dtype}, {settings['backend']}): {source}{int8}",
            tracker.dtype))
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
        _run_worker(index, settings, iter(tasks.get, None), events.put)
    except BaseException:  # noqa: BLE001 - handed to the parent, which reports it and fails
        events.put(("fatal", index, traceback.format_exc()))
    finally:
        events.put(("exit", index))


def run_lasot(config: str | os.PathLike, checkpoint: str | os.PathLike, lasot_root: str | os.PathLike,
              out: str | os.PathLike, *, split: str | None = "test", sequences: Sequence[str] | None = None,
              device: str = "auto", dtype: str = "auto", backend: str = "auto", compile: str | None = None,
              cuda_graph: bool = True, batch_sequences: int = 1, workers: int = 1, threads: int | None = None,
              decode_threads: int | None = None, lost_threshold: float | None = None,
              calibration: str | os.PathLike | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Track the sequences of ``split`` (``None``: all) of a LaSOT-layout root and write their result
    files into ``out``; the sequences already finished there are skipped.

    Every argument is checked before any work (nothing, not even ``out``, is created when one is
    wrong): a missing config / checkpoint raises FileNotFoundError, a sequence not in the split or a
    count below 1 ValueError, a runtime the machine cannot run SystemExit naming the option
    (:func:`track.runtime.resolve_runtime`), an int8 calibration folder (``calibration``, else
    ``LITEVIT_INT8_CALIBRATION``) that is missing or not in LaSOT layout an error naming it
    (:func:`track.quantize.calibration_sequences`). ``checkpoint`` may be the literal ``"none"``.

    Returns ``{"done": [names], "errors": {name: message}, "stats": {...}, "device", "dtype",
    "backend", "workers", "out", "todo"}``; ``stats`` holds the run's timings (decode, crop, network,
    frames/s, ``command_wall``). A worker that crashes raises RuntimeError after the others finish.
    """
    from .batched import RunStats
    from .datasets.lasot import list_sequences

    config, lasot_root, out = Path(config), Path(lasot_root), Path(out)
    names = list_sequences(lasot_root, split)
    if sequences:
        unknown = sorted(set(sequences) - set(names))
        if unknown:
            raise ValueError(f"not in the {split or 'all'} split of {lasot_root}: {', '.join(unknown)}")
        names = [n for n in names if n in set(sequences)]
    if not config.is_file():
        raise FileNotFoundError(f"config not found: {config}")
    if str(checkpoint).lower() != "none" and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    for option, value in (("batch_sequences", batch_sequences), ("workers", workers)):
        if value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    asked, asked_dtype = device, dtype
    device, dtype, backend = resolve_runtime(device, dtype, backend, compile)
    if dtype == "int8":
        from .quantize import calibration_sequences

        calibration = str(calibration_sequences(calibration)[0])
    out.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not is_finished(out, n)]
    print(f"{len(names)} sequences, {len(names) - len(todo)} already finished in {out}, {len(todo)} to run",
          flush=True)
    summary: dict[str, Any] = {"done": [], "errors": {}, "stats": None, "device": device, "dtype": dtype,
                               "backend": backend, "workers": 0, "out": str(out), "todo": list(todo)}
    if not todo:
        return summary
    workers = max(1, min(workers, len(todo)))
    summary["workers"] = workers
    cores = os.cpu_count() or 1
    if device.startswith("cuda") and asked.strip().lower() in ("auto", "cuda"):
        import torch

        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        devices = [device]
    settings = {"config": str(config), "checkpoint": str(checkpoint), "root": str(lasot_root), "out": str(out),
                # as asked: the tracker resolves it as resolve_runtime did, and auto on OpenVINO may run a
                # cached int8 model measured faster here (the worker reports what ran)
                "dtype": asked_dtype, "backend": backend, "compile": compile, "devices": devices, "cuda_graph": cuda_graph,
                "lost_threshold": lost_threshold, "batch_sequences": batch_sequences,
                "calibration": calibration if dtype == "int8" else None,
                "threads": threads or max(1, cores // workers),
                "decode_threads": decode_threads or max(1, cores // workers),
                "crop_threads": min(4, max(0, cores // workers - 1)) if device.startswith("cuda") else 0}
    stats = RunStats()
    bar = progress(total=len(todo), desc="sequences", unit="seq", enabled=show_progress)
    frames = progress(desc="frames", unit="frame", leave=False, enabled=show_progress)
    failures: list[str] = []
    start = time.perf_counter()

    def handle(event: tuple) -> None:
        kind = event[0]
        if kind == "weights":
            bar.write(event[1])
            summary["dtype"] = event[2]   # what runs (auto may pick a measured int8 model)
        elif kind == "frames":
            frames.update(event[1])
        elif kind == "done":
            _, name, count, fps = event
            summary["done"].append(name)
            bar.set_postfix_str(f"{name}: {count} frames, {fps:.1f} fps", refresh=False)
            bar.update()
        elif kind == "error":
            summary["errors"][event[1]] = event[2]
            bar.write(f"error: {event[1]}: {event[2]}")
            bar.update()
        elif kind == "stats":
            stats.merge(event[1])
        elif kind == "fatal":
            failures.append(f"worker {event[1]} failed:\n{event[2]}")

    try:
        if workers == 1:
            _run_worker(0, settings, iter(todo), handle)
        else:
            _run_processes(workers, settings, todo, handle, failures)
    finally:
        frames.close()
        bar.close()
    summary["stats"] = {**stats.as_dict(), "command_wall": time.perf_counter() - start}
    summary["errors"].update(stats.errors)
    print(f"tracked {len(summary['done'])} sequences ({stats.frames} frames) in {stats.wall:.1f} s of tracking "
          f"({stats.fps:.1f} frames/s; decode {stats.decode:.1f} s in threads, waited for {stats.decode_wait:.1f} s; "
          f"crop {stats.crop:.1f} s; network {stats.network:.1f} s) -> {out}", flush=True)
    if failures:
        raise RuntimeError("\n".join(failures))
    return summary


def _run_processes(workers: int, settings: dict[str, Any], todo: Sequence[str], handle: Callable[[tuple], None],
                   failures: list[str]) -> None:
    """``workers`` spawned processes pulling sequence names from one queue; their events go to ``handle``."""
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
