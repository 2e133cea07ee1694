"""Writing files atomically: a temporary file in the target's folder, then ``os.replace``.

A reader (or a run that resumes after being killed) sees either the old file or the complete new
one, never a half-written file. The temporary file lies in the same folder so that the rename
stays on one file system, where POSIX makes it atomic.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_png", "atomic_write_text",
           "json_ready"]


def _new_temp_file(path: Path) -> Path:
    """Create an empty ``.<stem>-tmp-<random><suffix>`` beside ``path``.

    No dot between the stem and the suffix, so the temporary file has exactly the target's
    extension (none when the target has none). Made with ``O_EXCL`` rather than
    ``tempfile.mkstemp`` so that it gets the mode a plain ``open(path, "w")`` gives (umask
    applied), not mkstemp's owner-only 0600.
    """
    while True:
        temp = path.with_name(f".{path.stem}-tmp-{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name ends with the target's extension (``.scores-tmp-1a2b3c4d.png``), so
    writers that pick the format from the extension (``cv2.imwrite``, ``savefig``,
    ``torch.onnx.export``, ``cv2.VideoWriter``) behave as they would on ``path``. Missing parent
    folders are created. If the block raises, the temporary file is removed, ``path`` is left as
    it was and the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_file(path)
    try:
        yield temp
        descriptor = os.open(temp, os.O_RDONLY)  # on disk before the rename: after a power cut the
        try:                                      # target is the old file or the new one, not empty
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _new_temp_dir(path: Path, tag: str) -> Path:
    """Create an empty ``.<name>-<tag>-<random>`` folder beside ``path``, with the mode a plain
    ``mkdir`` gives (umask applied), not ``tempfile.mkdtemp``'s owner-only 0700."""
    while True:
        temp = path.with_name(f".{path.name}-{tag}-{secrets.token_hex(4)}")
        try:
            temp.mkdir(0o777)
            return temp
        except FileExistsError:
            continue


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` to fill; on success it takes the place of ``path``.

    An existing folder at ``path`` is first renamed aside, then the new one renamed in, then the
    old one removed: POSIX cannot swap two folders in one step, so a crash between the two renames
    leaves the old folder beside ``path`` as ``.<name>-old-*``, never a half-filled one at ``path``.
    If the block raises, the temporary folder goes and ``path`` stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_dir(path, "tmp")
    try:
        yield temp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}-old-{secrets.token_hex(4)}")
            os.replace(path, old)
        os.replace(temp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if temp.exists():
            shutil.rmtree(temp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding=encoding)
    return Path(path)


def json_ready(value: Any) -> Any:
    """``value`` as standard JSON data: NaN and infinities become None (JSON has neither), numpy
    scalars and arrays become Python numbers and lists, tuples become lists, paths strings."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # ndarray or numpy scalar
        return json_ready(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def atomic_write_json(path: str | os.PathLike, data: Any, **json_kwargs: Any) -> Path:
    """Write ``data`` as standard JSON (``json_ready``: NaN -> null) and a newline, atomically.

    ``json_kwargs`` go to ``json.dumps`` (``indent=2`` unless given); a value JSON cannot hold
    raises before anything is written.
    """
    json_kwargs.setdefault("indent", 2)
    json_kwargs.setdefault("allow_nan", False)
    return atomic_write_text(path, json.dumps(json_ready(data), **json_kwargs) + "\n")


def atomic_write_png(path: str | os.PathLike, image: Any) -> Path:
    """Write a uint8 image array, (H, W) grey or (H, W, 3) RGB, as a PNG atomically; returns ``path``."""
    import numpy as np
    from PIL import Image

    array = np.ascontiguousarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"{path}: a PNG needs a uint8 (H, W) or (H, W, 3) RGB array, got {array.dtype} {array.shape}")
    with atomic_path(path) as temp:
        Image.fromarray(array).save(temp, format="PNG")
    return Path(path)
