"""Where the tracker runs: device / precision / runtime options, the static-buffer step, CUDA.

The CUDA tests (names containing "cuda", ``pytest -k cuda``) skip without a GPU; the option
checks and the static-step logic run on any machine.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from track import runtime
from track.model import build_tracker
import engine.precision
from track.runtime import StaticStep, resolve_backend, resolve_dtype, resolve_runtime
from track.tracker import BatchedTracker, InferenceNetwork, Tracker

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    """Random weights whose boxes depend on the template and the crop (randomised BatchNorm
    statistics would let the head's biases drown both)."""
    torch.manual_seed(0)
    return build_tracker().eval()


def _sequence(count: int = 10, seed: int = 0, size: tuple[int, int] = (320, 240)):
    from benchmarks.demo_data.lasot import synthesize_sequence

    sequence = synthesize_sequence(np.random.default_rng(seed), count, size)
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in sequence.frames], sequence.gt_boxes.astype(np.float64)


# ---------------------------------------------------------------------------- options

def test_dtype_option(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_dtype("auto", cuda) == "fp16"
    assert resolve_dtype("fp16", cuda) == "fp16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # native from compute capability 8.0
        assert resolve_dtype("bf16", cuda, cuda_capability=(8, 0)) == "bf16"
        assert resolve_dtype("bf16", cuda, cuda_capability=(9, 0)) == "bf16"
    with pytest.warns(RuntimeWarning, match=r"dtype='bf16' on cuda:0: .*compute capability 7\.5: native bf16 needs 8\.0"):
        assert resolve_dtype("bf16", cuda, cuda_capability=(7, 5)) == "bf16"   # a warning, not an error
    with pytest.raises(ValueError, match="dtype='fp16' needs a GPU"):
        resolve_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="dtype='int8'"):
        resolve_dtype("int8", cpu)
    with pytest.raises(ValueError, match="onnxruntime' runs fp32 only"):
        resolve_dtype("bf16", cpu, "onnxruntime")
    assert resolve_dtype("auto", cpu, "onnxruntime") == "fp32"
    # the CPU's instruction sets decide "auto": bf16 only where it is native
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    for flags, expected in [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512f", "avx512bw"}, "fp32"),
                            ({"avx512f", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16", "amx_tile"}, "bf16")]:
        monkeypatch.setattr(engine.precision, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert resolve_dtype("auto", cpu) == expected, flags
        assert resolve_dtype("auto", cpu, "openvino") == expected
    monkeypatch.setattr(engine.precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(RuntimeWarning, match="torch emulates bf16"):
        assert resolve_dtype("bf16", cpu) == "bf16"


def test_backend_option(monkeypatch):
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="backend='tensorrt': expected one of torch, onnxruntime, openvino"):
        resolve_backend("tensorrt", cpu)
    with pytest.raises(ValueError, match="backend='openvino' runs on the CPU only"):
        resolve_backend("openvino", torch.device("cuda", 0))
    real = runtime.importlib.util.find_spec
    monkeypatch.setattr(runtime.importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else real(name, *args))
    with pytest.raises(ValueError, match="backend='openvino' needs the openvino package.*pip install openvino"):
        resolve_backend("openvino", cpu)
    assert resolve_backend("torch", cpu) == "torch"


def test_tool_options_fail_before_any_work(tmp_path, monkeypatch):
    """The tools' --device / --dtype / --backend / --compile errors name the option."""
    with pytest.raises(SystemExit, match="--dtype 'fp16' needs a GPU"):
        resolve_runtime("cpu", "fp16", "torch")
    with pytest.raises(SystemExit, match="--device 'gpu0'"):
        resolve_runtime("gpu0", "auto", "auto")
    with pytest.raises(SystemExit, match="--compile is for --backend torch"):
        resolve_runtime("cpu", "fp32", "onnxruntime", "default")
    assert resolve_runtime("cpu", "fp32", "auto", "default")[2] == "torch"       # compiled: torch
    if not CUDA:
        with pytest.raises(SystemExit, match="--device 'cuda:3' asks for a GPU, but torch sees none"):
            resolve_runtime("cuda:3", "auto", "auto")
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name, *args: None)
    assert resolve_runtime("cpu", "fp32", "auto") == ("cpu", "fp32", "torch")    # no OpenVINO: torch
    with pytest.raises(SystemExit, match="--backend 'openvino' needs the openvino package"):
        resolve_runtime("cpu", "fp32", "openvino")


def test_track_test_tool_rejects_options_before_work(tmp_path):
    from benchmarks.demo_data.lasot import make_lasot_dataset

    root = tmp_path / "lasot"
    make_lasot_dataset(root, ("car",), seqs_per_class=1, num_frames=3, size=(64, 48), write_training_set=False)
    config = str(REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py")
    cases = [(["--dtype", "fp16", "--device", "cpu"], "--dtype 'fp16' needs a GPU"),
             (["--backend", "openvino", "--device", "cuda"] if CUDA else ["--device", "cuda:3"],
              "runs on the CPU only" if CUDA else "--device 'cuda:3' asks for a GPU, but torch sees none"),
             (["--batch-sequences", "0"], "--batch-sequences must be >= 1")]
    for options, message in cases:
        out = tmp_path / f"out{len(options)}"
        done = subprocess.run([sys.executable, "tools/track_test.py", config, "none", "--lasot-root", str(root),
                               "--out", str(out), *options], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
        assert not out.exists()                                         # nothing done, not even the folder


def test_torch_path_needs_neither_cpu_runtime():
    """Tracking with backend='torch' imports neither OpenVINO nor ONNX Runtime (both are optional)."""
    code = ("import sys, numpy as np, torch\n"
            "from track.model import build_tracker\n"
            "from track.tracker import Tracker\n"
            "t = Tracker(build_tracker(depth=2, ce_locations=(0,)), device='cpu')\n"
            "f = np.zeros((120, 160, 3), np.uint8)\n"
            "t.initialize(f, (40, 30, 40, 30)); t.track(f)\n"
            "print(sorted(m for m in ('openvino', 'onnxruntime') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------- static step (CPU logic)

def test_static_step_reuses_its_buffers():
    """The step's inputs are copied into buffers made at the first call; the function always sees
    those buffers (what a CUDA graph replays), and its output is overwritten by the next call."""
    seen = []

    def double_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append((a.data_ptr(), b.data_ptr()))
        return 2 * a + b.float()

    step = StaticStep(double_sum, torch.device("cpu"), capture=False)
    x, y = torch.arange(6.0).view(2, 3), torch.ones(2, 3, dtype=torch.uint8)
    first = step(x, y).clone()
    torch.testing.assert_close(first, 2 * x + 1)
    second = step(x + 1, y * 3)
    torch.testing.assert_close(second, 2 * (x + 1) + 3)
    assert seen[0] == seen[1] and seen[0] != (x.data_ptr(), y.data_ptr())   # same buffers, not the inputs
    assert torch.equal(step.inputs[0], x + 1)
    with pytest.raises(ValueError, match="changed from"):
        step(torch.zeros(3, 3), y)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        StaticStep(double_sum, torch.device("cpu"), capture=True)


def test_padded_batches_are_powers_of_two(model):
    network = InferenceNetwork(model, compile=True)          # nothing compiles until a step runs
    network.max_batch = 6
    assert [network.padded_batch(b) for b in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    eager = InferenceNetwork(model)
    assert [eager.padded_batch(b) for b in range(1, 7)] == [1, 2, 3, 4, 5, 6]


def test_search_buffer_is_read_in_place(model):
    """Crops written into ``search_buffer`` are located without a copy; any other array works too."""
    network = InferenceNetwork(model)
    rng = np.random.default_rng(4)
    tokens = network.template_tokens(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    crops = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    buffer = network.search_buffer(2)
    buffer[...] = crops
    assert np.shares_memory(buffer, network._host.numpy())
    in_place = network.locate(tokens.expand(2, -1, -1), buffer)
    copied = network.locate(tokens.expand(2, -1, -1), crops.copy())
    np.testing.assert_array_equal(in_place[0], copied[0])


def test_openvino_batch_over_streams_equals_one_request(model):
    """A batch split over OpenVINO's parallel streams gives the boxes of the one request that runs it
    whole, in the same order (5 crops over the streams: uneven chunks)."""
    pytest.importorskip("openvino")
    from track.runtime import OpenVinoStep

    torch.set_num_threads(2)                               # the fixture restores one thread
    network = InferenceNetwork(model, "fp32", backend="openvino")
    rng = np.random.default_rng(5)
    tokens = network.template_tokens(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).numpy()
    crops = rng.integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
    streamed = network.runtime(np.repeat(tokens, 5, 0), crops)[0]
    if network.runtime.streams_count() < 2:
        pytest.skip("OpenVINO gives one stream on this machine")
    whole = OpenVinoStep(network.runtime.model, ["template_tokens", "search"], "fp32", streams=False)
    np.testing.assert_allclose(streamed, whole(np.repeat(tokens, 5, 0), crops)[0], rtol=1e-5, atol=1e-5)
    alone = np.concatenate([whole(tokens, crop[None])[0] for crop in crops])
    np.testing.assert_allclose(streamed, alone, rtol=1e-4, atol=1e-4)
    assert np.ptp(streamed[:, :4], axis=0).max() > 1e-3                   # the crops give different boxes


def test_patch_tokens_equal_the_patch_convolution(model):
    """The inference step's patch tokens (one matrix product over channels-last patches of the uint8
    crops) equal the backbone's patch convolution on the same pixels; other convolutions are refused."""
    from track.tracker import PatchTokens

    conv = model.backbone.patch_embed.proj
    crops = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8))
    expected = conv(crops.permute(0, 3, 1, 2).float()).flatten(2).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(PatchTokens(conv)(crops), expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="stride = kernel"):
        PatchTokens(torch.nn.Conv2d(3, 8, 16, stride=8))


def test_openvino_static_shapes_equal_the_dynamic_model(model):
    """Each batch size runs a copy of the model compiled for its static shape: the same maps as the
    dynamic-batch model compiled as it is, and only the most recently used shapes are kept."""
    pytest.importorskip("openvino")
    import openvino as ov

    network = InferenceNetwork(model, "fp32", backend="openvino")
    step = network.runtime
    step.MAX_SHAPES, step.streams = 2, False                            # every batch as one request
    dynamic = ov.Core().compile_model(step.model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(6)
    tokens = network.template_tokens(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).numpy()
    for batch in (1, 3, 2):
        crops = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
        inputs = [np.repeat(tokens, batch, 0), crops]
        expected = dynamic.create_infer_request().infer(inputs)[dynamic.outputs[0]]
        np.testing.assert_allclose(step(*inputs)[0], expected, rtol=1e-5, atol=1e-5)
        compiled, _ = step._compiled[("latency", batch)]
        assert [list(input.get_partial_shape()) for input in compiled.inputs] == \
            [[batch, *tokens.shape[1:]], [batch, 256, 256, 3]]
    assert list(step._compiled) == [("latency", 3), ("latency", 2)]      # batch 1 dropped: least recently used


# ---------------------------------------------------------------------------- CUDA (skip without a GPU)

@needs_cuda
def test_cuda_constants_live_on_the_gpu(model):
    network = InferenceNetwork(model, device="cuda")
    assert network.window.is_cuda and network.net.template_centre.is_cuda
    assert all(p.is_cuda for p in network.net.parameters())
    assert network.net.backbone.patch_embed.proj.weight.is_cuda        # folded normalisation
    network.search_buffer(3)
    assert network._host.is_pinned()
    assert network.dtype == "fp32" and InferenceNetwork(model, device="cuda", dtype="auto").dtype == "fp16"


@needs_cuda
def test_cuda_tracker_matches_cpu_fp32(model):
    """fp32 on the GPU (CUDA graph) gives the CPU's boxes on the same search regions."""
    frames, boxes = _sequence(10)
    cpu, gpu = Tracker(model, device="cpu"), Tracker(model, device="cuda")
    cpu.initialize(frames[0], boxes[0])
    gpu.initialize(frames[0], boxes[0])
    for frame in frames[1:]:
        gpu.state = cpu.state.copy()
        np.testing.assert_allclose(gpu.track(frame)[0], cpu.track(frame)[0], atol=1e-2)
        assert gpu.score == pytest.approx(cpu.score, abs=1e-4)


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cuda_graph_replays_the_eager_step(model, dtype):
    """The captured step returns the eager launches' boxes, frame after frame (free-running)."""
    frames, boxes = _sequence(12, seed=1)
    graph, eager = Tracker(model, device="cuda", dtype=dtype), Tracker(model, device="cuda", dtype=dtype,
                                                                     cuda_graph=False)
    graph.initialize(frames[0], boxes[0])
    eager.initialize(frames[0], boxes[0])
    for frame in frames[1:]:
        np.testing.assert_allclose(graph.track(frame)[0], eager.track(frame)[0], atol=1e-3)
    assert graph.network.cuda_graph and graph.network._steps[1].graph is not None
    assert not eager.network.cuda_graph and eager.network._steps[1].graph is None


@needs_cuda
def test_cuda_batched_graphs_match_alone(model):
    """Three sequences in one batched GPU tracker (graphs of batch 4 padded, then 2 then 1) give the
    boxes of each alone (fp32)."""
    sequences = [_sequence(n, seed=s) for n, s in ((9, 2), (5, 3), (7, 4))]
    alone = []
    for frames, boxes in sequences:
        tracker = Tracker(model, device="cuda")
        alone.append(tracker.track_sequence(frames, boxes[0])[0])
    batched = BatchedTracker(model, slots=4, device="cuda", crop_threads=2)
    got = [[boxes[0]] for _, boxes in sequences]
    for slot, (frames, boxes) in enumerate(sequences):
        batched.initialize(slot, frames[0], boxes[0])
    for index in range(1, 9):
        step = {slot: frames[index] for slot, (frames, _) in enumerate(sequences) if index < len(frames)}
        for slot, (box, _) in batched.track(step).items():
            got[slot].append(box)
    for expected, boxes in zip(alone, got):
        np.testing.assert_allclose(np.array(boxes), expected, atol=1e-3)
    assert sorted(batched.network._steps) == [1, 2, 4]                 # batch 3 ran padded to 4
    batched.close()


@needs_cuda
def test_cuda_fp16_follows_fp32(model):
    """fp16 on the GPU returns the fp32 box on the same search regions (no CE, as the CPU bf16 test)."""
    from evaluation.boxes import box_iou

    fp32 = Tracker(model, device="cuda", ce_keep_ratio=1.0)
    fp16 = Tracker(model, device="cuda", dtype="fp16", ce_keep_ratio=1.0)
    ious = []
    for seed in range(2):
        frames, boxes = _sequence(8, seed=seed)
        fp32.initialize(frames[0], boxes[0])
        fp16.initialize(frames[0], boxes[0])
        for frame in frames[1:]:
            fp16.state = fp32.state.copy()
            ious.append(box_iou(fp32.track(frame)[0], fp16.track(frame)[0]))
    assert min(ious) > 0.9, np.round(ious, 3)


@needs_cuda
def test_cuda_track_test_tool_batched_equals_cpu(tmp_path):
    """tools/track_test.py on the GPU, 2 sequences at once, writes the CPU run's boxes (fp32)."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    root = tmp_path / "lasot"
    names = make_lasot_dataset(root, ("car", "dog"), seqs_per_class=1, num_frames=6, size=(160, 120))
    config = str(REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py")
    checkpoint = tmp_path / "tiny.pth"
    from track.config import build_model, load_config
    from track.model import save_tracker_checkpoint

    torch.manual_seed(1)
    save_tracker_checkpoint(build_model(load_config(config), pretrained=None), str(checkpoint))
    outs = {}
    for device, batch in (("cpu", "1"), ("cuda", "2")):
        outs[device] = tmp_path / device
        done = subprocess.run([sys.executable, "tools/track_test.py", config, str(checkpoint), "--lasot-root",
                               str(root), "--out", str(outs[device]), "--device", device, "--dtype", "fp32",
                               "--backend", "torch", "--batch-sequences", batch, "--threads", "1"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for name in names:
        np.testing.assert_allclose(np.loadtxt(outs["cuda"] / f"{name}.txt", delimiter=","),
                                   np.loadtxt(outs["cpu"] / f"{name}.txt", delimiter=","), atol=2e-2)
