"""benchmarks.seg_speed: FLOP counting that includes CPU fused attention, per-config parameter/FLOP stats."""
from __future__ import annotations

from pathlib import Path

import torch

from backbones import build_backbone
from benchmarks.seg_speed import count_flops, seg_model_stats

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "seg"


def _vit_tiny_flops(grid: int, blocks: int = 12, dim: int = 192) -> int:
    """Hand count, 2 FLOPs per multiply-add: patch conv, then per block qkv + proj + MLP (12 d^2
    per token) and the two attention matmuls (2 N^2 d), N = tokens incl. the class token."""
    patches, tokens = grid * grid, grid * grid + 1
    per_block = 12 * dim * dim * tokens + 2 * tokens * tokens * dim
    return 2 * (dim * 3 * 16 * 16 * patches + blocks * per_block)


def test_flop_count_includes_fused_attention_on_cpu():
    vit = build_backbone("vit_tiny", img_size=64, num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    flops, _ = count_flops(lambda: vit.forward_intermediates(x, [11], intermediates_only=True))
    assert flops == _vit_tiny_flops(4)


def test_seg_model_stats_of_the_tiny_config():
    stats = seg_model_stats(CONFIGS / "upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py", size=(64, 64))
    assert stats["flops_by_module"]["backbone"] == _vit_tiny_flops(4)
    assert sum(stats["flops_by_module"].values()) == stats["flops"]
    assert stats["flops_by_module"]["decode_head"] > 0 and stats["gmacs"] == stats["flops"] / 2e9
    # ViT-Tiny: 5,717,416 with its 224 position table, final norm and 1000-class head; here a 4x4
    # table (17 x 192 instead of 197 x 192), no norm (384), no head (193,000)
    assert stats["params_backbone"] == 5_717_416 - 180 * 192 - 384 - 193_000
    assert stats["params"] > stats["params_inference"] > stats["params_backbone"]


def test_report_section_writes_tables_with_the_mmseg_baseline(monkeypatch, tmp_path):
    """The main report's section on a small config: one stats row per config, the latency of our
    backbone (and +RPE) and of mmseg's own MAE backbone, the same data in JSON and a picture."""
    import json

    from benchmarks import seg_speed

    demo = "upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py"
    monkeypatch.setattr(seg_speed, "BENCHMARK_CONFIGS", (demo,))
    monkeypatch.setattr(seg_speed, "LATENCY_CONFIG", demo)
    monkeypatch.setattr(seg_speed, "INPUT_SIZE", 64)
    text, data = seg_speed.report_section(tmp_path, threads=1, quick=True)
    assert [s["config"] for s in data["stats"]] == [demo] and data["stats"][0]["input_size"] == [64, 64]
    assert list(data["latency"]["results"]) == ["ours: ViTBackbone vit_tiny", "ours: ViTBackbone vit_tiny_rpe",
                                                "mmseg: MAE (192-d, 12 blocks)"]
    assert data["latency"]["repeats"] == 3 and data["latency"]["threads"] == 1
    assert all(r["model_median_ms"] > r["backbone_min_ms"] > 0 for r in data["latency"]["results"].values())
    assert f"| {demo} |" in text and "| mmseg: MAE (192-d, 12 blocks) |" in text
    assert (tmp_path / "seg.md").read_text() == text and (tmp_path / "seg.png").stat().st_size > 0
    assert json.loads((tmp_path / "seg.json").read_text())["stats"][0]["flops"] == data["stats"][0]["flops"]
