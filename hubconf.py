"""torch.hub entry points: ``torch.hub.load(repo_dir, "vit_tiny", source="local", weights=PATH)``.

Works offline; ``weights`` is any checkpoint that ``backbones.load_pretrained`` reads.
"""
from __future__ import annotations

dependencies = ["torch", "timm"]

from backbones import build_backbone, load_pretrained  # noqa: E402


def _hub(arch: str):
    def entry(weights: str | None = None, **kwargs):
        model = build_backbone(arch, **kwargs)
        if weights is not None:
            result = load_pretrained(model, weights)
            if result.missing:
                raise ValueError(f"{weights}: weights miss keys of {arch}: {result.missing}")
        return model

    entry.__name__ = arch
    entry.__doc__ = f"{arch} (see backbones); weights: path of a checkpoint to load."
    return entry


vit_tiny = _hub("vit_tiny")
vit_tiny_rpe = _hub("vit_tiny_rpe")
vit_small = _hub("vit_small")
vit_base = _hub("vit_base")
hiera_tiny = _hub("hiera_tiny")
hiera_base = _hub("hiera_base")
