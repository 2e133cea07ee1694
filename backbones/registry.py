"""Backbones by name: ``build_backbone("vit_tiny", num_classes=0)``.

A registry of our own rather than timm's global one: our names (``vit_tiny`` = 12 heads, as
MAE-Lite) would otherwise sit beside timm's differently defined ``vit_tiny_patch16_224`` (3 heads).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a factory under its function name."""
    if fn.__name__ in _BACKBONES:
        raise ValueError(f"backbone {fn.__name__!r} is registered twice")
    _BACKBONES[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    return sorted(_BACKBONES)


def build_backbone(name: str, **overrides) -> nn.Module:
    """Build a registered backbone; ``overrides`` replace the factory's defaults."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    model = _BACKBONES[name](**overrides)
    model.arch = name
    return model
