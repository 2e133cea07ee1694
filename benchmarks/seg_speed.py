"""Parameters, FLOPs and CPU latency of the segmentation configs.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` because it counts the fused
``scaled_dot_product_attention`` our ViT runs (mmengine's counter skips it, and mmseg's
``get_flops.py`` is broken with mmengine >= 0.7.3); it knows only the CUDA attention kernels, so
the CPU one gets the same formula here.  One FLOP is one multiply or one add (a
multiply-add is 2), over the inference path at 512x512: backbone + neck + decode head (the
auxiliary head trains only).  Papers that say "FLOPs" for multiply-adds report ``flops / 2``.

Latency compares our ViT-Tiny UperNet with mmseg's built-in ``MAE`` backbone of the same size
(192-d, 12 blocks, 12 heads, img_size 512) under the same neck and head, in one process with
alternating runs, on CPU with 2 threads, batch 1, 512x512.

    python -m benchmarks.seg_speed --out results/seg_benchmark      # JSON + Markdown + PNG

The main report (``benchmarks/report.py``) calls :func:`report_section`.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from fileio import atomic_path, atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "seg"
BENCHMARK_CONFIGS = (
    "upernet_vit-tiny_mae_8xb2-160k_ade20k-512x512.py",
    "upernet_vit-tiny_d2mae-ft-rpe_8xb2-160k_ade20k-512x512.py",
    "upernet_hiera-tiny_mae_8xb2-160k_ade20k-512x512.py",
    "fpn_vit-tiny-rpe_d2mae-ft_8xb2-160k_ade20k-512x512.py",
)
LATENCY_CONFIG = "upernet_vit-tiny_mae_8xb2-160k_ade20k-512x512.py"
INPUT_SIZE = 512

__all__ = ["build_segmentor", "count_flops", "seg_model_stats", "seg_latency", "mmseg_mae_backbone_cfg",
           "markdown", "write_outputs", "report_section"]


def _load_config(config, cfg_options: dict | None = None):
    from mmengine.config import Config

    cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_segmentor(config, cfg_options: dict | None = None) -> nn.Module:
    """The config's segmentor in eval mode on CPU, randomly initialised (no checkpoint read),
    SyncBN turned into BN as mmengine's runner does without a launcher."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import seg  # noqa: F401  (registers our modules)

    cfg = _load_config(config, cfg_options)
    init_default_scope(cfg.get("default_scope", "mmseg"))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pretrained = None
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    return model.eval()


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """The two matmuls of attention, as torch counts its CUDA kernels (softmax not counted)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA fused-attention kernels only; on CPU, scaled_dot_product_attention
# runs this one, which it would count as 0.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per top-level submodule) of running ``fn`` once, fused attention
    included on CPU as on GPU."""
    counter = FlopCounterMode(display=False, depth=2, custom_mapping=_EXTRA_FLOP_FORMULAS)
    with torch.no_grad(), counter:
        fn()
    per_module: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 2:
            per_module[parts[1]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module


def seg_model_stats(config_path: str | os.PathLike, size: tuple[int, int] = (512, 512)) -> dict:
    """Parameters and FLOPs of a seg config at ``size`` (inference path, batch 1).

    Returns ``dict(params, params_inference, params_backbone, flops, gmacs, flops_by_module)``:
    ``params`` counts every parameter (auxiliary head included), ``params_inference`` leaves the
    auxiliary head out; ``flops`` are backbone + neck + decode head, ``gmacs = flops / 2e9``.
    """
    model = build_segmentor(config_path)
    params = sum(p.numel() for p in model.parameters())
    aux = getattr(model, "auxiliary_head", None)
    aux_params = sum(p.numel() for p in aux.parameters()) if aux is not None else 0
    x = torch.zeros(1, 3, *size)
    flops, by_module = count_flops(lambda: model(x, mode="tensor"))
    # mmseg calls decode_head.forward() directly, past the module hooks the counter tracks by
    by_module["decode_head"] = flops - sum(by_module.values())
    return dict(config=Path(config_path).name, params=params, params_inference=params - aux_params,
                params_backbone=sum(p.numel() for p in model.backbone.parameters()), flops=flops,
                gmacs=flops / 2e9, flops_by_module=by_module, input_size=list(size))


def mmseg_mae_backbone_cfg(embed_dims: int = 192, img_size: int = 512) -> dict:
    """mmseg's built-in ``MAE`` backbone at ViT-Tiny size, as MAE-Lite configured it."""
    return dict(type="MAE", img_size=(img_size, img_size), patch_size=16, embed_dims=embed_dims, num_layers=12,
                num_heads=12, mlp_ratio=4, init_values=1.0, drop_path_rate=0.1, out_indices=[3, 5, 7, 11])


def _time_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def seg_latency(config_path: str | os.PathLike = CONFIG_DIR / LATENCY_CONFIG, threads: int = 2, size: int = 512,
                warmup: int = 2, repeats: int = 10, with_rpe: bool = True) -> dict:
    """CPU latency (ms, batch 1) of our ViT-Tiny UperNet and the same with mmseg's ``MAE`` backbone.

    Models run in turn, ``repeats`` rounds after ``warmup``, so load from other processes hits all
    alike; reports median and minimum for the whole segmentor (``model(x, mode="tensor")``) and
    for its backbone alone.  ``with_rpe`` adds our ViT-Tiny+RPE (relative position bias through the
    fused attention kernel's mask), the like-for-like match of mmseg's ``MAE``, which always
    carries relative position bias tables and computes attention explicitly.
    """
    from fileio.progress import progress

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = _load_config(config_path)
        variants = {"ours: ViTBackbone vit_tiny": build_segmentor(cfg)}
        if with_rpe:
            variants["ours: ViTBackbone vit_tiny_rpe"] = build_segmentor(
                cfg, {"model.backbone.arch": "vit_tiny_rpe"})
        mae_cfg = _load_config(config_path)
        mae_cfg.model.backbone = mmseg_mae_backbone_cfg(img_size=size)
        variants["mmseg: MAE (192-d, 12 blocks)"] = build_segmentor(mae_cfg)
        x = torch.randn(1, 3, size, size)
        times: dict[str, dict[str, list[float]]] = {k: {"model": [], "backbone": []} for k in variants}
        with torch.inference_mode():
            for _ in range(warmup):
                for model in variants.values():
                    model(x, mode="tensor")
            for _ in progress(range(repeats), desc="latency rounds", leave=False):
                for name, model in variants.items():
                    times[name]["model"].append(_time_ms(lambda: model(x, mode="tensor")))
                    times[name]["backbone"].append(_time_ms(lambda: model.backbone(x)))
        result = {}
        for name, model in variants.items():
            t = times[name]
            result[name] = dict(
                model_median_ms=statistics.median(t["model"]), model_min_ms=min(t["model"]),
                backbone_median_ms=statistics.median(t["backbone"]), backbone_min_ms=min(t["backbone"]),
                params_backbone=sum(p.numel() for p in model.backbone.parameters()))
        return dict(threads=threads, input_size=[size, size], repeats=repeats, torch=torch.__version__,
                    results=result)
    finally:
        torch.set_num_threads(previous_threads)


def markdown(stats: list[dict], latency: dict | None) -> str:
    """The parameter / FLOP table, and the latency table when measured, as Markdown."""
    lines = ["| config | params (M) | params w/o aux (M) | backbone (M) | GFLOPs | GMACs |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in stats:
        lines.append(f"| {s['config']} | {s['params'] / 1e6:.2f} | {s['params_inference'] / 1e6:.2f} | "
                     f"{s['params_backbone'] / 1e6:.2f} | {s['flops'] / 1e9:.1f} | {s['gmacs']:.1f} |")
    if latency:
        lines += ["", f"CPU latency, {latency['threads']} threads, batch 1, "
                      f"{latency['input_size'][0]}x{latency['input_size'][1]}, {latency['repeats']} rounds, "
                      "models in turn; baseline: mmseg's own `MAE` backbone at ViT-Tiny size under the same "
                      "neck and head:", "",
                  "| model | segmentor median (ms) | min | backbone median (ms) | min |", "|---|---:|---:|---:|---:|"]
        for name, r in latency["results"].items():
            lines.append(f"| {name} | {r['model_median_ms']:.0f} | {r['model_min_ms']:.0f} | "
                         f"{r['backbone_median_ms']:.0f} | {r['backbone_min_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def _plot(stats: list[dict], latency: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if latency else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    names = [s["config"].split("_8xb2")[0] for s in stats]
    parts = sorted({k for s in stats for k in s["flops_by_module"]})
    left = [0.0] * len(stats)
    for part in parts:
        values = [s["flops_by_module"].get(part, 0) / 1e9 for s in stats]
        ax.barh(names, values, left=left, label=part)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("GFLOPs at 512x512 (1 multiply-add = 2)")
    ax.legend(fontsize=8)
    if latency:
        ax = axes[0, 1]
        labels = list(latency["results"])
        model_ms = [latency["results"][k]["model_median_ms"] for k in labels]
        backbone_ms = [latency["results"][k]["backbone_median_ms"] for k in labels]
        ax.barh(labels, model_ms, label="segmentor", color="#8fb3d9")
        ax.barh(labels, backbone_ms, label="backbone", color="#1f5f99")
        ax.set_xlabel(f"median CPU latency (ms), {latency['threads']} threads, batch 1")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=120)
    plt.close(fig)


def write_outputs(stats: list[dict], latency: dict | None, out: Path) -> str:
    """``out``.json, .md and .png; returns the Markdown."""
    text = markdown(stats, latency)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), dict(stats=stats, latency=latency))
    atomic_write_text(out.with_suffix(".md"), text)
    _plot(stats, latency, out.with_suffix(".png"))
    return text


