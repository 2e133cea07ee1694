"""Score a folder of predicted label maps against a folder of GT annotations (aAcc, mIoU, mAcc).

Same numbers as mmseg 1.2.2's IoUMetric (see evaluation/miou.py); needs neither torch nor mmseg. Example, ADE20K validation:

    python tools/eval_miou.py --pred work_dirs/preds \
        --gt data/ADEChallengeData2016/annotations/validation \
        --num-classes 150 --reduce-zero-label --class-names ade20k --json results/miou.json

Prediction PNGs hold class indices 0..N-1 of the evaluated space (after the reduction for ADE20K);
``--pred-raw`` reads them encoded like the GT instead (class + 1, as mmseg's IoUMetric writes
them with ``output_dir``). GT and prediction files are matched by file stem.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.miou import (ade20k_class_names, evaluate_folders, format_table,  # noqa: E402
                             plot_per_class_iou, read_class_names)
from fileio import atomic_write_json  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted PNGs")
    parser.add_argument("--gt", required=True, type=Path, help="folder of GT annotation PNGs")
    parser.add_argument("--num-classes", required=True, type=int, help="number of classes")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="GT label 0 is ignored and the others shift down by one (ADE20K)")
    parser.add_argument("--ignore-index", type=int, default=255, help="GT value left out")
    parser.add_argument("--pred-raw", action="store_true",
                        help="predictions are encoded like the raw GT (reduced the same way)")
    parser.add_argument("--class-names", default=None,
                        help="'ade20k' (mmseg's 150 names) or a text file with one name a line")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--plot", type=Path, default=None, help="per-class IoU bar chart (PNG)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.num_classes <= 0:
        raise SystemExit(f"--num-classes must be positive, got {args.num_classes}")
    if args.class_names is None:
        names = None
    elif args.class_names.lower() == "ade20k":
        names = ade20k_class_names()
    else:
        names = read_class_names(args.class_names)
    try:
        result = evaluate_folders(args.pred, args.gt, args.num_classes,
                                  reduce_zero_label=args.reduce_zero_label,
                                  ignore_index=args.ignore_index, class_names=names,
                                  pred_raw=args.pred_raw)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(format_table(result))
    print(f"{result['num_images']} images")
    if args.json is not None:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot is not None:
        plot_per_class_iou(result, args.plot)
        print(f"wrote {args.plot}")
    return result


if __name__ == "__main__":
    main()
