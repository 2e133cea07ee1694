"""Per-frame tracking with a ``OneStreamTracker``: OSTrack's inference protocol, arranged for CPU speed.

Protocol (PROTOCOLS section 4, "Inference"): the template is cropped once from the first frame
(factor 2, 128 px; no template update, no motion model); every later frame is cropped around the
previous box (factor 4, zero padding, 256 px), the score map is multiplied by a Hann window, the
box at the windowed peak is decoded, mapped back to image pixels and clipped to the image with a
10-pixel margin.

Speed (all exact rewrites of the same computation, checked against ``OneStreamTracker.forward``
by the tests): the network runs from a frozen copy (``InferenceNetwork``) whose patch embedding
has the ImageNet normalisation folded in (it is linear and unpadded, so raw 0-255 crops go in),
whose head convolutions have their BatchNorm folded in, whose template tokens are embedded once
per sequence, and whose blocks all run fused attention (``fast_ce``: the CE scores come from the
template-centre queries alone, not from an explicit N x N attention matrix), and whose head runs
the offset and size branches only on the receptive field of the chosen cell
(``OneStreamTracker.locate``). The crop is one ``cv2.warpAffine`` into a preallocated buffer. For
bf16 the matmul / conv weights of the copy are stored in bf16 once (autocast does not re-cast
them every frame) while the CE scores stay float32, so that bf16 keeps the same candidates as
fp32 more often. Optional: ``torch.compile`` of the frozen per-frame step (weights become
constants, so oneDNN / MKL get them prepacked; the fastest CPU path) and an onnxruntime backend
for fp32 (see ``track/benchmark.py`` for measured speeds).
"""
from __future__ import annotations

import copy
import os
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from backbones import compile_frozen

from .model import OneStreamTracker, decode_boxes
from .processing import (IMAGENET_MEAN, IMAGENET_STD, _as_rgb, clip_box, crop_and_resize,
                         hann_window_2d, map_crop_box_to_image)

