"""Per-frame tracking with a ``OneStreamTracker`` on any device: one sequence (``Tracker``) or several
advanced in lock-step with one network call per step (``BatchedTracker``).

Protocol (PROTOCOLS section 4, "Inference"): the template is cropped once from the first frame
(factor 2, 128 px; no template update, no motion model); every later frame is cropped around the
previous box (factor 4, zero padding, 256 px), the score map is multiplied by a Hann window, the
box at the windowed peak is decoded, mapped back to image pixels and clipped to the image with a
10-pixel margin.

Speed (all exact rewrites of the same computation, checked against ``OneStreamTracker.forward``
by the tests): the network runs from a frozen copy (``InferenceNetwork``) whose patch embedding
has the ImageNet normalisation folded in (it is linear and unpadded, so raw 0-255 crops go in,
as uint8 channels-last: the conversion to float is part of the step), whose head convolutions
have their BatchNorm folded in, whose template tokens are embedded once per sequence, whose
blocks all run fused attention (``fast_ce``: the CE scores come from the template-centre queries
alone), and whose head runs the offset and size branches only on the receptive field of the
chosen cell (``OneStreamTracker.locate``). The crop is one ``cv2.warpAffine`` written straight
into the network's input buffer (pinned host memory on CUDA). For bf16 / fp16 the matmul / conv
weights of the copy are stored in that precision once while the CE scores stay float32.

Runtimes (``track.runtime`` checks every option before any work): PyTorch on a CPU (eager, or
``torch.compile`` with frozen weights) or a CUDA GPU (the whole per-frame step captured once as
a CUDA graph and replayed; candidate elimination keeps a fixed token count, so the shapes never
change), ONNX Runtime (fp32) and OpenVINO (f32, or bf16 on CPUs that run it natively), the two
CPU runtimes from one in-memory ONNX export of the same step.

A frame where the network returns a non-finite box or score (a broken checkpoint, an overflow)
is reported as lost: the previous box is kept (clipped to the frame), the score is NaN,
``lost`` is True and ``info["non_finite"]`` is True.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.nn.utils.fusion import fuse_conv_bn_eval

from backbones import compile_frozen
from engine import PRECISIONS, autocast, resolve_device

from .model import OneStreamTracker
from .processing import CropBox, _as_rgb, clip_box, crop_and_resize, hann_window_2d, map_crop_box_to_image
from .quantize import any_verdict, weights_digest
from .runtime import OnnxRuntimeStep, OpenVinoStep, StaticStep, ieee_fp32, resolve_backend, resolve_dtype

__all__ = ["COMPILE_MODES", "BatchedTracker", "InferenceNetwork", "LocateStep", "Tracker", "check_box", "check_image"]

COMPILE_MODES = ("default", "max-autotune")


def _fold_normalisation(conv: nn.Conv2d) -> None:
    """Make a bias-carrying, unpadded conv take 0-255 pixels: ``conv((x/255 - m) / s) == conv'(x)``."""
    weight = conv.weight.detach().double()
    std = torch.tensor(IMAGENET_DEFAULT_STD, dtype=torch.float64, device=weight.device).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, dtype=torch.float64, device=weight.device).view(1, 3, 1, 1)
    bias = conv.bias.detach().double() if conv.bias is not None else weight.new_zeros(weight.shape[0])
    new_bias = bias - (weight * (mean / std)).sum(dim=(1, 2, 3))
    new_weight = weight / (255.0 * std)
    conv.weight = nn.Parameter(new_weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


def _pixels(crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops [B, H, W, 3] -> float32 [B, 3, H, W] (channels-last memory, 0-255, no normalisation)."""
    return crops.permute(0, 3, 1, 2).float()


def _computing_in(device: torch.device, low: torch.dtype | None) -> ContextManager:
    """How the network computes: autocast to ``low`` (bf16 / fp16; no autocast cache, so that the
    step can be captured as a CUDA graph), or fp32, which on a GPU also means no TF32 (the CPU's boxes)."""
    if low is not None:
        return autocast(device.type, low, cache_enabled=False)
    return ieee_fp32() if device.type == "cuda" else contextlib.nullcontext()


class PatchTokens(nn.Module):
    """uint8 crops [B, H, W, 3] -> patch tokens [B, H/p * W/p, C]: a stride-p, unpadded patch convolution
    (its normalisation folded in) as one matrix product over the flattened patches, read straight from
    the channels-last crops (on OpenVINO 3.7% of the CPU step: no layout change, no strided convolution)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.stride != conv.kernel_size or any(conv.padding) or conv.kernel_size[0] != conv.kernel_size[1]:
            raise ValueError(f"patch tokens need a square, unpadded convolution with stride = kernel, got {conv}")
        self.patch = conv.kernel_size[0]
        self.linear = nn.Linear(conv.in_channels * self.patch ** 2, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():   # (out, c, py, px) -> (out, py, px, c): the order of a channels-last patch
            self.linear.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)
        self.linear.to(conv.weight)   # the convolution's dtype and device

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        B, H, W, C = crops.shape
        p = self.patch
        patches = crops.view(B, H // p, p, W // p, p, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, p * p * C)
        return self.linear(patches.float())


class LocateStep(nn.Module):
    """The per-frame step of the network with its window and keep ratio fixed: template tokens
    [B, Nz, C] and uint8 search crops [B, H, W, 3] -> [B, 5] = (box cx, cy, w, h normalised to the
    crop at the peak of ``score * window``, raw score-map peak), float32.

    This module is what every runtime executes: eager, ``torch.compile``, the CUDA graph, and the
    ONNX export that ONNX Runtime and OpenVINO run.
    """

    def __init__(self, net: OneStreamTracker, window: bool, ce_keep_ratio: float | None,
                 autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.net, self.ce_keep_ratio, self.autocast = net, ce_keep_ratio, autocast
        self.patches = PatchTokens(net.backbone.patch_embed.proj)
        grid = net.search_grid
        self.register_buffer("window", hann_window_2d(grid).view(1, 1, grid, grid) if window else None)

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        with _computing_in(search.device, self.autocast):
            tokens = self.patches(search) + self.net.pos_embed_x
            box, peak = self.net.locate(template_tokens, tokens, self.window, self.ce_keep_ratio)
        return torch.cat([box.float(), peak.float().unsqueeze(1)], dim=1)


class InferenceNetwork(nn.Module):
    """A frozen, inference-arranged copy of a ``OneStreamTracker`` (the original is not touched).

    Inputs are uint8 RGB crops, (H, W, 3) or (B, H, W, 3), as ``crop_and_resize`` writes them.

    Args:
        dtype: "fp32", "bf16", "fp16" (CUDA only), "int8" (OpenVINO) or "auto" (``track.runtime.resolve_dtype``;
            on OpenVINO, the cached int8 model where its verdict says it was measured usable and faster on
            this CPU, :func:`track.quantize.measured_int8`; ``dtype`` and ``int8_source`` say what ran).
        device: "auto", "cpu", "cuda" or "cuda:<i>".
        compile: CPU only: ``torch.compile`` the per-frame step with frozen weights. True or
            "default"; "max-autotune" also lets inductor time its own GEMM kernels against
            oneDNN's (about 1 min to compile; faster for bf16). On CUDA the step is a CUDA graph.
        backend: "torch", "onnxruntime" (CPU, fp32) or "openvino" (CPU, fp32 or bf16): the step
            (from the template tokens and the uint8 crops to box and peak) is exported to ONNX
            in memory and run by that runtime with ``torch.get_num_threads()`` threads; the
            template tokens are still computed by torch once per sequence.
        ce_keep_ratio: the CE keep ratio (default: the model's).
        window: multiply the score map by the Hann window (the protocol; off only for ablations).
        cuda_graph: on CUDA, capture the step as a CUDA graph (False: launch it eagerly).
        calibration: dtype "int8": the LaSOT-layout folder whose sequences calibrate the quantization
            (None: the folder in ``LITEVIT_INT8_CALIBRATION``); ``int8_cache``: where quantized models are cached
            (None: ``$LITEVIT_CACHE/track_int8``). See :mod:`track.quantize`.
    """

    def __init__(self, model: OneStreamTracker, dtype: str = "fp32", compile: bool | str = False,
                 backend: str = "torch", ce_keep_ratio: float | None = None, device: str | torch.device = "cpu",
                 window: bool = True, cuda_graph: bool = True, calibration: str | Path | None = None,
                 int8_cache: str | Path | None = None, factors: tuple[float, float] = (2.0, 4.0)) -> None:
        super().__init__()
        if compile is True:
            compile = "default"
        if compile not in (False, None, *COMPILE_MODES):
            raise ValueError(f"compile={compile!r}: expected a bool or one of {COMPILE_MODES}")
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.dtype = resolve_dtype(dtype, self.device, self.backend)
        if compile and (self.backend != "torch" or self.device.type != "cpu"):
            raise ValueError(f"compile={compile!r} is for backend='torch' on a CPU (got backend={self.backend!r}, "
                             f"device={str(self.device)!r}); on CUDA the step runs as a CUDA graph")
        # auto on OpenVINO runs a cached int8 model where it was measured usable and faster on this CPU
        self.auto_int8 = dtype == "auto" and self.backend == "openvino" and any_verdict(int8_cache)
        self.weights = weights_digest(model) if self.dtype == "int8" or self.auto_int8 else None
        net = copy.deepcopy(model).float().eval().requires_grad_(False)
        net.fast_ce = True
        proj = net.backbone.patch_embed.proj
        if any(p != 0 for p in proj.padding):
            raise ValueError("cannot fold the normalisation into a padded patch embedding")
        _fold_normalisation(proj)
        for branch in (net.head.score, net.head.offset, net.head.size):
            for i in range(len(branch) - 1):
                conv, bn, relu = branch[i]
                branch[i] = nn.Sequential(fuse_conv_bn_eval(conv, bn), relu)
        low = PRECISIONS[self.dtype] if self.backend == "torch" else None
        if low is not None:
            # the CE blocks' attention stays float32: candidate scores are computed from it in
            # float32 (``centre_logits``), autocast casts it for the block's own attention
            keep_fp32 = {id(m) for attn in net.ce_attention_modules() for m in attn.modules()}
            for module in net.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)) and id(module) not in keep_fp32:
                    module.to(low)
        self.net = net.to(self.device)
        self.autocast = low
        self.ce_keep_ratio = ce_keep_ratio
        self.template_size, self.search_size = model.template_size, model.search_size
        self.step = LocateStep(self.net, window, ce_keep_ratio, low).to(self.device)
        self.compile = compile or None
        self.cuda_graph = bool(cuda_graph) and self.device.type == "cuda" and self.backend == "torch"
        self.max_batch: int | None = None   # BatchedTracker sets its slot count (batch buckets)
        self._steps: dict[int, Callable] = {}
        self._host: torch.Tensor | None = None       # search crops, pinned on CUDA
        self._host_out: torch.Tensor | None = None   # step outputs, pinned on CUDA
        self.int8_source: str | None = None
        self.runtime = (self._export_runtime(self.step, ["packed"], (calibration, int8_cache, factors, window))
                        if self.backend != "torch" else None)

    @property
    def window(self) -> torch.Tensor | None:
        return self.step.window

    # -- runtimes
    def _example(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        tokens = torch.zeros(batch, net.template_grid ** 2, net.backbone.embed_dim)
        search = torch.zeros(batch, self.search_size, self.search_size, 3, dtype=torch.uint8)
        return tokens, search

    def _export_runtime(self, module: nn.Module, output_names: list[str], int8: tuple) -> Any:
        """``module`` (on the CPU, fp32) exported to ONNX with a dynamic batch, for the CPU runtime
        (for int8: quantized, or read from the cache, by :func:`track.quantize.quantized_step`)."""
        from .onnx_export import export_module_bytes

        with torch.no_grad():
            graph = export_module_bytes(module, self._example(), ["template_tokens", "search"], output_names,
                                        dynamic_batch=True)
        if self.backend == "onnxruntime":
            return OnnxRuntimeStep(graph, ["template_tokens", "search"])
        calibration, cache, factors, window = int8
        export = {"template_size": self.template_size, "search_size": self.search_size, "window": window,
                  "ce_keep_ratio": self.ce_keep_ratio, "factors": list(factors)}
        if self.auto_int8:
            from .quantize import measured_int8

            measured = measured_int8(graph, self.weights, export, cache_dir=cache)
            if measured is not None:
                graph, self.int8_source = measured
                self.dtype = "int8"
        elif self.dtype == "int8":
            graph = self._quantized(graph, calibration, cache, factors, export)
        return OpenVinoStep(graph, ["template_tokens", "search"], self.dtype)

    def _quantized(self, graph: bytes, calibration: str | Path | None, cache: str | Path | None,
                   factors: tuple[float, float], export: dict[str, Any]) -> Any:
        from .quantize import calibration_set, quantized_step

        pairs = calibration_set(calibration, self.template_size, self.search_size, *factors)

        def samples() -> list[dict[str, np.ndarray]]:
            return [{"template_tokens": self.template_tokens(t).cpu().numpy(), "search": s[None]}
                    for t, s in zip(pairs.templates, pairs.searches)]

        model, self.int8_source = quantized_step(graph, self.weights, export, pairs, samples, cache_dir=cache)
        return model

    @property
    def fixed_shapes(self) -> bool:
        """Whether the step is built per batch size (compiled or a CUDA graph) rather than run eagerly."""
        return bool(self.compile or self.cuda_graph)

    def padded_batch(self, batch: int) -> int:
        """The batch the step runs for ``batch`` crops: compiled steps and CUDA graphs have fixed
        shapes, so they run power-of-two buckets (capped at ``max_batch``) and pad the rest."""
        if not self.fixed_shapes or batch <= 1:
            return batch
        bucket = 1 << (batch - 1).bit_length()
        return max(batch, min(bucket, self.max_batch or bucket))

    def _step_for(self, batch: int) -> Callable:
        step = self._steps.get(batch)
        if step is None:
            if self.device.type == "cuda":
                step = StaticStep(self.step, self.device, capture=self.cuda_graph)
            elif self.compile:
                step = compile_frozen(self.step, max_autotune=self.compile == "max-autotune")
            else:
                step = self.step
            self._steps[batch] = step
        return step

    def search_buffer(self, batch: int) -> np.ndarray:
        """A (batch, S, S, 3) uint8 array to crop into; ``locate`` reads it without a copy
        (pinned host memory on CUDA, so the copy to the GPU is one asynchronous transfer)."""
        rows = self.padded_batch(batch)
        if self._host is None or self._host.shape[0] < rows:
            self._host = torch.zeros((rows, self.search_size, self.search_size, 3), dtype=torch.uint8,
                                     pin_memory=self.device.type == "cuda")
        return self._host.numpy()[:batch]

    # -- per sequence
    @torch.inference_mode()
    def template_tokens(self, template_crops: np.ndarray) -> torch.Tensor:
        """Template crops (H, W, 3) or (B, H, W, 3) uint8 -> tokens with position [B, Nz, C] on the
        network's device (float32), computed once per sequence."""
        crops = torch.from_numpy(np.ascontiguousarray(template_crops))
        crops = crops.unsqueeze(0) if crops.ndim == 3 else crops
        pixels = _pixels(crops.to(self.device, non_blocking=True))
        with _computing_in(self.device, self.autocast):
            return self.net.embed_template(pixels).float()

    # -- per frame
    @torch.inference_mode()
    def locate(self, template_tokens: torch.Tensor, search_crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search crops (H, W, 3) or (B, H, W, 3) uint8 -> (boxes [B, 4] cx, cy, w, h normalised to
        the crop at the peak of ``score * window``, peaks [B] of the raw score maps), float32 numpy.

        ``template_tokens``: [B, Nz, C] (or [1, Nz, C] for every crop).
        """
        crops = search_crops[None] if search_crops.ndim == 3 else search_crops
        batch = crops.shape[0]
        if template_tokens.shape[0] != batch:
            template_tokens = template_tokens.expand(batch, -1, -1)
        if self.runtime is not None:
            packed = self.runtime(template_tokens.cpu().numpy(), np.ascontiguousarray(crops))[0]
            return packed[:, :4], packed[:, 4]
        rows = self.padded_batch(batch)
        host = self.search_buffer(batch)
        if crops.ctypes.data != host.ctypes.data or crops.strides != host.strides:
            host[...] = crops
        search = self._host[:rows]
        if rows > batch:
            template_tokens = torch.cat([template_tokens, template_tokens[:1].expand(rows - batch, -1, -1)])
        packed = self._step_for(rows)(template_tokens, search)
        if self.device.type == "cuda":
            if self._host_out is None or self._host_out.shape[0] < rows:
                self._host_out = torch.empty((rows, 5), dtype=torch.float32, pin_memory=True)
            out = self._host_out[:rows]
            out.copy_(packed, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            packed = out
        result = packed[:batch].numpy()
        return result[:, :4], result[:, 4]


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """An RGB uint8 view of a frame; grayscale (H, W) / (H, W, 1) and RGBA are converted.

    Raises ValueError for anything else (wrong rank, channel count, dtype, empty image).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (H, W[, C]), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty (H, W) or (H, W, C) array, got shape {image.shape}")
    return _as_rgb(image)


def check_box(box_xywh: Sequence[float], image_shape: Sequence[int]) -> np.ndarray:
    """Validate an initial box (x, y, w, h) against an image of shape (H, W, ...).

    Raises ValueError unless the box has 4 finite values, a positive width and height, and
    overlaps the image.
    """
    box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        raise ValueError(f"box must be 4 numbers x, y, w, h; got {box_xywh!r}")
    if not np.isfinite(box).all():
        raise ValueError(f"box has non-finite values: {box.tolist()}")
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise ValueError(f"box needs a positive width and height, got {box.tolist()}")
    height, width = image_shape[:2]
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"box {box.tolist()} lies outside the {width}x{height} image")
    return box


class BatchedTracker:
    """``slots`` independent single-object tracks advanced together, one network call per step.

    Each slot is started with ``initialize(slot, first_frame, box)``; ``track({slot: frame, ...})``
    then advances every given slot by one frame with a single batched network call. A slot's
    boxes are those a ``Tracker`` gives for the same frames (the network treats the batch rows
    independently). ``release(slot)`` frees a slot for the next sequence.

    Args:
        model: a trained ``OneStreamTracker`` (a frozen copy is made; the model is not changed).
        slots: how many sequences can run at once (the largest batch).
        crop_threads: threads cropping the slots of a step in parallel (0: in the calling thread).
        Others: as ``Tracker``.
    """

    clip_margin = 10.0

    def __init__(self, model: OneStreamTracker, slots: int = 1, template_factor: float = 2.0,
                 search_factor: float = 4.0, template_size: int | None = None, search_size: int | None = None,
                 dtype: str = "fp32", lost_threshold: float = 0.2, ce_keep_ratio: float | None = None,
                 window: bool = True, compile: bool | str = False, backend: str = "torch",
                 device: str | torch.device = "auto", cuda_graph: bool = True, crop_threads: int = 0,
                 calibration: str | Path | None = None, int8_cache: str | Path | None = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        template_size = model.template_size if template_size is None else template_size
        search_size = model.search_size if search_size is None else search_size
        if (template_size, search_size) != (model.template_size, model.search_size):
            raise ValueError(f"crop sizes {template_size}/{search_size} differ from the model's "
                             f"{model.template_size}/{model.search_size}")
        self.network = InferenceNetwork(model, dtype, compile, backend, ce_keep_ratio, device, window, cuda_graph,
                                        calibration, int8_cache, (float(template_factor), float(search_factor)))
        self.network.max_batch = slots
        self.slots = slots
        self.template_factor, self.search_factor = float(template_factor), float(search_factor)
        self.template_size, self.search_size = template_size, search_size
        self.dtype, self.device = self.network.dtype, self.network.device
        self.lost_threshold = float(lost_threshold)
        self.templates: torch.Tensor | None = None    # [slots, Nz, C] on the network's device
        self.states: list[np.ndarray | None] = [None] * slots
        self.scores = [1.0] * slots
        self.lost = [False] * slots
        self.infos: list[dict[str, Any]] = [{} for _ in range(slots)]
        self._pool = ThreadPoolExecutor(crop_threads, thread_name_prefix="crop") if crop_threads > 0 else None
        self.timings = {"crop": 0.0, "network": 0.0}

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} outside 0..{self.slots - 1}")

    @torch.inference_mode()
    def initialize(self, slot: int, image: np.ndarray, box_xywh: Sequence[float]) -> dict[str, Any]:
        """Start ``slot`` on a sequence: crop the template; the output for this frame is ``box_xywh``."""
        self._check_slot(slot)
        image = check_image(image, "first frame")
        box = check_box(box_xywh, image.shape)
        template = crop_and_resize(image, box, self.template_factor, self.template_size)
        tokens = self.network.template_tokens(template.image)
        if self.templates is None:
            self.templates = tokens.new_zeros((self.slots, *tokens.shape[1:]))
        self.templates[slot] = tokens[0]
        self.states[slot] = box.copy()
        self.scores[slot], self.lost[slot] = 1.0, False
        self.infos[slot] = {"box": box.copy(), "score": 1.0, "lost": False, "crop_box": template.crop_box}
        return self.infos[slot]

    def release(self, slot: int) -> None:
        """Forget ``slot``'s sequence (``initialize`` must follow before it is tracked again)."""
        self._check_slot(slot)
        self.states[slot], self.infos[slot] = None, {}

    @torch.inference_mode()
    def track(self, frames: Mapping[int, np.ndarray]) -> dict[int, tuple[np.ndarray, float]]:
        """Advance the given slots by one frame each: ``{slot: frame}`` -> ``{slot: (box x, y, w, h
        in pixels, score-map peak)}``, with one network call for all of them."""
        order = sorted(frames)
        for slot in order:
            self._check_slot(slot)
            if self.states[slot] is None:
                raise RuntimeError(f"call initialize({slot}, first_frame, box) before tracking slot {slot}")
        if not order:
            return {}
        images = [check_image(frames[slot], "frame") for slot in order]
        start = time.perf_counter()
        buffer = self.network.search_buffer(len(order))

        def cut(j: int) -> CropBox:
            return crop_and_resize(images[j], self.states[order[j]], self.search_factor, self.search_size,
                                   out=buffer[j]).crop_box

        if self._pool is not None and len(order) > 1:
            crop_boxes = list(self._pool.map(cut, range(len(order))))
        else:
            crop_boxes = [cut(j) for j in range(len(order))]
        if len(order) == self.slots:
            tokens = self.templates
        else:
            tokens = self.templates[torch.tensor(order, device=self.templates.device)]
        crops_done = time.perf_counter()
        boxes, peaks = self.network.locate(tokens, buffer)
        self.timings["crop"] += crops_done - start
        self.timings["network"] += time.perf_counter() - crops_done
        return {slot: self._follow(slot, boxes[j], float(peaks[j]), crop_boxes[j], images[j].shape)
                for j, slot in enumerate(order)}

    def _follow(self, slot: int, box_in_crop: np.ndarray, peak: float, crop_box: CropBox,
                image_shape: Sequence[int]) -> tuple[np.ndarray, float]:
        """Map the network's box back to the image, clip it, update the slot (see the module
        docstring for a non-finite network output)."""
        box = map_crop_box_to_image(box_in_crop.tolist(), crop_box)
        finite = bool(np.isfinite(box).all()) and math.isfinite(peak)
        if not finite:
            box, peak = self.states[slot], float("nan")
        box = clip_box(box, image_shape[0], image_shape[1], self.clip_margin)
        lost = not peak >= self.lost_threshold
        self.states[slot] = box
        self.scores[slot], self.lost[slot] = peak, lost
        self.infos[slot] = {"box": box.copy(), "score": peak, "lost": lost, "crop_box": crop_box,
                            "non_finite": not finite}
        return box.copy(), peak

    def warm_up(self, height: int = 360, width: int = 640) -> None:
        """Track blank frames and forget them: compiles the network / captures the CUDA graph for every
        batch the run can step (``padded_batch`` of 1 .. ``slots`` active sequences: fewer run as
        sequences finish), so that no real frame is timed with it."""
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        for slot in range(self.slots):
            self.initialize(slot, frame, (width / 4, height / 4, width / 2, height / 2))
        counts = range(1, self.slots + 1) if self.network.fixed_shapes else [self.slots]
        for rows in sorted({self.network.padded_batch(active) for active in counts}):
            self.track({slot: frame for slot in range(rows)})
        for slot in range(self.slots):
            self.release(slot)
        self.timings = {"crop": 0.0, "network": 0.0}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class Tracker:
    """Single-object tracker: ``initialize(first_frame, box)`` then ``track(frame)`` per frame.

    Args:
        model: a trained ``OneStreamTracker`` (a frozen copy is made; the model is not changed).
        template_factor, search_factor: context factors of the template / search crops.
        template_size, search_size: crop sides in pixels (default: the model's).
        dtype: "fp32" (default), "bf16", "fp16" (CUDA only) or "auto" (fp16 on CUDA; bf16 on a CPU
            with AMX / AVX512-BF16, else fp32).
        lost_threshold: a frame whose score-map peak (before the Hann window) is below this is
            reported as lost (``tracker.lost``); the box is still returned and followed.
        ce_keep_ratio: candidate-elimination keep ratio (default: the model's).
        window: multiply the score map by the Hann window (the protocol; off only for ablations).
        compile: CPU only: run the per-frame step through ``torch.compile`` with frozen weights
            (needs a C++ compiler): True / "default" (the first tracked frame then takes about
            15 s) or "max-autotune" (about 1 min; the fastest bf16 mode).
        backend: "torch", "onnxruntime" (CPU, fp32) or "openvino" (CPU, fp32 / bf16 / int8).
        device: "auto" (default: the GPU when torch sees one), "cpu", "cuda" or "cuda:<i>".
        calibration, int8_cache: dtype "int8" only, see ``InferenceNetwork``.
        cuda_graph: on CUDA, replay the step as a captured CUDA graph (default) or launch it eagerly.
    """

    def __init__(self, model: OneStreamTracker, template_factor: float = 2.0, search_factor: float = 4.0,
                 template_size: int | None = None, search_size: int | None = None, dtype: str = "fp32",
                 lost_threshold: float = 0.2, ce_keep_ratio: float | None = None, window: bool = True,
                 compile: bool | str = False, backend: str = "torch", device: str | torch.device = "auto",
                 cuda_graph: bool = True, calibration: str | Path | None = None,
                 int8_cache: str | Path | None = None) -> None:
        self.tracks = BatchedTracker(model, 1, template_factor=template_factor, search_factor=search_factor,
                                     template_size=template_size, search_size=search_size, dtype=dtype,
                                     lost_threshold=lost_threshold, ce_keep_ratio=ce_keep_ratio, window=window,
                                     compile=compile, backend=backend, device=device, cuda_graph=cuda_graph,
                                     calibration=calibration, int8_cache=int8_cache)
        self.network = self.tracks.network
        self.dtype, self.device = self.tracks.dtype, self.tracks.device
        self.lost_threshold = self.tracks.lost_threshold

    @property
    def state(self) -> np.ndarray | None:
        """The current box (x, y, w, h); set it to move the next search region."""
        return self.tracks.states[0]

    @state.setter
    def state(self, box: np.ndarray | None) -> None:
        self.tracks.states[0] = None if box is None else np.asarray(box, dtype=np.float64)

    @property
    def score(self) -> float:
        return self.tracks.scores[0]

    @property
    def lost(self) -> bool:
        return self.tracks.lost[0]

    @property
    def info(self) -> dict[str, Any]:
        return self.tracks.infos[0]

    def initialize(self, image: np.ndarray, box_xywh: Sequence[float]) -> dict[str, Any]:
        """Crop the template from the first frame; the output for this frame is ``box_xywh``."""
        return self.tracks.initialize(0, image, box_xywh)

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Locate the target in the next frame: (box x, y, w, h in pixels, score-map peak)."""
        if self.state is None:
            raise RuntimeError("call initialize(first_frame, box) before track()")
        return self.tracks.track({0: image})[0]

    def warm_up(self, height: int = 360, width: int = 640) -> None:
        """Track one blank frame and forget it: with ``compile`` or on CUDA this builds the step, so
        that the first real frame is not timed with it. ``initialize`` must follow."""
        self.tracks.warm_up(height, width)

    def track_sequence(self, frames, init_box: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run over an iterable of frames: (boxes (N, 4), scores (N,), seconds per frame (N,))."""
        boxes, scores, times = [], [], []
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            if index == 0:
                self.initialize(frame, init_box)
                box, score = self.state.copy(), 1.0
            else:
                box, score = self.track(frame)
            times.append(time.perf_counter() - start)
            boxes.append(box)
            scores.append(score)
        return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores), np.array(times)
