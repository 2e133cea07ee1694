"""Layer-wise learning-rate decay for our ViT and Hiera segmentors.

mmseg's ``LayerDecayOptimizerConstructor`` picks its rule from the backbone's class name (it
refuses anything not called ``BEiT``/``MAE``/``ConvNeXt``) and knows nothing of Hiera's stages,
so this constructor asks the backbone instead: a backbone with ``num_layers`` and
``layer_id(name)`` (:class:`seg.models.EncoderBackbone`) says at which depth each parameter sits.

With L = ``num_layers`` (12 for ViT-Tiny and Hiera-Tiny) and decay rate d, a parameter at layer
id i trains with ``lr * d ** (L + 1 - i)``:

* ViT: patch embedding, class token, position embedding: 0; block k: k + 1;
* Hiera: patch embedding, position embedding: 0; block k (global index across stages): k + 1;
* everything else (neck, decode and auxiliary heads): L + 1, i.e. the base lr.

Weight decay is off for 1-D parameters (biases, norms, LayerScale, q/v biases), position
embeddings, the class token and relative-position bias tables.
"""
from __future__ import annotations

import json

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ["LayerDecayOptimWrapperConstructor", "NO_WEIGHT_DECAY_NAMES"]

NO_WEIGHT_DECAY_NAMES = frozenset({"cls_token", "pos_embed", "pos_embed_spatial", "pos_embed_temporal",
                                   "pos_embed_win", "relative_position_bias_table", "mask_token"})


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``constructor="LayerDecayOptimWrapperConstructor"`` with
    ``paramwise_cfg=dict(layer_decay_rate=0.65)`` (optionally ``num_layers=12`` as a check).

    One parameter group per (layer id, decay / no decay), each with its own ``lr`` (base lr x
    scale), ``weight_decay`` and, for reading, ``lr_scale``, ``layer_id`` and ``param_names``.
    mmengine's schedulers scale every group from its own initial lr, so the ratios between
    layers hold through warm-up and decay.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        unknown = set(self.paramwise_cfg) - {"layer_decay_rate", "num_layers"}
        if "layer_decay_rate" not in self.paramwise_cfg or unknown:
            raise ValueError("paramwise_cfg of LayerDecayOptimWrapperConstructor takes layer_decay_rate "
                             f"(required) and num_layers; got {dict(self.paramwise_cfg)}")
        self.decay_rate = float(self.paramwise_cfg["layer_decay_rate"])
        if not 0 < self.decay_rate <= 1:
            raise ValueError(f"layer_decay_rate must be in (0, 1], got {self.decay_rate}")
        if self.base_lr is None or self.base_wd is None:
            raise ValueError("the optimizer config needs lr and weight_decay for layer decay")

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        backbone = getattr(module, "backbone", None)
        if backbone is None or not (hasattr(backbone, "layer_id") and hasattr(backbone, "num_layers")):
            raise TypeError("LayerDecayOptimWrapperConstructor needs model.backbone with num_layers and "
                            f"layer_id(name) (seg.models backbones); got {type(backbone).__name__}")
        num_layers = backbone.num_layers
        expected = self.paramwise_cfg.get("num_layers")
        if expected is not None and int(expected) != num_layers:
            raise ValueError(f"paramwise_cfg.num_layers={expected} but the backbone has {num_layers} blocks")
        backbone_no_wd = {f"backbone.{n}" for n in backbone.no_weight_decay()}

        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith("backbone."):
                layer = backbone.layer_id(name[len("backbone."):])
            else:
                layer = num_layers + 1
            no_decay = (param.ndim <= 1 or name.endswith(".bias") or name in backbone_no_wd
                        or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES)
            key = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
            if key not in groups:
                scale = self.decay_rate ** (num_layers + 1 - layer)
                groups[key] = dict(params=[], param_names=[], lr=self.base_lr * scale, lr_scale=scale,
                                   weight_decay=0.0 if no_decay else self.base_wd, layer_id=layer,
                                   group_name=key)
            groups[key]["params"].append(param)
            groups[key]["param_names"].append(name)

        ordered = sorted(groups.values(), key=lambda g: (g["layer_id"], g["weight_decay"]))
        if get_dist_info()[0] == 0:
            summary = {g["group_name"]: dict(lr_scale=round(g["lr_scale"], 6), weight_decay=g["weight_decay"],
                                             num_params=len(g["params"])) for g in ordered}
            print_log(f"layer-wise lr decay {self.decay_rate} over {num_layers} layers: "
                      f"{json.dumps(summary)}", logger="current")
        params.extend(ordered)
