"""Run the tracker on LaSOT test sequences and write one result file per sequence.

    python tools/track_test.py configs/track/<config>.py work_dirs/<run>/best.pth \
        --lasot-root data/lasot --out results/<run> [--device auto] [--dtype auto] [--backend auto] \
        [--batch-sequences 16] [--workers 2] [--int8-calibration DIR]

Writes ``<out>/<seq>.txt`` (x,y,w,h floats a line, comma-separated, frame 1 = the GT box) and
``<out>/<seq>_time.txt`` (seconds a frame), each atomically once the sequence is done;
sequences whose two files exist are skipped, so a killed run continues where it stopped.
The work is :func:`track.runner.run_lasot` (the library function the main job's study calls).
Score the folder with ``tools/eval_lasot.py --results <out> --annos <lasot root or toolkit annos>``.

``--dtype int8`` (``--backend openvino``) quantizes the network once per checkpoint (NNCF, cached
under ``$LITEVIT_CACHE/track_int8``), calibrated on ``--int8-calibration DIR`` (a LaSOT-layout
folder), else on ``$LITEVIT_INT8_CALIBRATION``, else on generated demo sequences.

``--batch-sequences N`` tracks N sequences in lock-step with one network call per step (a
finished sequence's slot takes the next one); frames are decoded ahead by ``--decode-threads``
threads. Each sequence's boxes are those of tracking it alone; its ``_time.txt`` then holds each
step's time divided by the sequences in it. ``--workers N`` runs N processes pulling sequences
from one queue (on several GPUs, worker i uses ``cuda:{i % GPUs}``). A sequence that fails
(missing or corrupt frame, bad annotation) stops with its error, the others go on; the errors
are listed at the end and the exit status is 1 (nothing finished is lost, a rerun retries
only the missing sequences).

CHECKPOINT is a tracker checkpoint (ours, or OSTrack / MAE-Lite tracking ``{"net": ...}``
files), a backbone checkpoint (pre-training export, MAE-Lite, DeiT/timm: the head stays
untrained, for pipeline checks only), or the literal ``none`` (the config's ``pretrained``
backbone, if any, and an untrained head).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from track.runner import run_lasot  # noqa: E402
from track.runtime import add_runtime_arguments  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="tracker config (configs/track/*.py)")
    parser.add_argument("checkpoint", help="tracker or backbone checkpoint, or 'none'")
    parser.add_argument("--lasot-root", required=True, type=Path, help="LaSOT dataset root")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"),
                        help="sequence list (default: testing_set.txt)")
    parser.add_argument("--sequences", nargs="+", default=None, help="only these sequences")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: results/<config name>)")
    add_runtime_arguments(parser)
    parser.add_argument("--batch-sequences", type=int, default=1,
                        help="sequences tracked together, one network call per step (default 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes pulling sequences from one queue (spread over the visible GPUs)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / workers)")
    parser.add_argument("--decode-threads", type=int, default=None,
                        help="threads decoding frames ahead, per process (default: cores / workers)")
    parser.add_argument("--lost-threshold", type=float, default=None, help="override the config's")
    parser.add_argument("--stats-json", type=Path, default=None,
                        help="write the run's timings (decode, crop, network, frames/s) here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        out = args.out or Path("results") / args.config.stem
        calibration = None
        if args.dtype == "int8":  # the user's folder, else $LITEVIT_INT8_CALIBRATION, else generated demo sequences
            from benchmarks.track_speed import int8_calibration_folder

            calibration = int8_calibration_folder(args.int8_calibration)
        summary = run_lasot(args.config, args.checkpoint, args.lasot_root, out,
                            split=None if args.split == "all" else args.split, sequences=args.sequences,
                            device=args.device, dtype=args.dtype, backend=args.backend, compile=args.compile,
                            cuda_graph=not args.no_cuda_graph, batch_sequences=args.batch_sequences,
                            workers=args.workers, threads=args.threads, decode_threads=args.decode_threads,
                            lost_threshold=args.lost_threshold, calibration=calibration)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.stats_json and summary["stats"] is not None:
        from fileio import atomic_write_text

        atomic_write_text(args.stats_json, json.dumps({**summary["stats"], "device": summary["device"],
                                                        "dtype": summary["dtype"], "backend": summary["backend"],
                                                        "batch_sequences": args.batch_sequences,
                                                        "workers": summary["workers"]}, indent=2))
    if summary["errors"]:
        listing = "\n".join(f"  {name}: {message}" for name, message in sorted(summary["errors"].items()))
        print(f"error: {len(summary['errors'])} sequence(s) failed (no result files written for them):\n{listing}",
              file=sys.stderr)
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    main()
