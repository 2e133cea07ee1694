"""The tracking-speed benchmark's helpers (benchmarks/track_speed.py) that run without timing anything:
the generated end-to-end set and which rows a device gets by default."""
from __future__ import annotations

import json

import torch

from benchmarks import track_speed
from track.datasets.lasot import list_sequences, sequence_class


def _frame_counts(root) -> list[int]:
    return [len(list((root / sequence_class(n) / n / "img").glob("*.jpg"))) for n in list_sequences(root, "test")]


def test_e2e_dataset_is_reused_only_with_the_same_parameters(tmp_path, monkeypatch):
    """A set generated for one (sequences, frames, size) is reused for the same request and replaced
    for another (a --quick run's short set must not stand in for a full run's)."""
    calls = []
    make_class = track_speed._make_class
    monkeypatch.setattr(track_speed, "_make_class", lambda job: calls.append(job) or make_class(job))
    root = tmp_path / "e2e"
    names = track_speed.make_e2e_dataset(root, sequences=4, frames=3, size=(64, 48), workers=1)
    assert len(names) == 4 and _frame_counts(root) == [3] * 4 and len(calls) == 1

    assert track_speed.make_e2e_dataset(root, sequences=4, frames=3, size=(64, 48), workers=1) == names
    assert len(calls) == 1  # same parameters: reused

    track_speed.make_e2e_dataset(root, sequences=4, frames=5, size=(64, 48), workers=1)
    assert len(calls) == 2 and _frame_counts(root) == [5] * 4  # more frames: regenerated

    track_speed.make_e2e_dataset(root, sequences=4, frames=5, size=(80, 48), workers=1)
    assert len(calls) == 3  # another frame size: regenerated
    from PIL import Image

    first = list_sequences(root, "test")[0]
    with Image.open(root / sequence_class(first) / first / "img" / "00000001.jpg") as image:
        assert image.size == (80, 48)
    recorded = json.loads((root / "e2e_dataset.json").read_text())
    assert recorded == {"sequences": 4, "frames": 5, "size": [80, 48]}


def test_default_runs_gate_bf16_on_native_support_on_every_device(monkeypatch):
    """bf16 rows only where the device runs bf16 natively, CUDA included; the reason is kept."""
    monkeypatch.setattr(track_speed, "bf16_unsupported_reason", lambda where: None)
    runs, skipped = track_speed.default_runs(torch.device("cuda"))
    assert runs == [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16")] and skipped == []
    runs, skipped = track_speed.default_runs(torch.device("cpu"))
    assert ("torch", "bf16") in runs and ("openvino", "bf16") in runs and skipped == []

    monkeypatch.setattr(track_speed, "bf16_unsupported_reason", lambda where: "no native bf16 here")
    runs, skipped = track_speed.default_runs(torch.device("cuda"))
    assert runs == [("torch", "fp32"), ("torch", "fp16")] and skipped == ["bf16 rows: no native bf16 here"]
    runs, skipped = track_speed.default_runs(torch.device("cpu"))
    assert all(d == "fp32" for b, d in runs if (b, d) != ("openvino", "int8"))
    assert skipped[0] == "bf16 rows: no native bf16 here"


def test_default_runs_add_openvino_int8_on_a_cpu_where_nncf_is(monkeypatch):
    """int8 is one CPU row, OpenVINO's, when openvino and nncf are installed; else the reason is kept."""
    import importlib.util

    monkeypatch.setattr(track_speed, "bf16_unsupported_reason", lambda where: None)
    real = importlib.util.find_spec
    present = all(real(p) is not None for p in ("openvino", "nncf"))
    runs, skipped = track_speed.default_runs(torch.device("cpu"))
    assert [r for r in runs if r[1] == "int8"] == ([("openvino", "int8")] if present else [])
    assert all(d != "int8" for _, d in track_speed.default_runs(torch.device("cuda"))[0])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    runs, skipped = track_speed.default_runs(torch.device("cpu"))
    assert all(d != "int8" for _, d in runs)
    assert any("int8 rows: needs openvino and nncf" in reason for reason in skipped)


def test_full_step_rows_take_turns_with_the_network_rows_they_are_compared_with(monkeypatch):
    """A full-step row and the batch-1 network rows are timed in one interleaved group (the same load
    from other processes), so a full step can never come out faster than its own network call by
    being timed at another moment."""
    from pathlib import Path

    from track.config import build_model, load_config

    model = build_model(load_config(Path(__file__).resolve().parents[1] / "configs/track/vit_tiny_ce_tiny_synthetic.py"),
                        pretrained=None).eval()
    groups = []
    interleaved = track_speed._interleaved
    monkeypatch.setattr(track_speed, "_interleaved",
                        lambda calls, *args: groups.append(sorted(calls)) or interleaved(calls, *args))
    monkeypatch.setattr(track_speed, "matmul_peak", lambda device, dtype: {"flops": 1e11, "cpu_flops": 1e11})
    result = track_speed.speed_rows(model, "cpu", runs=[("torch", "fp32")], batches=(1, 2), frames=4)
    assert groups == [["ours torch fp32 batch 1", "ours torch fp32 full step"], ["ours torch fp32 batch 2"]]
    kinds = {row["name"]: row["kind"] for row in result["rows"]}
    assert kinds == {"ours torch fp32 batch 1": "network", "ours torch fp32 full step": "full step",
                     "ours torch fp32 batch 2": "network"}
