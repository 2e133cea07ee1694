"""Export the tracker network to ONNX and check it against PyTorch with onnxruntime.

    python tools/track_export_onnx.py configs/track/<config>.py work_dirs/<run>/best.pth \
        --out work_dirs/<run>/tracker.onnx [--opset 17] [--keep-ratio 0.7] [--no-check]

Inputs of the graph: ImageNet-normalised ``template`` [B, 3, 128, 128] and ``search``
[B, 3, 256, 256]; outputs: ``score_map``, ``size_map``, ``offset_map`` [B, *, 16, 16] and
``pred_boxes`` [B, 4] (see track/onnx_export.py). CHECKPOINT may be ``none`` (untrained).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="tracker config (configs/track/*.py)")
    parser.add_argument("checkpoint", help="tracker checkpoint, or 'none'")
    parser.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--keep-ratio", type=float, default=None, help="CE keep ratio (default: the model's)")
    parser.add_argument("--static-batch", action="store_true", help="fix the batch size to 1")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted difference of the maps")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from track.config import load_config, model_from_checkpoint
    from track.onnx_export import check_onnx, export_onnx

    if args.checkpoint.lower() != "none" and not Path(args.checkpoint).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.checkpoint}")
    model, source = model_from_checkpoint(load_config(args.config), args.checkpoint)
    print(f"weights: {source}")
    path = export_onnx(model, args.out, args.opset, args.keep_ratio, not args.static_batch)
    print(f"wrote {path}")
    report = {"path": str(path)}
    if not args.no_check:
        report.update(check_onnx(path, model, batch=1 if args.static_batch else 2, ce_keep_ratio=args.keep_ratio))
        print(json.dumps(report, indent=2))
        worst = max(v for k, v in report["max_abs_diff"].items() if k != "pred_boxes")
        if worst > args.atol:
            raise SystemExit(f"error: ONNX and PyTorch maps differ by {worst:.2e} > {args.atol:g}")
    return report


if __name__ == "__main__":
    main()
