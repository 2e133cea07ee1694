"""Pre-training throughput: one full training step (forward, backward, AdamW update) in images/s.

Two implementations of the same training step are timed in the same process, steps interleaved
so that machine load hits both alike:

* ``"ours"``: visible-only patch embedding, loss on the masked patches only (norm-pix target as
  one layer norm), attention kernel chosen per case (SDPA, but the explicit softmax for CPU
  training under bf16 autocast, where SDPA's backward is several times slower), teacher run
  under ``no_grad`` only up to the distilled block, with its matmul weights stored in bf16 for
  bf16 runs (what autocast would cast them to each step) and as a frozen ``torch.compile`` graph
  when a C++ compiler is present (``compile_teacher``, as the full D-MAE / D²-MAE recipes set),
  fused AdamW (one kernel for all parameters).
* ``"reference"``: the reference implementation's choices (MAE-Lite on timm 0.3.2): conv patch
  embedding of every patch before masking, explicit softmax attention in every block, the loss
  over every patch weighted by the mask, the teacher running its whole encoder (every block,
  explicit attention, final norm), single-tensor AdamW.

Both compute the same losses (checked in the tests).  The D²-MAE teacher is a randomly
initialised ViT-B (timing only).  Command line::

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.pretrain_speed --models mae_vit_tiny d2mae_vit_tiny \
        --dtypes fp32 bf16 --batch 64 --out results/pretrain_throughput

On a machine shared with other jobs, OpenMP's default spinning barriers make two threads that
cannot run at the same time ~10x slower; ``OMP_WAIT_POLICY=PASSIVE`` (read when torch loads)
avoids that.  The ratio is measured in one process, so both sides see the same conditions.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2

from fileio import atomic_path, atomic_write_json, atomic_write_text

from pretrain.distill import AttentionDistillation, DistilledMAE, build_teacher
from pretrain.mae import d2mae_vit_tiny, mae_vit_tiny

__all__ = ["pretrain_throughput", "compare_throughput", "build_benchmark_model", "step_breakdown",
           "IMPLS", "MODELS"]

IMPLS = ("ours", "reference")
MODELS = ("mae_vit_tiny", "d2mae_vit_tiny")


def build_benchmark_model(model_name: str, impl: str = "ours", img_size: int = 224,
                          teacher: nn.Module | None = None, dtype: str = "fp32") -> DistilledMAE:
    """The training module of ``model_name`` built the ``impl`` way for ``dtype`` training (a
    teacher may be given; "ours" in bf16 works on a copy, whose matmul weights it stores in bf16)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    ref = impl == "reference"
    student_kw = dict(img_size=img_size, attention="explicit" if ref else "auto", embed_visible_only=not ref,
                      loss_on_masked_only=not ref)
    if model_name == "mae_vit_tiny":
        return DistilledMAE(mae_vit_tiny(**student_kw))
    if model_name == "d2mae_vit_tiny":
        if teacher is None:
            teacher, _ = build_teacher("vit_base", "random", img_size)
        student = d2mae_vit_tiny(**student_kw)
        if not ref and dtype == "bf16":
            teacher = copy.deepcopy(teacher)
        distill = AttentionDistillation(teacher, student.num_heads, teacher_block=11, teacher_full_forward=ref,
                                        compile_teacher=not ref and _has_compiler())
        if not ref and dtype == "bf16":
            distill.store_teacher_matmul_weights(torch.bfloat16)
        return DistilledMAE(student, distill, student_block=-1)
    raise ValueError(f"model_name must be one of {MODELS}, got {model_name!r}")


def _has_compiler() -> bool:
    import shutil

    return bool(shutil.which("c++") or shutil.which("g++"))


def _optimizer(model: nn.Module, impl: str) -> torch.optim.Optimizer:
    extra = {"fused": True} if impl == "ours" else {"foreach": False}
    return create_optimizer_v2(model, "adamw", lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), **extra)


