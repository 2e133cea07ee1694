"""Write a small ImageNet-layout folder of generated JPEGs (``<out>/{train,val}/<class>/*.JPEG``) for the
seconds-long pre-training demo configs (``configs/pretrain/demo/``).

    python tools/make_imagenet_demo.py data/imagenet_demo [--classes 4 --per-class 16 --size 80]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.demo_data.imagenet import make_imagenet_folder  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--val-per-class", type=int, default=4)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    info = make_imagenet_folder(args.out, args.classes, args.per_class, args.size, args.seed,
                                val_per_class=args.val_per_class)
    print(f"wrote {info['counts']} images of {len(info['classes'])} classes under {info['root']}")


if __name__ == "__main__":
    main()
