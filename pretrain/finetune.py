"""Intermediate supervised fine-tuning ("impr." recipe) and linear probing on frozen features.

* Fine-tuning: the pre-trained backbone with global average pooling + ``fc_norm`` and a new head,
  layer-wise lr decay (patch embed / class token / positions = layer 0, block i = layer i + 1,
  everything else = the last layer) through timm's ``param_groups_layer_decay``, mixup through
  timm's ``Mixup`` (soft-target cross-entropy), RandAugment through ``create_transform``.
* Linear probing (as MAE): the backbone frozen in eval mode; a BatchNorm without affine
  parameters followed by a linear layer is the only thing trained.
* :func:`evaluate`: top-1 / top-5 accuracy, exact under DDP (each rank scores a disjoint shard).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from timm.data import Mixup
from timm.layers import trunc_normal_
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay

from backbones import build_backbone, load_pretrained
from engine import autocast

__all__ = ["build_classifier", "layer_decay_param_groups", "ClassificationTask", "LinearProbe", "evaluate",
           "accuracy_counts"]


def build_classifier(arch: str, num_classes: int, pretrained: str | os.PathLike | None = None,
                     **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Backbone with a fresh ``num_classes`` head, optionally initialised from any checkpoint
    ``backbones.load_pretrained`` reads; returns (model, load info)."""
    model = build_backbone(arch, num_classes=num_classes, **overrides)
    info: dict[str, Any] = {"pretrained": None}
    if pretrained:
        path = os.fspath(pretrained)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained checkpoint not found: {path} (model.pretrained)")
        result = load_pretrained(model, path)
        info = {"pretrained": path, "load": str(result), "missing": result.missing,
                "unexpected": result.unexpected}
    return model, info


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with ``lr_scale = layer_decay ** (last_layer - layer)`` and no weight
    decay on 1-D parameters or the model's ``no_weight_decay()`` names."""
    no_wd = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    return param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=no_wd,
                                    layer_decay=layer_decay)


class LinearProbe(nn.Module):
    """Frozen backbone features -> BatchNorm1d(affine=False) -> Linear (MAE's linear probing)."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        if hasattr(backbone, "reset_classifier"):
            backbone.reset_classifier(0)
        else:
            backbone.head = nn.Identity()
        self.backbone = backbone.requires_grad_(False)
        dim = backbone.num_features
        self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
        trunc_normal_(self.head[1].weight, std=0.01)
        nn.init.zeros_(self.head[1].bias)

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.backbone.eval()
        return self

    def no_weight_decay(self) -> set[str]:
        return set()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)
        return self.head(feats.float())


class ClassificationTask(nn.Module):
    """Classifier + loss: soft-target cross-entropy under mixup, plain cross-entropy otherwise.

    Returns ``{"loss_cls", "loss"}`` in training; the classifier itself is ``self.model``.
    """

    def __init__(self, model: nn.Module, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.mixup = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=label_smoothing,
                               num_classes=num_classes)
        self.soft_ce = SoftTargetCrossEntropy()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        inner = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        return {f"model.{n}" for n in inner}

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and self.mixup is not None:
            if images.shape[0] % 2:  # timm's batch mixup pairs images; a skipped file can leave one over
                images, labels = images[:-1], labels[:-1]
            images, targets = self.mixup(images, labels)
            loss = self.soft_ce(self.model(images).float(), targets)
        else:
            loss = F.cross_entropy(self.model(images).float(), labels, label_smoothing=self.label_smoothing)
        return {"loss_cls": loss, "loss": loss}


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k predictions, for each k."""
    k_max = min(max(topk), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hits = top.eq(labels[:, None])
    return [int(hits[:, :min(k, k_max)].any(dim=1).sum()) for k in topk]


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, autocast_dtype: torch.dtype | None = None,
             ) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy over every readable image of the loader,
    summed over ranks when distributed."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # top1, top5, loss sum, count, skipped
    for batch in loader:
        totals[4] += len(batch.skipped)
        if batch.images is None:
            continue
        images, labels = batch.images.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)
        with autocast(device.type, autocast_dtype):
            logits = model(images)
        top1, top5 = accuracy_counts(logits.float(), labels)
        totals[:4] += torch.tensor([top1, top5, float(F.cross_entropy(logits.float(), labels, reduction="sum")),
                                    labels.numel()], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        t = totals.to(device)
        dist.all_reduce(t)
        totals = t.cpu()
    model.train(was_training)
    n = max(totals[3].item(), 1.0)
    return {"top1": 100.0 * totals[0].item() / n, "top5": 100.0 * totals[1].item() / n,
            "loss": totals[2].item() / n, "images": int(totals[3].item()), "skipped_images": int(totals[4].item())}
