"""Models to analyse: named on the command line, built by ``backbones``, read layer by layer.

A model is given as one string (:func:`parse_model_spec`)::

    CHECKPOINT                        our export: arch and build options from its metadata
    ARCH=CHECKPOINT                   any layout backbones.load_pretrained reads (MAE-Lite, MAE, DeiT/timm, Hiera)
    ARCH=random                       random initialisation (seeded)
    ARCH(key=value,...)=CHECKPOINT    build options, e.g. vit_tiny(img_size=112)=mae_tiny.pth

Mind the head count where a checkpoint's differs from our factory's: DeiT-Tiny has 3 heads, our
``vit_tiny`` (MAE-Lite's) 12, with the same weight shapes; give ``vit_tiny(num_heads=3)=deit_tiny.pth``.

"Layers" are block outputs: every block of a ViT (class token or mean of the patch tokens), every
block or every stage end of Hiera (mean of its rerolled map, Hiera has no class token).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn as nn

from backbones import (CheckpointError, Hiera, VisionTransformer, build_backbone, detect_format, list_backbones,
                       load_pretrained, read_checkpoint)

__all__ = ["ModelSpec", "Pool", "HieraLayers", "build_model", "check_indices", "default_name", "input_size",
           "layer_features", "layer_names", "parse_model_spec", "require_vit"]

Pool = Literal["mean", "cls"]
HieraLayers = Literal["blocks", "stages"]
_SPEC = re.compile(r"^(?P<arch>[A-Za-z_]\w*)(?:\((?P<options>.*)\))?=(?P<source>.+)$")
# Weights a model cannot be analysed without; any other missing key is reported and tolerated.
_ESSENTIAL = ("blocks.", "patch_embed.")


@dataclass
class ModelSpec:
    text: str
    arch: str | None
    checkpoint: Path | None  # None: random initialisation
    options: dict[str, Any] = field(default_factory=dict)


def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``[ARCH[(key=value,...)]=](CHECKPOINT | random)`` (see the module docstring)."""
    match = _SPEC.match(text)
    if match is None:
        return ModelSpec(text, None, Path(text))
    source = match["source"]
    return ModelSpec(text, match["arch"], None if source == "random" else Path(source),
                     _build_options(match["options"] or "", text))


