"""Cached, timed stages with one progress bar: the machinery of the main job's long runs.

A :class:`Stage` is one step of work (generate a data set, pre-train, train a tracker, test it)
that writes into its own folder under the cache, named by the stage and a content key: a hash of
its configuration, of the keys of the stages it reads, and of the code it runs
(:func:`code_digest`: the source of every project module its entry points import, followed
through their imports, plus the versions of the libraries underneath), so that a change of the
library's code re-runs the stages it affects and only those. :class:`StageRunner` runs a stage once:
a folder holding ``stage.json`` is a finished stage whose summary is reused, so a second run of
the main job only re-reads and re-scores; a folder without it is an interrupted stage, which runs
again in the same folder (the training tools resume from their last checkpoint there).

While a stage runs, everything it prints (its tools' logs and progress bars, warnings, logging
records, subprocesses) goes to ``<logs>/<stage>.log``; the terminal shows one bar over all
planned stages, advanced by their estimated seconds, so its ETA is the estimate rescaled by how
fast this machine has been so far (in a log file instead of a terminal: a line every few
seconds, :func:`fileio.progress.progress`). Each stage's wall time and CPU time (this process and its
children) are recorded.

:meth:`StageRunner.run_all` runs a list of stages in the order their inputs allow (``Stage.after``),
one at a time in this process or several at once in worker processes (``jobs``): small stages use
two cores better as two single-threaded processes than as one process with two threads.
"""
from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import functools
import gc
import hashlib
import inspect
import json
import logging
import multiprocessing
import os
import resource
import sys
import textwrap
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

from fileio import atomic_write_json
from fileio.progress import progress

__all__ = ["Stage", "StageRunner", "StageProgress", "StageError", "digest",
           "config_digest", "code_digest", "code_files", "default_cache"]

_LITEVIT_ENV = ("LITEVIT_ADE20K", "LITEVIT_PRETRAINED", "LITEVIT_LASOT_ANNOS")
REPO = Path(__file__).resolve().parents[1]
# Third-party code under the project's: a new version re-runs every stage.
LIBRARIES = ("torch", "torchvision", "timm", "numpy", "mmengine", "mmcv", "mmsegmentation", "opencv-python",
             "opencv-python-headless", "scikit-image", "pillow", "onnxruntime", "openvino")


def default_cache() -> Path:
    """``$LITEVIT_CACHE/benchmark`` (default ``~/.cache/litevit/benchmark``)."""
    return Path(os.environ.get("LITEVIT_CACHE", Path.home() / ".cache" / "litevit")) / "benchmark"


