"""Export a pre-trained encoder for segmentation / tracking in backbones' format.

The training checkpoint (``work_dir/latest.pth``) holds the student under ``student.*`` and the
adapter under ``distill.*``, with the run's config.  The student is built again from that config
(``model.name`` names a registered pre-training model) and loaded strictly, which proves the
weights are the model the config describes; its :meth:`~pretrain.mae.BackboneMAE.encoder_state_dict`
keeps the encoder only (decoder, mask token, adapter, Hiera's fusion heads and D²-MAE's
attention-only 13th block are left out: downstream uses the first 12 blocks).  The result is
checked to load into the backbone (``student.arch``) with no missing or unexpected key, then
written by ``backbones.save_backbone`` with metadata: arch, recipe, epochs, teacher and
``random_teacher``.

A supervised pre-training run (``task="finetune"`` from random initialisation, e.g.
``configs/pretrain/supervised_vit_tiny_300e_in1k.py``) holds the classifier under ``model.*``: it is
rebuilt from its config the same way, loaded strictly, and exported without its head (training-only
options such as drop path left out of ``arch_kwargs``), so "supervised" loads wherever MAE does.

Command line: ``python -m pretrain.export work_dirs/RUN/latest.pth backbone.pth``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from backbones import build_backbone, load_pretrained, read_checkpoint, save_backbone

from .mae import build_pretrain_model, list_pretrain_models

__all__ = ["export_backbone"]


# Options that change training only: a backbone rebuilt for another task does not inherit them.
_TRAINING_ONLY = ("drop_path_rate", "drop_rate", "attn_drop_rate", "pretrained")


def export_backbone(checkpoint: str | os.PathLike, out: str | os.PathLike, **extra_meta: Any) -> Path:
    """Write the encoder of a pre-training (or supervised fine-tuning) checkpoint to ``out``;
    returns the path."""
    ckpt = read_checkpoint(checkpoint)
    cfg, meta = ckpt.get("config") or {}, ckpt.get("meta") or {}
    if cfg.get("task") == "finetune":
        return _export_classifier(checkpoint, ckpt, out, **extra_meta)
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


def _export_classifier(checkpoint: str | os.PathLike, ckpt: dict[str, Any], out: str | os.PathLike,
                       **extra_meta: Any) -> Path:
    """The backbone of a classifier trained by the fine-tuning task (its head left out)."""
    cfg, meta = ckpt["config"], ckpt.get("meta") or {}
    model_cfg = dict(cfg.get("model") or {})
    arch, num_classes = model_cfg.pop("arch", None), model_cfg.pop("num_classes", None)
    if arch is None or num_classes is None:
        raise KeyError(f"{checkpoint}: config model has no arch / num_classes: not a classification run")
    state = {k[len("model."):]: v for k, v in (ckpt.get("model") or {}).items() if k.startswith("model.")}
    if not state:
        raise KeyError(f"{checkpoint}: no 'model.*' weights: not a fine-tuning checkpoint")
    overrides = {k: v for k, v in model_cfg.items() if k not in _TRAINING_ONLY}
    classifier = build_backbone(arch, num_classes=int(num_classes), **overrides)
    fit = classifier.load_state_dict(state, strict=False)
    if fit.missing_keys or fit.unexpected_keys:
        raise KeyError(f"{checkpoint}: the weights do not fit {arch} as its config builds it: "
                       f"missing {fit.missing_keys[:8]}, unexpected {fit.unexpected_keys[:8]}")
    encoder = {k: v for k, v in classifier.state_dict().items() if not k.startswith("head.")}
    backbone = build_backbone(arch, num_classes=0, **overrides)
    result = load_pretrained(backbone, encoder)
    if result.missing or result.unexpected:
        raise KeyError(f"{checkpoint}: exported encoder does not fit {arch}: {result}")
    position = ckpt.get("position") or {}
    export_meta = {
        "recipe": cfg.get("recipe") or "supervised",
        "pretrain_model": "supervised",
        "epochs": position.get("epoch"),
        "epochs_planned": meta.get("epochs"),
        "updates": position.get("update"),
        "random_teacher": False,
        "data": meta.get("data"),
        "arch_kwargs": overrides,
        "source": str(checkpoint),
        **extra_meta,
    }
    return save_backbone(encoder, out, arch, **export_meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pre-training or supervised checkpoint (work_dir/latest.pth)")
    parser.add_argument("out", help="output file (backbones export format)")
    args = parser.parse_args(argv)
    print(export_backbone(args.checkpoint, args.out))


if __name__ == "__main__":
    main()