def _build_options(text: str, spec: str) -> dict[str, Any]:
    """``depth=2, img_size=(64, 96), global_pool=avg`` -> dict (Python literals; bare words are strings)."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        call = None
    if not isinstance(call, ast.Call) or call.args or any(k.arg is None for k in call.keywords):
        raise ValueError(f"model {spec!r}: build options must be key=value pairs, got {text!r}")
    options: dict[str, Any] = {}
    for keyword in call.keywords:
        node = keyword.value
        try:
            options[keyword.arg] = node.id if isinstance(node, ast.Name) else ast.literal_eval(node)
        except ValueError:
            raise ValueError(f"model {spec!r}: build option {keyword.arg}={ast.unparse(node)} is not a "
                             f"literal") from None
    return options


def default_name(spec: ModelSpec) -> str:
    if spec.checkpoint is None:
        return f"{spec.arch} (random)"
    return spec.checkpoint.stem


def build_model(spec: ModelSpec, img_size: int | None = None, seed: int = 0, quiet: bool = False) -> nn.Module:
    """Build and load the model of a spec (eval mode, on CPU); errors name the spec and the problem.

    ``img_size`` changes the input size (position embeddings are resampled to it) unless the spec
    sets ``img_size`` itself.  Random initialisation draws from ``torch.manual_seed(seed)``.
    """
    ckpt = None
    options = dict(spec.options)
    arch = spec.arch
    if spec.checkpoint is not None:
        try:
            ckpt = read_checkpoint(spec.checkpoint)
            fmt = detect_format(ckpt)
        except (CheckpointError, FileNotFoundError) as e:
            raise ValueError(f"model {spec.text!r}: {e}") from None
        meta = ckpt.get("meta") or {}
        if arch is None:
            if fmt != "litevit":
                raise ValueError(f"model {spec.text!r}: a {fmt}-layout checkpoint does not name its architecture; "
                                 f"give it as ARCH={spec.checkpoint} (known: {', '.join(list_backbones())})")
            arch = meta["arch"]
        if fmt == "litevit" and meta.get("arch") == arch:
            options = {**(meta.get("arch_kwargs") or {}), **options}
    if arch not in list_backbones():
        raise ValueError(f"model {spec.text!r}: unknown arch {arch!r}; known: {', '.join(list_backbones())}")
    if img_size is not None:
        options.setdefault("img_size", img_size)
    options["num_classes"] = 0
    torch.manual_seed(seed)
    try:
        model = build_backbone(arch, **options)
    except TypeError as e:
        raise ValueError(f"model {spec.text!r}: build options {options} do not fit {arch}: {e}") from None
    if ckpt is not None:
        try:
            result = load_pretrained(model, ckpt)
        except CheckpointError as e:
            raise ValueError(f"model {spec.text!r}: {spec.checkpoint} does not fit {arch}: {e}") from None
        essential = [k for k in result.missing if k.startswith(_ESSENTIAL)]
        if essential:
            raise ValueError(f"model {spec.text!r}: {spec.checkpoint} does not hold {arch}'s blocks "
                             f"(missing {len(essential)} keys: {', '.join(essential[:6])} ...); wrong arch?")
        if (result.missing or result.unexpected) and not quiet:
            print(f"{spec.text}: loaded with {result}")
    return model.eval()


def input_size(model: nn.Module) -> tuple[int, int]:
    """The (H, W) input the model was built for: its token grid times its patch stride."""
    if isinstance(model, VisionTransformer):
        return (model.grid_size[0] * model.patch_size, model.grid_size[1] * model.patch_size)
    if isinstance(model, Hiera):
        stride = model.patch_stride
        return (model.tokens_spatial_shape[0] * stride[0], model.tokens_spatial_shape[1] * stride[1])
    raise TypeError(f"{type(model).__name__} is not a backbone the analyses know (VisionTransformer, Hiera)")


def require_vit(model: nn.Module, name: str, analysis: str) -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"model {name!r} ({type(model).__name__}): {analysis} reads the attention of plain ViT "
                         f"blocks; Hiera's mask-unit attention is not supported there (cka supports it)")
    return model


def layer_names(model: nn.Module, hiera_layers: HieraLayers = "blocks") -> list[str]:
    if isinstance(model, Hiera) and hiera_layers == "stages":
        return [f"stage{i}" for i in range(len(model.stage_ends))]
    return [f"block{i}" for i in range(len(model.blocks))]


def layer_features(model: nn.Module, images: torch.Tensor, pool: Pool = "mean",
                   hiera_layers: HieraLayers = "blocks") -> list[torch.Tensor]:
    """Pooled output of every layer, each [B, C]: the class token or the mean of the patch tokens."""
    if isinstance(model, VisionTransformer):
        x, grid = model.embed(images)
        features = []
        for blk in model.blocks:
            x = blk(x, grid)
            features.append(x[:, 0] if pool == "cls" else x[:, model.num_prefix_tokens:].mean(dim=1))
        return features
    if isinstance(model, Hiera):
        if pool == "cls":
            raise ValueError("Hiera has no class token: use --pool mean")
        maps = model.forward_intermediates(images, indices=None, coarse=hiera_layers == "stages",
                                           output_fmt="NHWC", intermediates_only=True)
        return [m.flatten(1, 2).mean(dim=1) for m in maps]
    raise TypeError(f"{type(model).__name__} is not a backbone the analyses know (VisionTransformer, Hiera)")


def check_indices(values: Sequence[int] | None, count: int, option: str, what: str, model: str) -> list[int]:
    """Validate block / head indices (negative counts from the end); None means all."""
    if values is None:
        return list(range(count))
    out = []
    for v in values:
        if not -count <= v < count:
            raise ValueError(f"{option} {v}: out of range for model {model!r}, which has {count} {what} "
                             f"(0..{count - 1}, or -{count}..-1 from the end)")
        out.append(v % count)
    return list(dict.fromkeys(out))
