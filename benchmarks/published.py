"""Published figures of the recipes the study compares, each with where it is stated.

Data only: one :class:`Published` row per (model, task / metric) with its value and source, for the
report's published table (never mixed with our own numbers). "impr." is MAE-Lite's ImageNet fine-tuning
recipe (``configs/pretrain/finetune_vit_tiny_300e_in1k.py``); all ViT-Tiny rows are MAE-Lite's 12-head
ViT-Tiny unless the model says otherwise.

Transfer sets (CIFAR, Flowers102, Pets, Aircraft, Cars): MAE-Lite's repository states no transfer
accuracy (``projects/eval_tools/TRANSFER.md`` and ``scripts/transfer.sh`` give commands only); their papers
(arXiv 2205.14443, ICML 2023; arXiv 2404.12210, IJCV 2025) tabulate them, but no copy of those tables could
be checked here, so no transfer row is listed: add them with the table they come from when checked.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Published", "PUBLISHED", "published_rows", "published_markdown"]

MAE_LITE_README = "MAE-Lite README.md, Main Results (github.com/wangsr126/MAE-Lite @a5d1a748)"


class Published(NamedTuple):
    """One published figure: ``value`` of ``metric`` for ``model`` (``recipe`` says how it was trained)."""

    model: str
    metric: str
    value: float
    recipe: str
    source: str


PUBLISHED: tuple[Published, ...] = (
    Published("MoCov3-Tiny", "ImageNet-1k top-1", 76.8,
              "MoCo-v3 400 ep, then impr. fine-tune 300 ep (layer decay 0.75)",
              "MAE-Lite projects/mocov3/MOCOV3.md, Main Results"),
    Published("DeiT-Tiny (supervised ViT-Tiny)", "ImageNet-1k top-1", 75.8,
              "from random init, impr. recipe 300 ep (the checkpoint MAE-Lite's transfer and analysis use "
              "as DeiT-Tiny)", MAE_LITE_README),
    Published("ViT-Tiny supervised", "ImageNet-1k top-1", 74.5,
              "from random init, 300 ep, DeiT augmentation + mixup / cutmix with MAE fine-tuning's optimizer "
              "(lr 1e-3 x batch / 256, layer decay 0.85)",
              "MAE-Lite README.md first release, 'Default' fine-tune row without pre-training (@129f10be)"),
    Published("DeiT-Tiny (3 heads)", "ImageNet-1k top-1", 72.2, "DeiT recipe, 300 ep",
              "facebookresearch/deit README_deit.md, Model Zoo"),
    Published("MAE-Tiny", "ImageNet-1k top-1", 78.0, "MAE 400 ep, then impr. fine-tune 300 ep", MAE_LITE_README),
    Published("MAE-Tiny + RPE", "ImageNet-1k top-1", 79.0, "MAE 400 ep, then impr. + RPE fine-tune 1000 ep",
              MAE_LITE_README),
    Published("D-MAE-Tiny", "ImageNet-1k top-1", 78.4, "distilled MAE 400 ep, then impr. fine-tune 300 ep",
              MAE_LITE_README),
    Published("D²-MAE-Tiny", "ImageNet-1k top-1", 78.7, "decoupled distillation 400 ep, then impr. fine-tune 300 ep",
              MAE_LITE_README),
    Published("D²-MAE-Tiny + RPE", "ImageNet-1k top-1", 79.4,
              "decoupled distillation 400 ep, then impr. + RPE fine-tune 1000 ep", MAE_LITE_README),
)


def published_rows(metric: str | None = None) -> list[Published]:
    """The rows of one metric (all rows when None), in table order."""
    return [row for row in PUBLISHED if metric is None or row.metric == metric]


def published_markdown(metric: str | None = None) -> str:
    """A markdown table of the rows: model, metric, value, recipe, source."""
    lines = ["| model | metric | value | recipe | source |", "|---|---|---:|---|---|"]
    lines += [f"| {r.model} | {r.metric} | {r.value:.1f} | {r.recipe} | {r.source} |" for r in published_rows(metric)]
    return "\n".join(lines)
