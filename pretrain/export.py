"""Export a pre-trained encoder for segmentation / tracking in backbones' format.

The training checkpoint (``work_dir/last.pth``) holds the student under ``student.*`` and the
adapter under ``distill.*``.  The export keeps the encoder only: decoder, mask token, adapter,
Hiera's fusion heads and D²-MAE's attention-only 13th block are dropped (downstream uses the
first 12 blocks), Hiera's MAE ``encoder_norm`` becomes the backbone's ``head.norm`` (timm's
naming).  The result is checked to load into the backbone with no missing or unexpected key,
then written by ``backbones.save_backbone`` with metadata: arch, recipe, epochs, teacher and
``random_teacher``.

Command line: ``python -m pretrain.export work_dirs/RUN/last.pth backbone.pth``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from backbones import build_backbone, load_pretrained, read_checkpoint, save_backbone

from .tasks import PRETRAIN_MODELS

__all__ = ["export_backbone", "encoder_state_dict"]

_PRETRAIN_ONLY = ("decoder", "mask_token", "multi_scale_fusion_heads.")
# Model-config keys that configure the MAE around the encoder, not the encoder itself.
_MAE_OPTIONS = {"name", "mask_ratio", "norm_pix_loss", "decoder_embed_dim", "decoder_depth", "decoder_num_heads",
                "decoder_mlp_ratio", "decode_idx", "logits_block", "attention", "embed_visible_only",
                "loss_on_masked_only", "q_pool"}


def encoder_state_dict(model_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Encoder weights of a pre-training task state dict, in the backbone's key layout."""
    student = {k[len("student."):]: v for k, v in model_state.items() if k.startswith("student.")}
    if not student:
        raise KeyError("no 'student.*' weights in the checkpoint: not a pre-training checkpoint")
    full_blocks = {int(k.split(".")[1]) for k in student if k.startswith("blocks.") and ".mlp." in k}
    depth = max(full_blocks) + 1 if full_blocks else None
    out = {}
    for key, value in student.items():
        if key.startswith(_PRETRAIN_ONLY):
            continue
        if depth is not None and key.startswith("blocks.") and int(key.split(".")[1]) >= depth:
            continue  # D²-MAE's attention-only block (no MLP)
        if key.startswith("encoder_norm."):
            key = "head.norm." + key[len("encoder_norm."):]
        out[key] = value
    return out


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike, **extra_meta: Any) -> Path:
    """Write the encoder of a pre-training checkpoint to ``out``; returns the path."""
    ckpt = read_checkpoint(checkpoint)
    cfg, meta = ckpt.get("config") or {}, ckpt.get("meta") or {}
    model_cfg = dict(cfg.get("model") or {})
    name = model_cfg.get("name")
    if name not in PRETRAIN_MODELS:
        raise KeyError(f"{checkpoint}: config model.name {name!r} is not a pre-training model")
    arch = PRETRAIN_MODELS[name][1]
    state = encoder_state_dict(ckpt["model"])
    arch_kwargs = {k: v for k, v in model_cfg.items() if k not in _MAE_OPTIONS}
    backbone = build_backbone(arch, num_classes=0, **arch_kwargs)
    result = load_pretrained(backbone, state)
    if result.missing or result.unexpected:
        raise KeyError(f"{checkpoint}: exported encoder does not fit {arch}: {result}")
    position = ckpt.get("position") or {}
    export_meta = {
        "recipe": cfg.get("recipe") or name,
        "pretrain_model": name,
        "epochs": position.get("epoch"),
        "epochs_planned": meta.get("epochs"),
        "updates": position.get("update"),
        "random_teacher": bool(meta.get("random_teacher", False)),
        "teacher_arch": meta.get("teacher_arch"),
        "teacher_ckpt": meta.get("teacher_ckpt"),
        "mask_ratio": model_cfg.get("mask_ratio"),
        "arch_kwargs": arch_kwargs,
        "source": str(checkpoint),
        **extra_meta,
    }
    return save_backbone(state, out, arch, **export_meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pre-training checkpoint (work_dir/last.pth)")
    parser.add_argument("out", help="output file (backbones export format)")
    args = parser.parse_args(argv)
    print(export_backbone(args.checkpoint, args.out))


if __name__ == "__main__":
    main()