def digest(*parts: Any) -> str:
    """12 hex digits of SHA-256 over the JSON form of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _imports_of(path: Path, stamp: tuple[int, int]) -> tuple[tuple[str, int, str | None, tuple[str, ...]], ...]:
    """Every import statement of a source file, at any depth (function-level imports too):
    ``(module, level, None, ())`` for ``import m``, ``(module, level, "from", names)`` for
    ``from m import names``. ``stamp`` (mtime, size) keys the cache."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, None, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, "from", tuple(a.name for a in node.names)))
    return tuple(found)


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of the project module ``name`` under ``root`` (None if not the project's)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _function_imports(function: Callable) -> tuple[tuple[str, int, str | None, tuple[str, ...]], ...]:
    """The import statements inside a function's own source (as :func:`_imports_of`), relative ones
    made absolute from its module."""
    found = []
    package = function.__module__.split(".")[:-1]
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, None, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                anchor = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join([*anchor, *([module] if module else [])])
            found.append((module, 0, "from", tuple(a.name for a in node.names)))
    return tuple(found)


def code_files(*entries: str | Path | Callable, root: Path = REPO) -> list[Path]:
    """Source files of the project that running ``entries`` executes: the entries (module names
    such as ``"pretrain.engine"``, script paths, or functions: the modules imported inside them)
    and every project module they import, followed through imports at any depth (function-level
    ones included: a stage may reach them), with the ``__init__.py`` of every package on the way.
    Modules outside ``root`` are left to :data:`LIBRARIES`. Sorted by path."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    todo: list[Path] = []

    def add_module(name: str) -> None:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            path = _module_file(".".join(parts[:i]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.append(path)

    def add_imports(imports, package: tuple[str, ...]) -> None:
        for module, level, kind, names in imports:
            if level:  # relative: from the file's package, up level - 1 folders
                anchor = package[:len(package) - (level - 1)] if level > 1 else package
                module = ".".join([*anchor, *([module] if module else [])])
            if not module:
                continue
            add_module(module)
            if kind == "from":  # ``from pkg import sub``: sub may be a module of its own
                for name in names:
                    if name != "*":
                        add_module(f"{module}.{name}")

    for entry in entries:
        if callable(entry):
            add_imports(_function_imports(entry), ())
        elif isinstance(entry, Path) or str(entry).endswith(".py"):
            path = Path(entry) if Path(entry).is_absolute() else root / entry
            if not path.is_file():
                raise FileNotFoundError(f"code_files: {path} not found")
            seen.add(path)
            todo.append(path)
        elif _module_file(str(entry), root) is None:
            raise ModuleNotFoundError(f"code_files: {entry!r} is not a module under {root}")
        else:
            add_module(str(entry))
    while todo:
        path = todo.pop()
        stat = path.stat()
        package = path.parent.relative_to(root).parts if path.is_relative_to(root) else ()
        add_imports(_imports_of(path, (stat.st_mtime_ns, stat.st_size)), package)
    return sorted(seen)


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def code_digest(*entries: str | Path | Callable, root: Path = REPO, libraries: bool = True) -> str:
    """Digest of the code a stage runs.

    ``entries``: module names, script paths and functions; every project file they execute
    (:func:`code_files`) counts by its path relative to ``root`` and its bytes, and a function by
    its own source text (the glue a stage calls, without the module around it, whose other
    functions and tables do not change what the stage computes). With ``libraries``, the installed versions of
    :data:`LIBRARIES` and Python's count as well.
    """
    root = Path(root).resolve()
    h = hashlib.sha256()
    for path in code_files(*entries, root=root):
        h.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    for function in (e for e in entries if callable(e)):
        h.update(f"{function.__module__}.{function.__qualname__}".encode() + b"\0")
        h.update(inspect.getsource(function).encode() + b"\0")
    if libraries:
        h.update(json.dumps([sys.version_info[:3], _library_versions()], sort_keys=True).encode())
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
        after: names of the stages whose outputs it reads (they run first).
    """

    name: str
    label: str
    key: str
    estimate_s: float
    action: Callable[[Path], dict[str, Any]] = field(repr=False)
    after: tuple[str, ...] = ()


class StageError(RuntimeError):
    """A stage failed; the message names the stage and its log."""


class StageProgress:
    """One bar over planned stages, counted in estimated seconds (a line every few seconds when the
    stream is not a terminal).

    A ticker thread moves the bar through each running stage's estimate (up to 95 % of it), so the
    ETA stays live during long stages; when a stage ends the bar moves on by its full estimate.
    Several stages may run at once (:meth:`start` / :meth:`finish`); the description names them.
    """

    def __init__(self, total_s: float, enabled: bool = True, stream: TextIO | None = None,
                 position: int | None = None, desc: str = "starting") -> None:
        self._bar = progress(total=max(1, round(total_s)), desc=desc, enabled=enabled, file=stream or sys.stderr,
                             unit="s", smoothing=0, position=position, leave=position is None,
                             bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")
        self._lock = threading.Lock()
        self._done = 0.0
        self._running: dict[int, tuple[str, float, float]] = {}   # token -> (label, estimate, start)
        self._tokens = 0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _advance(self) -> None:  # with the lock held
        now = time.perf_counter()
        value = self._done + sum(min(now - start, 0.95 * estimate) for _, estimate, start in self._running.values())
        target = min(round(value), self._bar.total)
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._advance()
                self._bar.refresh()  # the elapsed time moves on past the estimate too

    def _describe(self) -> None:  # with the lock held
        if self._running:
            self._bar.set_description_str(" | ".join(f"{label} (~{estimate:.0f} s)"
                                                     for label, estimate, _ in self._running.values()))

    def start(self, label: str, estimate_s: float) -> int:
        """A stage starts; returns the token :meth:`finish` takes."""
        with self._lock:
            token, self._tokens = self._tokens, self._tokens + 1
            self._running[token] = (label, float(estimate_s), time.perf_counter())
            self._describe()
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()
        return token

    def finish(self, token: int) -> None:
        """The stage of ``token`` ended: the bar counts its whole estimate."""
        with self._lock:
            _, estimate, _ = self._running.pop(token)
            self._done += estimate
            self._advance()
            self._describe()

    @contextlib.contextmanager
    def stage(self, label: str, estimate_s: float) -> Iterator[None]:
        token = self.start(label, estimate_s)
        try:
            yield
        finally:
            self.finish(token)

    def close(self, message: str = "") -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
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

    def run_all(self, stages: Sequence[Stage], jobs: int = 1, rebuild: Callable[[], Sequence[Stage]] | None = None,
                threads: int = 1) -> dict[str, dict[str, Any]]:
        """Every stage's summary (by name), each stage run after the stages it reads (``after``),
        in list order where the inputs allow.

        With ``jobs`` > 1 and ``rebuild``, up to ``jobs`` unfinished stages run at once, each in a
        worker process with ``threads`` torch threads. A stage's action is a closure, which does not
        travel between processes: each worker calls ``rebuild`` (a picklable callable, e.g. a
        ``functools.partial`` of a module-level function) once for the same stages and runs them
        by name, after checking that it finds the same content key. Finished stages are read
        here without starting a worker. The first failure stops the scheduling and is raised once
        the stages still running have ended.
        """
        names = [s.name for s in stages]
        unknown = sorted({a for s in stages for a in s.after} - set(names))
        if unknown:
            raise ValueError(f"stages read stages that are not planned: {unknown}")
        if jobs <= 1 or rebuild is None:
            return {s.name: self.run(s) for s in _in_input_order(stages)}
        summaries = {s.name: self.run(s) for s in stages if self.is_done(s)}
        waiting = [s for s in stages if s.name not in summaries]
        if not waiting:
            return summaries
        context = multiprocessing.get_context("spawn")  # no fork of a process that ran OpenMP / torch threads
        running: dict[concurrent.futures.Future, tuple[Stage, int | None]] = {}
        failure: BaseException | None = None
        with concurrent.futures.ProcessPoolExecutor(
                min(jobs, len(waiting)), mp_context=context, initializer=_worker_init,
                initargs=(rebuild, self.cache, self.logs, threads)) as pool:
            while waiting or running:
                if failure is None:
                    for stage in [s for s in waiting if all(a in summaries for a in s.after)]:
                        if len(running) >= jobs:
                            break
                        waiting.remove(stage)
                        token = self.progress.start(stage.label, stage.estimate_s) if self.progress else None
                        running[pool.submit(_worker_run, stage.name, stage.key)] = (stage, token)
                elif not running:
                    break
                if not running:
                    raise RuntimeError(f"stages wait for inputs that never come: {[s.name for s in waiting]}")
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    stage, token = running.pop(future)
                    if token is not None:
                        self.progress.finish(token)
                    try:
                        record = future.result()
                    except BaseException as error:  # noqa: BLE001 - re-raised below, after the running stages
                        failure = failure or error
                        continue
                    self.records.append(record)
                    summaries[stage.name] = record["summary"]
        if failure is not None:
            raise failure
        return {name: summaries[name] for name in names}


def _in_input_order(stages: Sequence[Stage]) -> list[Stage]:
    """``stages`` in list order, each moved after the stages it reads when it comes before them."""
    placed: list[Stage] = []
    done: set[str] = set()
    todo = list(stages)
    while todo:
        ready = next((s for s in todo if all(a in done for a in s.after)), None)
        if ready is None:
            raise ValueError(f"stages that read each other in a circle: {[s.name for s in todo]}")
        todo.remove(ready)
        placed.append(ready)
        done.add(ready.name)
    return placed


_WORKER: dict[str, Any] = {}


def _worker_init(rebuild: Callable[[], Sequence[Stage]], cache: Path, logs: Path, threads: int) -> None:
    """A worker process of :meth:`StageRunner.run_all`: its stages, a runner, its torch threads;
    what it prints outside a stage goes to ``<logs>/workers.log``."""
    import torch

    torch.set_num_threads(threads)
    Path(logs).mkdir(parents=True, exist_ok=True)
    sys.stdout = sys.stderr = open(Path(logs) / "workers.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    _WORKER["stages"] = {s.name: s for s in rebuild()}
    _WORKER["runner"] = StageRunner(cache, logs)


def _worker_run(name: str, key: str) -> dict[str, Any]:
    stage = _WORKER["stages"].get(name)
    if stage is None or stage.key != key:
        raise StageError(f"stage {name}: the worker process planned {'no such stage' if stage is None else stage.key}"
                         f", the main process {key} (did the code or a config change while the study ran?)")
    runner: StageRunner = _WORKER["runner"]
    runner.run(stage)
    return runner.records[-1]
