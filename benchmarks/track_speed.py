"""Tracker speed on every device, runtime, precision and batch, against OSTrack's own network timed in
the same run; LaSOT end to end (decode included); bf16 / int8 vs fp32 box agreement.

Rows:

* ``network``: the per-frame network (``InferenceNetwork.locate``: uint8 crops and cached template
  tokens in, boxes out) at batch 1 and batched, per device, runtime and precision; OSTrack's own
  network (``benchmarks.peers``: their ``VisionTransformerCE`` + ``CenterPredictor``, normalised
  float crops in, maps out) in the same run as the reference. Each row also gives its achieved
  FLOP/s (FLOPs of its network from ``torch.utils.flop_counter``) as a fraction of the matmul peak
  measured in the same run (one large GEMM of that precision on the same threads / GPU): that
  fraction, not the frame rate, says how close a path is to what the machine can do.
* ``full step``: ``Tracker.track`` at batch 1 (crop, network, decode, map back, clip).
* ``end to end``: ``tools/track_test.py`` over generated LaSOT-layout sequences of 1280x720 JPEG
  frames (the real frame size): JPEG decoding, crops and the network, single stream vs
  ``--batch-sequences``, as frames/s and hours for the LaSOT test set (685,360 frames), with
  where the time goes (shares of the tracking loop's wall time, and decoding's share of the
  process's CPU time); ``--e2e-dtype`` runs it in several precisions (int8 on OpenVINO).

* ``int8``: OpenVINO's int8 (``track.quantize``: NNCF post-training quantization, the heads kept
  float) is one more CPU row where openvino and nncf are installed; the matmul peak of int8 is
  ``torch._int_mm`` (oneDNN, AMX-INT8 / VNNI where the CPU has them). ``--agreement`` measures each
  low precision against fp32 on the embedded demo sequences and on the LaSOT roots given (mean
  per-frame IoU, success AUC of both; usable: mean IoU >= 0.95 and AUCs within 0.5 points);
  ``--int8-scopes`` measures which layer groups cost accuracy when quantized.

Runs that alternate are timed in blocks (each runner ``BLOCK`` calls in turn), so that every row
sees the same load from other processes. bf16 rows are measured only where the device runs bf16
natively (a CPU with AMX or AVX512-BF16, a GPU with bf16 units): elsewhere they would time an emulation.

    python -m benchmarks.track_speed --threads 2 --json speed.json --markdown speed.md --plot speed.png
    python -m benchmarks.track_speed --device cuda --batch 1 8 32 128 --end-to-end --e2e-batch 64
    python -m benchmarks.track_speed --config CONFIG --checkpoint CKPT --agreement LASOT_ROOT
    python -m benchmarks.track_speed --config CONFIG --checkpoint CKPT --dtype int8 --agreement [LASOT_ROOT]
    python -m benchmarks.track_speed --config CONFIG --checkpoint CKPT --int8-scopes

On a machine shared with other jobs, run it with ``OMP_WAIT_POLICY=PASSIVE`` and read the
``cpu_ms`` fields beside the wall-clock ones.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from evaluation.boxes import box_iou
from track.model import OneStreamTracker, build_tracker
from engine import PRECISIONS, autocast, bf16_unsupported_reason, resolve_device, torch_dtype
from engine.precision import DTYPES, QUANTIZED, cpu_int8_native
from track.runtime import ieee_fp32, resolve_dtype
from track.tracker import COMPILE_MODES, InferenceNetwork, Tracker

__all__ = ["LASOT_TEST_FRAMES", "PUBLISHED", "agreement_from_boxes", "agreement_line", "bf16_agreement",
           "default_runs", "demo_frames", "e2e_table", "end_to_end", "int8_calibration_folder", "lasot_agreement",
           "make_e2e_dataset", "matmul_peak", "network_flops", "report_section", "save_speed_plot", "speed_rows",
           "speed_table", "synchronize"]

REPO = Path(__file__).resolve().parents[1]
LASOT_TEST_FRAMES = 685_360
# Timing: runners alternate in blocks of BLOCK calls after WARMUP untimed calls each; the full-step rows
# track synthetic frames of FRAME_SIZE (W, H: the real LaSOT frame size).
BLOCK, WARMUP, FRAME_SIZE = 6, 3, (1280, 720)
E2E_PARAMS = "e2e_dataset.json"  # what make_e2e_dataset generated: {sequences, frames, size}
# Figures from elsewhere, shown beside ours when OSTrack's code is not there to be timed.
PUBLISHED = [
    ("OSTrack ViT-Tiny CE network, OSTrack's code, H100, batch 1", "115 fps fp32 / 129 fps fp16"),
    ("OSTrack ViT-Tiny CE network, OSTrack's code, H100, batch 32", "4,100 / 3,877 frames/s fp32 / fp16"),
    ("OSTrack ViT-Tiny CE network, OSTrack's code, 2-thread AMD EPYC (AVX2), batch 1 / 8", "12.4 fps / 18.0 frames/s"),
    ("MAE-Lite ViT-Tiny OSTrack-CE (paper)", "41 fps (unit and CPU not stated)"),
    ("OSTrack-256 ViT-B (paper)", "~11 fps CPU"),
]


# ---------------------------------------------------------------------------- helpers

def demo_frames(count: int, size: tuple[int, int] = (640, 360), seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames and GT boxes (0-based x, y, w, h) of a synthetic sequence for timing."""
    import cv2

    from benchmarks.demo_data.lasot import synthesize_sequence

    sequence = synthesize_sequence(np.random.default_rng(seed), max(count, 2), size)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in sequence.frames[:count]]
    boxes = sequence.gt_boxes[:count].astype(np.float64)
    boxes[:, :2] -= 1.0
    return frames, boxes


