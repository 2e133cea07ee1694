"""Export a pre-trained encoder for segmentation / tracking in backbones' format.

The training checkpoint (``work_dir/last.pth``) holds the student under ``student.*`` and the
adapter under ``distill.*``, with the run's config.  The student is built again from that config
(``model.name`` names a registered pre-training model) and loaded strictly, which proves the
weights are the model the config describes; its :meth:`~pretrain.mae.BackboneMAE.encoder_state_dict`
keeps the encoder only (decoder, mask token, adapter, Hiera's fusion heads and D²-MAE's
attention-only 13th block are left out: downstream uses the first 12 blocks).  The result is
checked to load into the backbone (``student.arch``) with no missing or unexpected key, then
written by ``backbones.save_backbone`` with metadata: arch, recipe, epochs, teacher and
``random_teacher``.

Command line: ``python -m pretrain.export work_dirs/RUN/last.pth backbone.pth``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from backbones import build_backbone, load_pretrained, read_checkpoint, save_backbone

from .mae import build_pretrain_model, list_pretrain_models

__all__ = ["export_backbone"]


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike, **extra_meta: Any) -> Path:
    """Write the encoder of a pre-training checkpoint to ``out``; returns the path."""
    ckpt = read_checkpoint(checkpoint)
    cfg, meta = ckpt.get("config") or {}, ckpt.get("meta") or {}
    model_cfg = dict(cfg.get("model") or {})
    name = model_cfg.pop("name", None)
    if name not in list_pretrain_models():
        raise KeyError(f"{checkpoint}: config model.name {name!r} is not a pre-training model "
                       f"(known: {', '.join(list_pretrain_models())})")
    student_state = {k[len("student."):]: v for k, v in (ckpt.get("model") or {}).items()
                     if k.startswith("student.")}
    if not student_state:
        raise KeyError(f"{checkpoint}: no 'student.*' weights: not a pre-training checkpoint")
    student = build_pretrain_model(name, **model_cfg)
    fit = student.load_state_dict(student_state, strict=False)
    if fit.missing_keys or fit.unexpected_keys:
        raise KeyError(f"{checkpoint}: the student weights do not fit {name} as its config builds it: "
                       f"missing {fit.missing_keys[:8]}, unexpected {fit.unexpected_keys[:8]}")
    state = student.encoder_state_dict()
    backbone = build_backbone(student.arch, num_classes=0, **student.encoder_overrides)
    result = load_pretrained(backbone, state)
    if result.missing or result.unexpected:
        raise KeyError(f"{checkpoint}: exported encoder does not fit {student.arch}: {result}")
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
        "arch_kwargs": dict(student.encoder_overrides),
        "source": str(checkpoint),
        **extra_meta,
    }
    return save_backbone(state, out, student.arch, **export_meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pre-training checkpoint (work_dir/last.pth)")
    parser.add_argument("out", help="output file (backbones export format)")
    args = parser.parse_args(argv)
    print(export_backbone(args.checkpoint, args.out))


if __name__ == "__main__":
    main()
