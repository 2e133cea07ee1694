"""CPU speed of the tracker and bf16-vs-fp32 agreement, with an in-run reference-style baseline.

``tracking_speed`` times the full per-frame step of ``track.tracker.Tracker`` (crop, network,
decode, map back) and the network alone, and in the same run the same weights executed the way
the reference OSTrack code executes them (``ReferenceStep``): explicit attention in every block,
the template patch-embedded again every frame, candidate elimination with a full sort and
global-index bookkeeping then zero-padding + scatter to restore the map, the head with separate
BatchNorm, bf16 through autocast over fp32 weights, and the crop cut by ``copyMakeBorder`` +
``cv2.resize`` followed by float normalisation. The ratio of the two is measured on the same
machine, threads and frames, so it does not depend on how busy the machine is overall.

    python -m benchmarks.track_speed --dtype fp32 bf16 --frames 200 --threads 2 --onnxruntime \
        --compile default max-autotune --json speed.json --plot speed.png
    python -m benchmarks.track_speed --config CONFIG --checkpoint CKPT --agreement LASOT_ROOT   # + bf16 agreement

On a machine shared with other jobs, run it with ``OMP_WAIT_POLICY=PASSIVE`` (threads that spin
while waiting for a busy core make multi-threaded timings meaningless) and read the ``*_cpu_ms``
fields beside the wall-clock ones.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from track.model import OneStreamTracker, build_tracker, decode_boxes
from track.processing import IMAGENET_MEAN, IMAGENET_STD, hann_window_2d
from track.tracker import COMPILE_MODES, Tracker

__all__ = ["ReferenceStep", "bf16_agreement", "box_iou", "demo_frames", "lasot_agreement", "reference_forward",
           "reference_sample_target", "save_speed_plot", "tracking_speed"]


# ---------------------------------------------------------------------------- reference-style path

def reference_sample_target(image: np.ndarray, box_xywh: Sequence[float], factor: float,
                            out_size: int) -> tuple[np.ndarray, float]:
    """OSTrack's crop: pad the window with ``copyMakeBorder``, resize it, plus its padding mask."""
    x, y, w, h = box_xywh
    side = math.ceil(math.sqrt(w * h) * factor)
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad, y2_pad = max(x2 - image.shape[1] + 1, 0), max(y2 - image.shape[0] + 1, 0)
    crop = image[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad, :]
    padded = cv2.copyMakeBorder(crop, y1_pad, y2_pad, x1_pad, x2_pad, cv2.BORDER_CONSTANT)
    height, width, _ = padded.shape
    mask = np.ones((height, width))
    end_x, end_y = -x2_pad or None, -y2_pad or None
    mask[y1_pad:end_y, x1_pad:end_x] = 0
    resized = cv2.resize(padded, (out_size, out_size))
    cv2.resize(mask, (out_size, out_size)).astype(np.bool_)
    return resized, out_size / side


def _reference_normalise(crop: np.ndarray) -> torch.Tensor:
    tensor = torch.tensor(crop).float().permute((2, 0, 1)).unsqueeze(dim=0)
    mean = torch.tensor(IMAGENET_MEAN).view((1, 3, 1, 1))
    std = torch.tensor(IMAGENET_STD).view((1, 3, 1, 1))
    return ((tensor / 255.0) - mean) / std