def synchronize(device: str | torch.device) -> None:
    """Wait for ``device``'s queued work (a GPU's kernels run asynchronously); nothing on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: str, size: int | None = None, repeats: int = 5) -> dict[str, float]:
    """The practical matmul peak the tracker's paths are compared with: one large square GEMM in
    ``dtype`` on ``device`` (CPU: torch's threads), best of ``repeats`` timed products.

    Returns ``{"flops": FLOP per wall second, "cpu_flops": FLOP per process-CPU second}`` (the
    second, CPU only, does not depend on other processes taking cores away).
    """
    size = size or (8192 if device.type == "cuda" else 1536)
    generator = torch.Generator(device=device).manual_seed(0)
    if dtype == "int8":  # int8 x int8 -> int32 (oneDNN: AMX-INT8 / VNNI where the CPU has them)
        a, b = (torch.randint(-128, 128, (size, size), device=device, generator=generator, dtype=torch.int8)
                for _ in range(2))
        product = torch._int_mm
    else:
        a, b = (torch.randn(size, size, device=device, generator=generator).to(torch_dtype(dtype)) for _ in range(2))
        product = torch.mm
    with ieee_fp32(device.type == "cuda"):  # fp32 means fp32 (no TF32), as the tracker's fp32 path runs
        best, best_cpu = float("inf"), float("inf")
        for index in range(repeats + 1):
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            product(a, b)
            synchronize(device)
            if index:  # the first product warms up
                best = min(best, time.perf_counter() - start)
                best_cpu = min(best_cpu, time.process_time() - start_cpu)
    flops = 2.0 * size ** 3
    return {"flops": flops / best, "cpu_flops": flops / best_cpu if device.type == "cpu" else float("nan")}


def network_flops(model: OneStreamTracker, ostrack: Any = None) -> dict[str, int]:
    """FLOPs per frame (batch 1) of our per-frame step and, with ``ostrack`` = (net, mask), of
    OSTrack's network, from ``torch.utils.flop_counter`` (fused attention counted on CPU too)."""
    from benchmarks.seg_speed import count_flops

    network = InferenceNetwork(model, device="cpu")
    tokens = network.template_tokens(np.zeros((model.template_size, model.template_size, 3), np.uint8))
    search = torch.zeros(1, model.search_size, model.search_size, 3, dtype=torch.uint8)
    result = {"ours": count_flops(lambda: network.step(tokens, search))[0]}
    if ostrack is not None:
        net, mask = ostrack
        z = torch.zeros(1, 3, model.template_size, model.template_size)
        x = torch.zeros(1, 3, model.search_size, model.search_size)
        result["ostrack"] = count_flops(lambda: net.cpu()(template=z, search=x, ce_template_mask=mask.cpu()))[0]
    return result


def _interleaved(calls: dict[str, Callable[[], Any]], count: int, warmup: int, block: int
                 ) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and process-CPU seconds of ``count`` calls of each runner, the runners taking turns in
    blocks of ``block`` calls (the first call of a block is not kept: caches warm)."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in calls}
    rounds = math.ceil(count / max(1, block - 1))
    for _ in range(rounds):
        for name, call in calls.items():
            for index in range(block):
                start, start_cpu = time.perf_counter(), time.process_time()
                call()
                if index:
                    times[name][0].append(time.perf_counter() - start)
                    times[name][1].append(time.process_time() - start_cpu)
    return times


def _ostrack(device: torch.device) -> tuple[Any, Any] | None:
    from benchmarks.peers import load_peers

    peers = load_peers()
    if peers is None:
        return None
    net, mask = peers.ostrack_vit_tiny_ce()
    return net.to(device).eval(), mask.to(device)


# ---------------------------------------------------------------------------- rows

def default_runs(where: torch.device) -> tuple[list[tuple[str, str]], list[str]]:
    """(backend, dtype) pairs ``speed_rows`` times on ``where`` by default, and why any were left out:
    CUDA torch fp32 and fp16, CPU torch / ONNX Runtime / OpenVINO fp32; bf16 (CUDA torch, CPU torch and
    OpenVINO) only where ``bf16_unsupported_reason`` says the device runs it natively."""
    bf16_emulated = bf16_unsupported_reason(where)
    if where.type == "cuda":
        runs, bf16 = [("torch", "fp32"), ("torch", "fp16")], [("torch", "bf16")]
    else:
        runs, bf16 = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32")], \
            [("torch", "bf16"), ("openvino", "bf16")]
    import importlib.util

    skipped = []
    if where.type == "cpu":
        if all(importlib.util.find_spec(p) is not None for p in ("openvino", "nncf")):
            runs.append(("openvino", "int8"))
            if not cpu_int8_native():
                skipped.append("int8 runs without VNNI / AMX-INT8 on this CPU (no 8-bit dot products): "
                               "its rows time the fallback")
        else:
            skipped.append("openvino int8 rows: needs openvino and nncf (pip install openvino nncf)")
    if bf16_emulated is None:
        return runs + bf16, skipped
    return runs, [f"bf16 rows: {bf16_emulated}", *skipped]


def speed_rows(model: OneStreamTracker, device: str = "cpu", runs: Sequence[tuple[str, str]] | None = None,
               batches: Sequence[int] = (1, 8), frames: int = 30, full_step: bool = True,
               compile: Sequence[str] = (), calibration: str | Path | None = None) -> dict[str, Any]:
    """Network rows (per runtime, precision and batch), full-step rows (batch 1) and the matching
    OSTrack rows on ``device``, with FLOP/s as a fraction of the measured matmul peak.

    ``runs``: (backend, dtype) pairs (default: ``default_runs``, everything this device runs
    natively). ``compile``: CPU ``torch.compile`` modes to add (tens of seconds each). ``calibration``: the
    int8 rows' calibration folder (default: ``int8_calibration_folder``). On CUDA every
    torch run is timed with CUDA graphs and eagerly. Returns ``{"rows": [...], "peaks":
    {dtype: FLOP/s}, "flops": {...}, "skipped": [reasons]}``.
    """
    where = resolve_device(device)
    native_bf16 = bf16_unsupported_reason(where) is None
    skipped: list[str] = []
    if runs is None:
        runs, skipped = default_runs(where)
    import importlib.util

    available = [(b, d) for b, d in runs if b == "torch" or importlib.util.find_spec(b) is not None]
    skipped += [f"{b} {d}: {b} is not installed" for b, d in runs if (b, d) not in available]
    precisions = sorted({d for _, d in available} | {"fp32"})
    low = "fp16" if where.type == "cuda" else ("bf16" if native_bf16 else None)
    shape = (model.backbone.embed_dim, len(model.backbone.blocks), model.template_size, model.search_size)
    ostrack = _ostrack(where) if shape == (192, 12, 128, 256) else None
    if ostrack is None:
        from benchmarks.peers import unavailable_reason

        reason = unavailable_reason() or (f"it is built as ViT-Tiny (12 blocks, 192-d) with 128 / 256 px crops, "
                                          f"this model has {shape[1]} blocks of {shape[0]}-d, {shape[2]} / {shape[3]} px")
        skipped.append(f"OSTrack's network: {reason} (published figures instead)")
    flops = network_flops(model, None if ostrack is None else (ostrack[0], ostrack[1]))
    if ostrack is not None:
        ostrack = (ostrack[0].to(where), ostrack[1].to(where))
    first_peaks = {d: matmul_peak(where, d) for d in precisions}
    rng = np.random.default_rng(0)
    template = rng.integers(0, 256, (model.template_size, model.template_size, 3), dtype=np.uint8)
    crops = rng.integers(0, 256, (max(batches), model.search_size, model.search_size, 3), dtype=np.uint8)

    variants = [(b, d, False, True) for b, d in available]
    variants += [("torch", d, mode, True) for mode in compile for d in precisions
                 if where.type == "cpu" and ("torch", d) in available]
    if where.type == "cuda":
        variants += [("torch", d, False, False) for d in precisions if ("torch", d) in available]
    rows, calls, meta = [], {}, {}
    for backend, dtype, compiled, graph in variants:
        network = InferenceNetwork(model, dtype, compiled, backend, device=where, cuda_graph=graph,
                                   **_calibration(dtype, calibration))
        network.max_batch = max(batches)
        tokens = network.template_tokens(template)
        for batch in batches:
            name = f"ours {backend} {dtype}" + (f" compiled ({compiled})" if compiled else "") + \
                   ("" if graph or where.type != "cuda" else " eager") + f" batch {batch}"
            batch_tokens, batch_crops = tokens.expand(batch, -1, -1), crops[:batch]
            calls[name] = lambda n=network, t=batch_tokens, c=batch_crops: n.locate(t, c)
            meta[name] = {"path": "ours", "backend": backend, "dtype": dtype, "compile": compiled or None,
                          "cuda_graph": graph if where.type == "cuda" else None, "batch": batch,
                          "flops": flops["ours"]}
    if ostrack is not None:
        net, mask = ostrack
        for dtype in ["fp32"] + ([low] if low in precisions else []):
            for batch in batches:
                z = torch.randn(batch, 3, model.template_size, model.template_size, device=where)
                x = torch.randn(batch, 3, model.search_size, model.search_size, device=where)
                m = mask.expand(batch, -1)

                def run(z=z, x=x, m=m, dtype=dtype) -> None:
                    with torch.inference_mode(), autocast(where.type, PRECISIONS[dtype]):
                        net(template=z, search=x, ce_template_mask=m)
                    synchronize(where)

                name = f"OSTrack {dtype} batch {batch}"
                calls[name] = run
                meta[name] = {"path": "ostrack", "backend": "torch", "dtype": dtype, "compile": None,
                              "cuda_graph": False if where.type == "cuda" else None, "batch": batch,
                              "flops": flops["ostrack"]}
    if full_step:  # timed in the batch-1 group, beside the network rows they are compared with
        step_calls, step_meta = _full_step_calls(model, where, variants, frames, flops["ours"], calibration)
        calls, meta = {**calls, **step_calls}, {**meta, **step_meta}
    timed = {}
    for batch in sorted({m["batch"] for m in meta.values()}):  # runners of one batch size take turns;
        group = {name: call for name, call in calls.items() if meta[name]["batch"] == batch}  # b frames count b times
        timed.update(_interleaved(group, max(4, math.ceil(frames / batch)), WARMUP, BLOCK))
    peaks = _best_peaks(first_peaks, {d: matmul_peak(where, d) for d in precisions})
    for name, (wall, cpu) in timed.items():
        info = dict(meta[name])
        rows.append(_row(info.pop("kind", "network"), name, where, info, wall, cpu, peaks))
    _add_ratios(rows)
    return {"device": str(where), "threads": torch.get_num_threads(), "peaks": {d: p["flops"] for d, p in peaks.items()},
            "cpu_peaks": {d: p["cpu_flops"] for d, p in peaks.items()}, "flops": flops, "rows": rows,
            "skipped": skipped}


def _best_peaks(*measurements: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The higher of the peaks measured before and after the rows (another process may have slowed one)."""
    return {d: {k: max(m[d][k] for m in measurements) for k in measurements[0][d]} for d in measurements[0]}


def _row(kind: str, name: str, where: torch.device, info: dict, wall: list[float], cpu: list[float],
         peaks: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One timed row: frames/s, achieved FLOP/s and its fraction of the matmul peak (wall clock and,
    on a CPU, per process-CPU second)."""
    seconds, cpu_seconds = float(np.median(wall)), float(np.median(cpu))
    fps = info["batch"] / seconds
    peak = peaks.get(info["dtype"], {})
    row = {"kind": kind, "name": name, "device": str(where), **info,
           ("full_fps" if kind == "full step" else "network_fps"): fps,
           "ms_per_call": 1e3 * seconds, "cpu_ms_per_call": 1e3 * cpu_seconds,
           "achieved_flops": info["flops"] * fps, "peak_flops": peak.get("flops"),
           "peak_fraction": info["flops"] * fps / peak["flops"] if peak else None}
    if where.type == "cpu" and peak and cpu_seconds > 0:
        row["peak_fraction_cpu_time"] = info["flops"] * info["batch"] / cpu_seconds / peak["cpu_flops"]
    return row


def _full_step_calls(model: OneStreamTracker, where: torch.device, variants: list, frames: int,
                     flops: int, calibration: str | Path | None = None
                     ) -> tuple[dict[str, Callable[[], None]], dict[str, dict]]:
    """``Tracker.track`` per frame (batch 1) for every variant, over the same synthetic frames:
    the calls to time and their row metadata."""
    images, boxes = demo_frames(frames + WARMUP + 1, FRAME_SIZE)
    calls, meta = {}, {}
    for backend, dtype, compiled, graph in variants:
        tracker = Tracker(model, dtype=dtype, compile=compiled, backend=backend, device=where, cuda_graph=graph,
                          **_calibration(dtype, calibration))
        tracker.initialize(images[0], boxes[0])
        position = [1]

        def step(tracker=tracker, position=position) -> None:
            if position[0] == len(images):
                tracker.initialize(images[0], boxes[0])
                position[0] = 1
            tracker.track(images[position[0]])
            position[0] += 1

        name = f"ours {backend} {dtype}" + (f" compiled ({compiled})" if compiled else "") + \
               ("" if graph or where.type != "cuda" else " eager") + " full step"
        calls[name] = step
        meta[name] = {"kind": "full step", "path": "ours", "backend": backend, "dtype": dtype,
                      "compile": compiled or None, "cuda_graph": graph if where.type == "cuda" else None, "batch": 1,
                      "flops": flops}
    return calls, meta


def _add_ratios(rows: list[dict]) -> None:
    """``vs_ostrack``: frames/s over OSTrack's batch-1 network of the same precision (fp32 when that
    precision was not timed for OSTrack); ``ostrack_reference`` names the row used. ``vs_ostrack_best``:
    over OSTrack's fastest batch-1 row (its best precision on this device, the issue's targets)."""
    reference = {r["dtype"]: r for r in rows if r["path"] == "ostrack" and r["batch"] == 1}
    best = max(reference.values(), key=lambda r: r["network_fps"], default=None)
    for row in rows:
        if row["path"] != "ours" or not reference:
            continue
        ref = reference.get(row["dtype"]) or reference.get("fp32")
        fps = row.get("full_fps") or row.get("network_fps")
        row["vs_ostrack"] = fps / ref["network_fps"]
        row["ostrack_reference"] = ref["name"]
        row["vs_ostrack_best"] = fps / best["network_fps"]
        row["ostrack_best"] = best["name"]


# ---------------------------------------------------------------------------- end to end

def _make_class(args: tuple) -> list[str]:
    from benchmarks.demo_data.lasot import make_lasot_dataset

    root, class_name, per_class, num_frames, size = args
    return make_lasot_dataset(root, classes=(class_name,), seqs_per_class=per_class, num_frames=num_frames,
                              size=size, test_per_class=per_class, write_training_set=False)


def make_e2e_dataset(root: Path, sequences: int, frames: int, size: tuple[int, int] = (1280, 720),
                     workers: int | None = None) -> list[str]:
    """A generated LaSOT-layout test set of ``sequences`` sequences of ``frames`` JPEG frames (W, H =
    ``size``), written by parallel processes (one class of 4 sequences each). Reused when present
    and generated with the same parameters (recorded in ``E2E_PARAMS`` beside ``testing_set.txt``);
    replaced otherwise."""
    import shutil

    from fileio import atomic_write_json, atomic_write_text
    from track.datasets.lasot import list_sequences, sequence_class

    root = Path(root)
    marker, record = root / "testing_set.txt", root / E2E_PARAMS
    params = {"sequences": sequences, "frames": frames, "size": list(size)}
    if marker.is_file() and record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except ValueError:
            recorded = None
        names = list_sequences(root, "test")
        if recorded == params and len(names) == sequences:
            return names
    if marker.is_file():  # another set: remove its classes (the folders this function writes) first
        record.unlink(missing_ok=True)
        for name in list_sequences(root, "test"):
            old_class = root / sequence_class(name)
            if old_class.name.startswith("clip") and old_class.is_dir():
                shutil.rmtree(old_class)
        marker.unlink()
    classes = [f"clip{i:02d}" for i in range(math.ceil(sequences / 4))]
    jobs = [(str(root), c, min(4, sequences - 4 * i), frames, tuple(size)) for i, c in enumerate(classes)]
    workers = workers or max(1, min(len(jobs), (os.cpu_count() or 1)))
    if workers == 1:
        names = [n for job in jobs for n in _make_class(job)]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            names = [n for part in pool.map(_make_class, jobs) for n in part]
    atomic_write_text(marker, "".join(f"{n}\n" for n in names))
    atomic_write_json(record, params)  # last: a set cut short is not taken for a finished one
    return names


def end_to_end(data_root: Path, batches: Sequence[int] = (1, 4), device: str = "cpu", threads: int | None = None,
               decode_threads: int | None = None, config: str | None = None, checkpoint: str = "none",
               work_dir: Path | None = None, dtypes: Sequence[str] = ("auto",)) -> list[dict]:
    """``tools/track_test.py`` (``--backend auto``: the tool's choice for ``device``; each of ``dtypes``,
    ``auto`` the tool's choice too, int8 on OpenVINO) over ``data_root`` once per precision and
    ``--batch-sequences`` value (fresh result folders, one process each);
    frames/s of the tracking loop, hours for the LaSOT test set and where the time goes (decode
    summed over its threads, the loop's wait for frames, crop, network, first frames)."""
    config = config or str(REPO / "configs" / "track" / "_base_" / "model.py")
    rows = []
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        for dtype, batch in [(d, b) for d in dtypes for b in batches]:
            out, stats_path = Path(scratch) / f"{dtype}_batch{batch}", Path(scratch) / f"{dtype}_batch{batch}.json"
            command = [sys.executable, str(REPO / "tools" / "track_test.py"), config, checkpoint,
                       "--lasot-root", str(data_root), "--out", str(out), "--device", device, "--dtype", dtype,
                       "--backend", QUANTIZED.get(dtype, "auto"), "--batch-sequences", str(batch),
                       "--stats-json", str(stats_path)]
            if threads:
                command += ["--threads", str(threads)]
            if decode_threads:
                command += ["--decode-threads", str(decode_threads)]
            path = os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": path})
            if done.returncode:
                raise RuntimeError(f"track_test.py failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            stats = json.loads(stats_path.read_text())
            wall = stats["wall"]
            busy = stats["decode_wait"] + stats["crop"] + stats["network"] + stats["initialize"]
            rows.append({"kind": "end to end", "batch_sequences": batch, "device": stats["device"],
                         "dtype": stats["dtype"], "backend": stats["backend"], "frames": stats["frames"],
                         "sequences": stats["sequences"], "fps": stats["fps"],
                         "lasot_hours": LASOT_TEST_FRAMES / stats["fps"] / 3600.0,
                         "wall": wall, "command_wall": stats["command_wall"],
                         "share": {"decode_wait": stats["decode_wait"] / wall, "crop": stats["crop"] / wall,
                                   "network": stats["network"] / wall, "initialize": stats["initialize"] / wall,
                                   "other": max(0.0, wall - busy) / wall},
                         "decode_thread_seconds_per_frame": stats["decode"] / max(1, stats["frames"]),
                         "cpu_seconds_per_frame": stats["cpu"] / max(1, stats["frames"]),
                         "decode_cpu_share": stats["decode_cpu"] / stats["cpu"] if stats["cpu"] > 0
                         else float("nan")})
    for dtype in dtypes:
        runs = rows[len(batches) * list(dtypes).index(dtype):][:len(batches)]
        if runs and runs[0]["batch_sequences"] == 1:
            for row in runs[1:]:
                row["vs_single_stream"] = row["fps"] / runs[0]["fps"]
    return rows


# ---------------------------------------------------------------------------- agreement

USABLE_MEAN_IOU, USABLE_AUC_POINTS = 0.95, 0.5   # a low precision is usable above / within these


def agreement_from_boxes(fp32: np.ndarray, same_input: np.ndarray, free_running: np.ndarray,
                         truth: np.ndarray | None = None, iou_threshold: float = 0.9) -> dict[str, Any]:
    """Agreement of low-precision boxes with fp32 boxes, all (N, 4) x, y, w, h over the same frames.

    ``per_frame``: fraction of frames where the low-precision box from the fp32 tracker's search
    region (``same_input``) overlaps the fp32 box with IoU > ``iou_threshold``; ``free_running``:
    the same for an independent low-precision tracker. With ``truth``, ``per_frame_on_target`` is
    ``per_frame`` over the frames where the fp32 box is on target (IoU with the truth > 0.5), and
    ``auc_fp32`` / ``auc_free_running``: the success AUC (percent, LaSOT's 21 thresholds) of the fp32
    and the free-running boxes against the truth; ``usable``: mean per-frame IoU >= 0.95 and the AUCs
    within 0.5 points. Empty input gives NaN fractions.
    """
    fp32, same_input, free_running = (np.asarray(b, np.float64).reshape(-1, 4) for b in (fp32, same_input, free_running))
    if not len(fp32) == len(same_input) == len(free_running):
        raise ValueError(f"box arrays differ in length: {len(fp32)}, {len(same_input)}, {len(free_running)}")
    same, running = box_iou(fp32, same_input), box_iou(fp32, free_running)

    def fraction(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    result = {"frames": int(len(fp32)), "iou_threshold": iou_threshold, "per_frame": fraction(same > iou_threshold),
              "free_running": fraction(running > iou_threshold), "mean_iou_per_frame": fraction(same)}
    if truth is not None:
        hit = box_iou(fp32, np.asarray(truth, np.float64).reshape(-1, 4)) > 0.5
        result.update(frames_on_target=int(hit.sum()), per_frame_on_target=fraction(same[hit] > iou_threshold))
        if len(fp32):
            from evaluation.lasot import success_auc, success_curve

            truth = np.asarray(truth, np.float64).reshape(-1, 4)
            auc = {name: success_auc(success_curve(box_iou(boxes, truth)))
                   for name, boxes in (("fp32", fp32), ("free_running", free_running))}
            result.update(auc_fp32=auc["fp32"], auc_free_running=auc["free_running"],
                          auc_diff_points=auc["free_running"] - auc["fp32"])
            result["usable"] = bool(result["mean_iou_per_frame"] >= USABLE_MEAN_IOU
                                    and abs(result["auc_diff_points"]) <= USABLE_AUC_POINTS)
    return result


def bf16_agreement(model: OneStreamTracker, sequences: Sequence[tuple], iou_threshold: float = 0.9,
                   compile: bool | str = False, dtype: str = "bf16", backend: str = "torch",
                   device: str = "cpu", **tracker_kwargs: Any) -> dict[str, Any]:
    """How often ``dtype`` boxes (on ``backend``) match torch fp32 boxes (``agreement_from_boxes``).

    ``sequences``: (frames, initial box) or (frames, initial box, ground-truth boxes [N, 4]).
    The same-input tracker is run from the fp32 tracker's previous box every frame, so a single
    disagreement is counted once; the free-running one keeps its own boxes.
    """
    reference = Tracker(model, dtype="fp32", device=device, **tracker_kwargs)
    same, free = (Tracker(model, dtype=dtype, compile=compile, backend=backend, device=device, **tracker_kwargs)
                  for _ in range(2))
    boxes: dict[str, list] = {"fp32": [], "same": [], "free": [], "truth": []}
    with_truth = all(len(s) > 2 for s in sequences)
    for frames, init_box, *truth in sequences:
        for tracker in (reference, same, free):
            tracker.initialize(frames[0], init_box)
        for index, frame in enumerate(frames[1:], start=1):
            same.state = reference.state.copy()
            boxes["same"].append(same.track(frame)[0])
            boxes["fp32"].append(reference.track(frame)[0])
            boxes["free"].append(free.track(frame)[0])
            if with_truth:
                boxes["truth"].append(truth[0][index])
    return {"dtype": dtype, "backend": backend,
            **agreement_from_boxes(boxes["fp32"], boxes["same"], boxes["free"],
                                   boxes["truth"] if with_truth else None, iou_threshold)}


def int8_scope_study(model: OneStreamTracker, sequences: Sequence[tuple], keeps: Sequence[Sequence[str]],
                     calibration: str | None = None, window: bool = True,
                     ce_keep_ratio: float | None = None) -> list[dict[str, Any]]:
    """Which layers cost accuracy in int8: the exported step quantized once per ``keeps`` entry (groups
    of ``track.quantize.KEEP_FLOAT`` left in floating point), each compared with OpenVINO fp32 on
    the same search crops (cut around the previous ground-truth box of every frame of ``sequences``):
    mean and worst box IoU, mean absolute peak error, and the share of int8 ops left."""
    from track.onnx_export import export_module_bytes
    from track.processing import crop_and_resize
    from track.quantize import calibration_set, quantize
    from track.runtime import OpenVinoStep

    reference = InferenceNetwork(model, "fp32", backend="openvino", window=window, ce_keep_ratio=ce_keep_ratio)
    size_z, size_x = model.template_size, model.search_size
    with torch.no_grad():
        graph = export_module_bytes(reference.step, reference._example(), ["template_tokens", "search"], ["packed"],
                                    dynamic_batch=True)
    pairs = calibration_set(calibration, size_z, size_x)
    samples = [{"template_tokens": reference.template_tokens(t).numpy(), "search": x[None]}
               for t, x in zip(pairs.templates, pairs.searches)]
    inputs = []
    for frames, first, truth in sequences:
        tokens = reference.template_tokens(crop_and_resize(frames[0], first, 2.0, size_z).image).numpy()
        shown = [i for i in range(1, len(frames)) if truth[i - 1][2] > 0 and truth[i - 1][3] > 0]
        crops = np.stack([crop_and_resize(frames[i], truth[i - 1], 4.0, size_x).image for i in shown])
        inputs.append((np.repeat(tokens, len(crops), 0), crops))
    expected = [reference.runtime(t, c)[0] for t, c in inputs]
    rows = []
    for keep in keeps:
        quantized = quantize(graph, samples, keep)
        fake = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops())
        step = OpenVinoStep(quantized, ["template_tokens", "search"], "int8")
        got = [step(t, c)[0] for t, c in inputs]
        cxcywh = lambda b: np.concatenate([b[:, :2] - b[:, 2:4] / 2, b[:, 2:4]], axis=1)  # noqa: E731
        iou = np.concatenate([box_iou(cxcywh(e[:, :4]), cxcywh(g[:, :4])) for e, g in zip(expected, got)])
        peak = np.concatenate([np.abs(e[:, 4] - g[:, 4]) for e, g in zip(expected, got)])
        rows.append({"keep_float": list(keep), "fake_quantize_ops": fake, "crops": len(iou),
                     "mean_iou": float(iou.mean()), "min_iou": float(iou.min()),
                     "iou_below_0.9": float((iou < 0.9).mean()), "peak_abs_error": float(peak.mean())})
    return rows


def demo_calibration(root: Path | None = None) -> Path:
    """A LaSOT-layout folder of generated sequences (other seeds than :func:`demo_sequences`) for int8
    calibration when none is given; written once under ``root`` (default: ``$LITEVIT_CACHE/int8_calibration_demo``,
    so the quantized model's cache key stays the same from run to run)."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    cache = Path(os.environ.get("LITEVIT_CACHE") or Path.home() / ".cache" / "litevit")
    root = Path(root or cache / "int8_calibration_demo")
    if not (root / "testing_set.txt").is_file():
        make_lasot_dataset(root, ("car", "dog"), seqs_per_class=2, num_frames=24, size=(320, 240), seed=1000,
                           test_per_class=2, write_training_set=False)
    return root


def int8_calibration_folder(folder: str | Path | None = None) -> str:
    """The folder int8 calibrates on: ``folder``, else ``LITEVIT_INT8_CALIBRATION``, else the generated
    demo sequences (:func:`demo_calibration`); the tools' ``--int8-calibration`` default."""
    return str(folder or os.environ.get("LITEVIT_INT8_CALIBRATION") or demo_calibration())


def _calibration(dtype: str, folder: str | Path | None = None) -> dict[str, Any]:
    """The calibration argument a quantized precision needs (``folder``, else ``int8_calibration_folder``'s)."""
    return {"calibration": int8_calibration_folder(folder)} if dtype in QUANTIZED else {}


def demo_sequences(count: int = 4, frames: int = 40, size: tuple[int, int] = (320, 240)) -> list[tuple]:
    """The embedded demo sequences (``benchmarks.demo_data.lasot``, seeds 0..count-1, none of those
    :mod:`track.quantize` calibrates on) as (RGB frames, first box, ground-truth boxes)."""
    import cv2

    from benchmarks.demo_data.lasot import PATTERNS, SHAPES, synthesize_sequence

    sequences = []
    for seed in range(count):
        demo = synthesize_sequence(np.random.default_rng(seed), frames, size, SHAPES[seed % len(SHAPES)],
                                   PATTERNS[(seed + 1) % len(PATTERNS)])
        boxes = demo.gt_boxes.astype(np.float64)
        sequences.append(([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in demo.frames], boxes[0], boxes))
    return sequences


def lasot_agreement(model: OneStreamTracker, lasot_root: str, split: str = "test", demo_count: int = 4,
                    **kwargs: Any) -> dict[str, Any]:
    """``bf16_agreement`` over the ``split`` sequences of a LaSOT-layout root (frames decoded from
    disk, first ground-truth box as the initial box), or over :func:`demo_sequences` when
    ``lasot_root`` is ``"demo"`` (``demo_count`` of them); ``kwargs`` go to ``bf16_agreement``."""
    from track.datasets.lasot import list_sequences, load_sequence, sequence_class

    if lasot_root == "demo":
        sequences = demo_sequences(demo_count)
        return {"sequences": len(sequences), "source": "embedded demo sequences",
                **bf16_agreement(model, sequences, **kwargs)}
    root = Path(lasot_root)
    sequences = []
    for name in list_sequences(root, split):
        sequence = load_sequence(root / sequence_class(name) / name)
        sequences.append(([sequence.image(i) for i in range(len(sequence))], sequence.gt_boxes[0], sequence.gt_boxes))
    return {"sequences": len(sequences), **bf16_agreement(model, sequences, **kwargs)}


def int8_verdict(model: OneStreamTracker, speed: dict[str, Any], agreements: Sequence[dict]) -> dict[str, Any] | None:
    """Record for ``--dtype auto`` (:func:`track.quantize.record_verdict`) whether int8 kept the boxes in
    every int8 agreement and beat every floating-point step timed in ``speed`` (full step at batch 1, else
    the batch-1 network rows); None, with a line saying why, when the run lacks the rows to decide."""
    from track.quantize import record_verdict, weights_digest

    kind = "full step" if any(r["kind"] == "full step" for r in speed["rows"]) else "network"
    rows = [r for r in speed["rows"] if r["path"] == "ours" and r["kind"] == kind and r["batch"] == 1]
    fps = {f"{r['backend']} {r['dtype']}" + (f" compiled ({r['compile']})" if r["compile"] else ""):
           r["full_fps" if kind == "full step" else "network_fps"] for r in rows}
    int8 = fps.pop("openvino int8", None)
    agreements = [a for a in agreements if a.get("dtype") == "int8"]
    if int8 is None or not fps or not agreements:
        print("int8 verdict not recorded: needs the int8 and a floating-point batch-1 row and an int8 agreement")
        return None
    return {"kind": kind, **record_verdict(weights_digest(model), agreements, int8, fps)}


def verdict_line(verdict: dict[str, Any]) -> str:
    return (f"int8 verdict for --dtype auto ({verdict['kind']}, this CPU, {verdict['cpu']['threads']} threads): "
            f"{'usable' if verdict['usable'] else 'NOT usable'} (mean IoU {verdict['mean_iou_per_frame']:.3f}, "
            f"AUC {verdict['auc_diff_points']:+.2f} points), {verdict['int8_fps']:.1f} frames/s against "
            f"{verdict['best_float']} {verdict['best_float_fps']:.1f}: auto "
            + ("runs int8" if verdict["usable"] and verdict["faster"] else "keeps floating point"))


# ---------------------------------------------------------------------------- output

def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def speed_table(speed: dict[str, Any]) -> str:
    """The network and full-step rows of ``speed_rows`` as a Markdown table, with the run's peaks."""
    peaks = ", ".join(f"{d} {p / 1e9:,.0f} GFLOP/s" for d, p in speed["peaks"].items())
    flops = ", ".join(f"{k} {v / 1e9:.2f} GFLOP" for k, v in speed["flops"].items())
    lines = [f"Device {speed['device']}, {speed['threads']} threads; matmul peak measured in this run: {peaks}; "
             f"FLOPs per frame: {flops}.", "",
             "| path | runtime | precision | batch | frames/s | ms per call | of matmul peak | "
             "of peak, CPU time | x OSTrack b1 | x OSTrack b1 best |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in speed["rows"]:
        runtime = r["backend"] + (f", compiled ({r['compile']})" if r.get("compile") else "")
        if r.get("cuda_graph") is not None:
            runtime += ", CUDA graph" if r["cuda_graph"] else ", eager"
        what = ("OSTrack's network" if r["path"] == "ostrack" else "ours, network") if r["kind"] == "network" \
            else "ours, full step"
        fps = r.get("full_fps") or r.get("network_fps")
        fraction = None if r.get("peak_fraction") is None else 100 * r["peak_fraction"]
        cpu_fraction = None if r.get("peak_fraction_cpu_time") is None else 100 * r["peak_fraction_cpu_time"]
        lines.append(f"| {what} | {runtime} | {r['dtype']} | {r['batch']} | {fps:,.1f} | {r['ms_per_call']:.2f} | "
                     f"{_fmt(fraction, '.1f')}% | {_fmt(cpu_fraction, '.1f')}% | {_fmt(r.get('vs_ostrack'), '.2f')} | "
                     f"{_fmt(r.get('vs_ostrack_best'), '.2f')} |")
    for reason in speed.get("skipped", []):
        lines.append(f"\nNot measured: {reason}.")
    if not any(r["path"] == "ostrack" for r in speed["rows"]):
        lines += ["", "Published figures for reference:", ""] + [f"- {what}: {value}" for what, value in PUBLISHED]
    return "\n".join(lines)


def e2e_table(rows: Sequence[dict]) -> str:
    """The ``end_to_end`` rows as a Markdown table (shares of the tracking loop's wall time; decoding's
    share of the process's CPU time, which the wall shares hide when decoding overlaps the network)."""
    lines = ["End to end (`tools/track_test.py`, generated 1280x720 JPEG sequences, decode included):", "",
             "| sequences at once | runtime | frames/s | LaSOT test (685,360 frames) | x single stream | "
             "wait for decode | crop | network | first frames | other | decode thread-ms/frame | CPU-ms/frame | "
             "decode, of CPU |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["share"]
        lines.append(f"| {r['batch_sequences']} | {r['device']} {r['backend']} {r['dtype']} | {r['fps']:,.1f} | "
                     f"{r['lasot_hours']:.2f} h | {_fmt(r.get('vs_single_stream'), '.2f')} | "
                     f"{100 * s['decode_wait']:.0f}% | {100 * s['crop']:.0f}% | {100 * s['network']:.0f}% | "
                     f"{100 * s['initialize']:.0f}% | {100 * s['other']:.0f}% | "
                     f"{1e3 * r['decode_thread_seconds_per_frame']:.1f} | {1e3 * r['cpu_seconds_per_frame']:.1f} | "
                     f"{100 * r['decode_cpu_share']:.0f}% |")
    return "\n".join(lines)


def agreement_line(agreement: dict[str, Any]) -> str:
    """One sentence for ``lasot_agreement``'s result."""
    text = (f"{agreement['dtype']} ({agreement['backend']}) vs fp32 boxes, IoU > {agreement['iou_threshold']}: "
            f"{100 * agreement['per_frame']:.1f}% of {agreement['frames']} frames from the same search region, "
            f"{100 * agreement['free_running']:.1f}% free-running")
    if "per_frame_on_target" in agreement:
        text += (f", {100 * agreement['per_frame_on_target']:.1f}% of the {agreement['frames_on_target']} frames "
                 "on target")
    text += f"; mean per-frame IoU {agreement['mean_iou_per_frame']:.3f}"
    if "auc_fp32" in agreement:
        text += (f"; success AUC fp32 {agreement['auc_fp32']:.1f}, {agreement['dtype']} free-running "
                 f"{agreement['auc_free_running']:.1f} ({agreement['auc_diff_points']:+.1f} points): "
                 f"{'usable' if agreement['usable'] else 'NOT usable'} (needs mean IoU >= {USABLE_MEAN_IOU} and "
                 f"|AUC diff| <= {USABLE_AUC_POINTS})")
    return text + "."


def save_speed_plot(speed: dict[str, Any], e2e: Sequence[dict], path: str | Path) -> Path:
    """Frames/s per row (left) and fraction of the matmul peak (right); end-to-end rows below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fileio import atomic_path

    rows = speed["rows"]
    labels = [r["name"] for r in rows]
    colours = ["tab:grey" if r["path"] == "ostrack" else ("tab:green" if r["kind"] == "full step" else "tab:blue")
               for r in rows]
    fig, axes = plt.subplots(1, 3 if e2e else 2, figsize=(18 if e2e else 13, max(4, 0.32 * len(rows) + 1.5)))
    y = np.arange(len(rows))
    axes[0].barh(y, [r.get("full_fps") or r.get("network_fps") for r in rows], color=colours)
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("frames per second")
    axes[0].set_title(f"{speed['device']}: ours network (blue), full step (green), OSTrack (grey)", fontsize=9)
    axes[1].barh(y, [100 * (r.get("peak_fraction") or 0) for r in rows], color=colours)
    axes[1].set_yticks(y, [])
    axes[1].invert_yaxis()
    axes[1].set_xlabel("% of the matmul peak measured in the run")
    if e2e:
        names = [f"{r['batch_sequences']} at once" for r in e2e]
        axes[2].bar(names, [r["fps"] for r in e2e], color="tab:orange")
        axes[2].set_ylabel("frames per second (decode included)")
        axes[2].set_title("end to end, 1280x720 JPEG", fontsize=9)
        for i, r in enumerate(e2e):
            axes[2].text(i, r["fps"], f"{r['lasot_hours']:.2f} h LaSOT", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
    return path


def report_section(out_dir: Path, threads: int, quick: bool) -> tuple[str, dict]:
    """The main report's tracking-speed section: CPU rows (and GPU rows when torch sees one), the
    end-to-end rows, a plot. About 2 minutes with ``quick=False`` on 2 cores. Returns (Markdown, data)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    model = build_tracker().eval()
    frames = 12 if quick else 30
    data: dict[str, Any] = {"cpu": speed_rows(model, "cpu", frames=frames, batches=(1, 8))}
    text = ["### CPU", "", speed_table(data["cpu"])]
    data_root = out_dir / "track_e2e_lasot_1280x720"
    make_e2e_dataset(data_root, sequences=4, frames=12 if quick else 40)
    data["cpu_end_to_end"] = end_to_end(data_root, batches=(1, 4), device="cpu", threads=threads,
                                        decode_threads=threads, work_dir=out_dir)
    text += ["", e2e_table(data["cpu_end_to_end"])]
    save_speed_plot(data["cpu"], data["cpu_end_to_end"], out_dir / "track_speed.png")
    if torch.cuda.is_available():
        data["cuda"] = speed_rows(model, "cuda", frames=frames, batches=(1, 8, 32))
        text += ["", "### CUDA", "", speed_table(data["cuda"])]
        save_speed_plot(data["cuda"], [], out_dir / "track_speed_cuda.png")
    text += ["", "Pictures: track_speed.png" + (", track_speed_cuda.png" if "cuda" in data else "") + ". "
             "Full step = crop, network, decode, map back (`Tracker.track`, batch 1). Indicative on a shared "
             "machine; `cpu_ms_per_call` in the JSON is robust to other load."]
    from fileio import atomic_write_json

    atomic_write_json(out_dir / "track_speed.json", data)
    return "\n".join(text), data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """The command line; returns what ``--json`` writes (``speed``, ``end_to_end``, ``agreement``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i> (default: cpu)")
    parser.add_argument("--dtype", nargs="+", default=None, choices=list(DTYPES),
                        help="precisions to time (default: those the device runs natively)")
    parser.add_argument("--backend", nargs="+", default=None, choices=["torch", "onnxruntime", "openvino"],
                        help="runtimes to time (default: all installed ones for the device)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8], help="batch sizes of the network rows")
    parser.add_argument("--frames", type=int, default=30, help="timed calls per row")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None, help="tracker checkpoint (default: random weights)")
    parser.add_argument("--config", default=None, help="tracker config of the checkpoint (default: the base model)")
    parser.add_argument("--compile", nargs="*", default=None, choices=COMPILE_MODES, metavar="MODE",
                        help=f"CPU: also time torch.compile in these modes {COMPILE_MODES} (no mode: default)")
    parser.add_argument("--no-full-step", action="store_true", help="network rows only")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also run tools/track_test.py over generated 1280x720 LaSOT-layout sequences")
    parser.add_argument("--e2e-batch", nargs="+", type=int, default=[4], help="--batch-sequences values besides 1")
    parser.add_argument("--e2e-dtype", nargs="+", default=["auto"], choices=["auto", *DTYPES],
                        help="precisions of the end-to-end runs (default: the tool's auto; int8 runs on OpenVINO)")
    parser.add_argument("--e2e-sequences", type=int, default=8)
    parser.add_argument("--e2e-frames", type=int, default=40)
    parser.add_argument("--e2e-data", type=Path, default=None, help="where to write / reuse the generated sequences")
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--agreement", nargs="*", default=None, metavar="LASOT_ROOT",
                        help="also measure low-precision vs fp32 box agreement on the embedded demo sequences and "
                             "on these LaSOT-layout roots' test splits, in each precision of --dtype other than fp32 "
                             "(default: fp16 on CUDA, else bf16)")
    parser.add_argument("--demo-sequences", type=int, default=4,
                        help="how many embedded demo sequences (40 frames each) the agreement runs over")
    parser.add_argument("--agreement-backend", default="torch", choices=["torch", "openvino"],
                        help="runtime of the low-precision boxes (int8: always openvino)")
    parser.add_argument("--int8-scopes", action="store_true",
                        help="measure which layer groups cost accuracy in int8 (track.quantize.KEEP_FLOAT) and exit")
    parser.add_argument("--calibration", default=None, metavar="LASOT_ROOT",
                        help="int8: calibrate on this LaSOT-layout folder (default: generated demo sequences)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="write the tables here")
    parser.add_argument("--plot", default=None, help="write a bar chart (PNG) here")
    args = parser.parse_args(argv)
    from track.config import load_config, model_from_checkpoint, tracker_kwargs

    torch.set_num_threads(args.threads)
    try:
        where = resolve_device(args.device)
    except ValueError as error:
        raise SystemExit(f"error: --{error}") from None
    cfg = load_config(args.config)
    model, source = model_from_checkpoint(cfg, args.checkpoint)
    print(f"weights: {source}")
    if args.int8_scopes:
        from track.quantize import KEEP_FLOAT

        keeps = [(), *[(g,) for g in KEEP_FLOAT], ("heads_last", "ce_scores"), tuple(KEEP_FLOAT)]
        kwargs = {k: v for k, v in tracker_kwargs(cfg).items() if k in ("window", "ce_keep_ratio")}
        rows = int8_scope_study(model, demo_sequences(), keeps, args.calibration or demo_calibration(), **kwargs)
        for row in rows:
            print(json.dumps(row), flush=True)
        if args.json:
            from fileio import atomic_write_json

            atomic_write_json(args.json, {"int8_scopes": rows})
        return {"int8_scopes": rows}
    runs = None
    if args.dtype or args.backend:
        backends = args.backend or (["torch"] if where.type == "cuda" else ["torch", "onnxruntime", "openvino"])
        dtypes = args.dtype or (["fp32", "fp16"] if where.type == "cuda" else
                                ["fp32"] + (["bf16"] if bf16_unsupported_reason(where) is None else []))
        runs = [(b, d) for b in backends for d in dtypes
                if not (b == "onnxruntime" and d != "fp32") and not (b != "torch" and where.type == "cuda")
                and not (d == "fp16" and where.type != "cuda") and not (b == "openvino" and d == "fp16")
                and not (d in QUANTIZED and b != QUANTIZED[d])]
    compile_modes = [] if args.compile is None else (args.compile or ["default"])
    verdict_wanted = args.agreement is not None and "int8" in (args.dtype or []) and where.type == "cpu"
    if verdict_wanted and runs is not None:   # the float step auto would run otherwise, timed beside int8
        auto_float = ("openvino", resolve_dtype("auto", where, "openvino"))
        runs = runs if auto_float in runs else [*runs, auto_float]
    speed = speed_rows(model, str(where), runs=runs, batches=args.batch, frames=args.frames,
                       full_step=not args.no_full_step, compile=compile_modes, calibration=args.calibration)
    for row in speed["rows"]:
        print(json.dumps(row), flush=True)
    e2e = []
    if args.end_to_end:
        data_root = args.e2e_data or Path(tempfile.gettempdir()) / "litevit_track_e2e_1280x720"
        names = make_e2e_dataset(data_root, args.e2e_sequences, args.e2e_frames)
        print(f"end to end over {len(names)} generated sequences in {data_root}", flush=True)
        e2e = end_to_end(data_root, batches=[1, *args.e2e_batch], device=str(where), threads=args.threads,
                         decode_threads=args.decode_threads, config=args.config, checkpoint=args.checkpoint or "none",
                         dtypes=args.e2e_dtype)
        for row in e2e:
            print(json.dumps(row), flush=True)
    agreement = None
    if args.agreement is not None:
        lows = [d for d in args.dtype or [] if d != "fp32"] or ["fp16" if where.type == "cuda" else "bf16"]
        agreement = []
        for low, root in [(low, root) for low in lows for root in ["demo", *args.agreement]]:
            backend = QUANTIZED.get(low, args.agreement_backend)
            extra = _calibration(low, args.calibration)
            agreement.append(lasot_agreement(model, root, demo_count=args.demo_sequences, dtype=low, backend=backend,
                                             device=str(where),
                                             compile=compile_modes[0] if compile_modes and low not in QUANTIZED
                                             else False, **extra, **tracker_kwargs(cfg)))
            print(json.dumps({"agreement": agreement[-1]}), flush=True)
    verdict = int8_verdict(model, speed, agreement or []) if verdict_wanted else None
    text = "\n\n".join([speed_table(speed)] + ([e2e_table(e2e)] if e2e else [])
                         + [agreement_line(a) for a in agreement or []] + ([verdict_line(verdict)] if verdict else []))
    print(text)
    result = {"speed": speed, "end_to_end": e2e, **({"agreement": agreement} if agreement else {}),
              **({"int8_verdict": verdict} if verdict else {})}
    if args.json:
        from fileio import atomic_write_json

        atomic_write_json(args.json, result)
    if args.markdown:
        from fileio import atomic_write_text

        atomic_write_text(args.markdown, text + "\n")
    if args.plot:
        print(f"wrote {save_speed_plot(speed, e2e, args.plot)}")
    return result


if __name__ == "__main__":
    main()
