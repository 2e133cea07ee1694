"""Models to analyse: named on the command line, built by ``backbones``, read layer by layer.

A model is given as one string (:func:`parse_model_spec`)::

    CHECKPOINT                        our export: arch and build options from its metadata
    ARCH=CHECKPOINT                   any layout backbones.load_pretrained reads (MAE-Lite, MAE, MoCo-v3,
                                      DeiT/timm, Hiera)
    ARCH=random                       random initialisation (seeded)
    ARCH(key=value,...)=CHECKPOINT    build options, e.g. vit_tiny(img_size=112)=mae_tiny.pth

Mind the head count where a checkpoint's differs from our factory's: DeiT-Tiny has 3 heads, our
``vit_tiny`` (MAE-Lite's) 12, with the same weight shapes; give ``vit_tiny(num_heads=3)=deit_tiny.pth``.

Layer representations (:func:`layer_features`), by ``pool``:

``tokens`` (the paper's CKA, MAE-Lite's ``run_vis_cmp_rep.py``)
    ViT: depth + 1 layers.  Layer i < depth is the input of block i after that block's first
    LayerNorm (``blocks[i].norm1``; layer 0 is the embedding: patch tokens + positions), the last
    layer is the last block's output after the final norm (``fc_norm`` under global pooling,
    ``norm`` otherwise); the class token is removed and each image's token map flattened to one
    vector [h*w*C].  Hiera: every block's (or stage end's) output as its spatial map, flattened; it
    has no class token, and no per-token final norm (its norm acts on the pooled vector), so no
    extra layer.  The token order does not matter to linear CKA as long as it is the same for
    every image, which it is.
``mean`` / ``cls``
    Block outputs (depth layers), pooled to one vector per image: the mean of the patch tokens
    (Hiera: of its rerolled map) or the class token (ViT only).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn as nn

from backbones import (CheckpointError, Hiera, VisionTransformer, backbone_state_dict, build_backbone, detect_format,
                       list_backbones, load_pretrained, read_checkpoint)

__all__ = ["ModelSpec", "POOLS", "Pool", "HieraLayers", "build_model", "check_indices", "default_name",
           "input_size", "layer_features", "layer_names", "parse_model_spec", "require_vit", "vit_layer_inputs"]

Pool = Literal["tokens", "mean", "cls"]
POOLS: tuple[str, ...] = ("tokens", "mean", "cls")
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
    sets ``img_size`` itself.  A ViT checkpoint with ``fc_norm`` and no ``norm`` (fine-tuned with
    global pooling) builds a globally pooled model unless the spec sets ``global_pool``.  Random
    initialisation draws from ``torch.manual_seed(seed)``.
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
    if (ckpt is not None and isinstance(model, VisionTransformer) and model.global_pool == "token"
            and "global_pool" not in options and _globally_pooled(ckpt)):
        torch.manual_seed(seed)
        model = build_backbone(arch, **options, global_pool="avg")
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


def _globally_pooled(ckpt: dict[str, Any]) -> bool:
    """A fine-tuned ViT with global pooling: its final norm is ``fc_norm`` and it has no ``norm``.  Built
    so, the paper's last CKA layer reads the trained norm (the default ``token`` model would leave its
    ``norm`` at initialisation)."""
    try:
        keys = backbone_state_dict(ckpt)[1]
    except CheckpointError:
        return False
    return "fc_norm.weight" in keys and "norm.weight" not in keys


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


def layer_names(model: nn.Module, hiera_layers: HieraLayers = "blocks", pool: Pool = "tokens") -> list[str]:
    """Names of the layers :func:`layer_features` returns: ``block{i}`` is what follows block i (for a
    ViT under ``tokens`` normalised by the next LayerNorm), ``embed`` the ViT's embedding."""
    if isinstance(model, Hiera) and hiera_layers == "stages":
        return [f"stage{i}" for i in range(len(model.stage_ends))]
    blocks = [f"block{i}" for i in range(len(model.blocks))]
    return ["embed"] + blocks if isinstance(model, VisionTransformer) and pool == "tokens" else blocks


def vit_layer_inputs(model: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """The paper's layer representations of a ViT, depth + 1 token maps [B, h*w, C] (class token removed).

    Map i < depth is the input of block i after its first LayerNorm, read by calling the block's own
    ``norm1`` on that input (the block then normalises it once more inside: one extra LayerNorm per
    block, no hooks).  Map depth is the last block's output after the final norm: ``fc_norm`` under
    global pooling, ``norm`` under class-token pooling (the other one is an identity).
    """
    x, grid = model.embed(images)
    skip = model.num_prefix_tokens
    maps = []
    for blk in model.blocks:
        maps.append(blk.norm1(x)[:, skip:])
        x = blk(x, grid)
    final = model.fc_norm if model.global_pool == "avg" else model.norm
    maps.append(final(x)[:, skip:])
    return maps


def layer_features(model: nn.Module, images: torch.Tensor, pool: Pool = "tokens",
                   hiera_layers: HieraLayers = "blocks") -> list[torch.Tensor]:
    """One representation [B, D] per layer (module docstring): flattened token maps (``tokens``), the
    mean of the patch tokens (``mean``) or the class token (``cls``)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if isinstance(model, VisionTransformer):
        if pool == "tokens":
            return [m.flatten(1) for m in vit_layer_inputs(model, images)]
        x, grid = model.embed(images)
        features = []
        for blk in model.blocks:
            x = blk(x, grid)
            features.append(x[:, 0] if pool == "cls" else x[:, model.num_prefix_tokens:].mean(dim=1))
        return features
    if isinstance(model, Hiera):
        if pool == "cls":
            raise ValueError("Hiera has no class token: use --pool tokens or mean")
        maps = model.forward_intermediates(images, indices=None, coarse=hiera_layers == "stages",
                                           output_fmt="NHWC", intermediates_only=True)
        return [m.flatten(1) if pool == "tokens" else m.flatten(1, 2).mean(dim=1) for m in maps]
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
