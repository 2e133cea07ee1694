"""Write a small transfer set in its official torchvision layout (generated images) under OUT, for the
seconds-long transfer demo (``configs/transfer/demo/``) and for trying a transfer config without the data.

    python tools/make_transfer_demo.py cifar10 data/transfer_demo [--classes 10 --train-per-class 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_data.transfer import TRANSFER_WRITERS, make_transfer_set  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(TRANSFER_WRITERS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=None, help="number of classes (default: the official count)")
    parser.add_argument("--train-per-class", type=int, default=8)
    parser.add_argument("--test-per-class", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kwargs = {"train_per_class": args.train_per_class, "test_per_class": args.test_per_class, "seed": args.seed}
    if args.classes is not None:
        kwargs["classes"] = args.classes
    info = make_transfer_set(args.name, args.out, **kwargs)
    print(f"{args.name}: {len(info['train'])} training / {len(info['test'])} test images of "
          f"{len(info['classes'])} classes under {args.out}")


if __name__ == "__main__":
    main()
