"""Write a tiny synthetic dataset in ADE20K's layout (see seg/synthetic.py).

    python tools/make_ade20k_demo.py --out data/ade20k_demo --num-train 16 --num-val 4

then point an mmseg config's ``data_root`` at ``<out>/ADEChallengeData2016``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_data.ade20k import demo_classes, make_ade20k_dataset  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output root folder")
    parser.add_argument("--num-train", type=int, default=8, help="training images")
    parser.add_argument("--num-val", type=int, default=4, help="validation images")
    parser.add_argument("--width", type=int, default=160, help="nominal image width")
    parser.add_argument("--height", type=int, default=120, help="nominal image height")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        data_root = make_ade20k_dataset(args.out, args.num_train, args.num_val,
                                        size=(args.width, args.height), seed=args.seed)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {args.num_train} training + {args.num_val} validation images to {data_root}")
    print(f"raw labels painted: {demo_classes(args.seed)} (0 = other)")
    return data_root


if __name__ == "__main__":
    main()
