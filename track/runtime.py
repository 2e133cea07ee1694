"""Where and how the tracker network runs: device, precision, runtime, and the captured GPU step.

Options are checked here, before any work, with errors that name the option:

* ``device``: ``"auto"`` (the current CUDA GPU when torch sees one, else the CPU), ``"cpu"``,
  ``"cuda"`` or ``"cuda:<i>"``.
* ``dtype``: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only) or ``"auto"``: fp16 on CUDA (tensor cores
  run fp16 and bf16 at the same rate, and fp16 keeps 3 more mantissa bits, so it stays closer to
  fp32); on a CPU bf16 only where it runs natively (AMX or AVX512-BF16), else fp32. What a device
  runs natively is :mod:`engine.precision`'s call.
  ``"int8"``: the OpenVINO backend only, the step quantized by NNCF (:mod:`track.quantize`). ``auto``
  resolves here to a floating-point precision; on OpenVINO, ``InferenceNetwork`` then runs the cached
  int8 model instead where ``benchmarks.track_speed --dtype int8 --agreement`` measured it, on this
  CPU, usable and faster (:func:`track.quantize.measured_int8`): on a 2-core AMX Xeon int8 ran at
  0.95x OpenVINO bf16, under ``ONEDNN_MAX_CPU_ISA=AVX2`` at 0.74x fp32, and only with VNNI and no
  native bf16 (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``) faster (1.49x fp32), where whether int8 keeps
  the boxes is a property of the checkpoint.
* ``backend``: ``"torch"`` (any device), ``"onnxruntime"`` (CPU, fp32) or ``"openvino"`` (CPU, f32 or
  bf16 inference precision, or int8). The two CPU runtimes are imported only when asked for.

``StaticStep`` runs a function over static input buffers and, on CUDA, captures it once as a CUDA
graph that every later call replays (one launch instead of hundreds of small kernels).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine import PRECISIONS, cpu_bf16_native, resolve_device, resolve_precision
from engine.precision import DTYPES, QUANTIZED, check_quantized, cpu_int8_native, onednn_isa_limit

__all__ = ["BACKENDS", "OnnxRuntimeStep", "OpenVinoStep", "StaticStep", "add_runtime_arguments",
           "ieee_fp32", "resolve_backend", "resolve_dtype", "resolve_runtime"]

BACKENDS = ("torch", "onnxruntime", "openvino")
_BACKEND_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def resolve_backend(backend: str, device: torch.device) -> str:
    """Check the runtime name, that it runs on ``device`` and that its package is installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend != "torch":
        if device.type != "cpu":
            raise ValueError(f"backend={backend!r} runs on the CPU only; got device={str(device)!r} "
                             "(use backend='torch' on a GPU)")
        package = _BACKEND_PACKAGES[backend]
        if importlib.util.find_spec(package) is None:
            raise ValueError(f"backend={backend!r} needs the {package} package, which is not installed "
                             f"(pip install {package}); backend='torch' needs nothing more")
    return backend


def resolve_dtype(dtype: str, device: torch.device, backend: str = "torch",
                  cuda_capability: tuple[int, int] | None = None) -> str:
    """The precision to run: ``"auto"`` resolved, any other name checked by ``engine.resolve_precision``
    (which knows what each device runs natively) and against the runtime.

    Raises ValueError for an unknown precision, fp16 off CUDA, anything but fp32 with onnxruntime and
    int8 anywhere but the OpenVINO backend on a CPU with openvino and nncf installed;
    warns when bf16 is asked for where the device only emulates it (a CPU without AMX / AVX512-BF16,
    a GPU before compute capability 8.0: ``cuda_capability``, read from the device when None).
    """
    if dtype == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if backend in ("torch", "openvino") and cpu_bf16_native() else "fp32"
    if dtype in QUANTIZED:
        check_quantized(dtype, backend, device)
        from .quantize import check_int8_packages

        check_int8_packages()
        if not cpu_int8_native():
            limit = onednn_isa_limit()
            warnings.warn("dtype='int8' on a CPU without VNNI or AMX-INT8 (no 8-bit dot products"
                          + (f"; oneDNN limited to {limit} by ONEDNN_MAX_CPU_ISA" if limit else "")
                          + "): the int8 step is emulated and likely slower than fp32", RuntimeWarning, stacklevel=2)
        return dtype
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype={dtype!r}: expected 'auto' or one of {', '.join(DTYPES)}")
    if backend == "onnxruntime" and dtype != "fp32":
        raise ValueError(f"backend='onnxruntime' runs fp32 only, got dtype={dtype!r}")
    return resolve_precision(dtype, device, option="dtype", cuda_capability=cuda_capability).name


