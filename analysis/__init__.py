"""Analyses of pre-trained backbones: why plain MAE under-serves the higher layers of small ViTs and
what distillation changes.

* :mod:`.cka`: linear CKA between every layer of two models, minibatch estimate with unbiased
  HSIC (Nguyen et al. 2021), constant memory in the number of images; by default over whole token
  maps of the paper's layers (ViT block inputs after ``norm1`` plus the final norm, depth + 1);
* :mod:`.attention`: mean attention distance (px) and entropy per block and head, read through
  the backbone's own logits path (``VisionTransformer.forward_blocks(..., logits_from=...)``);
* :mod:`.maps`: attention maps of chosen blocks / heads / query overlaid on the image;
* :mod:`.models` (model specs, loading, layer outputs), :mod:`.images` (any image folder),
  :mod:`.plots`, :mod:`.runs` (the three analyses end to end), :func:`report_section`.

Command line: ``tools/analyze.py {cka,attention,maps}``.
"""
from .attention import attention_entropy, attention_logits, attention_summary, block_statistics, \
    mean_attention_distance, patch_attention, patch_distances
from .cka import MinibatchCKA, cka_summary, linear_cka, u_center
from .images import image_loader, list_images, spread
from .models import ModelSpec, build_model, input_size, layer_features, parse_model_spec
from .report import report_section
from .runs import default_pairs, run_attention, run_cka, run_maps

__all__ = [
    "MinibatchCKA", "ModelSpec", "attention_entropy", "attention_logits", "attention_summary", "block_statistics",
    "build_model",
    "cka_summary", "default_pairs", "image_loader", "input_size", "layer_features", "linear_cka", "list_images",
    "mean_attention_distance", "parse_model_spec", "patch_attention", "patch_distances", "report_section",
    "run_attention", "run_cka", "run_maps", "spread", "u_center",
]
