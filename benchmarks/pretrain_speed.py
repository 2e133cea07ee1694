"""Pre-training throughput against MAE-Lite's own code: one full training step (forward, backward,
AdamW update) in images/s, ours and theirs timed in the same run, steps interleaved so that the
machine's load hits both alike.

* ours: the training module ``pretrain.tasks.build_task`` builds from the recipe
  (``configs/pretrain/mae_vit_tiny_400e_in1k.py``, ``d2mae_vit_tiny_400e_in1k.py``,
  ``mocov3_vit_tiny_400e_in1k.py``; the teacher a randomly initialised ViT-B,
  ``teacher_ckpt="random"``), set up as ``pretrain.engine`` sets it up (bf16: the teacher's matmul
  weights stored in bf16), with the engine's optimizer for the recipe's ``optim``
  (``pretrain.engine.build_optimizer``: timm AdamW, torch's fused kernel). A MoCo-v3 step includes
  the momentum encoder's update (``MoCoTask.before_update``).
* MAE-Lite: their models from their code (``benchmarks.peers``: ``maelite_mae_tiny()``, loss
  ``model(x, mask_ratio=0.75)[0]``; ``maelite_d2mae_tiny()``, their D²-MAE training module with
  its ViT-B teacher, loss ``model(x)[0]``; ``maelite_mocov3_tiny()``, loss ``model([x1, x2])[0]``
  inside ``single_process()``, which updates its momentum encoder), with the optimizer their
  trainer makes (MAE: timm AdamW, default options; MoCo-v3: torch's AdamW over every parameter,
  weight decay 0.1, as ``mocov3_exp.py``).

MoCo-v3 rows take ``batch / 2`` images, two views each: each encoder sees ``batch`` images a step,
as the MAE rows' encoder does. Both sides run the same maths (``tests/test_peer_parity_pretrain.py``
and ``tests/test_pretrain_mocov3.py`` check losses, gradients and updates against theirs).
bf16 rows run under ``torch.autocast`` and only where the device computes bf16 natively (see
:func:`bf16_unsupported_reason`).  Without the peers' code our rows are reported alone, with the
figures measured with MAE-Lite's code elsewhere (``PEER_FIGURES``).

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.pretrain_speed --threads 2 --breakdown \\
        --out results/pretrain_speed          # writes .json, .md, .png

On a machine shared with other jobs, OpenMP's default spinning barriers make two threads that
cannot run at the same time ~10x slower; ``OMP_WAIT_POLICY=PASSIVE`` (read when torch loads)
avoids that.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2

from benchmarks.peers import load_peers, unavailable_reason
from benchmarks.track_speed import synchronize
from engine import PRECISIONS, autocast, bf16_unsupported_reason
from fileio import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["MODELS", "DTYPES", "PEER_FIGURES", "build_ours", "build_maelite",
           "Stepper", "compare_throughput", "MOCO_PARTS", "mocov3_step_ours", "mocov3_step_maelite", "mocov3_parts",
           "parts_markdown", "step_breakdown", "run", "markdown", "report_section", "main"]

REPO = Path(__file__).resolve().parents[1]
MODELS = ("mae_vit_tiny", "d2mae_vit_tiny", "mocov3_vit_tiny")
DTYPES = tuple(name for name in PRECISIONS if name != "fp16")  # the engine's; fp16 needs a GPU and a GradScaler
RECIPES = {"mae_vit_tiny": "mae_vit_tiny_400e_in1k.py", "d2mae_vit_tiny": "d2mae_vit_tiny_400e_in1k.py",
           "mocov3_vit_tiny": "mocov3_vit_tiny_400e_in1k.py"}
TWO_VIEWS = {"mocov3_vit_tiny"}  # batches of image pairs [B, 2, 3, H, W]
OPTIM = dict(lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95))  # MAE-Lite's MAE AdamW
LR = 1.5e-4
SCHEDULE_UPDATES = 100_000  # the MoCo-v3 momentum schedule's length while timing (any long run)
# MAE-Lite's code measured elsewhere (shared/peers/README.md): one H100, torch 2.11, batch 256, img/s.
# GPU figures: context only, not comparable with CPU rows. The papers publish no throughput.
PEER_FIGURES = {"mae_vit_tiny": {"fp32 (TF32)": 7454, "bf16": 6248, "fp16": 5592},
                "d2mae_vit_tiny": {"bf16": 4197, "fp16": 4509}}


def build_ours(model_name: str, dtype: str = "fp32", device: str = "cpu", img_size: int = 224
               ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], torch.optim.Optimizer]:
    """(training module, loss function, optimizer) of our ``model_name`` as the recipe and the
    engine set it up (the recipe's ``compile_teacher`` included)."""
    from mmengine.config import Config

    from pretrain.engine import build_optimizer
    from pretrain.tasks import build_task

    if model_name not in RECIPES:
        raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}")
    cfg = Config.fromfile(str(REPO / "configs" / "pretrain" / RECIPES[model_name])).to_dict()
    cfg["model"]["img_size"] = img_size
    if cfg.get("distill"):
        cfg["distill"]["teacher_ckpt"] = "random"
    cfg["data"]["batch_size"] = None  # the benchmark's batch, whatever the recipe's
    task, _ = build_task(cfg)
    task.to(device)
    distill = getattr(task, "distill", None)
    if distill is not None and PRECISIONS[dtype] is not None:  # as pretrain.engine sets it up
        distill.store_teacher_matmul_weights(PRECISIONS[dtype])
    optimizer = build_optimizer(task, cfg["optim"], LR)
    if not hasattr(task, "before_update"):
        return task, lambda images: task(images)["loss"], optimizer
    updates = iter(range(SCHEDULE_UPDATES))

    def loss_fn(images: torch.Tensor) -> torch.Tensor:
        task.before_update(next(updates), SCHEDULE_UPDATES)  # what the trainer calls before each update
        return task(images)["loss"]
    return task, loss_fn, optimizer