@torch.inference_mode()
def reference_forward(model: OneStreamTracker, template: torch.Tensor, search: torch.Tensor,
                      keep_ratio: float | None = None) -> dict[str, torch.Tensor]:
    """The network as the reference code runs it (same weights, same result as ``model.forward``)."""
    keep_ratio = model.ce_keep_ratio if keep_ratio is None else keep_ratio
    backbone = model.backbone
    z = backbone.patch_embed(template).flatten(1, 2) + model.pos_embed_z
    x = backbone.patch_embed(search).flatten(1, 2) + model.pos_embed_x
    B, num_template, C = z.shape
    num_search = x.shape[1]
    tokens = torch.cat([z, x], dim=1)
    centre_mask = torch.zeros(num_template, dtype=torch.bool)
    centre_mask[model.template_centre] = True
    global_index = torch.linspace(0, num_search - 1, num_search).to(torch.int64).repeat(B, 1)
    removed = []
    for i, block in enumerate(backbone.blocks):
        tokens, logits = block(tokens, return_logits=True)
        if i in model.ce_locations and keep_ratio < 1:
            lens_search = tokens.shape[1] - num_template
            keep = math.ceil(keep_ratio * lens_search)
            attn = logits[:, :, :num_template][:, :, centre_mask].softmax(dim=-1)[..., num_template:]
            attn = attn.mean(dim=2).mean(dim=1)
            _, order = torch.sort(attn, dim=1, descending=True)
            top, rest = order[:, :keep], order[:, keep:]
            removed.append(global_index.gather(1, rest))
            global_index = global_index.gather(1, top)
            kept = tokens[:, num_template:].gather(1, top.unsqueeze(-1).expand(B, -1, C))
            tokens = torch.cat([tokens[:, :num_template], kept], dim=1)
    tokens = backbone.norm(tokens)
    search_tokens = tokens[:, num_template:]
    if removed:
        removed_index = torch.cat(removed, dim=1)
        pad = torch.zeros([B, removed_index.shape[1], C], dtype=search_tokens.dtype)
        search_tokens = torch.cat([search_tokens, pad], dim=1)
        index_all = torch.cat([global_index, removed_index], dim=1)
        search_tokens = torch.zeros_like(search_tokens).scatter_(
            dim=1, index=index_all.unsqueeze(-1).expand(B, -1, C), src=search_tokens)
    grid = model.search_grid
    feat = search_tokens.unsqueeze(-1).permute((0, 3, 2, 1)).contiguous().view(-1, C, grid, grid)
    score_map, offset_map, size_map = model.head(feat)
    boxes, peak = decode_boxes(score_map, offset_map, size_map)
    return {"score_map": score_map, "offset_map": offset_map, "size_map": size_map,
            "pred_boxes": boxes, "pred_scores": peak}


