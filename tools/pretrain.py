"""Pre-train (MAE / D-MAE / D²-MAE), fine-tune or linearly probe a backbone from a config.

    python tools/pretrain.py configs/pretrain/d2mae_vit_tiny_400e_in1k.py --data data/imagenet
    torchrun --nproc_per_node 8 tools/pretrain.py configs/pretrain/mae_vit_tiny_400e_in1k.py \
        --data data/imagenet --work-dir work_dirs/mae_tiny
    python tools/pretrain.py CONFIG --resume            # continue from WORK_DIR/latest.pth
    torchrun --nproc_per_node 4 tools/pretrain.py CONFIG --resume --allow-world-size-change
                                                        # a checkpoint of another number of processes
    python tools/pretrain.py CONFIG --cfg-options data.batch_size=32 runtime.precision=fp32

The config's ``task`` picks pre-training, fine-tuning or linear probing.  The work dir gets
``log.jsonl``, ``latest.pth`` (resumable checkpoint), ``loss.png`` and, after pre-training,
``backbone.pth`` (the encoder for segmentation / tracking).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config, DictAction  # noqa: E402

from engine import close_distributed  # noqa: E402
from pretrain.engine import run  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="python config file (mmengine, with _base_)")
    parser.add_argument("--data", type=Path, default=None, help="dataset root (overrides data.root)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="output folder (default: work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", const=True, default=False,
                        help="continue from WORK_DIR/latest.pth (or the checkpoint given)")
    parser.add_argument("--allow-world-size-change", action="store_true",
                        help="resume a checkpoint written by another number of processes (sets "
                             "runtime.allow_world_size_change; random states re-seeded, not bit-exact)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                        help="override config keys, e.g. data.batch_size=32 runtime.max_updates=10")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> dict:
    if not args.config.is_file():
        raise SystemExit(f"config not found: {args.config}")
    cfg = Config.fromfile(str(args.config))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data is not None:
        cfg.data.root = str(args.data)
    if args.allow_world_size_change:
        cfg.runtime.allow_world_size_change = True
    cfg.work_dir = str(args.work_dir) if args.work_dir else cfg.get("work_dir") or f"work_dirs/{args.config.stem}"
    cfg.recipe = cfg.get("recipe") or args.config.stem
    return cfg.to_dict()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args)
    try:
        summary = run(cfg, resume=args.resume)
    finally:
        close_distributed()
    if summary.get("export"):
        print(f"backbone exported to {summary['export']}")
    elif not summary.get("finished"):
        print(f"stopped at update {summary['update']} (epoch {summary['epoch']}, step {summary['epoch_step']}); "
              f"continue with --resume (checkpoint {summary['checkpoint']})")
    return summary


if __name__ == "__main__":
    main()