def build_maelite(peers: Any, model_name: str, batch: int, device: str = "cpu"
                  ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], torch.optim.Optimizer]:
    """(training module, loss function, optimizer) of MAE-Lite's ``model_name`` from their code."""
    if model_name == "mae_vit_tiny":
        model = peers.maelite_mae_tiny().to(device)

        def loss_fn(images: torch.Tensor) -> torch.Tensor:
            return model(images, mask_ratio=0.75)[0]
    elif model_name == "d2mae_vit_tiny":
        model = peers.maelite_d2mae_tiny(batch).to(device)

        def loss_fn(images: torch.Tensor) -> torch.Tensor:
            return model(images)[0]
    elif model_name == "mocov3_vit_tiny":
        model = peers.maelite_mocov3_tiny(total_iters=SCHEDULE_UPDATES).to(device)

        def loss_fn(images: torch.Tensor) -> torch.Tensor:
            with peers.single_process():
                return model([images[:, 0], images[:, 1]])[0]
        return model, loss_fn, torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    else:
        raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}")
    return model, loss_fn, create_optimizer_v2(model, "adamw", **OPTIM)


class Stepper:
    """One training module + optimizer + fixed batch; :meth:`step` runs and times one training step."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 optimizer: torch.optim.Optimizer, batch: int, img_size: int, dtype: str, device: str = "cpu",
                 views: int = 1) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        model.train(True)  # MAE-Lite's D²-MAE module needs the argument and returns None
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.dtype, self.device = dtype, device
        shape = (batch, 3, img_size, img_size) if views == 1 else (batch, views, 3, img_size, img_size)
        self.images = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device)
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def step(self, record: bool = True) -> float:
        synchronize(self.device)
        cpu_start, start = time.process_time(), time.perf_counter()
        with autocast(torch.device(self.device).type, PRECISIONS[self.dtype]):
            loss = self.loss_fn(self.images)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        if record:
            self.times.append(elapsed)
            self.cpu_times.append(time.process_time() - cpu_start)
        return elapsed

    def result(self) -> dict[str, Any]:
        batch = self.images.shape[0]
        median, cpu = statistics.median(self.times), statistics.median(self.cpu_times)
        return {"steps": len(self.times), "step_s_median": median, "step_s_min": min(self.times),
                "img_per_s": batch / median, "img_per_s_best": batch / min(self.times),
                "cpu_s_median": cpu, "img_per_cpu_s": batch / cpu}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::_addmm_activation", "aten::mkldnn_convolution",
              "aten::convolution_backward", "mkldnn::_linear_pointwise", "mkl::_mkl_linear")
ATTENTION_OPS = ("aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::_softmax_backward_data")


def _part(op: str) -> str:
    if op in MATMUL_OPS:
        return "matmul"
    if op in ATTENTION_OPS or "scaled_dot_product" in op:
        return "attention"
    return "other"


def step_breakdown(stepper: Stepper, steps: int = 2, warm: bool = True, head_width: int | None = None
                   ) -> dict[str, Any]:
    """Where a CPU training step spends its time: torch profiler self time per op, per step (ms).

    Parts: ``matmul`` = the matrix products of the linear layers and the patch embedding
    (``MATMUL_OPS``, forward and backward), ``attention`` = fused attention kernels or the batched
    products and softmax of explicit attention (``ATTENTION_OPS``), ``other`` = everything else
    (norms, activations, gathers, optimizer, casts).  The same op names are classified the same
    way for every implementation; ``ops`` lists each op counted: part, ms and calls per step.
    With ``head_width`` (MoCo-v3's 4096), ``heads_matmul_ms`` is the part of ``matmul`` whose
    operands have a dimension of that width: the projector and predictor MLPs' products.
    ``warm``: run one unprofiled step first (not needed when the stepper has just run).
    """
    from torch.profiler import ProfilerActivity, profile

    if stepper.device != "cpu":
        raise ValueError("the step breakdown profiles CPU ops; it is not meaningful on a GPU")
    if warm:
        stepper.step(record=False)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=head_width is not None) as prof:
        for _ in range(steps):
            stepper.step(record=False)
    ops: dict[str, dict[str, Any]] = {}
    parts = {"matmul_ms": 0.0, "attention_ms": 0.0, "other_ms": 0.0}
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / steps
        part = _part(event.key)
        ops[event.key] = {"part": part, "ms": ms, "calls": event.count / steps}
        parts[f"{part}_ms"] += ms
    result = {**parts, "total_ms": sum(parts.values()), "ops": ops}
    if head_width is not None:
        result["heads_matmul_ms"] = sum(
            e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages(group_by_input_shape=True)
            if _part(e.key) == "matmul" and any(head_width in shape for shape in e.input_shapes if shape))
    return result


MOCO_PARTS = ("momentum update", "encoder forward", "heads forward", "momentum branch forward", "loss", "backward",
              "optimizer")


class _Laps:
    """Books the time since the previous lap under a part's name (ms)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.last, self.ms = clock, clock(), {}

    def __call__(self, part: str) -> None:
        now = self.clock()
        self.ms[part] = self.ms.get(part, 0.0) + (now - self.last) * 1e3
        self.last = now


def _backward_and_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                         lap: Callable[[str], None]) -> torch.Tensor:
    """The end of a timed step: backward, optimizer step, gradients cleared; returns the loss."""
    loss.backward()
    lap("backward")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    lap("optimizer")
    return loss.detach()


