"""Train the one-stream tracker from an mmengine config (see configs/track/).

    python tools/track_train.py configs/track/vit_tiny_ce_tiny_synthetic.py
    python tools/track_train.py configs/track/vit_tiny_ce_4xb32_300ep_lasot_got10k_coco_trackingnet.py \\
        --lasot-root /data/lasot --got10k-root /data/got10k --coco-root /data/coco \\
        --trackingnet-root /data/trackingnet --pretrained d2mae_vit_tiny.pth
    torchrun --nproc_per_node 4 tools/track_train.py CONFIG ...     (DDP: NCCL on GPU, gloo on CPU)
    python tools/track_train.py CONFIG --work-dir DIR --resume      (continue from DIR/latest.pth)
    torchrun --nproc_per_node 2 tools/track_train.py CONFIG --work-dir DIR --resume --allow-world-size-change
                                    (a checkpoint of another number of processes: not bit-exact)

Writes to the work dir: latest.pth (training state), epoch_XXXX.pth, tracker_final.pth (the
network for track.model.load_tracker_checkpoint), log.jsonl, loss.png, config.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config, DictAction  # noqa: E402

from benchmarks.demo_data.lasot import fill_generated_lasot_roots  # noqa: E402
from engine import barrier, close_distributed, init_distributed, runtime_options, upgrade_config  # noqa: E402
from track.train import train  # noqa: E402

DATASET_FLAGS = ("lasot", "got10k", "coco", "trackingnet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="training config (python, mmengine style)")
    parser.add_argument("--work-dir", type=Path,
                        help="output folder (default: work_dirs/track/<config name>)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="resume from CKPT, or from <work-dir>/latest.pth without a value")
    parser.add_argument("--allow-world-size-change", action="store_true",
                        help="resume a checkpoint written by another number of processes (sets "
                             "runtime.allow_world_size_change; random states re-seeded, not bit-exact)")
    parser.add_argument("--pretrained", help="backbone checkpoint (sets model.pretrained)")
    for name in DATASET_FLAGS:
        parser.add_argument(f"--{name}-root", type=Path,
                            help=f"{name} dataset root (sets the root of its data.datasets entry)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        help="override config values: key=value, e.g. train.epochs=10 "
                             "data.datasets.1.split_file=vot_train.txt")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> Config:
    """The config with the command-line overrides applied (dataset roots, cfg-options) and the
    keys of the previous release renamed (:func:`engine.upgrade_config`, a warning each)."""
    if not args.config.is_file():
        raise SystemExit(f"error: config not found: {args.config}")
    cfg = Config.fromfile(str(args.config))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg = Config(upgrade_config(cfg))
    if args.pretrained:
        cfg.model.pretrained = args.pretrained
    if args.allow_world_size_change:
        cfg.setdefault("runtime", {})["allow_world_size_change"] = True
    entries = {entry["type"]: entry for entry in cfg.data.datasets}
    for name in DATASET_FLAGS:
        root = getattr(args, f"{name}_root")
        if root is None:
            continue
        if name not in entries:
            raise SystemExit(f"error: --{name}-root given but {args.config} has no {name!r} "
                             f"entry in data.datasets ({sorted(entries)})")
        entries[name]["root"] = str(root)
    return cfg


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args)
    work_dir = args.work_dir or Path("work_dirs/track") / args.config.stem
    try:
        info = init_distributed(runtime_options(cfg)["device"], option="runtime.device")
        if info.is_main:
            fill_generated_lasot_roots(cfg.data, work_dir)  # the tiny config's generated sequences
        barrier(info)
        if not info.is_main:
            fill_generated_lasot_roots(cfg.data, work_dir)  # the others: same roots, data now there
        summary = train(cfg, work_dir, resume=args.resume)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        close_distributed()
    if info.is_main:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