class _Stepper:
    """One model + optimizer + fixed batch; ``step()`` times one training step."""

    def __init__(self, model: DistilledMAE, impl: str, batch: int, img_size: int, dtype: str) -> None:
        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype must be 'fp32' or 'bf16', got {dtype!r}")
        self.model, self.impl, self.dtype = model.train(), impl, dtype
        self.optimizer = _optimizer(model, impl)
        self.images = torch.randn(batch, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def step(self, record: bool = True) -> float:
        cpu_start = time.process_time()
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bf16"):
            loss = self.model(self.images)["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        if record:
            self.times.append(elapsed)
            self.cpu_times.append(time.process_time() - cpu_start)
        return elapsed

    def result(self) -> dict[str, Any]:
        median = statistics.median(self.times)
        batch = self.images.shape[0]
        cpu = statistics.median(self.cpu_times)
        return {"impl": self.impl, "dtype": self.dtype, "batch": batch, "steps": len(self.times),
                "step_s_median": median, "step_s_min": min(self.times), "img_per_s": batch / median,
                "img_per_s_best": batch / min(self.times), "cpu_s_median": cpu, "img_per_cpu_s": batch / cpu}


def pretrain_throughput(model_name: str, batch: int = 64, dtype: str = "fp32", steps: int = 5, warmup: int = 2,
                        impl: str = "ours", img_size: int = 224) -> dict[str, Any]:
    """Images/s of one training step of ``model_name`` (median over ``steps`` after ``warmup``)."""
    torch.manual_seed(0)
    stepper = _Stepper(build_benchmark_model(model_name, impl, img_size, dtype=dtype), impl, batch, img_size, dtype)
    for _ in range(warmup):
        stepper.step(record=False)
    for _ in range(steps):
        stepper.step()
    return {"model": model_name, "threads": torch.get_num_threads(), **stepper.result()}


def compare_throughput(model_name: str, batch: int = 64, dtype: str = "fp32", steps: int = 5, warmup: int = 2,
                       img_size: int = 224) -> dict[str, Any]:
    """Ours and the reference in one run, steps alternated; ``ratio`` = ours / reference img/s."""
    torch.manual_seed(0)
    teacher = None
    if model_name == "d2mae_vit_tiny":
        teacher, _ = build_teacher("vit_base", "random", img_size)
    steppers = {impl: _Stepper(build_benchmark_model(model_name, impl, img_size, teacher, dtype), impl, batch,
                               img_size, dtype) for impl in IMPLS}
    for _ in range(warmup):
        for s in steppers.values():
            s.step(record=False)
    for i in range(steps):
        for impl in (IMPLS if i % 2 == 0 else IMPLS[::-1]):
            steppers[impl].step()
    ours, ref = steppers["ours"].result(), steppers["reference"].result()
    return {"model": model_name, "dtype": dtype, "batch": batch, "threads": torch.get_num_threads(),
            "ours": ours, "reference": ref, "ratio": ours["img_per_s"] / ref["img_per_s"],
            "ratio_cpu_time": ours["img_per_cpu_s"] / ref["img_per_cpu_s"],
            "load_average": os.getloadavg()[0]}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::_addmm_activation", "aten::mkldnn_convolution",
              "aten::convolution_backward", "mkldnn::_linear_pointwise", "mkl::_mkl_linear")
ATTENTION_OPS = ("aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::_softmax_backward_data")


def step_breakdown(model_name: str, batch: int = 64, dtype: str = "fp32", impl: str = "ours", steps: int = 2,
                   img_size: int = 224) -> dict[str, float]:
    """Where one training step spends its time (ms per step, torch profiler self time): the matrix
    products of the linear layers and patch embedding (``MATMUL_OPS``), attention (fused kernels,
    or the batched products and softmax of explicit attention: ``ATTENTION_OPS``), everything else.

    The matmul part is what any implementation of the same model on the same kernels must spend:
    ``reference step time / our matmul time`` bounds the ratio an implementation could reach if all
    the rest were free.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    stepper = _Stepper(build_benchmark_model(model_name, impl, img_size, dtype=dtype), impl, batch, img_size, dtype)
    stepper.step(record=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            stepper.step(record=False)
    parts = {"matmul_ms": 0.0, "attention_ms": 0.0, "other_ms": 0.0}
    for event in prof.key_averages():
        if event.key in MATMUL_OPS:
            part = "matmul_ms"
        elif "scaled_dot_product" in event.key or event.key in ATTENTION_OPS:
            part = "attention_ms"
        else:
            part = "other_ms"
        parts[part] += event.self_cpu_time_total / 1e3 / steps
    parts["total_ms"] = sum(parts.values())
    return parts


def _write_outputs(results: list[dict[str, Any]], out: Path) -> None:
    atomic_write_json(out.with_suffix(".json"), results)
    lines = ["| model | precision | batch | threads | ours img/s | reference img/s | ratio | ratio (CPU time) "
             "| load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['threads']} | {r['ours']['img_per_s']:.1f} | "
                     f"{r['reference']['img_per_s']:.1f} | {r['ratio']:.2f}x | {r['ratio_cpu_time']:.2f}x | "
                     f"{r['load_average']:.1f} |")
    if any("breakdown" in r for r in results):
        lines += ["", "Time per step (ms, profiled): matrix products of the linear layers / attention / the rest. "
                  "Bound = reference step time / our matrix-product time: the ratio reachable if "
                  "everything but the matrix products cost nothing.", "",
                  "| model | precision | ours: matmul / attention / rest | reference: matmul / attention / rest "
                  "| bound |", "|---|---|---|---|---:|"]
        for r in results:
            if "breakdown" not in r:
                continue
            ours, ref = r["breakdown"]["ours"], r["breakdown"]["reference"]
            ref_step_ms = 1e3 * r["batch"] / r["reference"]["img_per_s"]
            lines.append(f"| {r['model']} | {r['dtype']} | {ours['matmul_ms']:.0f} / {ours['attention_ms']:.0f} / "
                         f"{ours['other_ms']:.0f} | {ref['matmul_ms']:.0f} / {ref['attention_ms']:.0f} / "
                         f"{ref['other_ms']:.0f} | {ref_step_ms / ours['matmul_ms']:.2f}x |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels = [f"{r['model']}\n{r['dtype']}" for r in results]
    xs = range(len(results))
    fig, ax = plt.subplots(figsize=(1.8 * len(results) + 2, 3.5))
    ax.bar([x - 0.2 for x in xs], [r["reference"]["img_per_s"] for r in results], 0.4, label="reference")
    ax.bar([x + 0.2 for x in xs], [r["ours"]["img_per_s"] for r in results], 0.4, label="ours")
    for x, r in zip(xs, results):
        ax.text(x + 0.2, r["ours"]["img_per_s"], f"{r['ratio']:.2f}x", ha="center", va="bottom")
    ax.set_ylim(top=1.15 * max(r["ours"]["img_per_s"] for r in results))
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel(f"images / s (batch {results[0]['batch']})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out.with_suffix(".png")) as temp:
        fig.savefig(temp, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description="pre-training step throughput, ours vs the reference")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile where each step's time goes (matrix products / attention / rest)")
    parser.add_argument("--out", type=Path, default=Path("results/pretrain_throughput"),
                        help="writes OUT.json, OUT.md and OUT.png")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for model_name in args.models:
        for dtype in args.dtypes:
            r = compare_throughput(model_name, args.batch, dtype, args.steps, args.warmup)
            if args.breakdown:
                r["breakdown"] = {impl: step_breakdown(model_name, args.batch, dtype, impl) for impl in IMPLS}
            print(f"{model_name} {dtype}: ours {r['ours']['img_per_s']:.1f} img/s, reference "
                  f"{r['reference']['img_per_s']:.1f} img/s, ratio {r['ratio']:.2f}x "
                  f"(CPU time {r['ratio_cpu_time']:.2f}x, load {r['load_average']:.1f})", flush=True)
            results.append(r)
    _write_outputs(results, args.out)
    return results


if __name__ == "__main__":
    main()
