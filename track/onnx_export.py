"""Export the tracker network to ONNX and check it against PyTorch with onnxruntime.

The exported graph takes ImageNet-normalised ``template`` [B, 3, 128, 128] and ``search``
[B, 3, 256, 256] (batch dimension dynamic) and returns ``score_map`` [B, 1, 16, 16],
``size_map`` [B, 2, 16, 16], ``offset_map`` [B, 2, 16, 16] and ``pred_boxes`` [B, 4]
(normalised cxcywh at the un-windowed score peak). Candidate elimination is part of the graph
(TopK + GatherElements + ScatterElements) with the keep ratio fixed at export time.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from fileio import atomic_write_bytes

from .model import OneStreamTracker

__all__ = ["OUTPUT_NAMES", "TrackerExport", "check_onnx", "export_module_bytes", "export_onnx"]

INPUT_NAMES = ("template", "search")
OUTPUT_NAMES = ("score_map", "size_map", "offset_map", "pred_boxes")


class TrackerExport(nn.Module):
    """``OneStreamTracker`` with tuple outputs and a fixed CE keep ratio, for tracing."""

    def __init__(self, model: OneStreamTracker, ce_keep_ratio: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.ce_keep_ratio = ce_keep_ratio

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(template, search, self.ce_keep_ratio)
        return tuple(out[name] for name in OUTPUT_NAMES)


def _on_cpu(model: OneStreamTracker) -> OneStreamTracker:
    """The model in eval mode on the CPU (a CPU copy when it lives on a GPU): exports and the
    onnxruntime check run on the CPU."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return (model if on_cpu else copy.deepcopy(model).cpu()).eval()


def _example_inputs(model: OneStreamTracker, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, model.template_size, model.template_size, generator=generator),
            torch.randn(batch, 3, model.search_size, model.search_size, generator=generator))


def export_onnx(model: OneStreamTracker, path: str | Path, opset: int = 17, ce_keep_ratio: float | None = None,
                dynamic_batch: bool = True) -> Path:
    """Write the network as ONNX (atomically: temporary file, then rename); returns the path."""
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    wrapper = TrackerExport(_on_cpu(model), ce_keep_ratio).eval()
    graph = export_module_bytes(wrapper, _example_inputs(model), list(INPUT_NAMES), list(OUTPUT_NAMES), opset,
                                dynamic_batch)
    return atomic_write_bytes(path, graph)


def export_module_bytes(module: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str],
                        output_names: list[str], opset: int = 17, dynamic_batch: bool = False) -> bytes:
    """``module`` as an in-memory ONNX model, by torch's TorchScript-based exporter (``dynamo=False``).

    That is the project's one exporter: it needs no package beyond torch, and its graphs are the ones
    the tests and :func:`check_onnx` compare with PyTorch (torch.export's exporter would need the
    onnxscript package). ``dynamic_batch``: the first axis of every input and output is left free.
    Raises RuntimeError naming the module when the export fails.
    """
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]} if dynamic_batch else None
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # the exporter's notice that it is the legacy one, and tracing notes on Python-side shapes
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(module, inputs, buffer, input_names=input_names, output_names=output_names,
                              opset_version=opset, dynamo=False, dynamic_axes=axes)
    except Exception as error:
        raise RuntimeError(f"ONNX export of {type(module).__name__} (opset {opset}) failed: "
                           f"{type(error).__name__}: {error}") from error
    return buffer.getvalue()


def check_onnx(path: str | Path, model: OneStreamTracker, batch: int = 1, ce_keep_ratio: float | None = None,
               seed: int = 1, threads: int = 1) -> dict[str, Any]:
    """Run the ONNX file with onnxruntime and PyTorch on the same random inputs.

    Returns ``{"max_abs_diff": {output: value}, "same_peak": bool}`` (same_peak: the score maps
    peak at the same cell for every sample).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    template, search = _example_inputs(model, batch, seed)
    onnx_out = session.run(list(OUTPUT_NAMES), {"template": template.numpy(), "search": search.numpy()})
    with torch.inference_mode():
        torch_out = TrackerExport(_on_cpu(model), ce_keep_ratio)(template, search)
    diffs = {name: float(np.abs(o - t.numpy()).max()) for name, o, t in zip(OUTPUT_NAMES, onnx_out, torch_out)}
    same_peak = bool((onnx_out[0].reshape(batch, -1).argmax(1) == torch_out[0].reshape(batch, -1).argmax(1).numpy()).all())
    return {"max_abs_diff": diffs, "same_peak": same_peak}