# ---------------------------------------------------------------------------- command-line options

def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The tools' ``--device``, ``--dtype``, ``--backend``, ``--compile`` and ``--no-cuda-graph``."""
    parser.add_argument("--device", default="auto", help="auto (a GPU when torch sees one), cpu, cuda or cuda:<i>")
    parser.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                        help="auto: fp16 on CUDA, bf16 on CPUs with AMX / AVX512-BF16, else fp32 (on OpenVINO: "
                             "int8 where benchmarks.track_speed --dtype int8 --agreement measured it usable and "
                             "faster on this CPU); "
                             "fp16 is CUDA only; int8: --backend openvino, quantized by NNCF (cached under "
                             "$LITEVIT_CACHE/track_int8), calibrated on --int8-calibration")
    parser.add_argument("--int8-calibration", default=None, metavar="DIR",
                        help="--dtype int8: LaSOT-layout folder of sequences to calibrate on (default: "
                             "$LITEVIT_INT8_CALIBRATION, else generated demo sequences)")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                        help="network runtime; auto: openvino on a CPU when installed (the fastest there), "
                             "else torch; onnxruntime: CPU fp32")
    parser.add_argument("--compile", nargs="?", const="default", default=None,
                        choices=("default", "max-autotune"),
                        help="CPU, torch backend: torch.compile the per-frame step (~15 s to compile per "
                             "worker; max-autotune ~1 min)")
    parser.add_argument("--no-cuda-graph", action="store_true",
                        help="on CUDA, launch the step eagerly instead of replaying a captured CUDA graph")


def resolve_runtime(device: str, dtype: str, backend: str, compile: str | None = None) -> tuple[str, str, str]:
    """Check the tools' --device / --dtype / --backend / --compile before any work; returns (device,
    dtype, backend) resolved (backend "auto": OpenVINO on a CPU when installed and nothing is
    compiled, else torch). Raises SystemExit with a message naming the option."""
    try:
        where = resolve_device(device)
        if backend == "auto":
            use_openvino = where.type == "cpu" and not compile and importlib.util.find_spec("openvino") is not None
            backend = "openvino" if use_openvino else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of auto, {', '.join(BACKENDS)}")
        resolve_backend(backend, where)
        precision = resolve_dtype(dtype, where, backend)
        if compile and (backend != "torch" or where.type != "cpu"):
            raise ValueError(f"--compile is for --backend torch on a CPU (got --backend {backend}, --device {where})")
    except ValueError as error:
        message = str(error)
        for option in ("device", "dtype", "backend"):
            if message.startswith(option + "="):
                message = f"--{option} {message[len(option) + 1:]}"
        raise SystemExit(f"error: {message}") from None
    return str(where), precision, backend


# ---------------------------------------------------------------------------- captured GPU step

@contextlib.contextmanager
def ieee_fp32(enabled: bool = True) -> Any:
    """Run CUDA matmuls and convolutions in full fp32 (no TF32, which cuDNN allows by default): the
    tracker's fp32 on a GPU then gives the CPU's boxes. Does nothing when ``enabled`` is False."""
    if not enabled:
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    previous = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = previous


