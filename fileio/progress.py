"""Progress that suits where it is written: a live tqdm bar on a terminal, plain lines in a log.

A tqdm bar redraws itself with a carriage return many times a second; in a file (a redirected
``make benchmark``, a stage log of the main job) every redraw stays, and one log holds thousands
of them on one line. :func:`progress` returns a tqdm bar when the stream is a terminal and
otherwise a :class:`LineProgress`: the same tqdm object and API, writing one whole line (no
carriage return, no cursor movement) at most every ``interval`` seconds, and a last line when it
closes. torch-free (tqdm only), so every package can use it.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, TextIO

from tqdm import tqdm

__all__ = ["LineProgress", "is_terminal", "progress"]

LINE_INTERVAL_S = 10.0


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal (a redirected stream or a file is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class LineProgress(tqdm):
    """tqdm writing a plain line per report, at most one every ``interval`` seconds.

    Every redraw of tqdm (``update`` past ``mininterval``, ``refresh``, ``set_postfix``,
    ``set_description``, a ticker thread) goes through :meth:`display`; here it becomes one line
    ended by ``\\n``, dropped when the previous line is younger than ``interval``. ``close`` writes
    the final state once.
    """

    def __init__(self, *args: Any, interval: float = LINE_INTERVAL_S, **kwargs: Any) -> None:
        self._interval, self._last_line = interval, -float("inf")
        kwargs.setdefault("mininterval", interval)
        kwargs.update(dynamic_ncols=False, position=None, ascii=True)
        kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None, force: bool = False) -> bool:
        if msg == "" or self.disable:  # tqdm clearing its line: nothing to clear in a log
            return False
        now = time.monotonic()
        if not force and now - self._last_line < self._interval:
            return False
        self._last_line = now
        line = (self.__str__() if msg is None else msg).strip()
        self.fp.write(line + "\n")
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to erase in a log (tqdm clears its line before ``tqdm.write`` prints)."""

    def moveto(self, n: int) -> None:
        """No cursor movement in a log."""

    def close(self) -> None:
        if not self.disable and self.leave is not False:
            with self._lock:
                self.display(force=True)
        self.leave = False  # tqdm's close then clears instead of redrawing: display("") writes nothing
        super().close()


def progress(iterable: Iterable | None = None, total: float | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True, file: TextIO | None = None, interval: float = LINE_INTERVAL_S,
             **kwargs: Any) -> tqdm:
    """A progress bar on ``file`` (default: the current ``sys.stderr``): tqdm on a terminal, else
    :class:`LineProgress` writing a line every ``interval`` seconds. ``kwargs`` go to tqdm
    (``initial``, ``leave``, ``position``, ``bar_format``, ``smoothing`` ...)."""
    stream = file if file is not None else sys.stderr
    common = dict(iterable=iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=stream)
    if is_terminal(stream):
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(**common, **kwargs)
    return LineProgress(**common, interval=interval, **kwargs)
