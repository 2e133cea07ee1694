"""Write small synthetic tracking sequences in LaSOT's layout (see track/synthetic.py).

    python tools/make_lasot_demo.py --out data/lasot_demo --classes car dog --seqs-per-class 3

then read them with ``track.datasets.LasotDataset("data/lasot_demo", split="test")`` or score
result files against them with ``tools/eval_lasot.py --annos data/lasot_demo``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_data.lasot import make_lasot_dataset  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    parser.add_argument("--classes", nargs="+", default=["car", "dog"], help="class names")
    parser.add_argument("--seqs-per-class", type=int, default=2, help="sequences per class")
    parser.add_argument("--test-per-class", type=int, default=1,
                        help="sequences per class listed in testing_set.txt (the rest: training)")
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence")
    parser.add_argument("--width", type=int, default=320, help="frame width")
    parser.add_argument("--height", type=int, default=240, help="frame height")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        names = make_lasot_dataset(args.out, classes=args.classes,
                                   seqs_per_class=args.seqs_per_class, num_frames=args.frames,
                                   size=(args.width, args.height), seed=args.seed,
                                   test_per_class=args.test_per_class)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {len(names)} sequences of {args.frames} frames to {args.out} "
          f"in {time.perf_counter() - start:.1f} s: {', '.join(names)}")
    return names


if __name__ == "__main__":
    main()
