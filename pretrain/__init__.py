"""MAE-Lite pre-training of small backbones: MAE, D-MAE / D²-MAE attention distillation, Hiera MAE,
intermediate fine-tuning, linear probing and export for segmentation / tracking.

Modules: :mod:`.mae` / :mod:`.mae_hiera` (masked autoencoders on the backbones, and the registry
of pre-training models), :mod:`.distill` (frozen teacher + loss terms), :mod:`.data`
(ImageNet-layout folders), :mod:`.datasets` (transfer sets, class-stratified subsets),
:mod:`.engine` (one training loop: DDP, AMP, exact resumption), :mod:`.finetune` (fine-tuning /
probing / top-k; from random initialisation, supervised pre-training), :mod:`.tasks` (config -> task
module), :mod:`.export` (encoder -> backbones format).  Command line: ``tools/pretrain.py``.

    from pretrain import build_pretrain_model, list_pretrain_models
    mae = build_pretrain_model("d2mae_vit_tiny", img_size=224)
"""
from . import mae_hiera  # noqa: F401  (registers the Hiera MAE)
from .mae import build_pretrain_model, list_pretrain_models, register_pretrain_model

__all__ = ["build_pretrain_model", "list_pretrain_models", "register_pretrain_model"]
