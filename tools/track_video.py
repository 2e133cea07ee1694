"""Track one object through a video file and write an annotated copy plus the boxes.

    python tools/track_video.py clip.mp4 --init 120,80,60,40 --out clip_tracked.mp4 \
        --checkpoint work_dirs/<run>/best.pth [--config configs/track/<config>.py]

Reads any video OpenCV can open, draws the box and its score on every frame (red with "lost"
when the score-map peak is below the lost threshold), writes the video with the mp4v codec and
``<out>.txt`` next to it (``frame,x,y,w,h,score,lost`` a line). Both files are written under a
temporary name and renamed when done. Without ``--checkpoint`` the network is untrained.
``--dtype int8`` (``--backend openvino``) calibrates on ``--int8-calibration DIR`` (LaSOT layout),
else on ``$LITEVIT_INT8_CALIBRATION``, else on generated demo sequences.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from fileio.progress import progress as progress_bar  # noqa: E402

from track.runtime import add_runtime_arguments, resolve_runtime  # noqa: E402


def parse_box(text: str) -> list[float]:
    parts = text.replace(" ", "").split(",")
    try:
        box = [float(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--init must be x,y,w,h numbers, got {text!r}") from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--init must be 4 numbers x,y,w,h, got {text!r}")
    return box


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path, help="input video file")
    parser.add_argument("--init", required=True, type=parse_box, help="first-frame box x,y,w,h (pixels)")
    parser.add_argument("--out", required=True, type=Path, help="annotated output video (.mp4)")
    parser.add_argument("--checkpoint", default=None, help="tracker checkpoint (default: untrained)")
    parser.add_argument("--config", type=Path, default=None, help="tracker config (default: the base model)")
    add_runtime_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch / runtime threads")
    parser.add_argument("--lost-threshold", type=float, default=None, help="override the config's")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def draw(frame_bgr: np.ndarray, box: np.ndarray, score: float, lost: bool, index: int) -> np.ndarray:
    """Box, score and (when lost) a "lost" marker on a BGR frame, in place."""
    colour = (0, 0, 255) if lost else (0, 220, 0)
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(frame_bgr, (x, y), (x + w - 1, y + h - 1), colour, 2)
    label = f"#{index} score {score:.2f}" + (" LOST" if lost else "")
    cv2.putText(frame_bgr, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(frame_bgr, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 1, cv2.LINE_AA)
    return frame_bgr


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    import torch

    from fileio import atomic_path, atomic_write_text
    from track.config import load_config, model_from_checkpoint, tracker_kwargs
    from track.tracker import Tracker

    if not args.video.is_file():
        raise SystemExit(f"error: video not found: {args.video}")
    device, dtype, backend = resolve_runtime(args.device, args.dtype, args.backend, args.compile)
    calibration = None
    if dtype == "int8":  # the user's folder, else $LITEVIT_INT8_CALIBRATION, else generated demo sequences
        from benchmarks.track_speed import int8_calibration_folder
        from track.quantize import calibration_sequences

        try:
            calibration = str(calibration_sequences(int8_calibration_folder(args.int8_calibration))[0])
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"error: --int8-calibration: {error}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model, source = model_from_checkpoint(cfg, args.checkpoint)
    print(f"weights: {source}")
    kwargs = tracker_kwargs(cfg)
    if args.lost_threshold is not None:
        kwargs["lost_threshold"] = args.lost_threshold
    tracker = Tracker(model, dtype=args.dtype, backend=backend, compile=args.compile or False, device=device,
                      cuda_graph=not args.no_cuda_graph, calibration=calibration, **kwargs)
    source = tracker.network.int8_source
    print(f"tracking on {device} ({tracker.dtype}, {backend})" + (f"; {source}" if source else ""))

    capture = cv2.VideoCapture(str(args.video))
    if not capture.isOpened():
        raise SystemExit(f"error: cannot open video: {args.video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    text_path = args.out.with_suffix(".txt")
    writer, lines = None, []
    try:
        with atomic_path(args.out) as temp_video:
            try:
                progress = progress_bar(total=total, unit="frame", enabled=not args.quiet, desc=args.video.name)
                index = 0
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    if index == 0:
                        try:
                            tracker.initialize(rgb, args.init)
                        except ValueError as error:
                            raise SystemExit(f"error: --init: {error}") from None
                        box, score, lost = tracker.state.copy(), 1.0, False
                        height, width = frame.shape[:2]
                        writer = cv2.VideoWriter(str(temp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                 (width, height))
                        if not writer.isOpened():
                            raise SystemExit(f"error: cannot write video {args.out} (mp4v codec)")
                    else:
                        box, score = tracker.track(rgb)
                        lost = tracker.lost
                    writer.write(draw(frame, box, score, lost, index + 1))
                    lines.append(f"{index + 1}," + ",".join(f"{v:.2f}" for v in box) + f",{score:.4f},{int(lost)}\n")
                    index += 1
                    progress.update()
                progress.close()
                if index == 0:
                    raise SystemExit(f"error: no frames could be read from {args.video}")
            finally:
                if writer is not None:
                    writer.release()
        atomic_write_text(text_path, "frame,x,y,w,h,score,lost\n" + "".join(lines))
    finally:
        capture.release()
    lost_frames = sum(line.rstrip().endswith(",1") for line in lines)
    print(f"wrote {args.out} ({index} frames, {lost_frames} lost) and {text_path}")
    return args.out


if __name__ == "__main__":
    main()
