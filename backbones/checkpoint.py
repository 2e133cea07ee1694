"""Reading the checkpoint formats people already have, and writing our own export.

Formats are told apart by their keys (never by file name) and mapped onto our key layout by
renaming on the fly; the files themselves stay untouched:

=============  ===============================================  ===================================
format         top level                                        keys
=============  ===============================================  ===================================
``litevit``    ``{"state_dict", "meta": {"arch", ...}}``        ours
``maelite``    ``{"model", "optimizer", "start_epoch", ...}``   ``module.model.*`` (DDP + wrapper);
                                                                teacher ``module.tch_model.*``,
                                                                adapter ``module.attn_adapter.*``
``mae``        ``{"model"}``                                    timm layout, decoder in pre-training
``hiera``      ``{"model_state"}``                              official Hiera (renamed as timm)
``ostrack``    ``{"net"}``                                      ``backbone.*``, ``box_head.*``
``mocov3``     ``{"state_dict", "epoch", "optimizer", ...}``    ``module.base_encoder.*``,
               (facebookresearch/moco-v3) or ``{"model",       ``module.momentum_encoder.*``,
               "start_epoch", ...}`` (MAE-Lite's trainer)       ``module.predictor.*``
``timm``       a plain ``{name: tensor}`` mapping               timm / DeiT layout
=============  ===============================================  ===================================

A MoCo-v3 file holds two encoders, the base encoder's projector (its ``head``: MoCo-v3 replaces
the ViT's classifier by the 3-layer projection MLP) and the predictor; the backbone is the base
encoder without its head, everything else is reported as dropped.  A checkpoint from which not a
single backbone weight loads is refused (``CheckpointError`` naming the file and the key prefixes
it holds), never returned as a result with every key missing.

Everything is read with ``torch.load(weights_only=True)``: a file that needs other globals is
refused, never executed.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table
from timm.models.hiera import checkpoint_filter_fn as hiera_official_to_timm

from fileio import atomic_path

__all__ = ["LoadResult", "read_checkpoint", "detect_format", "backbone_state_dict", "load_pretrained",
           "save_backbone", "load_backbone", "load_matched_state", "CheckpointError", "key_prefixes"]

EXPORT_VERSION = 1
# Pre-training-only parts: MAE decoder, distillation teacher and adapters, Hiera's fusion heads.
_DROP_PREFIXES = ("mask_token", "decoder", "tch_model.", "teacher.", "attn_adapter.", "hidden_adapter.",
                  "multi_scale_fusion_heads.", "box_head.")
# Pre-training-only parts of one format: MoCo-v3's projector (the base encoder's head), momentum encoder
# and predictor.
_FORMAT_DROP_PREFIXES = {"mocov3": ("base_encoder.head.", "momentum_encoder.", "predictor.")}
_MOCO_ENCODER = "base_encoder."
# Some training checkpoints pickle their argparse arguments: a plain attribute bag, safe to build.
_SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file/key."""


@dataclass
class LoadResult:
    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"format={self.format}"]
        for name in ("missing", "unexpected", "dropped", "resized"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        return "; ".join(parts)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load, the file needs globals outside the safe allow-list "
            f"(it could execute code when unpickled): {str(e).splitlines()[0]}") from e
    except Exception as e:  # torch raises many types for damaged files (RuntimeError, EOFError, IndexError...)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict at the top level, found {type(obj).__name__}")
    return dict(obj)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _is_moco(sd: Any) -> bool:
    return _is_state_dict(sd) and any(k.startswith(("module." + _MOCO_ENCODER, _MOCO_ENCODER)) for k in sd)


def detect_format(ckpt: Mapping[str, Any]) -> str:
    """Name of the layout of a loaded checkpoint (see the module docstring)."""
    if "state_dict" in ckpt and isinstance(ckpt.get("meta"), Mapping) and "arch" in ckpt["meta"]:
        return "litevit"
    if _is_state_dict(ckpt.get("net")):
        return "ostrack"
    if _is_state_dict(ckpt.get("model_state")):
        return "hiera"
    if _is_moco(ckpt.get("state_dict")) or _is_moco(ckpt.get("model")):
        return "mocov3"
    if _is_state_dict(ckpt.get("model")):
        keys = list(ckpt["model"])
        return "maelite" if any(k.startswith(("module.model.", "model.")) for k in keys) else "mae"
    if _is_state_dict(ckpt):
        return "timm"
    raise CheckpointError(f"unknown checkpoint layout; top-level keys: {sorted(map(str, ckpt))[:12]}")


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