class StaticStep:
    """``fn(*inputs)`` over static input buffers, captured once as a CUDA graph when ``capture``.

    The first call allocates the buffers on ``device`` (copies of its inputs); every call copies
    its inputs into them (asynchronously from pinned host memory) and either replays the graph (CUDA) or calls ``fn`` on the buffers (CPU, or
    ``capture=False``). Shapes and dtypes must stay those of the first call. The returned
    tensors are the step's own output buffers: overwritten by the next call, so read them first.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, capture: bool, warmup: int = 2) -> None:
        if capture and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        self.fn, self.device, self.capture, self.warmup = fn, device, capture, warmup
        self.inputs: list[torch.Tensor] | None = None
        self.output: Any = None
        self.graph: Any = None

    def _capture(self) -> None:
        device = self.device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: lazy initialisation, workspace sizes
            for _ in range(self.warmup):
                self.fn(*self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = self.fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                return self._run(inputs)
        return self._run(inputs)

    def _run(self, inputs: Sequence[torch.Tensor]) -> Any:
        if self.inputs is None:
            self.inputs = [torch.empty_like(x, device=self.device).copy_(x) for x in inputs]
            if self.capture:
                self._capture()
        else:
            if len(inputs) != len(self.inputs):
                raise ValueError(f"expected {len(self.inputs)} inputs, got {len(inputs)}")
            for buffer, x in zip(self.inputs, inputs):
                if x.shape != buffer.shape or x.dtype != buffer.dtype:
                    raise ValueError(f"static step input changed from {tuple(buffer.shape)} {buffer.dtype} "
                                     f"to {tuple(x.shape)} {x.dtype}")
                if x.data_ptr() != buffer.data_ptr():
                    buffer.copy_(x, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.output = self.fn(*self.inputs)
        return self.output


# ---------------------------------------------------------------------------- CPU runtimes

def _threads() -> int:
    return max(1, torch.get_num_threads())


class OnnxRuntimeStep:
    """An ONNX graph (bytes) run by onnxruntime's CPU provider with torch's thread count."""

    def __init__(self, graph: bytes, input_names: Sequence[str]) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # shared machine: no spin-waiting
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_names = list(input_names)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.input_names, inputs)))


@functools.lru_cache(maxsize=1)
def _openvino_core() -> Any:
    """One OpenVINO ``Core`` per process, shared by every compiled step."""
    import openvino as ov

    return ov.Core()


class OpenVinoStep:
    """An ONNX graph (bytes) or an OpenVINO model compiled by OpenVINO for the CPU.

    ``precision``: "fp32" (f32 inference precision, the same maps as PyTorch fp32 up to rounding),
    "bf16" (OpenVINO's bf16 inference precision, native on AMX / AVX512-BF16 CPUs) or "int8" (a model
    quantized by NNCF, :mod:`track.quantize`: its int8 layers run in int8, the rest (layer norms,
    softmax, the attention-weighted sum, the layers kept in floating point) in ``int8_float``:
    "bf16" or "fp32"; None: bf16 where the CPU runs it natively (measured 1.1-1.5x faster than f32
    there), else f32).

    The model keeps its dynamic batch axis, but every batch size runs a copy compiled for that static
    shape (compiled on first use, about 0.4 s, the last ``MAX_SHAPES`` kept): OpenVINO plans memory
    and fuses more with static shapes (2-core AMX Xeon, ViT-Tiny step: batch 1 1.22x, batch 32 1.13x
    faster than the dynamic model, same maps). One crop runs as one request on all threads (latency).
    A batch runs, when ``streams`` is True and OpenVINO's throughput mode gives more than one stream
    for the threads, as equal chunks over that many requests in parallel (each stream on its own cores;
    the last chunk padded with copies of its last row, which are dropped): on a 2-core Xeon (AMX) the
    batch-8 step ran 1.1-1.2x faster in int8 and bf16 than one request of 8 on both threads (same
    boxes), and end to end at 8 sequences 1.4x.
    """

    MAX_SHAPES = 8

    def __init__(self, graph: Any, input_names: Sequence[str], precision: str = "fp32",
                 int8_float: str | None = None, streams: bool = True) -> None:
        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"backend='openvino' runs fp32, bf16 or int8, got dtype={precision!r}")
        core = _openvino_core()
        self.model = core.read_model(graph) if isinstance(graph, bytes) else graph
        if precision == "int8":
            precision = int8_float or ("bf16" if cpu_bf16_native() else "fp32")
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                       "INFERENCE_NUM_THREADS": _threads()}
        self.input_names = list(input_names)
        self.streams = streams and _threads() > 1
        self._compiled: dict[tuple, tuple[Any, list[Any]]] = {}   # (mode, batch) -> compiled model, requests
        self._stream_count: int | None = None
        try:  # batch 1 now: a precision this CPU cannot compile fails here, before any work
            self._requests(1, parallel=False)
        except RuntimeError as error:  # e.g. no bf16 Softmax kernel below AVX512-BF16 (ONEDNN_MAX_CPU_ISA=AVX2)
            limit = onednn_isa_limit()
            raise RuntimeError(f"OpenVINO cannot compile the step with {self.config['INFERENCE_PRECISION_HINT']} "
                               f"inference precision on this CPU"
                               + (f" (oneDNN limited to {limit} by ONEDNN_MAX_CPU_ISA)" if limit else "")
                               + f"; use --dtype fp32. OpenVINO said: {str(error).strip().splitlines()[-1]}") from error

    def _requests(self, batch: int, parallel: bool) -> tuple[Any, list[Any]]:
        """The model compiled for ``batch`` rows per request, and its requests: one (latency mode) or,
        ``parallel``, one per throughput stream."""
        key = ("streams" if parallel else "latency", batch)
        found = self._compiled.pop(key, None)
        if found is None:
            model, shapes = self.model.clone(), {}
            for input in self.model.inputs:
                shapes[input.get_any_name()] = shape = input.get_partial_shape()
                shape[0] = batch
            model.reshape(shapes)
            hint = {"PERFORMANCE_HINT": "THROUGHPUT"} if parallel else {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
            compiled = _openvino_core().compile_model(model, "CPU", {**self.config, **hint})
            count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if parallel else 1
            found = compiled, [compiled.create_infer_request() for _ in range(count)]
            while len(self._compiled) >= self.MAX_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
        self._compiled[key] = found   # most recently used last
        return found

    def streams_count(self) -> int:
        """How many requests a batch is split over (OpenVINO's throughput streams for these threads)."""
        if self._stream_count is None:
            self._stream_count = 1
            if self.streams:
                compiled = _openvino_core().compile_model(self.model, "CPU",
                                                          {**self.config, "PERFORMANCE_HINT": "THROUGHPUT"})
                self._stream_count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return self._stream_count

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        batch = len(inputs[0]) if inputs and np.ndim(inputs[0]) else 1
        parts = min(batch, self.streams_count()) if batch > 1 else 1
        if parts < 2:
            compiled, (request,) = self._requests(batch, parallel=False)
            results = request.infer(dict(zip(self.input_names, inputs)), share_inputs=True)
            return [results[output] for output in compiled.outputs]
        rows = -(-batch // parts)
        compiled, requests = self._requests(rows, parallel=True)
        chunks = []   # alive until the requests are done
        for start in range(0, batch, rows):
            chunk = {}
            for name, x in zip(self.input_names, inputs):
                part = x[start:start + rows]
                if len(part) < rows:
                    part = np.concatenate([part, np.repeat(part[-1:], rows - len(part), axis=0)])
                chunk[name] = np.ascontiguousarray(part)
            chunks.append(chunk)
        for request, chunk in zip(requests, chunks):
            request.start_async(chunk, share_inputs=True)
        for request in requests[:len(chunks)]:
            request.wait()
        return [np.concatenate([request.get_output_tensor(index).data for request in requests[:len(chunks)]])[:batch]
                for index in range(len(compiled.outputs))]