def mocov3_step_ours(task: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, update: int,
                     dtype: str = "fp32", lap: Callable[[str], None] = lambda part: None) -> torch.Tensor:
    """One training step of our MoCo-v3 task (what ``build_ours``'s loss function, backward and the
    optimizer do), cut into ``MOCO_PARTS`` for ``lap``; returns the loss. Same ops in the same order
    as ``MoCoTask.forward`` (``tests/test_pretrain_mocov3.py`` checks the state after it is identical)."""
    from pretrain.mocov3 import contrastive_loss

    model = task.student
    task.before_update(update, SCHEDULE_UPDATES)
    lap("momentum update")
    with autocast(images.device.type, PRECISIONS[dtype]):
        views = torch.cat([images[:, 0], images[:, 1]])
        features = model._features(model.encoder, views)
        lap("encoder forward")
        q = model.predictor(model.projector(features, 2), 2)
        lap("heads forward")
        with torch.no_grad():
            k = model.momentum_projector(model._features(model.momentum_encoder, views), 2)
        lap("momentum branch forward")
        (q1, q2), (k1, k2) = q.chunk(2), k.chunk(2)
        loss = (contrastive_loss(q1, k2, model.temperature, task.batch_size)
                + contrastive_loss(q2, k1, model.temperature, task.batch_size))
    lap("loss")
    return _backward_and_update(loss, optimizer, lap)