_CONTAINERS = {"litevit": "state_dict", "ostrack": "net", "hiera": "model_state", "maelite": "model", "mae": "model"}


def _container(ckpt: Mapping[str, Any], fmt: str) -> tuple[str | None, Mapping[str, torch.Tensor]]:
    """(top-level key, tensors) of the state dict a checkpoint of format ``fmt`` stores (key None: the file
    is the state dict)."""
    if fmt == "mocov3":
        key = "state_dict" if _is_moco(ckpt.get("state_dict")) else "model"
    else:
        key = _CONTAINERS.get(fmt)
    return key, (ckpt if key is None else ckpt[key])


def backbone_state_dict(ckpt: Mapping[str, Any]) -> tuple[str, dict[str, torch.Tensor]]:
    """(format, state dict in our key layout) of the backbone stored in a checkpoint.

    Parts that are not the backbone keep recognisable names (MoCo-v3: ``momentum_encoder.*``,
    ``predictor.*``, ``base_encoder.head.*``) for :func:`load_pretrained` to drop and report.
    """
    fmt = detect_format(ckpt)
    _, sd = _container(ckpt, fmt)
    if fmt == "ostrack":
        sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    elif fmt == "hiera":
        sd = hiera_official_to_timm(sd)
    elif fmt == "maelite":
        sd = _strip(_strip(sd, "module."), "model.")
    elif fmt == "mocov3":
        sd = {(k[len(_MOCO_ENCODER):] if k.startswith(_MOCO_ENCODER) and not k.startswith("base_encoder.head.")
               else k): v for k, v in _strip(sd, "module.").items()}
    else:
        sd = dict(sd)
    return fmt, sd


