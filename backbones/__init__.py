"""Model definitions shared by pre-training, segmentation and tracking.

``build_backbone(name, **overrides)`` builds a registered model; ``load_pretrained`` reads every
checkpoint layout the field uses (see :mod:`backbones.checkpoint`). :mod:`backbones.frozen`
compiles inference-only modules with frozen weights.
"""
from .checkpoint import (CheckpointError, LoadResult, atomic_save, backbone_state_dict, detect_format,
                         load_backbone, load_matched_state, load_pretrained, read_checkpoint,
                         save_backbone)
from .frozen import compile_frozen
from .hiera import Hiera, HieraAttention, hiera_base, hiera_tiny
from .registry import build_backbone, list_backbones, register_backbone
from .vit import Attention, Block, LogitsBlock, VisionTransformer, sincos_pos_embed_2d, vit_base, vit_small, \
    vit_tiny, vit_tiny_rpe, xavier_init_

__all__ = [
    "Attention", "Block", "CheckpointError", "Hiera", "HieraAttention", "LoadResult", "LogitsBlock",
    "VisionTransformer", "atomic_save", "backbone_state_dict", "build_backbone", "compile_frozen", "detect_format",
    "hiera_base", "hiera_tiny", "list_backbones", "load_backbone", "load_matched_state", "load_pretrained",
    "read_checkpoint", "register_backbone", "save_backbone", "sincos_pos_embed_2d", "vit_base", "vit_small", "vit_tiny",
    "vit_tiny_rpe", "xavier_init_",
]
