"""The int8 precision of the tracker's OpenVINO backend (``track.quantize``): options, quantized maps
against fp32, batched against one at a time, the cache key, calibration input errors, agreement figures.

Quantization runs on the tiny synthetic tracker config (4 blocks, 64 / 128 px crops): seconds each.
Skips where openvino or nncf is not installed.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")

import engine.precision  # noqa: E402
from engine.precision import DTYPES, resolve_precision  # noqa: E402
from track import quantize as quantize_module  # noqa: E402
from track import runtime  # noqa: E402
from benchmarks.track_speed import demo_calibration  # noqa: E402
from track.quantize import calibration_set, quantize, quantized_step, record_verdict, weights_digest  # noqa: E402
from track.runtime import OpenVinoStep, resolve_dtype, resolve_runtime  # noqa: E402
from track.tracker import InferenceNetwork  # noqa: E402
from conftest import load_tool, write_square_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    from track.config import load_config, model_from_checkpoint

    torch.manual_seed(0)
    return model_from_checkpoint(load_config(CONFIG), None)[0].eval()


@pytest.fixture(scope="module")
def int8_network(model, tmp_path_factory):
    return InferenceNetwork(model, "int8", backend="openvino", int8_cache=tmp_path_factory.mktemp("int8"),
                            calibration=demo_calibration(tmp_path_factory.mktemp("calibration")))


def _crops(model, count: int = 6, seed: int = 7):
    """Template tokens input and search crops cut from a demo sequence no calibration pair comes from."""
    from track.processing import crop_and_resize

    frames, first, truth = _demo(seed, count + 1)
    template = crop_and_resize(frames[0], first, 2.0, model.template_size).image
    crops = np.stack([crop_and_resize(frames[i], truth[i - 1], 4.0, model.search_size).image
                      for i in range(1, count + 1)])
    return template, crops


def _demo(seed: int, frames: int):
    import cv2

    from benchmarks.demo_data.lasot import synthesize_sequence

    demo = synthesize_sequence(np.random.default_rng(seed), frames, (320, 240))
    truth = demo.gt_boxes.astype(np.float64)
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in demo.frames], truth[0], truth


# ---------------------------------------------------------------------------- options

def test_int8_is_an_openvino_cpu_precision(monkeypatch):
    cpu = torch.device("cpu")
    assert "int8" in DTYPES
    assert resolve_dtype("int8", cpu, "openvino") == "int8"
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(ValueError, match=rf"dtype='int8' is post-training quantization by the openvino backend.*"
                                             rf"got backend='{backend}'"):
            resolve_dtype("int8", cpu, backend)
    with pytest.raises(ValueError, match="dtype='int8'.*got backend='openvino' on cuda:0"):
        resolve_dtype("int8", torch.device("cuda", 0), "openvino")
    with pytest.raises(ValueError, match="precision='int8' is post-training quantization.*not a torch precision"):
        resolve_precision("int8", cpu)
    assert resolve_dtype("auto", cpu, "openvino") in ("fp32", "bf16")          # auto never quantizes
    assert resolve_runtime("cpu", "int8", "auto") == ("cpu", "int8", "openvino")
    with pytest.raises(SystemExit, match="--dtype 'int8' is post-training quantization"):
        resolve_runtime("cpu", "int8", "torch")
    monkeypatch.setattr(engine.precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(RuntimeWarning, match="dtype='int8' on a CPU without VNNI or AMX-INT8"):
        assert resolve_dtype("int8", cpu, "openvino") == "int8"
    monkeypatch.setattr(engine.precision, "cpu_flags", lambda: frozenset({"avx2", "avx_vnni"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("int8", cpu, "openvino") == "int8"
    real = runtime.importlib.util.find_spec
    monkeypatch.setattr(quantize_module.importlib.util, "find_spec",
                        lambda name, *args: None if name == "nncf" else real(name, *args))
    with pytest.raises(SystemExit, match=r"--dtype 'int8' needs nncf \(pip install nncf\)"):
        resolve_runtime("cpu", "int8", "openvino")


def test_tools_accept_int8():
    import argparse

    parser = argparse.ArgumentParser()
    runtime.add_runtime_arguments(parser)
    assert parser.parse_args(["--dtype", "int8"]).dtype == "int8"


def test_cpu_int8_flags():
    assert engine.precision.cpu_int8_native(frozenset({"avx512f", "avx512_vnni"}))
    assert engine.precision.cpu_int8_native(frozenset({"amx_int8"}))
    assert not engine.precision.cpu_int8_native(frozenset({"avx2", "fma"}))
    amx = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    assert not engine.precision.cpu_int8_native(amx, isa_limit="AVX2")         # ONEDNN_MAX_CPU_ISA hides VNNI
    assert engine.precision.cpu_int8_native(amx, isa_limit="AVX2_VNNI")
    assert not engine.precision.cpu_bf16_native(amx, "AVX512", isa_limit="AVX512_CORE_VNNI")
    assert engine.precision.cpu_bf16_native(amx, "AVX512", isa_limit="AVX512_CORE_AMX")


def test_bf16_below_its_isa_fails_naming_the_precision(tmp_path):
    """OpenVINO under ``ONEDNN_MAX_CPU_ISA=AVX2`` has no bf16 Softmax kernel: an explicit bf16 request fails
    with an error naming the precision, the limit and the way out (auto picks fp32 there, tested below)."""
    import os
    import subprocess
    import sys

    code = ("import torch, warnings; warnings.simplefilter('ignore'); torch.manual_seed(0)\n"
            "from track.config import load_config, model_from_checkpoint\n"
            "from track.tracker import InferenceNetwork\n"
            f"model = model_from_checkpoint(load_config({str(CONFIG)!r}), None)[0].eval()\n"
            "InferenceNetwork(model, 'bf16', backend='openvino')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(REPO)})
    if done.returncode == 0:
        pytest.skip("OpenVINO compiled the bf16 step under the AVX2 limit on this CPU (no failure to name); "
                    "it fails on AVX-512 CPUs with bf16, where this test runs")
    assert ("RuntimeError: OpenVINO cannot compile the step with bf16 inference precision on this CPU (oneDNN "
            "limited to AVX2 by ONEDNN_MAX_CPU_ISA); use --dtype fp32") in done.stderr, done.stderr[-2000:]


def test_auto_follows_the_onednn_isa_limit(monkeypatch):
    """Under ``ONEDNN_MAX_CPU_ISA=AVX2`` (an AVX2-only CPU emulated: OpenVINO there has no bf16 Softmax and
    int8 ran 0.64x fp32) ``auto`` picks fp32, bf16 is said to be emulated and int8 warns, whatever the
    CPU's flags; without the limit, auto on an AMX / AVX512-BF16 CPU picks bf16."""
    cpu = torch.device("cpu")
    amx = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    monkeypatch.setattr(engine.precision, "cpu_flags", lambda path="/proc/cpuinfo": amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert resolve_dtype("auto", cpu, "openvino") == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert resolve_dtype("auto", cpu, "openvino") == "fp32" and resolve_dtype("auto", cpu, "torch") == "fp32"
    assert "ISA is limited to AVX2 (ONEDNN_MAX_CPU_ISA)" in engine.precision.bf16_unsupported_reason(cpu)
    with pytest.warns(RuntimeWarning, match="without VNNI or AMX-INT8"):
        resolve_dtype("int8", cpu, "openvino")


# ---------------------------------------------------------------------------- the quantized step

class _Maps(torch.nn.Module):
    """The step up to the three head maps (score, offset, size), concatenated on channels."""

    def __init__(self, network: InferenceNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        from track.tracker import _pixels

        maps = self.network.net.forward_tokens(template_tokens, _pixels(search), 1.0, details=False)
        return torch.cat([maps["score_map"], maps["offset_map"], maps["size_map"]], dim=1)


def test_quantized_maps_follow_fp32(model, tmp_path):
    """The int8 maps (score, offset, size) of a random tiny tracker without candidate elimination (whose
    token choice flips on near ties and would move whole regions) follow fp32 on crops of a sequence the
    calibration never saw: each map within 30% of its fp32 range everywhere, 8% on average, correlation
    above 0.95 (measured: at most 21%, 3 to 6% on average, 0.97); and they are not the fp32 maps (the graph holds
    FakeQuantize ops and the maps differ), so the test sees int8."""
    from track.onnx_export import export_module_bytes

    network = InferenceNetwork(model, "fp32", backend="openvino", ce_keep_ratio=1.0)
    with torch.no_grad():
        graph = export_module_bytes(_Maps(network), network._example(), ["template_tokens", "search"], ["maps"],
                                    dynamic_batch=True)
    pairs = calibration_set(demo_calibration(tmp_path / "calibration"), model.template_size, model.search_size,
                            sequences=2, pairs_per_sequence=6)
    samples = [{"template_tokens": network.template_tokens(t).numpy(), "search": s[None]}
               for t, s in zip(pairs.templates, pairs.searches)]
    quantized = quantize(graph, samples)
    assert sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops()) > 10
    template, crops = _crops(model)
    tokens = np.repeat(network.template_tokens(template).numpy(), len(crops), 0)
    fp32 = OpenVinoStep(graph, ["template_tokens", "search"], "fp32")(tokens, crops)[0]
    int8 = OpenVinoStep(quantized, ["template_tokens", "search"], "int8")(tokens, crops)[0]
    error = np.abs(int8 - fp32)
    for channel, name in enumerate(("score", "offset x", "offset y", "size w", "size h")):
        spread = np.ptp(fp32[:, channel])
        worst, mean = error[:, channel].max() / spread, error[:, channel].mean() / spread
        correlation = np.corrcoef(fp32[:, channel].ravel(), int8[:, channel].ravel())[0, 1]
        assert worst < 0.3 and mean < 0.08 and correlation > 0.95, (name, worst, mean, correlation)
    assert error.mean() > 1e-5


def test_batched_int8_equals_one_at_a_time(model, int8_network):
    template, crops = _crops(model, 5, seed=11)
    tokens = int8_network.template_tokens(template)
    boxes, peaks = int8_network.locate(tokens, crops)
    for index, crop in enumerate(crops):
        box, peak = int8_network.locate(tokens, crop)
        np.testing.assert_allclose(box[0], boxes[index], atol=1e-5)
        np.testing.assert_allclose(peak[0], peaks[index], atol=1e-5)
    tracker_boxes = InferenceNetwork(model, "fp32", backend="openvino").locate(tokens, crops)[0]
    assert not np.array_equal(tracker_boxes, boxes)                              # int8, not fp32


# ---------------------------------------------------------------------------- the cache

def test_cache_key_follows_checkpoint_and_calibration(model, tmp_path, monkeypatch):
    """The same checkpoint and calibration reads the cache; another calibration set, or a slot written
    for another checkpoint, is quantized again with a warning that names what changed."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    import copy

    moved = copy.deepcopy(model)                                                 # one weight moved a little
    with torch.no_grad():
        moved.head.score[-1].bias.add_(1e-6)
    assert weights_digest(moved) != weights_digest(model)
    assert weights_digest(copy.deepcopy(model)) == weights_digest(model)

    root = tmp_path / "lasot"
    make_lasot_dataset(root, ("car",), seqs_per_class=1, num_frames=4, size=(160, 120), write_training_set=False)
    a = calibration_set(root, model.template_size, model.search_size)
    b = calibration_set(root, model.template_size, model.search_size)
    assert a.digest == b.digest and len(a) == 3
    frame = next((root / "car").glob("*/img/00000002.jpg"))
    frame.write_bytes(frame.read_bytes() + b"\0")                               # same pixels, other file
    c = calibration_set(root, model.template_size, model.search_size)
    assert c.digest != a.digest
    assert calibration_set(demo_calibration(tmp_path / "demo"), model.template_size, model.search_size).digest \
        != a.digest
    monkeypatch.delenv("LITEVIT_INT8_CALIBRATION", raising=False)
    with pytest.raises(ValueError, match="int8 quantization needs calibration sequences"):
        calibration_set(None, model.template_size, model.search_size)

    from track.onnx_export import export_module_bytes

    class Small(torch.nn.Module):                 # any graph will do: the key, not the network, is tested
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 4)

        def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
            return self.linear(search.float().mean(dim=(1, 2))) + template_tokens.mean(dim=(1, 2))[:, None]

    with torch.no_grad():
        graph = export_module_bytes(Small(), (torch.zeros(1, 4, 8), torch.zeros(1, 16, 16, 3, dtype=torch.uint8)),
                                    ["template_tokens", "search"], ["packed"], dynamic_batch=True)
    calls = []

    def samples(pairs):
        def make():
            calls.append(pairs.digest)
            return [{"template_tokens": np.full((1, 4, 8), i, np.float32), "search": s[None, :16, :16]}
                    for i, s in enumerate(pairs.searches)]
        return make

    digest, cache = weights_digest(model), tmp_path / "cache"
    _, source = quantized_step(graph, digest, {"x": 1}, a, samples(a), cache_dir=cache)
    assert "quantized" in source and calls == [a.digest]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, source = quantized_step(graph, digest, {"x": 1}, b, samples(b), cache_dir=cache)
    assert "from the cache" in source and len(calls) == 1
    with pytest.warns(RuntimeWarning, match=r"stale \(the calibration set changed\): quantizing again"):
        _, source = quantized_step(graph, digest, {"x": 1}, c, samples(c), cache_dir=cache)
    assert "re-quantized" in source and calls[-1] == c.digest
    slot = next(cache.iterdir())
    key = json.loads((slot / "key.json").read_text())
    key["weights"] = weights_digest(moved)                                       # a slot of another checkpoint
    (slot / "key.json").write_text(json.dumps(key))
    with pytest.warns(RuntimeWarning, match=r"stale \(the checkpoint changed\)"):
        quantized_step(graph, digest, {"x": 1}, c, samples(c), cache_dir=cache)
    assert len(calls) == 3
    with torch.no_grad():                                                        # same weights, other code
        other = export_module_bytes(Small(), (torch.zeros(1, 4, 8), torch.zeros(1, 16, 16, 3, dtype=torch.uint8)),
                                    ["template_tokens", "search"], ["packed"], dynamic_batch=False)
    with pytest.warns(RuntimeWarning, match=r"stale \(the exported graph \(the tracker's code or the exporter\) "):
        _, source = quantized_step(other, digest, {"x": 1}, c, samples(c), cache_dir=cache)
    assert "re-quantized" in source and len(calls) == 4 and not list(cache.glob(".*"))   # no temporary left


def test_auto_runs_int8_only_where_measured_usable_and_faster(model, tmp_path, monkeypatch, capsys):
    """``--dtype auto`` on OpenVINO runs the cached int8 model only when its verdict, measured on this CPU at
    these threads for the model now in the cache slot, says it kept the boxes and was faster than every
    floating-point step; otherwise the floating-point step auto always ran. The LaSOT runner (what
    ``tools/track_test.py`` runs) and ``tools/track_video.py`` report what ran."""
    from benchmarks.demo_data.lasot import make_lasot_dataset
    from track.model import save_tracker_checkpoint
    from track.runner import run_lasot

    monkeypatch.setenv("LITEVIT_CACHE", str(tmp_path))
    cache, calibration = tmp_path / "track_int8", demo_calibration(tmp_path / "calibration")
    int8 = InferenceNetwork(model, "int8", backend="openvino", int8_cache=cache, calibration=calibration)
    auto_float = InferenceNetwork(model, "auto", backend="openvino", int8_cache=cache)
    assert auto_float.dtype in ("bf16", "fp32") and auto_float.int8_source is None     # no verdict yet
    digest = weights_digest(model)
    good = {"source": "demo", "usable": True, "mean_iou_per_frame": 0.99, "auc_diff_points": -0.2}
    with pytest.raises(ValueError, match="agreements against ground truth"):
        record_verdict(digest, [{"source": "demo"}], 50.0, {"openvino bf16": 40.0}, cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="no int8 model cached"):
        record_verdict("0" * 64, [good], 50.0, {"openvino bf16": 40.0}, cache_dir=cache)
    verdict = record_verdict(digest, [good, {**good, "auc_diff_points": 0.4}], 50.0,
                             {"openvino bf16": 40.0, "torch fp32": 20.0}, cache_dir=cache)
    assert verdict["usable"] and verdict["faster"] and verdict["best_float"] == "openvino bf16"
    assert verdict["auc_diff_points"] == 0.4                                     # the larger difference
    auto = InferenceNetwork(model, "auto", backend="openvino", int8_cache=cache)
    assert auto.dtype == "int8" and "chosen by --dtype auto" in auto.int8_source
    template, crops = _crops(model, 3)
    tokens = int8.template_tokens(template)
    np.testing.assert_array_equal(auto.locate(tokens, crops)[0], int8.locate(tokens, crops)[0])
    assert InferenceNetwork(model, "auto", backend="torch").dtype == auto_float.dtype   # OpenVINO only
    root = tmp_path / "lasot"
    make_lasot_dataset(root, ("car",), seqs_per_class=1, num_frames=3, size=(160, 120), test_per_class=1,
                       write_training_set=False)
    save_tracker_checkpoint(model, str(tmp_path / "tracker.pth"))
    common = dict(device="cpu", backend="openvino", threads=1, decode_threads=1, show_progress=False)
    assert run_lasot(CONFIG, tmp_path / "tracker.pth", root, tmp_path / "auto", **common)["dtype"] == "int8"
    assert run_lasot(CONFIG, tmp_path / "tracker.pth", root, tmp_path / "bf16", dtype=auto_float.dtype,
                     **common)["dtype"] == auto_float.dtype
    capsys.readouterr()
    load_tool("track_video").main([str(write_square_video(tmp_path / "clip.mp4", 3)), "--init", "30,40,31,31",
                                   "--config", str(CONFIG), "--checkpoint", str(tmp_path / "tracker.pth"),
                                   "--backend", "openvino", "--device", "cpu", "--threads", "1", "--quiet",
                                   "--out", str(tmp_path / "auto.mp4")])
    assert "(int8, openvino); int8 chosen by --dtype auto" in capsys.readouterr().out

    def auto_dtype(**kwargs) -> str:
        return InferenceNetwork(model, "auto", backend="openvino", int8_cache=cache, **kwargs).dtype

    assert auto_dtype(ce_keep_ratio=0.5) == auto_float.dtype                     # another graph was measured
    torch.set_num_threads(2)                                                     # the fixture restores one
    assert auto_dtype() == auto_float.dtype                                      # measured at other threads
    torch.set_num_threads(1)
    for agreements, int8_fps in (([{**good, "usable": False}], 50.0), ([good], 39.0)):
        record_verdict(digest, agreements, int8_fps, {"openvino bf16": 40.0}, cache_dir=cache)
        assert auto_dtype() == auto_float.dtype                                  # boxes moved / not faster
    record_verdict(digest, [good], 50.0, {"openvino bf16": 40.0}, cache_dir=cache)
    assert auto_dtype() == "int8"
    other = tmp_path / "other"                                                  # re-quantized: verdict gone
    shutil.copytree(calibration, other)
    next(other.glob("*/*/img/00000002.jpg")).write_bytes(next(other.glob("*/*/img/00000002.jpg")).read_bytes() + b"\0")
    with pytest.warns(RuntimeWarning, match="calibration set changed"):
        InferenceNetwork(model, "int8", backend="openvino", int8_cache=cache, calibration=other)
    assert auto_dtype() == auto_float.dtype


def test_speed_benchmark_records_the_int8_verdict(tmp_path, monkeypatch):
    """``benchmarks.track_speed --dtype int8 --agreement`` times the float step auto would run beside int8
    and writes the verdict that auto reads, from the figures it printed."""
    from benchmarks.track_speed import main

    monkeypatch.setenv("LITEVIT_CACHE", str(tmp_path / "cache"))
    result = main(["--config", str(CONFIG), "--dtype", "int8", "--backend", "openvino", "--batch", "1", "--frames", "2",
                   "--threads", "1", "--agreement", "--demo-sequences", "1",
                   "--calibration", str(demo_calibration(tmp_path / "calibration"))])
    verdict, (agreement,) = result["int8_verdict"], result["agreement"]
    rows = {(r["dtype"], r["kind"]): r for r in result["speed"]["rows"]}
    float_dtype = resolve_dtype("auto", torch.device("cpu"), "openvino")
    assert verdict["int8_fps"] == rows["int8", "full step"]["full_fps"]
    assert verdict["best_float_fps"] == rows[float_dtype, "full step"]["full_fps"]
    assert verdict["usable"] == agreement["usable"]
    assert verdict["faster"] == (verdict["int8_fps"] > verdict["best_float_fps"])
    (slot,) = (tmp_path / "cache" / "track_int8").iterdir()                     # the benchmark's random weights
    assert json.loads((slot / "verdict.json").read_text()) == {k: v for k, v in verdict.items() if k != "kind"}


def test_calibration_folder_errors(tmp_path, model):
    sizes = (model.template_size, model.search_size)
    with pytest.raises(FileNotFoundError, match=f"calibration folder not found: {tmp_path / 'missing'}"):
        calibration_set(tmp_path / "missing", *sizes)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no LaSOT-layout sequence"):
        calibration_set(tmp_path / "empty", *sizes)
    flat = tmp_path / "flat"
    (flat / "img").mkdir(parents=True)                                           # one sequence, no class folder
    (flat / "groundtruth.txt").write_text("1,1,10,10\n")
    with pytest.raises(ValueError, match=f"calibration folder {flat} holds no LaSOT-layout sequence"):
        calibration_set(flat, *sizes)


# ---------------------------------------------------------------------------- the tools

def _tool(tool: str, *args: str, cache: Path, calibration_env: str | None = None):
    """A tool run through its real entry point (a fresh process), with its own cache folder."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LITEVIT_INT8_CALIBRATION"}
    env.update(LITEVIT_CACHE=str(cache), OMP_NUM_THREADS="1", **({"LITEVIT_INT8_CALIBRATION": calibration_env}
                                                                   if calibration_env else {}))
    return subprocess.run([sys.executable, f"tools/{tool}", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.slow
def test_track_test_tool_int8_calibration(tmp_path):
    """``tools/track_test.py --dtype int8`` in its own process: calibrated on the generated demo sequences
    when no folder is given, on ``--int8-calibration DIR`` when one is; results written both times."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    root = tmp_path / "lasot"
    names = make_lasot_dataset(root, classes=("car",), seqs_per_class=2, num_frames=5, size=(160, 120),
                               test_per_class=2, write_training_set=False)
    cache = tmp_path / "cache"
    common = [str(CONFIG), "none", "--lasot-root", str(root), "--dtype", "int8", "--backend", "openvino",
              "--threads", "1", "--decode-threads", "1"]
    demo = _tool("track_test.py", *common, "--out", str(tmp_path / "demo"), cache=cache)
    assert demo.returncode == 0, demo.stderr[-3000:]
    said = demo.stdout + demo.stderr
    assert "(int8, openvino)" in said and f"quantized on 32 pairs from {cache / 'int8_calibration_demo'}," in said
    given = _tool("track_test.py", *common, "--out", str(tmp_path / "given"), "--int8-calibration", str(root),
                  cache=cache)
    assert given.returncode == 0, given.stderr[-3000:]
    assert f"quantized on 8 pairs from {root.resolve()}," in given.stdout + given.stderr
    for name in names:
        assert np.loadtxt(tmp_path / "given" / f"{name}.txt", delimiter=",").shape == (5, 4)
        assert np.loadtxt(tmp_path / "demo" / f"{name}.txt", delimiter=",").shape == (5, 4)


def test_track_test_tool_int8_calibration_errors(tmp_path, monkeypatch):
    """An empty, flat (no class folder) or missing ``--int8-calibration`` folder, or such a folder in
    ``LITEVIT_INT8_CALIBRATION``, stops ``tools/track_test.py`` before any work with an error naming it."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    main = load_tool("track_test").main
    root = tmp_path / "lasot"
    make_lasot_dataset(root, classes=("car",), seqs_per_class=1, num_frames=3, size=(96, 72), test_per_class=1,
                       write_training_set=False)
    common = [str(CONFIG), "none", "--lasot-root", str(root), "--dtype", "int8", "--backend", "openvino"]
    (tmp_path / "empty").mkdir()
    flat = tmp_path / "flat"
    (flat / "img").mkdir(parents=True)
    (flat / "groundtruth.txt").write_text("1,1,10,10\n")
    monkeypatch.delenv("LITEVIT_INT8_CALIBRATION", raising=False)
    for folder, message in ((tmp_path / "empty", f"calibration folder {tmp_path / 'empty'} holds no LaSOT-layout"),
                            (flat, f"calibration folder {flat} holds no LaSOT-layout sequence"),
                            (tmp_path / "missing", f"calibration folder not found: {tmp_path / 'missing'}")):
        out = tmp_path / f"out_{folder.name}"
        with pytest.raises(SystemExit, match=f"error: {message}"):
            main([*common, "--out", str(out), "--int8-calibration", str(folder)])
        assert not out.exists()                                                  # stopped before any work
    monkeypatch.setenv("LITEVIT_INT8_CALIBRATION", str(flat))
    with pytest.raises(SystemExit, match=f"error: calibration folder {flat} holds no"):
        main([*common, "--out", str(tmp_path / "out_env")])
    assert not (tmp_path / "out_env").exists()


def test_track_video_tool_int8_calibration(tmp_path):
    from benchmarks.demo_data.lasot import make_lasot_dataset

    video = write_square_video(tmp_path / "clip.mp4", 4)
    root = tmp_path / "lasot"
    make_lasot_dataset(root, classes=("dog",), seqs_per_class=1, num_frames=5, size=(160, 120), test_per_class=1,
                       write_training_set=False)
    common = [str(video), "--init", "30,40,31,31", "--config", str(CONFIG), "--dtype", "int8", "--backend",
              "openvino", "--threads", "1", "--quiet"]
    done = _tool("track_video.py", *common, "--out", str(tmp_path / "out.mp4"), "--int8-calibration", str(root),
                 cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(int8, openvino); int8 model quantized on 4 pairs from {root.resolve()}," in done.stdout
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=f"--int8-calibration: calibration folder {tmp_path / 'empty'} holds no"):
        load_tool("track_video").main([*common, "--out", str(tmp_path / "bad.mp4"), "--int8-calibration",
                                   str(tmp_path / "empty")])
    assert not (tmp_path / "bad.mp4").exists()


# ---------------------------------------------------------------------------- agreement figures

def test_agreement_auc_and_usable_from_known_boxes():
    from benchmarks.track_speed import agreement_from_boxes

    fp32 = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    free = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10]], dtype=float)
    truth = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 10, 10], [0, 0, 10, 10]], dtype=float)
    result = agreement_from_boxes(fp32, fp32, free, truth)
    # fp32 vs truth: IoU 1, 1, 0, 1 -> above 20 of the 21 thresholds (not 1.0) on 3 frames
    assert result["auc_fp32"] == pytest.approx(100 * 3 * 20 / (4 * 21))
    # free vs truth: 1, 1/3, 0, 1/3 -> 20 + 7 (thresholds 0 .. 0.30) + 0 + 7
    assert result["auc_free_running"] == pytest.approx(100 * 34 / 84)
    assert result["auc_diff_points"] == pytest.approx(100 * (34 - 60) / 84)
    assert result["mean_iou_per_frame"] == 1.0 and result["usable"] is False    # AUC off by 31 points
    near = fp32 + [0.2, 0, 0, 0]                                                 # IoU 9.8 / 10.2 = 0.961
    result = agreement_from_boxes(fp32, near, fp32, truth)
    assert result["mean_iou_per_frame"] == pytest.approx(9.8 / 10.2) and result["auc_diff_points"] == 0
    assert result["usable"] is True
    result = agreement_from_boxes(fp32, fp32 + [0.5, 0, 0, 0], fp32, truth)    # IoU 9.5 / 10.5 = 0.905
    assert result["usable"] is False