class ReferenceStep:
    """One tracking step done the reference way (see the module docstring), for timing."""

    def __init__(self, model: OneStreamTracker, dtype: str = "fp32", template_factor: float = 2.0,
                 search_factor: float = 4.0) -> None:
        self.model = model.eval()
        self.dtype = dtype
        self.template_factor, self.search_factor = template_factor, search_factor
        self.window = hann_window_2d(model.search_grid).view(1, 1, model.search_grid, model.search_grid)

    def initialize(self, image: np.ndarray, box: Sequence[float]) -> None:
        crop, _ = reference_sample_target(image, box, self.template_factor, self.model.template_size)
        self.template = _reference_normalise(crop)
        self.state = [float(v) for v in box]

    def network(self, search: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            return reference_forward(self.model, self.template, search)

    @torch.inference_mode()
    def track(self, image: np.ndarray) -> list[float]:
        H, W, _ = image.shape
        crop, resize_factor = reference_sample_target(image, self.state, self.search_factor,
                                                      self.model.search_size)
        out = self.network(_reference_normalise(crop))
        response = self.window * out["score_map"]
        boxes, _ = decode_boxes(response, out["offset_map"], out["size_map"])
        cx, cy, w, h = (boxes.view(-1, 4).mean(dim=0) * self.model.search_size / resize_factor).tolist()
        half = 0.5 * self.model.search_size / resize_factor
        cx_prev, cy_prev = self.state[0] + 0.5 * self.state[2], self.state[1] + 0.5 * self.state[3]
        x1, y1 = cx + cx_prev - half - 0.5 * w, cy + cy_prev - half - 0.5 * h
        x2, y2 = x1 + w, y1 + h
        x1, x2 = min(max(0, x1), W - 10), max(min(W, x2), 10)
        y1, y2 = min(max(0, y1), H - 10), max(min(H, y2), 10)
        self.state = [x1, y1, max(10, x2 - x1), max(10, y2 - y1)]
        return self.state


# ---------------------------------------------------------------------------- measurements

def demo_frames(count: int, size: tuple[int, int] = (640, 360), seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames and GT boxes (0-based x, y, w, h) of a synthetic sequence for timing."""
    from benchmarks.demo_data.lasot import synthesize_sequence

    sequence = synthesize_sequence(np.random.default_rng(seed), max(count, 2), size)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in sequence.frames[:count]]
    boxes = sequence.gt_boxes[:count].astype(np.float64)
    boxes[:, :2] -= 1.0
    return frames, boxes


def _fps(seconds: Sequence[float]) -> float:
    return float(1.0 / np.median(seconds))


def _time_calls(fn, count: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def tracking_speed(dtype: str = "fp32", frames: int = 100, threads: int = 2,
                   model: OneStreamTracker | None = None, warmup: int = 10, baseline: bool = True,
                   frame_size: tuple[int, int] = (640, 360), compile: bool | str = False,
                   backend: str = "torch", block: int = 10) -> dict[str, Any]:
    """Frames per second (from the median per-frame time) of the full step and the network alone.

    Returns ``full_fps`` (``Tracker.track``: crop, network, decode, map back), ``network_fps``
    (``InferenceNetwork.locate``: from the crop and cached template tokens to the decoded box in
    the crop; the baseline's network stops at the three maps), ``crop_ms``, and with ``baseline``
    the same for ``ReferenceStep`` (``baseline_full_fps``, ``baseline_network_fps``) and the
    ratios ``full_speedup`` / ``network_speedup``. Ours and the baseline alternate in blocks of
    ``block`` frames, so both see the same load from other processes, while within a block each
    runs as it would alone (with caches warm: the median ignores a block's first frame). Random
    weights run as fast as trained ones (the only data-dependent work is which tokens CE keeps).

    ``*_cpu_ms`` are medians of the process CPU time per call (all threads together): on a
    machine shared with other jobs they show the work done, free of the time spent waiting for
    a core; with ``threads=1`` they estimate the wall time on an idle machine.
    ``load_average`` is the 1-minute system load when the run ended.
    """
    from track.processing import crop_and_resize

    torch.set_num_threads(threads)
    model = (model or build_tracker()).eval()
    images, boxes = demo_frames(frames + 1, frame_size)
    tracker = Tracker(model, dtype=dtype, compile=compile, backend=backend)
    reference = ReferenceStep(model, dtype) if baseline else None
    runners = [tracker] + ([reference] if reference else [])
    for runner in runners:  # warm-up (allocator, oneDNN kernels)
        runner.initialize(images[0], boxes[0])
        for image in images[1:1 + warmup]:
            runner.track(image)
        runner.initialize(images[0], boxes[0])
    step_times: list[list[float]] = [[] for _ in runners]
    step_cpu: list[list[float]] = [[] for _ in runners]
    for first in range(1, len(images), block):
        for runner, times, cpu in zip(runners, step_times, step_cpu):
            for image in images[first:first + block]:
                start, start_cpu = time.perf_counter(), time.process_time()
                runner.track(image)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    crop = tracker._search_crop.copy()
    network_calls = [lambda: tracker.network.locate(tracker._template_tokens, crop, tracker.window,
                                                    tracker.ce_keep_ratio)]
    if reference:
        search = _reference_normalise(reference_sample_target(images[1], boxes[1], 4.0, model.search_size)[0])
        network_calls.append(lambda: reference.network(search))
    network_times: list[list[float]] = [[] for _ in network_calls]
    network_cpu: list[list[float]] = [[] for _ in network_calls]
    for _ in range(warmup):
        for call in network_calls:
            call()
    for first in range(0, frames, block):
        for call, times, cpu in zip(network_calls, network_times, network_cpu):
            for _ in range(min(block, frames - first)):
                start, start_cpu = time.perf_counter(), time.process_time()
                call()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    crop_times = _time_calls(lambda: crop_and_resize(images[1], boxes[1], 4.0, model.search_size),
                             frames, warmup)
    def ms(values: Sequence[float]) -> float:
        return 1e3 * float(np.median(values))

    result: dict[str, Any] = {
        "dtype": dtype, "backend": backend, "compile": compile, "threads": threads, "frames": frames, "block": block,
        "frame_size": list(frame_size),
        "full_fps": _fps(step_times[0]), "network_fps": _fps(network_times[0]),
        "full_cpu_ms": ms(step_cpu[0]), "network_cpu_ms": ms(network_cpu[0]), "crop_ms": ms(crop_times),
    }
    if reference:
        result.update({"baseline_full_fps": _fps(step_times[1]), "baseline_network_fps": _fps(network_times[1]),
                       "baseline_full_cpu_ms": ms(step_cpu[1]), "baseline_network_cpu_ms": ms(network_cpu[1])})
        result["full_speedup"] = result["full_fps"] / result["baseline_full_fps"]
        result["network_speedup"] = result["network_fps"] / result["baseline_network_fps"]
        result["full_cpu_speedup"] = result["baseline_full_cpu_ms"] / result["full_cpu_ms"]
        result["network_cpu_speedup"] = result["baseline_network_cpu_ms"] / result["network_cpu_ms"]
    result["load_average"] = os.getloadavg()[0]
    return result


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two (N, 4) x, y, w, h arrays (continuous pixels)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def bf16_agreement(model: OneStreamTracker, sequences: Sequence[tuple], iou_threshold: float = 0.9,
                   compile: bool | str = False, **tracker_kwargs: Any) -> dict[str, Any]:
    """How often bf16 boxes match fp32 boxes (IoU > ``iou_threshold``).

    ``sequences``: (frames, initial box) or (frames, initial box, ground-truth boxes [N, 4]).
    ``per_frame``: both precisions see the same search crop every frame (the bf16 network is run
    from the fp32 tracker's previous box), so a single disagreement is counted once;
    ``free_running``: two independent trackers, where one early divergence counts for every later
    frame. With ground truth, ``per_frame_on_target`` is ``per_frame`` over the frames where the
    fp32 box overlaps the ground truth (IoU > 0.5; ``frames_on_target`` of them): whether bf16
    changes the answer where the tracker is right, apart from frames it has already lost.
    ``compile`` compares the compiled trackers; ``tracker_kwargs`` go to every ``Tracker``.
    """
    fp32, bf16, free = (Tracker(model, dtype=dtype, compile=compile, **tracker_kwargs)
                        for dtype in ("fp32", "bf16", "bf16"))
    same_input, running, on_target = [], [], []
    for frames, init_box, *truth in sequences:
        fp32.initialize(frames[0], init_box)
        bf16.initialize(frames[0], init_box)
        free.initialize(frames[0], init_box)
        for index, frame in enumerate(frames[1:], start=1):
            bf16.state = fp32.state.copy()
            box_bf16, _ = bf16.track(frame)
            box_fp32, _ = fp32.track(frame)
            box_free, _ = free.track(frame)
            same_input.append(box_iou(box_fp32, box_bf16)[0])
            running.append(box_iou(box_fp32, box_free)[0])
            if truth:
                on_target.append(box_iou(box_fp32, truth[0][index])[0] > 0.5)

    def fraction(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    same_input, running = np.array(same_input), np.array(running)
    result = {"frames": int(len(same_input)), "iou_threshold": iou_threshold,
              "per_frame": fraction(same_input > iou_threshold), "free_running": fraction(running > iou_threshold),
              "mean_iou_per_frame": fraction(same_input)}
    if on_target and len(on_target) == len(same_input):
        hit = np.array(on_target)
        result.update(frames_on_target=int(hit.sum()), per_frame_on_target=fraction(same_input[hit] > iou_threshold))
    return result


def lasot_agreement(model: OneStreamTracker, lasot_root: str, split: str = "test", **kwargs: Any) -> dict[str, Any]:
    """``bf16_agreement`` over the ``split`` sequences of a LaSOT-layout root (frames decoded from
    disk, first ground-truth box as the initial box); ``kwargs`` go to ``bf16_agreement``."""
    from track.datasets.lasot import list_sequences, load_sequence, sequence_class

    root = Path(lasot_root)
    sequences = []
    for name in list_sequences(root, split):
        sequence = load_sequence(root / sequence_class(name) / name)
        sequences.append(([sequence.image(i) for i in range(len(sequence))], sequence.gt_boxes[0], sequence.gt_boxes))
    return {"sequences": len(sequences), **bf16_agreement(model, sequences, **kwargs)}


def save_speed_plot(results: Sequence[dict[str, Any]], path: str) -> str:
    """Bars of full-step and network-only speed, ours beside the reference-style baseline:
    wall-clock fps (left) and 1000 / CPU ms (right, robust on a busy machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['dtype']} {r['backend']}" + (f" compiled ({r['compile']})" if r.get("compile") else "")
              for r in results]
    x = np.arange(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 3.2 * len(labels)), 4))
    series = [("baseline_full", "reference-style, full step"), ("full", "ours, full step"),
              ("baseline_network", "reference-style, network"), ("network", "ours, network")]
    for ax, kind in zip(axes, ("fps", "cpu")):
        for offset, (key, name) in zip((-0.3, -0.1, 0.1, 0.3), series):
            if kind == "fps":
                values = [r.get(f"{key}_fps", 0.0) for r in results]
            else:
                values = [1e3 / r[f"{key}_cpu_ms"] if r.get(f"{key}_cpu_ms") else 0.0 for r in results]
            ax.bar(x + offset, values, 0.2, label=name)
        ax.set_xticks(x, labels)
        ax.set_ylabel("frames per second" if kind == "fps" else "frames per CPU second")
        ax.set_title("wall clock" if kind == "fps" else "1000 / CPU ms (all threads)")
    axes[0].legend(fontsize=8)
    if results:
        fig.suptitle(f"CPU tracking speed, {results[0]['threads']} thread(s), "
                     f"load average {results[-1]['load_average']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description="CPU tracking speed (ours vs reference-style, same run)")
    parser.add_argument("--dtype", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None, help="tracker checkpoint (default: random weights)")
    parser.add_argument("--config", default=None, help="tracker config of the checkpoint (default: the base model)")
    parser.add_argument("--agreement", default=None, metavar="LASOT_ROOT",
                        help="also measure bf16-vs-fp32 box agreement on the test sequences of this LaSOT-layout root")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--plot", default=None, help="write a bar chart (PNG) here")
    parser.add_argument("--compile", nargs="*", default=None, choices=COMPILE_MODES, metavar="MODE",
                        help=f"also time the torch.compile'd network in these modes {COMPILE_MODES} "
                             "(no mode: default)")
    parser.add_argument("--onnxruntime", action="store_true", help="also time the onnxruntime backend (fp32)")
    args = parser.parse_args(argv)
    from track.config import load_config, model_from_checkpoint, tracker_kwargs

    cfg = load_config(args.config)
    model, source = model_from_checkpoint(cfg, args.checkpoint)
    print(f"weights: {source}")
    runs = [(dtype, False, "torch") for dtype in args.dtype]
    compile_modes = [] if args.compile is None else (args.compile or ["default"])
    runs += [(dtype, mode, "torch") for mode in compile_modes for dtype in args.dtype]
    runs += [("fp32", False, "onnxruntime")] if args.onnxruntime else []
    results = []
    for dtype, compiled, backend in runs:
        results.append(tracking_speed(dtype, args.frames, args.threads, model, compile=compiled, backend=backend))
        print(json.dumps(results[-1]), flush=True)
    agreement = None
    if args.agreement:
        agreement = lasot_agreement(model, args.agreement, compile=compile_modes[0] if compile_modes else False,
                                    **tracker_kwargs(cfg))
        print(json.dumps({"agreement": agreement}), flush=True)
    if args.json:
        from fileio import atomic_write_json

        atomic_write_json(args.json, {"speed": results, **({"agreement": agreement} if agreement else {})})
    if args.plot:
        print(f"wrote {save_speed_plot(results, args.plot)}")
    return results


if __name__ == "__main__":
    main()