def key_prefixes(keys: Sequence[str], limit: int = 8) -> str:
    """Summary of a state dict's key names: ``module.base_encoder.* (150), predictor.* (8), ...``.

    A prefix is a key's module path up to its first numeric part, at most two names deep.
    """
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")[:-1]
        numeric = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts))
        prefix = ".".join(parts[:min(numeric, 2)])
        prefix = f"{prefix}.*" if prefix else key
        counts[prefix] = counts.get(prefix, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    text = ", ".join(f"{prefix} ({n})" for prefix, n in ranked[:limit])
    return text + (f", and {len(ranked) - limit} more" if len(ranked) > limit else "")


def _resize_position_embeddings(model: nn.Module, sd: dict[str, torch.Tensor], result: LoadResult) -> None:
    own = model.state_dict()
    for key, value in list(sd.items()):
        target = own.get(key)
        if target is None or target.shape == value.shape:
            continue
        if key == "pos_embed" and value.ndim == 3 and target.ndim == 3 and value.shape[-1] == target.shape[-1]:
            prefix = getattr(model, "num_prefix_tokens", 0)
            new_grid = getattr(model, "grid_size", None) or model.tokens_spatial_shape
            old_n = value.shape[1] - prefix
            side = int(round(old_n ** 0.5))
            if side * side != old_n:  # a class token the model does not have, or vice versa
                raise CheckpointError(f"pos_embed: checkpoint {tuple(value.shape)} is not a square grid "
                                      f"with {prefix} prefix token(s); model {tuple(target.shape)}")
            sd[key] = resample_abs_pos_embed(value, list(new_grid), [side, side], num_prefix_tokens=prefix)
            result.resized.append(key)
        elif key.endswith("relative_position_bias_table") and value.ndim == 2 and value.shape[1] == target.shape[1]:
            window = model.get_submodule(key.rsplit(".", 1)[0]).rel_pos_window
            sd[key] = resize_rel_pos_bias_table(value, window, tuple(target.shape))
            result.resized.append(key)


def _match_qkv_bias(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Convert between a plain ``qkv.bias`` and BEiT's separate ``q_bias`` / ``v_bias``.

    Dropping the k part is exact for the attention output: a key bias adds the same value to
    every logit of a query row, which softmax ignores.
    """
    own = model.state_dict()
    for key in [k for k in sd if k.endswith("attn.qkv.bias")]:
        base = key[: -len("qkv.bias")]
        if key not in own and base + "q_bias" in own:
            q, _, v = sd.pop(key).chunk(3)
            sd[base + "q_bias"], sd[base + "v_bias"] = q, v
    for key in [k for k in sd if k.endswith("attn.q_bias")]:
        base = key[: -len("q_bias")]
        if key not in own and base + "qkv.bias" in own and base + "v_bias" in sd:
            q, v = sd.pop(key), sd.pop(base + "v_bias")
            sd[base + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])


def load_pretrained(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Any],
                    strict: bool = False) -> LoadResult:
    """Load backbone weights from any supported checkpoint into ``model``.

    Wrappers are stripped, pre-training-only parts (decoder, teacher, adapters, D²-MAE's partial
    13th block, MoCo-v3's momentum encoder, projector and predictor) dropped, absolute position
    embeddings and relative bias tables resized to the model's grid, and q/v vs qkv biases
    converted.  Keys that remain unmatched are returned by name (``strict=True`` raises on them).
    A shape mismatch always raises, naming the key; so does a checkpoint of which no key fits the
    model (naming the key prefixes it holds), since loading it would leave the model untouched.
    """
    source = path_or_state if isinstance(path_or_state, Mapping) else read_checkpoint(path_or_state)
    where = "" if isinstance(path_or_state, Mapping) else f"{path_or_state}: "
    try:
        fmt, sd = backbone_state_dict(source)
    except CheckpointError as e:
        raise CheckpointError(where + str(e)) from None
    result = LoadResult(format=fmt)
    own = model.state_dict()
    depth = len(model.blocks) if hasattr(model, "blocks") else None
    drop = _DROP_PREFIXES + _FORMAT_DROP_PREFIXES.get(fmt, ())
    for key in list(sd):
        block = re.match(r"blocks\.(\d+)\.", key)
        partial_extra_block = (block is not None and depth is not None and int(block.group(1)) >= depth
                               and key not in own and fmt in ("maelite", "litevit")
                               and re.match(r"blocks\.\d+\.(norm1|attn\.(qkv|q_bias|v_bias))", key))
        if key.startswith(drop) or key.endswith("relative_position_index") or partial_extra_block:
            result.dropped.append(key)
            del sd[key]
    if not any(key in own for key in sd):
        container, raw = _container(source, fmt)
        held = f"its {container!r} entry" if container else "it"
        raise CheckpointError(
            f"{where or 'state dict: '}no backbone weight of this {fmt}-layout checkpoint fits "
            f"{type(model).__name__} ({len(own)} keys: {key_prefixes(list(own), 6)}); {held} holds "
            f"{key_prefixes(list(raw))}" + (f"; dropped as pre-training-only: {len(result.dropped)} keys"
                                              if result.dropped else ""))
    _match_qkv_bias(model, sd)
    _resize_position_embeddings(model, sd, result)
    for key, value in sd.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"{where}shape mismatch for {key}: checkpoint {tuple(value.shape)} "
                                  f"vs model {tuple(own[key].shape)}")
    return load_matched_state(model, sd, result, strict, where)


def load_matched_state(model: nn.Module, sd: Mapping[str, torch.Tensor], result: LoadResult,
                       strict: bool = False, where: str = "") -> LoadResult:
    """Load a state dict whose shapes already match; record missing / unexpected keys in ``result``
    (``strict`` raises CheckpointError on any, prefixed with ``where``)."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    result.missing, result.unexpected = list(missing), list(unexpected)
    if strict and (result.missing or result.unexpected):
        raise CheckpointError(f"{where}keys do not match: {result}")
    return result


def save_backbone(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                  arch: str, **meta: Any) -> Path:
    """Write ``{"state_dict", "meta": {"arch", ...}}`` atomically (temporary file, then rename)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    payload = {"state_dict": state, "meta": {"arch": arch, "format_version": EXPORT_VERSION, **meta}}
    return atomic_save(payload, path)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    with atomic_path(path) as temp:
        torch.save(obj, temp)
    return Path(path)


def load_backbone(path: str | os.PathLike, arch: str | None = None, strict: bool = True,
                  **overrides: Any) -> nn.Module:
    """Build the backbone an export's metadata names, with the build options it records (``arch_kwargs``,
    e.g. a 4-block depth), or ``arch`` with ``overrides`` only; then load the weights."""
    from .registry import build_backbone

    ckpt = read_checkpoint(path)
    if arch is None:
        if detect_format(ckpt) != "litevit":
            raise CheckpointError(f"{path}: not a litevit export; pass arch= to choose the model")
        arch = ckpt["meta"]["arch"]
        overrides = {**(ckpt["meta"].get("arch_kwargs") or {}), **overrides}
    model = build_backbone(arch, **overrides)
    load_pretrained(model, ckpt, strict=strict)
    return model