def report_section(out_dir: Path, threads: int, quick: bool) -> tuple[str, dict]:
    """The main report's segmentation section: parameters and FLOPs of ``BENCHMARK_CONFIGS`` at
    ``INPUT_SIZE``, CPU latency of ``LATENCY_CONFIG`` against mmseg's ``MAE`` backbone; writes
    ``out_dir/seg.{json,md,png}``."""
    from fileio.progress import progress

    size = (INPUT_SIZE, INPUT_SIZE)
    stats = [seg_model_stats(CONFIG_DIR / c, size) for c in progress(BENCHMARK_CONFIGS, desc="FLOPs", leave=False)]
    latency = seg_latency(CONFIG_DIR / LATENCY_CONFIG, threads=threads, size=INPUT_SIZE, repeats=3 if quick else 10)
    return write_outputs(stats, latency, Path(out_dir) / "seg"), dict(stats=stats, latency=latency)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Parameters, FLOPs and CPU latency of the seg configs")
    parser.add_argument("--configs", nargs="*", type=Path, default=[CONFIG_DIR / c for c in BENCHMARK_CONFIGS])
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json, <out>.md and <out>.png")
    parser.add_argument("--no-latency", action="store_true", help="skip the CPU latency comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    from fileio.progress import progress

    stats = [seg_model_stats(c) for c in progress(args.configs, desc="FLOPs", leave=False)]
    latency = None if args.no_latency else seg_latency(threads=args.threads, repeats=args.repeats)
    if args.out is not None:
        print(write_outputs(stats, latency, args.out))
        print(f"wrote {args.out.with_suffix('.json')}, .md, .png")
    else:
        print(markdown(stats, latency))
    return dict(stats=stats, latency=latency)


if __name__ == "__main__":
    main()
