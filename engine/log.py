"""What a run reports: a JSON-lines log, a loss plot from it, and a progress bar.

Every record of ``log.jsonl`` is one JSON object on one line with an ``"event"`` key: ``"train"``
for the loss records the loop writes at log intervals; ``"start"``, ``"resume"``, ``"eval"``,
``"end"`` ... for the rest.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from fileio import atomic_path
from fileio.progress import progress

__all__ = ["JsonLog", "read_log", "plot_log", "progress_bar"]


class JsonLog:
    """Appends one JSON object a line to ``path`` (when ``enabled``: rank 0 only); each write is
    flushed and closed, so a run killed between writes leaves whole lines."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled

    def write(self, record: Mapping[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(record, default=str) + "\n")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``log.jsonl`` file; a broken record raises ValueError naming file and line."""
    path = Path(path)
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON record: {error.msg} (column {error.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a record must be a JSON object, found {type(record).__name__}")
        records.append(record)
    return records


def plot_log(log_path: str | Path, png_path: str | Path, curves: Sequence[str] | None = None, x: str = "update",
             rates: Sequence[str] = ("lr",), twin: str | None = None) -> Path:
    """Loss curves (left) and learning rates (right, log scale) of the ``"train"`` records
    against ``x``, as a PNG written atomically.

    Args:
        curves: record keys drawn on the left (default: every key that starts with ``"loss"``);
            keys absent from every record are left out.
        rates: record keys drawn on the right.
        twin: a record key drawn on a second axis of the right panel (e.g. a keep ratio).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_log(log_path) if r.get("event") == "train"]
    xs = [r[x] for r in records]
    if curves is None:
        curves = sorted({k for r in records for k in r if k.startswith("loss")})
    fig, (ax_loss, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
    for key in curves:
        if any(key in r for r in records):
            ax_loss.plot(xs, [r.get(key, math.nan) for r in records], label=key)
    ax_loss.set_xlabel(x)
    ax_loss.set_title("training loss")
    if ax_loss.get_lines():
        ax_loss.legend()
    for key in rates:
        ax_rate.plot(xs, [r.get(key, math.nan) for r in records], label=key)
    ax_rate.set_xlabel(x)
    ax_rate.set_ylabel("learning rate")
    if any(r.get(key, 0) > 0 for r in records for key in rates):
        ax_rate.set_yscale("log")
    lines = ax_rate.get_lines()
    if twin is not None:
        ax_twin = ax_rate.twinx()
        ax_twin.plot(xs, [r.get(twin, math.nan) for r in records], color="tab:green", linestyle=":", label=twin)
        ax_twin.set_ylabel(twin)
        lines = lines + ax_twin.get_lines()
    if lines:
        ax_rate.legend(lines, [line.get_label() for line in lines], loc="lower left")
    fig.tight_layout()
    with atomic_path(png_path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
    return Path(png_path)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "it", enabled: bool = True) -> tqdm:
    """Count, rate and time left (ETA) on stderr: a live bar on a terminal, a line every few seconds
    in a log (:func:`fileio.progress.progress`)."""
    return progress(total=total, initial=initial, desc=desc, unit=unit, enabled=enabled, file=sys.stderr)
