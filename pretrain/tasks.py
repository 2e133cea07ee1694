"""From a config to the module the engine trains, and to the transforms its data needs.

Every task module takes ``(images, labels)`` and returns a dict of named loss terms with their
sum under ``"loss"``, so one engine serves pre-training, fine-tuning and linear probing.

Config keys read here (see ``configs/pretrain``):

* ``task``: ``"pretrain"`` | ``"finetune"`` | ``"linprobe"``.
* ``data.transform``: the training augmentation, ``"mae"`` (default for pre-training and probing),
  ``"mocov3"`` (two views) or ``"finetune"`` (default for fine-tuning); ``data.aug`` holds its arguments.
* ``model``: pre-training: ``name`` (a registered pre-training model, see
  :func:`pretrain.mae.list_pretrain_models`) + factory arguments (``img_size``, ``mask_ratio``,
  ``decode_idx``, ``depth`` ...); fine-tuning / probing:
  ``arch`` (a ``backbones`` name), ``num_classes``, ``pretrained`` + backbone arguments.
* ``distill``: None, or ``teacher_arch``, ``teacher_ckpt`` (file in its official format, or
  ``"random"`` for smoke runs), ``teacher_block``, ``student_block``, ``weight``,
  ``teacher_overrides``, ``compile_teacher``.
* ``mixup`` (fine-tuning): ``mixup_alpha``, ``cutmix_alpha``, ``label_smoothing``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch.nn as nn

from .data import eval_transform, finetune_train_transform, mae_train_transform, mocov3_train_transform
from .distill import AttentionDistillation, DistilledMAE, build_teacher
from .finetune import ClassificationTask, LinearProbe, build_classifier
from .mae import build_pretrain_model, list_pretrain_models
from .mocov3 import MoCoTask, MoCoV3

__all__ = ["TASKS", "TRANSFORMS", "build_task", "build_transforms"]

TASKS = ("pretrain", "finetune", "linprobe")
TRANSFORMS = {"mae": mae_train_transform, "mocov3": mocov3_train_transform, "finetune": finetune_train_transform}


def build_task(cfg: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """(task module, info for the run's metadata) for ``cfg["task"]``."""
    task = cfg.get("task", "pretrain")
    model_cfg = dict(cfg["model"])
    if task == "pretrain":
        name = model_cfg.pop("name", None)
        if name not in list_pretrain_models():
            raise KeyError(f"model.name must be one of {list_pretrain_models()}, got {name!r}")
        student = build_pretrain_model(name, **model_cfg)
        info: dict[str, Any] = {"model": name, "arch": student.arch, "random_teacher": False}
        distill_cfg = cfg.get("distill")
        if isinstance(student, MoCoV3):
            if distill_cfg:
                raise ValueError(f"distill is set, but {name} is not an MAE: attention distillation needs "
                                 f"an MAE student")
            batch = (cfg.get("data") or {}).get("batch_size")
            return MoCoTask(student, None if batch is None else int(batch)), info
        if not distill_cfg:
            return DistilledMAE(student), info
        img_size = model_cfg.get("img_size", 224)
        teacher, teacher_info = build_teacher(
            distill_cfg["teacher_arch"], distill_cfg.get("teacher_ckpt"), img_size,
            allow_random=bool(distill_cfg.get("allow_random_teacher", False)),
            **dict(distill_cfg.get("teacher_overrides") or {}))
        info.update(teacher_info)
        student_block = distill_cfg.get("student_block", -1)
        blk = student.blocks[student_block]
        heads = blk.attn.num_heads if hasattr(blk.attn, "num_heads") else blk.attn.heads
        distill = AttentionDistillation(teacher, heads, distill_cfg.get("teacher_block", -1),
                                        weight=float(distill_cfg.get("weight", 1.0)),
                                        compile_teacher=bool(distill_cfg.get("compile_teacher", False)))
        return DistilledMAE(student, distill, student_block), info
    if task in ("finetune", "linprobe"):
        arch, num_classes = model_cfg.pop("arch"), int(model_cfg.pop("num_classes"))
        pretrained = model_cfg.pop("pretrained", None)
        model, info = build_classifier(arch, num_classes, pretrained, **model_cfg)
        info.update({"arch": arch, "num_classes": num_classes})
        if task == "linprobe":
            return ClassificationTask(LinearProbe(model, num_classes), num_classes), info
        mix = dict(cfg.get("mixup") or {})
        return ClassificationTask(model, num_classes, **mix), info
    raise KeyError(f"task must be one of {TASKS}, got {task!r}")


def build_transforms(cfg: Mapping[str, Any]) -> tuple[Callable, Callable]:
    """(train transform, eval transform) for the task."""
    task = cfg.get("task", "pretrain")
    aug = dict(cfg["data"].get("aug") or {})
    img_size = cfg["model"].get("img_size", 224)
    name = cfg["data"].get("transform") or ("finetune" if task == "finetune" else "mae")
    if name not in TRANSFORMS:
        raise KeyError(f"data.transform must be one of {sorted(TRANSFORMS)}, got {name!r}")
    train = TRANSFORMS[name](img_size, **aug)
    return train, eval_transform(img_size, crop_pct=cfg["data"].get("crop_pct", 0.875))
