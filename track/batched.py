"""Many sequences through one ``BatchedTracker``: lock-step batches, slots refilled, frames decoded ahead.

``track_sequences`` keeps up to ``tracker.slots`` sequences in flight. Each step takes the next
frame of every running sequence (decoded ahead by a thread pool, so decoding overlaps the
network), initialises the sequences that are at their first frame and advances all the others
with one batched network call. A finished sequence is handed to ``on_done`` and its slot goes to
the next sequence. A sequence that cannot be prepared, whose frame fails to decode or whose
first box is invalid stops with its error recorded (``RunStats.errors``); the others go on.

Per-frame seconds (``SequenceResult.seconds``): the first frame's ``initialize``, then each batched
step's crop + network + update time divided by the sequences in that step (what the frame cost
when frames are processed together); decoding is not counted, as in ``Tracker.track_sequence``.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .datasets.lasot import read_image
from .tracker import BatchedTracker, check_image

__all__ = ["RunStats", "SequenceJob", "SequenceResult", "track_sequences"]


@dataclass
class SequenceJob:
    """One sequence to track: its frames (paths, decoded by ``read_frame``, or arrays with
    ``read_frame=None``) and the first frame's box. ``error``: a sequence that could not be
    prepared (reported, not run)."""

    name: str
    frames: Sequence[Any] = ()
    init_box: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    read_frame: Callable[[Any], np.ndarray] | None = read_image
    error: str | None = None


@dataclass
class SequenceResult:
    """Boxes (N, 4) x, y, w, h, scores (N,) and seconds per frame (N,) of a finished sequence."""

    name: str
    boxes: np.ndarray
    scores: np.ndarray
    seconds: np.ndarray


@dataclass
class RunStats:
    """Where the time of a ``track_sequences`` run went (seconds) and what failed.

    ``decode``: summed over the decoding threads (it overlaps the rest); ``decode_wait``: the
    time the tracking loop waited for a frame that was not decoded yet (decoding the network
    could not hide); ``crop`` / ``network``: the batched steps; ``initialize``: first frames.
    ``cpu``: the process's CPU seconds over the run (every thread); ``decode_cpu``: the decoding
    threads' own CPU seconds, so ``decode_cpu / cpu`` is decoding's share of the work even where
    it hides behind the network in wall time.
    """

    frames: int = 0
    sequences: int = 0
    steps: int = 0
    wall: float = 0.0
    decode: float = 0.0
    decode_wait: float = 0.0
    crop: float = 0.0
    network: float = 0.0
    initialize: float = 0.0
    cpu: float = 0.0
    decode_cpu: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall if self.wall > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        keys = ("frames", "sequences", "steps", "wall", "decode", "decode_wait", "crop", "network", "initialize",
                "cpu", "decode_cpu")
        return {**{k: getattr(self, k) for k in keys}, "fps": self.fps, "errors": dict(self.errors)}

    def merge(self, other: dict[str, Any]) -> None:
        """Add another run's ``as_dict()`` (a worker process) to this one; wall times take the longest."""
        for key in ("frames", "sequences", "steps", "decode", "decode_wait", "crop", "network", "initialize", "cpu",
                    "decode_cpu"):
            setattr(self, key, getattr(self, key) + other[key])
        self.wall = max(self.wall, other["wall"])
        self.errors.update(other["errors"])


