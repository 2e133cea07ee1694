"""Score tracker result folders on LaSOT: AUC, precision (20 px), normalised precision (0.2).

    python tools/eval_lasot.py --results results/ostrack_tiny results/baseline \
        --annos ../shared/data/lasot_test_annos --json results/lasot.json --plots results/plots

``--annos`` is the toolkit layout (``<seq>.txt`` + ``absent/`` [+ ``att/``]) or a LaSOT dataset
root (``<class>/<class>-<id>/groundtruth.txt`` ...); sequences come from ``testing_set.txt``
when present. Each results folder holds ``<seq>.txt`` (x,y,w,h a line, comma or tab separated).
The metric rules are documented in evaluation/lasot.py; ``--protocol official`` (default)
follows the benchmark's toolkit, ``--protocol pytracking`` the pytracking/OSTrack scripts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.lasot import (ATTRIBUTES, EvalResult, attribute_table,  # noqa: E402
                              evaluate_tracker, load_annotations, markdown_table,
                              missing_results, results_to_json, save_plots)
from fileio import atomic_write_json  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, nargs="+", type=Path,
                        help="one folder of <seq>.txt result files per tracker")
    parser.add_argument("--annos", required=True, type=Path,
                        help="LaSOT dataset root or toolkit annotation folder")
    parser.add_argument("--protocol", choices=("official", "pytracking"), default="official",
                        help="rules for invalid predictions/annotations (default: official)")
    parser.add_argument("--exclude-invalid", action="store_true",
                        help="divide by the valid frames only (target present, positive box)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="evaluate only sequences every tracker has a result file for")
    parser.add_argument("--names", nargs="+", default=None,
                        help="tracker names for the table (default: results folder names)")
    parser.add_argument("--json", type=Path, default=None, help="write the scores here")
    parser.add_argument("--plots", type=Path, default=None,
                        help="folder for success / precision plot PNGs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[EvalResult]:
    args = parse_args(argv)
    names = args.names or [p.resolve().name for p in args.results]
    if len(names) != len(args.results):
        raise SystemExit(f"error: {len(args.names)} --names for {len(args.results)} --results")
    if len(set(names)) != len(names):
        raise SystemExit(f"error: tracker names are not unique ({', '.join(names)}); "
                         "give --names")
    try:
        annos = load_annotations(args.annos, progress=not args.quiet)
        sequences = list(annos)
        if args.skip_missing:  # the same sequences for every tracker, so the rows compare
            for results_dir in args.results:
                absent = set(missing_results(results_dir, sequences))
                sequences = [s for s in sequences if s not in absent]
            if not sequences:
                raise FileNotFoundError("no sequence has a result file in every results folder")
        results = [evaluate_tracker(results_dir, annos, protocol=args.protocol,
                                    exclude_invalid=args.exclude_invalid,
                                    sequences=sequences, name=name, progress=not args.quiet)
                   for results_dir, name in zip(args.results, names)]
        for r in results:
            r.skipped = [s for s in annos if s not in set(sequences)]
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None

    settings = f"protocol {args.protocol}" + (", valid frames only" if args.exclude_invalid else "")
    print(f"\nLaSOT, {len(sequences)} of {len(annos)} sequences, {settings}\n")
    print(markdown_table(results))
    for r in results:
        for curve, dropped in r.dropped.items():
            if dropped:
                print(f"note: {r.name}: {len(dropped)} sequence(s) with an all-zero {curve} "
                      "curve left out of its average (official toolkit rule)")
    table = attribute_table(results)
    if table:
        print("\nAUC per attribute (number of sequences):\n")
        print(table)
        print("\n" + ", ".join(f"{abbr} {name}" for abbr, name in ATTRIBUTES))
    if args.json:
        print(f"\nwrote {atomic_write_json(args.json, results_to_json(results))}")
    if args.plots:
        for path in save_plots(results, args.plots):
            print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
