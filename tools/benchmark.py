#!/usr/bin/env python
"""The project's tables in one run (``make benchmark``); see :mod:`benchmarks.report` for the sections.

    python tools/benchmark.py                       # everything, embedded demo data
    python tools/benchmark.py --sections speed      # only the speed tables
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import main  # noqa: E402

if __name__ == "__main__":
    main()
