"""Models by name: ``build_backbone("vit_tiny", num_classes=0)``.

A registry of our own rather than timm's global one: our names (``vit_tiny`` = 12 heads, as
MAE-Lite) would otherwise sit beside timm's differently defined ``vit_tiny_patch16_224`` (3 heads).
:class:`Registry` also holds the pre-training models (``pretrain.mae``).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

__all__ = ["Registry", "BACKBONES", "build_backbone", "list_backbones", "register_backbone"]

Factory = Callable[..., nn.Module]


class Registry:
    """Factories by function name; ``kind`` names what they build in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Factory] = {}

    def register(self, fn: Factory) -> Factory:
        """Decorator: register a factory under its function name."""
        if fn.__name__ in self._factories:
            raise ValueError(f"{self.kind} {fn.__name__!r} is registered twice")
        self._factories[fn.__name__] = fn
        return fn

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, name: str, **overrides) -> nn.Module:
        """Build a registered model; ``overrides`` replace the factory's defaults."""
        if name not in self._factories:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._factories[name](**overrides)


BACKBONES = Registry("backbone")
register_backbone = BACKBONES.register
list_backbones = BACKBONES.names


def build_backbone(name: str, **overrides) -> nn.Module:
    """Build a registered backbone (its ``arch`` attribute records the name); ``overrides`` replace the
    factory's defaults."""
    model = BACKBONES.build(name, **overrides)
    model.arch = name
    return model