__all__ = ["COMPILE_MODES", "DTYPES", "InferenceNetwork", "Tracker", "check_box", "check_image"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
COMPILE_MODES = ("default", "max-autotune")


def _fold_normalisation(conv: nn.Conv2d) -> None:
    """Make a bias-carrying, unpadded conv take 0-255 pixels: ``conv((x/255 - m) / s) == conv'(x)``."""
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    new_bias = bias - (weight * (mean / std)).sum(dim=(1, 2, 3))
    new_weight = weight / (255.0 * std)
    conv.weight = nn.Parameter(new_weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


class _MapsOnly(nn.Module):
    """``forward_tokens`` with tuple outputs, for the ONNX export of the per-frame network."""

    def __init__(self, net: OneStreamTracker, ce_keep_ratio: float | None) -> None:
        super().__init__()
        self.net, self.ce_keep_ratio = net, ce_keep_ratio

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net.forward_tokens(template_tokens, search, self.ce_keep_ratio, details=False)
        return out["score_map"], out["offset_map"], out["size_map"]


class _Locate(nn.Module):
    """``OneStreamTracker.locate`` with a fixed window and CE keep ratio: the module ``torch.compile``
    freezes (weights become constants, so linear and conv weights are prepacked once)."""

    def __init__(self, net: OneStreamTracker, window: torch.Tensor | None, ce_keep_ratio: float | None) -> None:
        super().__init__()
        self.net, self.ce_keep_ratio = net, ce_keep_ratio
        self.register_buffer("window", window)

    def forward(self, template_tokens: torch.Tensor, search: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.locate(template_tokens, search, self.window, self.ce_keep_ratio)


class InferenceNetwork(nn.Module):
    """A frozen, inference-arranged copy of a ``OneStreamTracker`` (the original is not touched).

    Inputs are uint8 RGB crops (H, W, 3) as ``crop_and_resize`` returns them.

    Args:
        dtype: "fp32" or "bf16" (autocast over bf16-stored weights).
        compile: ``torch.compile`` the per-frame step ``locate`` with frozen weights (torch
            backend; ``forward``, which returns the three maps, stays eager). True or
            "default"; "max-autotune" also lets inductor time its own GEMM kernels against
            oneDNN's (about 1 min to compile; faster for bf16, the same for fp32 here).
        backend: "torch", or "onnxruntime" (fp32 only): the per-frame network (from the template
            tokens and the raw search crop to the three maps) is exported to ONNX in memory and
            run by onnxruntime with ``torch.get_num_threads()`` threads; the template tokens
            are still computed by torch once per sequence.
        ce_keep_ratio: the CE keep ratio fixed in the onnxruntime graph (default: the model's).
    """

    def __init__(self, model: OneStreamTracker, dtype: str = "fp32", compile: bool | str = False,
                 backend: str = "torch", ce_keep_ratio: float | None = None) -> None:
        super().__init__()
        if compile is True:
            compile = "default"
        if compile not in (False, None, *COMPILE_MODES):
            raise ValueError(f"compile must be a bool or one of {COMPILE_MODES}, got {compile!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
        if backend == "onnxruntime" and (dtype != "fp32" or compile):
            raise ValueError("the onnxruntime backend runs fp32 without torch.compile")
        net = copy.deepcopy(model).eval().requires_grad_(False)
        net.fast_ce = True
        proj = net.backbone.patch_embed.proj
        if any(p != 0 for p in proj.padding):
            raise ValueError("cannot fold the normalisation into a padded patch embedding")
        _fold_normalisation(proj)
        for branch in (net.head.score, net.head.offset, net.head.size):
            for i in range(len(branch) - 1):
                conv, bn, relu = branch[i]
                branch[i] = nn.Sequential(fuse_conv_bn_eval(conv, bn), relu)
        self.dtype = dtype
        if dtype == "bf16":
            # the CE blocks' qkv stays float32: candidate scores are computed from it in float32
            # (``centre_logits``), autocast casts it for the block's own attention
            keep_fp32 = {id(net.backbone.blocks[i].attn.qkv) for i in net.ce_locations}
            for module in net.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)) and id(module) not in keep_fp32:
                    module.to(torch.bfloat16)
        self.net = net
        self.template_size, self.search_size = model.template_size, model.search_size
        self._buffers: dict[torch.Size, torch.Tensor] = {}
        self.backend = backend
        self.session = self._onnxruntime_session(ce_keep_ratio) if backend == "onnxruntime" else None
        self.compile = compile or None
        self._compiled: dict[tuple, Callable] = {}

    def _onnxruntime_session(self, ce_keep_ratio: float | None) -> Any:
        import onnxruntime

        from .onnx_export import export_module_bytes

        net = self.net
        tokens = torch.zeros(1, net.template_grid ** 2, net.backbone.embed_dim)
        search = torch.zeros(1, 3, net.search_size, net.search_size)
        with torch.no_grad():
            graph = export_module_bytes(_MapsOnly(net, ce_keep_ratio), (tokens, search),
                                        ["template_tokens", "search"], ["score_map", "offset_map", "size_map"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # shared machine: no spin-waiting
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._search_array = np.empty((1, 3, net.search_size, net.search_size), dtype=np.float32)
        return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    def _to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float32 [1, 3, H, W] (channels-last memory, no normalisation),
        written into a buffer kept per crop size (no allocation per frame)."""
        pixels = torch.from_numpy(crop).unsqueeze(0).permute(0, 3, 1, 2)
        buffer = self._buffers.get(pixels.shape)
        if buffer is None:
            buffer = self._buffers[pixels.shape] = torch.empty(
                pixels.shape, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        return buffer.copy_(pixels)

    @torch.inference_mode()
    def template_tokens(self, template_crop: np.ndarray) -> torch.Tensor:
        """Template crop -> tokens with position [1, Nz, C], computed once per sequence."""
        with self._autocast():
            return self.net.embed_template(self._to_tensor(template_crop))

    @torch.inference_mode()
    def forward(self, template_tokens: torch.Tensor, search_crop: np.ndarray,
                ce_keep_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Search crop -> (score [1, 1, H, W], offset [1, 2, H, W], size [1, 2, H, W]), float32."""
        if self.session is not None:
            if ce_keep_ratio is not None:
                raise ValueError("the onnxruntime backend fixes the CE keep ratio when it is built")
            np.copyto(self._search_array[0], search_crop.transpose(2, 0, 1))
            maps = self.session.run(None, {"template_tokens": template_tokens.numpy(), "search": self._search_array})
            return tuple(torch.from_numpy(m) for m in maps)
        with self._autocast():
            out = self.net.forward_tokens(template_tokens, self._to_tensor(search_crop), ce_keep_ratio,
                                          details=False)
        return out["score_map"], out["offset_map"], out["size_map"]

    @torch.inference_mode()
    def locate(self, template_tokens: torch.Tensor, search_crop: np.ndarray, window: torch.Tensor | None = None,
               ce_keep_ratio: float | None = None) -> tuple[torch.Tensor, float]:
        """Search crop -> (box [4] normalised cxcywh in the crop at the peak of ``score * window``,
        peak of the raw score map): ``OneStreamTracker.locate``, compiled when asked for."""
        if self.session is not None:
            score_map, offset_map, size_map = self.forward(template_tokens, search_crop, ce_keep_ratio)
            response = score_map if window is None else score_map * window
            return decode_boxes(response, offset_map, size_map)[0][0], float(score_map.max())
        search = self._to_tensor(search_crop)
        with self._autocast():
            if self.compile:
                box, peak = self._compiled_step(window, ce_keep_ratio)(template_tokens, search)
            else:
                box, peak = self.net.locate(template_tokens, search, window, ce_keep_ratio)
        return box[0], float(peak[0])

    def _compiled_step(self, window: torch.Tensor | None, ce_keep_ratio: float | None) -> Callable:
        """One frozen, compiled ``_Locate`` per (window, keep ratio); the first call of each compiles
        (about 15 s here, 1 min with max-autotune)."""
        key = (None if window is None else (window.data_ptr(), tuple(window.shape)), ce_keep_ratio)
        step = self._compiled.get(key)
        if step is None:
            step = self._compiled[key] = compile_frozen(_Locate(self.net, window, ce_keep_ratio).eval(),
                                                        max_autotune=self.compile == "max-autotune")
        return step


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


class Tracker:
    """Single-object tracker: ``initialize(first_frame, box)`` then ``track(frame)`` per frame.

    Args:
        model: a trained ``OneStreamTracker`` (a frozen copy is made; the model is not changed).
        template_factor, search_factor: context factors of the template / search crops.
        template_size, search_size: crop sides in pixels (default: the model's).
        dtype: "fp32" or "bf16" (bf16 autocast on CPU).
        lost_threshold: a frame whose score-map peak (before the Hann window) is below this is
            reported as lost (``tracker.lost``); the box is still returned and followed.
        ce_keep_ratio: candidate-elimination keep ratio (default: the model's).
        window: multiply the score map by the Hann window (the protocol; off only for ablations).
        compile: run the per-frame network through ``torch.compile`` with frozen weights (needs
            a C++ compiler): True / "default" (the first tracked frame then takes about 15 s) or
            "max-autotune" (about 1 min; the fastest bf16 mode). See ``InferenceNetwork``.
        backend: "torch" or "onnxruntime" (fp32; see ``InferenceNetwork``).
    """

    clip_margin = 10.0

    def __init__(self, model: OneStreamTracker, template_factor: float = 2.0, search_factor: float = 4.0,
                 template_size: int | None = None, search_size: int | None = None, dtype: str = "fp32",
                 lost_threshold: float = 0.2, ce_keep_ratio: float | None = None, window: bool = True,
                 compile: bool | str = False, backend: str = "torch") -> None:
        template_size = model.template_size if template_size is None else template_size
        search_size = model.search_size if search_size is None else search_size
        if (template_size, search_size) != (model.template_size, model.search_size):
            raise ValueError(f"crop sizes {template_size}/{search_size} differ from the model's "
                             f"{model.template_size}/{model.search_size}")
        self.network = InferenceNetwork(model, dtype, compile, backend, ce_keep_ratio)
        self.template_factor, self.search_factor = float(template_factor), float(search_factor)
        self.template_size, self.search_size = template_size, search_size
        self.dtype = dtype
        self.lost_threshold = float(lost_threshold)
        self.ce_keep_ratio = None if backend == "onnxruntime" else ce_keep_ratio
        grid = model.search_grid
        self.window = hann_window_2d(grid).view(1, 1, grid, grid) if window else None
        self._search_crop = np.empty((search_size, search_size, 3), dtype=np.uint8)
        self._template_tokens: torch.Tensor | None = None
        self.state: np.ndarray | None = None
        self.score = 1.0
        self.lost = False
        self.info: dict[str, Any] = {}

    def initialize(self, image: np.ndarray, box_xywh: Sequence[float]) -> dict[str, Any]:
        """Crop the template from the first frame; the output for this frame is ``box_xywh``."""
        image = check_image(image, "first frame")
        box = check_box(box_xywh, image.shape)
        template = crop_and_resize(image, box, self.template_factor, self.template_size)
        self._template_tokens = self.network.template_tokens(template.image)
        self.state = box.copy()
        self.score, self.lost = 1.0, False
        self.info = {"box": box.copy(), "score": 1.0, "lost": False, "crop_box": template.crop_box}
        return self.info

    @torch.inference_mode()
    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Locate the target in the next frame: (box x, y, w, h in pixels, score-map peak)."""
        if self.state is None:
            raise RuntimeError("call initialize(first_frame, box) before track()")
        image = check_image(image, "frame")
        crop = crop_and_resize(image, self.state, self.search_factor, self.search_size, out=self._search_crop)
        box_in_crop, peak = self.network.locate(self._template_tokens, crop.image, self.window, self.ce_keep_ratio)
        box = map_crop_box_to_image(box_in_crop.tolist(), crop.crop_box)
        if not np.isfinite(box).all():  # only a broken network gets here; keep following the last box
            box = self.state.copy()
        box = clip_box(box, image.shape[0], image.shape[1], self.clip_margin)
        self.state = box
        self.score, self.lost = peak, peak < self.lost_threshold
        self.info = {"box": box.copy(), "score": peak, "lost": self.lost, "crop_box": crop.crop_box}
        return box.copy(), peak

    def warm_up(self, height: int = 360, width: int = 640) -> None:
        """Track one blank frame and forget it: with ``compile=True`` this compiles the network, so
        that the first real frame is not timed with the compilation. ``initialize`` must follow."""
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        self.initialize(frame, (width / 4, height / 4, width / 2, height / 2))
        self.track(frame)
        self.state, self._template_tokens, self.info = None, None, {}

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
