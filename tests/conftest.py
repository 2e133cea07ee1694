"""Shared fixtures: the optional ../shared folder beside the checkout, deterministic torch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LITEVIT_SHARED", REPO.parent / "shared"))


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