@dataclass
class _Running:
    job: SequenceJob
    pending: deque = field(default_factory=deque)   # futures of decoded frames, in order
    submitted: int = 0                               # frames handed to the decoders
    index: int = 0                                   # next frame to track
    boxes: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def track_sequences(tracker: BatchedTracker, jobs: Iterable[SequenceJob],
                    on_done: Callable[[SequenceResult], None], decode_threads: int = 2,
                    prefetch: int | None = None, on_error: Callable[[str, str], None] | None = None,
                    on_frames: Callable[[int], None] | None = None) -> RunStats:
    """Track every job with ``tracker`` (``tracker.slots`` at a time); see the module docstring.

    Args:
        on_done: called with each finished sequence (write its results there).
        decode_threads: threads decoding frames ahead of the tracking loop.
        prefetch: frames decoded ahead per running sequence (default: enough to keep every
            decoding thread busy, at least 2).
        on_error: called with (sequence name, message) when a sequence stops with an error.
        on_frames: called with the number of frames each step completed (progress bars).
    Returns:
        ``RunStats``; ``errors`` maps each failed sequence to its message.
    """
    stats = RunStats()
    depth = prefetch or max(2, 1 + math.ceil(2 * decode_threads / tracker.slots))
    lock = threading.Lock()

    def decode(job: SequenceJob, index: int) -> np.ndarray:
        start, start_cpu = time.perf_counter(), time.thread_time()
        frame = job.frames[index]
        image = frame if job.read_frame is None else job.read_frame(frame)
        image = check_image(image, f"frame {index + 1} of {job.name}")
        with lock:
            stats.decode += time.perf_counter() - start
            stats.decode_cpu += time.thread_time() - start_cpu
        return image

    def fail(name: str, message: str) -> None:
        stats.errors[name] = message
        if on_error is not None:
            on_error(name, message)

    pool = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="decode")
    running: list[_Running | None] = [None] * tracker.slots
    pending_jobs = iter(jobs)
    exhausted = False

    def top_up(run: _Running) -> None:
        while run.submitted < len(run.job.frames) and len(run.pending) < depth:
            run.pending.append(pool.submit(decode, run.job, run.submitted))
            run.submitted += 1

    def stop(slot: int) -> None:
        run = running[slot]
        for future in run.pending:
            future.cancel()
        running[slot] = None
        tracker.release(slot)

    def next_job() -> _Running | None:
        nonlocal exhausted
        while not exhausted:
            job = next(pending_jobs, None)
            if job is None:
                exhausted = True
                break
            if job.error is not None:
                fail(job.name, job.error)
            elif len(job.frames) == 0:
                fail(job.name, "no frames")
            else:
                run = _Running(job)
                top_up(run)
                return run
        return None

    start_wall, start_cpu = time.perf_counter(), time.process_time()
    timings_before = dict(tracker.timings)
    try:
        while True:
            for slot in range(tracker.slots):
                if running[slot] is None:
                    running[slot] = next_job()
            if all(run is None for run in running):
                break
            ready: dict[int, np.ndarray] = {}
            for slot, run in enumerate(running):
                if run is None:
                    continue
                future: Future = run.pending.popleft()
                waited = time.perf_counter()
                try:
                    frame = future.result()
                except Exception as error:  # noqa: BLE001 - the sequence stops, the others go on
                    stats.decode_wait += time.perf_counter() - waited
                    fail(run.job.name, f"{type(error).__name__}: {error}")
                    stop(slot)
                    continue
                stats.decode_wait += time.perf_counter() - waited
                top_up(run)
                if run.index == 0:
                    began = time.perf_counter()
                    try:
                        tracker.initialize(slot, frame, run.job.init_box)
                    except ValueError as error:
                        fail(run.job.name, f"first frame: {error}")
                        stop(slot)
                        continue
                    run.seconds.append(time.perf_counter() - began)
                    stats.initialize += run.seconds[-1]
                    run.boxes.append(tracker.states[slot].copy())
                    run.scores.append(1.0)
                    run.index = 1
                    stats.frames += 1
                    if on_frames is not None:
                        on_frames(1)
                else:
                    ready[slot] = frame
            if ready:
                began = time.perf_counter()
                outputs = tracker.track(ready)
                share = (time.perf_counter() - began) / len(ready)
                for slot, (box, score) in outputs.items():
                    run = running[slot]
                    run.boxes.append(box)
                    run.scores.append(score)
                    run.seconds.append(share)
                    run.index += 1
                stats.frames += len(ready)
                stats.steps += 1
                if on_frames is not None:
                    on_frames(len(ready))
            for slot, run in enumerate(running):
                if run is not None and run.index == len(run.job.frames):
                    on_done(SequenceResult(run.job.name, np.array(run.boxes, dtype=np.float64).reshape(-1, 4),
                                           np.array(run.scores, dtype=np.float64),
                                           np.array(run.seconds, dtype=np.float64)))
                    stats.sequences += 1
                    stop(slot)
    finally:
        for slot, run in enumerate(running):
            if run is not None:
                stop(slot)
        pool.shutdown(wait=True, cancel_futures=True)
    stats.wall = time.perf_counter() - start_wall
    stats.cpu = time.process_time() - start_cpu
    stats.crop = tracker.timings["crop"] - timings_before["crop"]
    stats.network = tracker.timings["network"] - timings_before["network"]
    return stats
