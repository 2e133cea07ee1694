"""The peers' own code (OSTrack, MAE-Lite), for speed and parity comparisons timed in the same run.

The code is not part of the project: it lies in a ``shared/peers`` folder beside the checkout (or under
``$LITEVIT_SHARED/peers``), with a ``peers.py`` that builds their models. Benchmarks and tests use it when
it is there and report our figures alone (with the published numbers) when it is not.

    peers = load_peers()            # the peers module, or None
    if peers is not None:
        net, mask = peers.ostrack_vit_tiny_ce()
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["PEERS_PACKAGES", "load_peers", "peers_dir", "shared_dir", "unavailable_reason"]

REPO = Path(__file__).resolve().parents[1]
# What the peers' code imports beyond the project's own requirements.
PEERS_PACKAGES = ("easydict", "loguru", "tabulate", "yaml", "scipy")


def shared_dir() -> Path:
    """``$LITEVIT_SHARED``, else the ``shared`` folder beside the repository (it may not exist)."""
    return Path(os.environ.get("LITEVIT_SHARED", REPO.parent / "shared"))


def peers_dir() -> Path | None:
    """The folder holding ``peers.py``, or None when there is none."""
    folder = shared_dir() / "peers"
    return folder if (folder / "peers.py").is_file() else None


def unavailable_reason() -> str | None:
    """Why the peers cannot be used here (no folder, a missing package), or None when they can."""
    folder = peers_dir()
    if folder is None:
        return f"no peers' code at {shared_dir() / 'peers'} (set LITEVIT_SHARED to a folder holding peers/)"
    missing = [name for name in PEERS_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"the peers' code at {folder} needs packages that are not installed: {', '.join(missing)}"
    return None


def load_peers() -> ModuleType | None:
    """Import ``peers.py`` from the shared folder (once); None when ``unavailable_reason()`` says why not."""
    if unavailable_reason() is not None:
        return None
    if "peers" in sys.modules:
        return sys.modules["peers"]
    path = peers_dir() / "peers.py"
    spec = importlib.util.spec_from_file_location("peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module
    spec.loader.exec_module(module)
    return module
