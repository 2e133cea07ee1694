"""Random state of a process: capture and restore (exact resumption), and seeding.

The captured state is built from tensors and plain Python values only, so a checkpoint that
holds it loads with ``torch.load(..., weights_only=True)``. It covers torch's CPU generator, the
current GPU's generator when the run is on CUDA, numpy's global ``RandomState`` and Python's
``random``.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng", "seed_everything", "rank_seed", "seed_rank"]


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (weights_only-safe)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    """Set this process's RNGs to what :func:`capture_rng` returned."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every GPU), numpy and Python ``random`` with one value."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 63-bit seed mixed from (seed, rank, step) by numpy's ``SeedSequence``: distinct per rank
    and step, the same on every machine."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_rank(seed: int, rank: int, step: int = 0) -> int:
    """Seed every RNG of this process from (seed, rank, step); returns the seed used."""
    value = rank_seed(seed, rank, step)
    seed_everything(value)
    return value
