"""Cached, timed stages with one progress bar: the machinery of the main job's long runs.

A :class:`Stage` is one step of work (generate a data set, pre-train, train a tracker, test it)
that writes into its own folder under the cache, named by the stage and a content key (a hash of
its configuration and of the keys of the stages it reads). :class:`StageRunner` runs a stage once:
a folder holding ``stage.json`` is a finished stage whose summary is reused, so a second run of
the main job only re-reads and re-scores; a folder without it is an interrupted stage, which runs
again in the same folder (the training tools resume from their last checkpoint there).

While a stage runs, everything it prints (its tools' logs and progress bars, warnings, logging
records, subprocesses) goes to ``<logs>/<stage>.log``; the terminal shows one tqdm bar over all
planned stages, advanced by their estimated seconds, so its ETA is the estimate rescaled by how
fast this machine has been so far. Each stage's wall time and CPU time (this process and its
children) are recorded.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

from tqdm import tqdm

from fileio import atomic_write_json

__all__ = ["Stage", "StageRunner", "StageProgress", "StageError", "digest", "file_digest",
           "config_digest", "default_cache"]

_LITEVIT_ENV = ("LITEVIT_ADE20K", "LITEVIT_PRETRAINED", "LITEVIT_LASOT_ANNOS")


def default_cache() -> Path:
    """``$LITEVIT_CACHE/benchmark`` (default ``~/.cache/litevit/benchmark``)."""
    return Path(os.environ.get("LITEVIT_CACHE", Path.home() / ".cache" / "litevit")) / "benchmark"


def digest(*parts: Any) -> str:
    """12 hex digits of SHA-256 over the JSON form of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def file_digest(*paths: Path) -> str:
    """Digest of the bytes of files (e.g. the generator modules behind a data set)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:12]


def config_digest(path: Path, options: Mapping[str, Any] | None = None) -> str:
    """Digest of an mmengine config resolved with its ``_base_`` files and ``options``.

    The project's ``LITEVIT_*`` environment variables (data roots the configs read) are hidden
    while reading, so the key depends on the config alone.
    """
    from mmengine.config import Config

    saved = {k: os.environ.pop(k) for k in _LITEVIT_ENV if k in os.environ}
    try:
        cfg = Config.fromfile(str(path))
    finally:
        os.environ.update(saved)
    if options:
        cfg.merge_from_dict(dict(options))
    return digest(cfg.to_dict())


@dataclass
class Stage:
    """One cached step of work.

    Attributes:
        name: folder-safe name, unique in a run (``pretrain-mae``).
        label: what the progress bar shows.
        key: content key; the stage's folder is ``<cache>/<name>-<key>``.
        estimate_s: expected seconds on a quiet 2-core CPU (AVX2), for the ETA.
        action: does the work in the given folder, returns a JSON-able summary.
    """

    name: str
    label: str
    key: str
    estimate_s: float
    action: Callable[[Path], dict[str, Any]] = field(repr=False)


class StageError(RuntimeError):
    """A stage failed; the message names the stage and its log."""


class StageProgress:
    """One tqdm bar over planned stages, counted in estimated seconds.

    A ticker thread moves the bar through a running stage's estimate (up to 95 % of it), so the
    ETA stays live during long stages; when the stage ends the bar jumps to its full estimate.
    """

    def __init__(self, total_s: float, enabled: bool = True, stream: TextIO | None = None,
                 position: int | None = None) -> None:
        self._bar = tqdm(total=max(1, round(total_s)), disable=not enabled, file=stream or sys.stderr,
                         unit="s", smoothing=0, dynamic_ncols=True, position=position, leave=position is None,
                         bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
        self._lock = threading.Lock()
        self._done = 0.0

    def _set(self, value: float) -> None:
        with self._lock:
            target = min(round(value), self._bar.total)
            if target > self._bar.n:
                self._bar.update(target - self._bar.n)

    @contextlib.contextmanager
    def stage(self, label: str, estimate_s: float) -> Iterator[None]:
        self._bar.set_description_str(f"{label} (~{estimate_s:.0f} s)")
        stop = threading.Event()
        start = time.perf_counter()

        def tick() -> None:
            while not stop.wait(1.0):
                self._set(self._done + min(time.perf_counter() - start, 0.95 * estimate_s))
                with self._lock:
                    self._bar.refresh()  # the elapsed time moves on past the estimate too

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            self._done += estimate_s
            self._set(self._done)

    def close(self, message: str = "") -> None:
        if message:
            self._bar.set_description_str(message)
        self._bar.close()


class _StreamHandler(logging.Handler):
    """Root logging handler writing to whatever stream the running stage captures into."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        self.stream: TextIO | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is not None:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StageRunner:
    """Runs stages in their cache folders, once; records wall and CPU time of each."""

    def __init__(self, cache: Path, logs: Path, progress: StageProgress | None = None) -> None:
        self.cache, self.logs = Path(cache), Path(logs)
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self._handler = _StreamHandler()

    def folder(self, stage: Stage) -> Path:
        return self.cache / f"{stage.name}-{stage.key}"

    def is_done(self, stage: Stage) -> bool:
        return (self.folder(stage) / "stage.json").is_file()

    def pending_estimate(self, stages: Sequence[Stage]) -> float:
        return sum(s.estimate_s for s in stages if not self.is_done(s))

    @contextlib.contextmanager
    def _captured(self, log_path: Path) -> Iterator[TextIO]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger()
        added = self._handler not in root.handlers
        if added:  # also makes logging.basicConfig() in a tool a no-op
            root.addHandler(self._handler)
        level = root.level
        root.setLevel(logging.INFO)
        with open(log_path, "a", encoding="utf-8", buffering=1) as log:
            self._handler.stream = log
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    yield log
            finally:
                self._handler.stream = None
                root.setLevel(level)
                if added:
                    root.removeHandler(self._handler)

    def run(self, stage: Stage) -> dict[str, Any]:
        """The stage's summary: from its ``stage.json`` if finished, else by running it."""
        folder = self.folder(stage)
        marker = folder / "stage.json"
        if marker.is_file():
            record = json.loads(marker.read_text(encoding="utf-8"))
            self.records.append({**record, "cached": True})
            return record["summary"]
        folder.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{stage.name}.log"
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        progress = self.progress.stage(stage.label, stage.estimate_s) if self.progress else contextlib.nullcontext()
        with progress:
            try:
                with self._captured(log_path) as log:
                    try:
                        summary = stage.action(folder)
                    except BaseException:
                        traceback.print_exc(file=log)
                        raise
            except Exception as error:
                tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
                raise StageError(f"stage {stage.name} ({stage.label}) failed: {type(error).__name__}: {error}\n"
                                 f"log {log_path}, last lines:\n{tail}") from error
        gc.collect()  # let finished loaders' worker processes and large tensors go before the next stage
        record = {"stage": stage.name, "label": stage.label, "key": stage.key, "folder": str(folder),
                  "wall_s": time.perf_counter() - wall,
                  "cpu_s": time.process_time() - cpu + _children_cpu() - children,
                  "estimate_s": stage.estimate_s, "log": str(log_path), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "summary": summary}
        atomic_write_json(marker, record)
        self.records.append({**record, "cached": False})
        return summary
