"""Progress output (fileio.progress): a live bar on a terminal, whole lines at a bounded rate in a log."""
from __future__ import annotations

import io
import time

from tqdm import tqdm

from fileio.progress import LineProgress, is_terminal, progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_at_a_bounded_rate():
    log = io.StringIO()
    bar = progress(total=1000, desc="steps", unit="step", file=log, interval=0.05)
    assert isinstance(bar, LineProgress) and not is_terminal(log)
    start = time.monotonic()
    for _ in range(1000):
        bar.update()
        bar.set_postfix_str("loss 1.0")  # a refresh request on every step
        time.sleep(0.0002)
    bar.write("a message", file=log)
    bar.close()
    elapsed = time.monotonic() - start
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text                   # no carriage return, no cursor movement
    assert all(line.strip() for line in lines)                       # no blank line
    assert "a message" in lines and lines[-1].startswith("steps: 100%") and "1000/1000" in lines[-1]
    progress_lines = [line for line in lines if line.startswith("steps:")]
    assert 2 <= len(progress_lines) <= elapsed / 0.05 + 2            # the first, one per interval, the last


def test_a_terminal_gets_a_tqdm_bar_and_disabled_bars_write_nothing():
    terminal = FakeTerminal()
    bar = progress(total=3, desc="x", file=terminal)
    assert type(bar) is tqdm
    bar.update(3)
    bar.close()
    assert "\r" in terminal.getvalue()
    log = io.StringIO()
    quiet = progress(total=3, file=log, enabled=False)
    quiet.update(3)
    quiet.close()
    assert log.getvalue() == ""
    assert not is_terminal(object())
