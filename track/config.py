"""Tracker configs (mmengine python configs, ``configs/track/``) -> models and ``Tracker`` settings.

A config holds ``model = dict(type="OneStreamTracker", backbone=..., pretrained=..., ...)`` (the
arguments of ``track.model.build_tracker``) and ``tracker = dict(template_factor=...,
search_factor=..., lost_threshold=...)``; see ``configs/track/_base_/model.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from backbones import read_checkpoint

from .model import OneStreamTracker, build_tracker, load_tracker_checkpoint

__all__ = ["DEFAULT_CONFIG", "build_model", "is_tracker_checkpoint", "load_config", "model_from_checkpoint",
           "tracker_kwargs"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "track" / "_base_" / "model.py"
_TRACKER_KEYS = ("template_factor", "search_factor", "lost_threshold", "ce_keep_ratio", "window")


def load_config(path: str | Path | None = None) -> Any:
    """Read a config file (default: the base tracker model config) as an ``mmengine.Config``."""
    from mmengine.config import Config

    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    cfg = Config.fromfile(str(path))
    if "model" not in cfg:
        raise KeyError(f"{path}: no 'model' dict in the config")
    return cfg


def build_model(cfg: Mapping[str, Any], pretrained: str | None | bool = True) -> OneStreamTracker:
    """Build the network from ``cfg["model"]``; ``pretrained``: True = the config's backbone
    weights, None/False = none, a path = those backbone weights instead."""
    settings = dict(cfg["model"])
    kind = settings.pop("type", "OneStreamTracker")
    if kind != "OneStreamTracker":
        raise ValueError(f"model.type must be 'OneStreamTracker', got {kind!r}")
    if pretrained is not True:
        settings["pretrained"] = pretrained or None
    if "ce_locations" in settings:
        settings["ce_locations"] = tuple(settings["ce_locations"])
    return build_tracker(**settings)


def tracker_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``track.tracker.Tracker`` from ``cfg["tracker"]`` (if any)."""
    settings = dict(cfg.get("tracker") or {})
    unknown = set(settings) - set(_TRACKER_KEYS)
    if unknown:
        raise KeyError(f"unknown tracker settings {sorted(unknown)}; known: {list(_TRACKER_KEYS)}")
    return settings


def is_tracker_checkpoint(ckpt: Mapping[str, Any]) -> bool:
    """True when a loaded checkpoint holds a whole tracker (a box head), not only a backbone."""
    for container in ("net", "state_dict", "model", None):
        inner = ckpt if container is None else ckpt.get(container)
        if isinstance(inner, Mapping):
            keys = [k[len("module."):] if k.startswith("module.") else k for k in inner]
            if any(k.startswith(("head.", "box_head.")) for k in keys):
                return True
    return False


def model_from_checkpoint(cfg: Mapping[str, Any], checkpoint: str | Path | None) -> tuple[OneStreamTracker, str]:
    """The network of ``cfg`` with weights from ``checkpoint``; returns (model, what was loaded).

    ``checkpoint`` may be a tracker checkpoint (ours, OSTrack or MAE-Lite tracking: backbone +
    head), a backbone checkpoint (the head stays randomly initialised), or None / "none" (the
    config's own ``pretrained`` backbone, if any, and a random head).
    """
    if checkpoint is None or str(checkpoint).lower() == "none":
        model = build_model(cfg)
        source = cfg["model"].get("pretrained")
        return model, (f"backbone from {source}, untrained head" if source else "random weights (untrained)")
    ckpt = read_checkpoint(checkpoint)
    if is_tracker_checkpoint(ckpt):
        model = build_model(cfg, pretrained=None)
        result = load_tracker_checkpoint(model, ckpt)
        return model, f"tracker checkpoint {checkpoint}: {result}"
    model = build_model(cfg, pretrained=str(checkpoint))
    return model, f"backbone checkpoint {checkpoint} ({model.backbone_load_result}), untrained head"
