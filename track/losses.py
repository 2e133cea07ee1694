"""Tracking losses: GIoU + L1 on the predicted box, CenterNet focal loss on the score map.

Total = ``giou_weight`` x GIoU + ``l1_weight`` x L1 + ``focal_weight`` x focal, with the
recipe's weights 2, 5 and 1. Boxes are normalised to the search crop; the GIoU and L1 terms
compare ``(x1, y1, x2, y2)`` boxes with the ground truth clamped to [0, 1]. The focal term
compares the sigmoid score map with a Gaussian heat map centred on the ground-truth centre
(CornerNet radius for a minimum IoU of 0.7).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from torchvision.ops import generalized_box_iou_loss

from track.processing import box_cxcywh_to_xyxy


# ------------------------------------------------------------------------------ heat-map target
def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's radius: how far corners may move with the box keeping IoU >= ``min_overlap``.

    The smallest of three quadratic-root cases (both corners inside/outside/one each). This is
    the formula as published in CornerNet's code (roots ``(b + sqrt(b^2 - 4ac)) / 2``, not
    ``/ 2a``), which OSTrack's heat maps use; kept as is so targets match the recipe.
    """
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian_kernel(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) Gaussian with sigma = (2r+1) / 6 and 1 at the centre (CenterNet)."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    return kernel


def gaussian_heatmap(box_cxcywh: np.ndarray | torch.Tensor, map_size: int = 16,
                     min_overlap: float = 0.7) -> torch.Tensor:
    """Heat-map target (map_size, map_size) float32 for one box normalised to the crop.

    Centre cell = ``round(centre * map_size)`` (clamped to the map); radius =
    ``int(gaussian_radius(h, w))`` with the box size in map cells (at least 0); the kernel is
    cut at the map border. The centre cell is exactly 1, the positive of the focal loss.
    """
    cx, cy, w, h = (float(v) for v in box_cxcywh)
    heatmap = np.zeros((map_size, map_size), dtype=np.float64)
    col = min(max(int(round(cx * map_size)), 0), map_size - 1)
    row = min(max(int(round(cy * map_size)), 0), map_size - 1)
    radius = max(0, int(gaussian_radius(max(h, 0.0) * map_size, max(w, 0.0) * map_size,
                                        min_overlap)))
    kernel = gaussian_kernel(radius)
    left, right = min(col, radius), min(map_size - col, radius + 1)
    top, bottom = min(row, radius), min(map_size - row, radius + 1)
    heatmap[row - top:row + bottom, col - left:col + right] = \
        kernel[radius - top:radius + bottom, radius - left:radius + right]
    return torch.from_numpy(heatmap.astype(np.float32))


# ------------------------------------------------------------------------------------- losses
def focal_loss(prediction: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
               beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of positives.

    Positives are target cells equal to 1; negatives are down-weighted by ``(1 - target)^beta``.
    ``prediction`` holds probabilities (the model's sigmoid score map), same shape as ``target``.
    """
    prediction = prediction.float().clamp(1e-12, 1 - 1e-12)
    target = target.float()
    positive = target.eq(1).float()
    negative = 1.0 - positive
    positive_loss = torch.log(prediction) * (1 - prediction) ** alpha * positive
    negative_loss = torch.log(1 - prediction) * prediction ** alpha * (1 - target) ** beta * negative
    num_positive = positive.sum()
    total = positive_loss.sum() + negative_loss.sum()
    return -total / num_positive.clamp(min=1.0)


def box_losses(pred_cxcywh: torch.Tensor, gt_cxcywh: torch.Tensor) -> dict[str, torch.Tensor]:
    """GIoU loss (mean of 1 - GIoU), L1 loss (mean over coordinates) and mean IoU (no grad).

    Both boxes are normalised ``(cx, cy, w, h)``, (B, 4); compared as ``(x1, y1, x2, y2)``
    with the ground truth clamped to [0, 1].
    """
    pred = box_cxcywh_to_xyxy(pred_cxcywh.float())
    gt = box_cxcywh_to_xyxy(gt_cxcywh.float()).clamp(0.0, 1.0)
    giou = generalized_box_iou_loss(pred, gt, reduction="mean")
    l1 = torch.nn.functional.l1_loss(pred, gt)
    with torch.no_grad():
        inter_wh = (torch.minimum(pred[:, 2:], gt[:, 2:]) -
                    torch.maximum(pred[:, :2], gt[:, :2])).clamp(min=0)
        inter = inter_wh.prod(dim=1)
        area = lambda b: (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)  # noqa: E731
        iou = (inter / (area(pred) + area(gt) - inter).clamp(min=1e-12)).mean()
    return {"giou": giou, "l1": l1, "iou": iou}


class TrackingLoss(nn.Module):
    """Weighted sum of GIoU, L1 and focal terms; returns every term and ``total`` in a dict.

    ``iou`` (mean IoU of the batch) is returned for logging and not part of the total.
    """

    def __init__(self, giou_weight: float = 2.0, l1_weight: float = 5.0,
                 focal_weight: float = 1.0, alpha: float = 2.0, beta: float = 4.0) -> None:
        super().__init__()
        self.giou_weight, self.l1_weight, self.focal_weight = giou_weight, l1_weight, focal_weight
        self.alpha, self.beta = alpha, beta

    def forward(self, outputs: dict[str, torch.Tensor], gt_boxes: torch.Tensor,
                gt_heatmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            outputs: model outputs with ``pred_boxes`` (B, 4) normalised cxcywh and
                ``score_map`` (B, 1, H, W) probabilities.
            gt_boxes: (B, 4) normalised cxcywh.
            gt_heatmap: (B, H, W) or (B, 1, H, W) Gaussian targets.
        """
        terms = box_losses(outputs["pred_boxes"], gt_boxes)
        score_map = outputs["score_map"]
        terms["focal"] = focal_loss(score_map, gt_heatmap.reshape(score_map.shape),
                                    self.alpha, self.beta)
        terms["total"] = (self.giou_weight * terms["giou"] + self.l1_weight * terms["l1"] +
                          self.focal_weight * terms["focal"])
        return terms