def mocov3_step_maelite(peers: Any, model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                        dtype: str = "fp32", lap: Callable[[str], None] = lambda part: None) -> torch.Tensor:
    """One training step of MAE-Lite's MoCo-v3 (``model([x1, x2])``, backward, their AdamW), its
    forward's calls made one by one so that ``lap`` can time them; returns the loss."""
    encoder = model.base_encoder
    x1, x2 = images[:, 0], images[:, 1]
    with autocast(images.device.type, PRECISIONS[dtype]), peers.single_process():
        f1, f2 = (encoder.forward_head(encoder.forward_features(x), pre_logits=True) for x in (x1, x2))
        lap("encoder forward")
        q1, q2 = model.predictor(encoder.head(f1)), model.predictor(encoder.head(f2))
        lap("heads forward")
        with torch.no_grad():
            model._update_momentum_encoder(model.get_param_momentum())
            lap("momentum update")
            k1, k2 = model.momentum_encoder(x1), model.momentum_encoder(x2)
        lap("momentum branch forward")
        model.current_train_iter += 1
        loss = model.contrastive_loss(q1, k2) + model.contrastive_loss(q2, k1)
    lap("loss")
    return _backward_and_update(loss, optimizer, lap)


def mocov3_parts(batch: int = 16, dtype: str = "fp32", steps: int = 3, peers: Any = None, img_size: int = 224,
                 cpu_time: bool = False) -> dict[str, Any]:
    """Where a MoCo-v3 training step's time goes, ours and (with ``peers``) MAE-Lite's in the same
    run, steps alternated after one warm-up step each: median ms per ``MOCO_PARTS`` part over
    ``steps`` steps of ``batch`` pairs of views. ``cpu_time``: process CPU time instead of wall time
    (steadier on a machine shared with other jobs; with one thread it is the work done).
    MAE-Lite's model is built for 224 px only."""
    if peers is not None and img_size != 224:
        raise ValueError(f"MAE-Lite's MoCo-v3 model takes 224 px images, got img_size={img_size}")
    torch.manual_seed(0)
    images = torch.randn(batch, 2, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    task, _, optimizer = build_ours("mocov3_vit_tiny", dtype, img_size=img_size)
    task.train()
    runs: dict[str, Callable[[int, Callable[[str], None]], torch.Tensor]] = {
        "ours": lambda i, lap: mocov3_step_ours(task, optimizer, images, i, dtype, lap)}
    if peers is not None:
        model, _, their_optimizer = build_maelite(peers, "mocov3_vit_tiny", batch)
        model.train()
        runs["maelite"] = lambda i, lap: mocov3_step_maelite(peers, model, their_optimizer, images, dtype, lap)
    clock = time.process_time if cpu_time else time.perf_counter
    laps: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for i in range(steps + 1):
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            lap = _Laps(clock)
            runs[name](i, lap)
            if i:
                laps[name].append(lap.ms)
    result: dict[str, Any] = {"batch": batch, "dtype": dtype, "steps": steps, "threads": torch.get_num_threads(),
                              "clock": "cpu" if cpu_time else "wall", "load_average": os.getloadavg()[0]}
    for name, rows in laps.items():
        parts = {part: statistics.median(row[part] for row in rows) for part in MOCO_PARTS}
        result[name] = {**parts, "total": sum(parts.values())}
    if "maelite" in result:
        result["ratio"] = result["maelite"]["total"] / result["ours"]["total"]
    return result


def parts_markdown(data: dict[str, Any]) -> str:
    """:func:`mocov3_parts` as a Markdown table."""
    peer = "maelite" in data
    lines = [f"MoCo-v3 step by part, {data['batch']} pairs of views, {data['dtype']}, {data['threads']} threads, "
             f"median ms ({data['clock']} time) over {data['steps']} steps, load average {data['load_average']:.1f}",
             "", "| part | ours | MAE-Lite |" if peer else "| part | ours |",
             "|---|---:|---:|" if peer else "|---|---:|"]
    for part in (*MOCO_PARTS, "total"):
        lines.append(f"| {part} | {data['ours'][part]:.0f} |" + (f" {data['maelite'][part]:.0f} |" if peer else ""))
    if peer:
        lines.append(f"\nMAE-Lite / ours: {data['ratio']:.2f}x")
    return "\n".join(lines) + "\n"


def compare_throughput(model_name: str, batch: int = 64, dtype: str = "fp32", steps: int = 5, warmup: int = 2,
                       device: str = "cpu", breakdown: bool = False, peers: Any = None,
                       breakdown_steps: int = 2) -> dict[str, Any]:
    """Ours and MAE-Lite's (when ``peers`` is given) in one run, steps alternated; ``ratio`` =
    ours / MAE-Lite images/s (MoCo-v3: image pairs a second; ``batch`` pairs a step)."""
    torch.manual_seed(0)
    views = 2 if model_name in TWO_VIEWS else 1
    steppers = {"ours": Stepper(*build_ours(model_name, dtype, device), batch, 224, dtype, device, views)}
    if peers is not None:
        steppers["maelite"] = Stepper(*build_maelite(peers, model_name, batch, device), batch, 224, dtype, device,
                                      views)
    names = list(steppers)
    for _ in range(warmup):
        for s in steppers.values():
            s.step(record=False)
    for i in range(steps):
        for name in (names if i % 2 == 0 else names[::-1]):
            steppers[name].step()
    row: dict[str, Any] = {"model": model_name, "dtype": dtype, "batch": batch, "views": views, "device": device,
                           "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}
    head_width = 4096 if model_name in TWO_VIEWS else None
    for name, s in steppers.items():
        row[name] = s.result()
        if breakdown and device == "cpu":
            row[name]["breakdown"] = step_breakdown(s, breakdown_steps, warm=steps + warmup == 0,
                                                    head_width=head_width)
    if "maelite" in row:
        row["ratio"] = row["ours"]["img_per_s"] / row["maelite"]["img_per_s"]
        row["ratio_cpu_time"] = row["ours"]["img_per_cpu_s"] / row["maelite"]["img_per_cpu_s"]
    return row


def run(models: tuple[str, ...] = MODELS, dtypes: tuple[str, ...] = DTYPES, batch: int = 64, steps: int = 5,
        warmup: int = 2, device: str = "cpu", breakdown: bool = False, with_peers: bool = True,
        breakdown_steps: int = 2) -> dict[str, Any]:
    """Every (model, precision) row; a row that cannot run says why (``skipped``).

    MoCo-v3 rows take ``batch // 4`` image pairs (each encoder sees ``batch // 2`` images), and at most
    3 timed steps (the median resists one slow step: with two, a slow MAE-Lite step once read as 1.53x
    where six steps give 1.16x), 1 warm-up and 1 profiled step: a step costs several MAE steps
    (MAE-Lite's fp32 step alone about 20 s at 32 pairs on 2 cores), and the main job has a time budget."""
    peers = load_peers() if with_peers else None
    peer_reason = (unavailable_reason() if with_peers else "not asked for (--no-peers)") if peers is None else None
    bf16_reason = bf16_unsupported_reason(device)
    rows = []
    for model_name in models:
        for dtype in dtypes:
            if dtype == "bf16" and bf16_reason:
                rows.append({"model": model_name, "dtype": dtype, "skipped": bf16_reason})
                continue
            if model_name in TWO_VIEWS:
                row = compare_throughput(model_name, max(2, batch // 4), dtype, min(steps, 3), min(warmup, 1), device,
                                         breakdown, peers, breakdown_steps=1)
            else:
                row = compare_throughput(model_name, batch, dtype, steps, warmup, device, breakdown, peers,
                                         breakdown_steps=breakdown_steps)
            peer = f", MAE-Lite {row['maelite']['img_per_s']:.1f} img/s ({row['ratio']:.2f}x)" if "maelite" in row \
                else ""
            print(f"{model_name} {dtype}: ours {row['ours']['img_per_s']:.1f} img/s{peer}", flush=True)
            rows.append(row)
    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "peers_missing": peer_reason,
            "rows": rows}


def _ms(parts: dict[str, Any]) -> str:
    heads = f" (heads' matmuls {parts['heads_matmul_ms']:.0f})" if "heads_matmul_ms" in parts else ""
    return f"{parts['matmul_ms']:.0f}{heads} / {parts['attention_ms']:.0f} / {parts['other_ms']:.0f}"


def markdown(data: dict[str, Any]) -> str:
    """The throughput table (and the step breakdown when profiled) as Markdown."""
    rows = data["rows"]
    batch = next((r["batch"] for r in rows if "batch" in r and r.get("views", 1) == 1), "-")
    lines = [f"One training step (forward, backward, AdamW), batch {batch}, 224x224, {data['device']}, "
             f"{data['threads']} threads, torch {data['torch']}; MAE-Lite = their own code, timed in the same "
             "run, steps interleaved. MoCo-v3: pairs of views (img/s = pairs/s), a quarter of the batch (each encoder "
             "sees half as many images; fewer steps, for the main job's time budget); its step includes the "
             "momentum encoder's update.", "",
             "| model | precision | batch | ours img/s | MAE-Lite img/s | ours / MAE-Lite | same, CPU time "
             "| load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['dtype']} | | skipped: {r['skipped']} | | | | |")
            continue
        peer = r.get("maelite")
        shape = f"{r['batch']} x 2 views" if r.get("views", 1) == 2 else str(r["batch"])
        lines.append(f"| {r['model']} | {r['dtype']} | {shape} | {r['ours']['img_per_s']:.1f} | "
                     + (f"{peer['img_per_s']:.1f} | {r['ratio']:.2f}x | {r['ratio_cpu_time']:.2f}x"
                        if peer else "- | - | -")
                     + f" | {r['load_average']:.1f} |")
    if data.get("peers_missing"):
        lines += ["", f"MAE-Lite's code was not run: {data['peers_missing']}. Their code measured elsewhere "
                  "(one H100, torch 2.11, batch 256; GPU figures, not comparable with these rows; the papers "
                  "publish no throughput):", "", "| model | MAE-Lite img/s |", "|---|---|"]
        lines += [f"| {m} | " + ", ".join(f"{v:,} {k}" for k, v in figs.items()) + " |"
                  for m, figs in PEER_FIGURES.items()]
    profiled = [r for r in rows if "breakdown" in r.get("ours", {})]
    if profiled:
        lines += ["", "Time per step (ms, torch profiler self time; the same op names classified the same way "
                  "for both): matrix products of the linear layers / attention / the rest; for MoCo-v3 the part "
                  "of the products that the 4096-wide projector and predictor MLPs take.", "",
                  "| model | precision | ours | MAE-Lite |", "|---|---|---|---|"]
        for r in profiled:
            peer = r.get("maelite", {}).get("breakdown")
            lines.append(f"| {r['model']} | {r['dtype']} | {_ms(r['ours']['breakdown'])} | "
                         f"{_ms(peer) if peer else '-'} |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> Path | None:
    """Bar chart of images/s, ours beside MAE-Lite's, per model and precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data["rows"] if "skipped" not in r]
    if not rows:
        return None
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.8 * len(rows) + 2, 3.5))
    ax.bar([x + 0.2 for x in xs], [r["ours"]["img_per_s"] for r in rows], 0.4, label="ours")
    if any("maelite" in r for r in rows):
        ax.bar([x - 0.2 for x in xs], [r.get("maelite", {}).get("img_per_s", 0) for r in rows], 0.4,
               label="MAE-Lite (their code)")
        for x, r in zip(xs, rows):
            if "ratio" in r:
                ax.text(x + 0.2, r["ours"]["img_per_s"], f"{r['ratio']:.2f}x", ha="center", va="bottom")
    ax.set_ylim(top=1.15 * max(max(r["ours"]["img_per_s"], r.get("maelite", {}).get("img_per_s", 0)) for r in rows))
    ax.set_xticks(list(xs), [f"{r['model']}\n{r['dtype']}" for r in rows])
    ax.set_ylabel(f"images / s (batch {rows[0]['batch']}, {data['device']})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)
    return path


def write_outputs(data: dict[str, Any], out: Path) -> str:
    """``out``.json, .md and .png; returns the Markdown."""
    text = markdown(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), data)
    atomic_write_text(out.with_suffix(".md"), text)
    plot(data, out.with_suffix(".png"))
    return text


def report_section(out_dir: Path, threads: int, quick: bool) -> tuple[str, dict]:
    """The main report's pre-training section: every model, fp32 and bf16, against MAE-Lite's code,
    with the step breakdown (``quick``: 3 timed steps after 1 warm-up, 1 profiled; else 5, 2, 2); writes ``out_dir/pretrain_speed.{json,md,png}``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = run(steps=3 if quick else 5, warmup=1 if quick else 2, breakdown=True, breakdown_steps=1 if quick else 2)
    finally:
        torch.set_num_threads(previous)
    return write_outputs(data, Path(out_dir) / "pretrain_speed"), data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="pre-training step throughput, ours vs MAE-Lite's own code")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile where each CPU step's time goes (matrix products / attention / rest)")
    parser.add_argument("--no-peers", action="store_true", help="time ours only")
    parser.add_argument("--mocov3-parts", action="store_true",
                        help="instead: time a MoCo-v3 step part by part (forward, heads, momentum branch, backward, "
                             "optimizer), ours and MAE-Lite's, --batch pairs of views, each --dtypes")
    parser.add_argument("--cpu-time", action="store_true", help="with --mocov3-parts: process CPU time, not wall")
    parser.add_argument("--out", type=Path, default=Path("results/pretrain_speed"),
                        help="writes OUT.json, OUT.md and OUT.png")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mocov3_parts:
        peers = None if args.no_peers else load_peers()
        results = [mocov3_parts(args.batch, dtype, args.steps, peers, cpu_time=args.cpu_time) for dtype in args.dtypes]
        for result in results:
            print(parts_markdown(result))
        return {"mocov3_parts": results}
    data = run(tuple(args.models), tuple(args.dtypes), args.batch, args.steps, args.warmup, args.device,
               args.breakdown, not args.no_peers)
    print(write_outputs(data, args.out))
    return data


if __name__ == "__main__":
    main()
