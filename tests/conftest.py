"""Shared fixtures: the optional ../shared folder beside the checkout, deterministic torch; and
``load_tool`` (a script of tools/ as a module, to call its ``main`` in the test's process),
``torchrun`` (a script under torch's launcher) and ``write_square_video`` (a small test clip)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LITEVIT_SHARED", REPO.parent / "shared"))


def load_tool(name: str):
    """``tools/<name>.py`` imported as a module (``from conftest import load_tool``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchrun(script: str | Path, *args: Any, nproc: int = 2, timeout: float = 300,
             **env: str) -> subprocess.CompletedProcess:
    """``torch.distributed.run --standalone`` with ``nproc`` processes of ``script args`` from the
    repository (the project on PYTHONPATH, ``env`` added); fails the test with the end of stderr if it
    fails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(script), *map(str, args)]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def write_square_video(path: Path, frames: int) -> Path:
    """An mp4 of ``frames`` 160x120 frames: a red 31x31 square at (30 + 5 i, 40) on gray, moving right
    5 px a frame (``--init 30,40,31,31`` is its first box)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(frame, (30 + 5 * i, 40), (60 + 5 * i, 70), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the repository; tests using it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread (``pytestmark = usefixtures("one_torch_thread")``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def run_blocked() -> Callable[..., subprocess.CompletedProcess]:
    """``run_blocked(code, cwd, blocked)`` runs ``code`` in a child Python whose import system refuses the
    ``blocked`` packages and their submodules, then fails the child if any of them was loaded."""

    def run(code: str, cwd: Path, blocked: tuple[str, ...], timeout: float = 120) -> subprocess.CompletedProcess:
        blocker = textwrap.dedent(f"""
            import importlib.abc, sys
            class Block(importlib.abc.MetaPathFinder):
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {blocked!r}:
                        raise ImportError(f"{{name}} is blocked in this test")
                    return None
            sys.meta_path.insert(0, Block())
        """)
        check = textwrap.dedent(f"""
            loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({blocked!r}))
            assert not loaded, loaded
        """)
        return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code) + check], capture_output=True,
                              text=True, cwd=cwd, timeout=timeout, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    return run
