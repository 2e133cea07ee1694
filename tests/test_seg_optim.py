"""seg.optim: layer-wise lr decay groups for the ViT and Hiera segmentors."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR, PolyLR
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

import seg  # noqa: F401  (registers the constructor)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "seg"
LR, WD, DECAY = 1e-4, 0.05, 0.65
init_default_scope("mmseg")


def _segmentor(config: str, **backbone):
    cfg = Config.fromfile(str(CONFIGS / config))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(backbone)
    return MODELS.build(model_cfg), cfg


def _groups_by_param(model, optim_wrapper) -> dict[str, dict]:
    by_tensor = {id(p): g for g in optim_wrapper.optimizer.param_groups for p in g["params"]}
    return {name: by_tensor[id(p)] for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def vit_groups():
    model, cfg = _segmentor("upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py", arch="vit_tiny_rpe")
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim_wrapper, _groups_by_param(model, optim_wrapper)


def test_vit_layer_scales_follow_block_depth(vit_groups):
    model, optim_wrapper, groups = vit_groups
    expected_scale = {
        "backbone.encoder.patch_embed.proj.weight": DECAY ** 13,
        "backbone.encoder.cls_token": DECAY ** 13,
        "backbone.encoder.blocks.0.attn.qkv.weight": DECAY ** 12,
        "backbone.encoder.blocks.3.norm1.weight": DECAY ** 9,
        "backbone.encoder.blocks.11.mlp.fc2.weight": DECAY ** 1,
        "backbone.encoder.blocks.11.attn.relative_position_bias_table": DECAY ** 1,
        "neck.upsample_4x.0.weight": 1.0,
        "decode_head.conv_seg.weight": 1.0,
        "auxiliary_head.conv_seg.bias": 1.0,
    }
    for name, scale in expected_scale.items():
        assert groups[name]["lr"] == pytest.approx(LR * scale), name
    # every trainable parameter is in exactly one group
    counted = sum(len(g["params"]) for g in optim_wrapper.optimizer.param_groups)
    assert counted == sum(1 for p in model.parameters() if p.requires_grad) == len(groups)


def test_vit_weight_decay_skips_1d_params_embeddings_and_bias_tables(vit_groups):
    _, _, groups = vit_groups
    no_decay = ["backbone.encoder.cls_token", "backbone.encoder.patch_embed.proj.bias",
                "backbone.encoder.blocks.5.attn.q_bias", "backbone.encoder.blocks.5.norm2.weight",
                "backbone.encoder.blocks.5.attn.relative_position_bias_table", "decode_head.conv_seg.bias",
                "decode_head.bottleneck.bn.weight"]
    decay = ["backbone.encoder.patch_embed.proj.weight", "backbone.encoder.blocks.5.attn.qkv.weight",
             "decode_head.bottleneck.conv.weight", "neck.upsample_2x.0.weight"]
    assert all(groups[n]["weight_decay"] == 0.0 for n in no_decay)
    assert all(groups[n]["weight_decay"] == WD for n in decay)


def test_vit_learned_pos_embed_is_layer_0_without_decay():
    model, cfg = _segmentor("upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py")
    groups = _groups_by_param(model, build_optim_wrapper(model, cfg.optim_wrapper))
    assert groups["backbone.encoder.pos_embed"]["lr"] == pytest.approx(LR * DECAY ** 13)
    assert groups["backbone.encoder.pos_embed"]["weight_decay"] == 0.0


def test_hiera_blocks_numbered_globally_across_stages():
    model, cfg = _segmentor("upernet_hiera-tiny_1xb2-20iter_ade20k-demo-64x64.py")
    groups = _groups_by_param(model, build_optim_wrapper(model, cfg.optim_wrapper))
    expected_scale = {
        "backbone.encoder.patch_embed.proj.weight": DECAY ** 13,
        "backbone.encoder.pos_embed": DECAY ** 13,
        "backbone.encoder.blocks.0.attn.qkv.weight": DECAY ** 12,   # stage 1
        "backbone.encoder.blocks.1.proj.weight": DECAY ** 11,       # stage 2 starts (dim 46 -> 92)
        "backbone.encoder.blocks.10.mlp.fc1.weight": DECAY ** 2,    # stage 4 starts
        "backbone.encoder.blocks.11.attn.proj.weight": DECAY ** 1,
        "decode_head.fpn_bottleneck.conv.weight": 1.0,
    }
    for name, scale in expected_scale.items():
        assert groups[name]["lr"] == pytest.approx(LR * scale), name
    assert groups["backbone.encoder.pos_embed"]["weight_decay"] == 0.0
    assert groups["backbone.encoder.blocks.4.attn.qkv.weight"]["weight_decay"] == WD


def test_scheduler_keeps_layer_ratios_through_warmup_and_decay():
    model, cfg = _segmentor("upernet_vit-tiny_1xb2-20iter_ade20k-demo-64x64.py")
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    schedulers = [LinearLR(optim_wrapper, start_factor=1e-6, by_epoch=False, begin=0, end=5),
                  PolyLR(optim_wrapper, eta_min=0.0, power=1.0, by_epoch=False, begin=5, end=20)]
    for step in range(12):
        for scheduler in schedulers:
            scheduler.step()
        head_lr = next(g["lr"] for g in optim_wrapper.optimizer.param_groups if g["layer_id"] == 13)
        if step > 0:
            for group in optim_wrapper.optimizer.param_groups:
                assert group["lr"] == pytest.approx(head_lr * group["lr_scale"], rel=1e-9)
    # mmengine's PolyLR (power 1) reaches eta_min at step end - 1: after 12 steps 1 - 7 / 14 is left
    assert head_lr == pytest.approx(LR * (1 - 7 / 14), rel=1e-6)


def test_mmseg_constructor_refuses_our_backbone_and_ours_checks_its_config(vit_groups):
    model, _, _ = vit_groups
    mmseg_cfg = dict(type="LearningRateDecayOptimizerConstructor",
                     optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=LR, weight_decay=WD)),
                     paramwise_cfg=dict(num_layers=12, decay_rate=DECAY, decay_type="layer_wise"))
    with pytest.raises(NotImplementedError):
        OPTIM_WRAPPER_CONSTRUCTORS.build(mmseg_cfg)(model)
    ours = dict(type="LayerDecayOptimWrapperConstructor",
                optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=LR, weight_decay=WD)))
    with pytest.raises(ValueError, match="num_layers=24"):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(ours, paramwise_cfg=dict(layer_decay_rate=0.8, num_layers=24)))(model)
    with pytest.raises(ValueError, match="layer_decay_rate"):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(ours, paramwise_cfg=dict(decay_rate=0.8)))
    with pytest.raises(TypeError, match="backbone"):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(ours, paramwise_cfg=dict(layer_decay_rate=0.8)))(torch.nn.Linear(2, 2))
