#!/usr/bin/env python
"""The main job (``make benchmark``): the study's tables (each pre-training recipe and what it gives
downstream), model sizes and speed; see :mod:`benchmarks.report` for the sections and options.

    python tools/benchmark.py                       # everything; the study on embedded photos
    python tools/benchmark.py --sections speed      # only the speed tables
    python tools/benchmark.py --sections study --lasot-results ours=DIR --lasot-annos LASOT
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import main  # noqa: E402

if __name__ == "__main__":
    main()
