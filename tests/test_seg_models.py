"""seg.models: backbone wrappers (maps, strides, channels), the reduced neck, pretrained loading."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from timm.layers import resample_abs_pos_embed

from backbones import CheckpointError, build_backbone, save_backbone
from seg.models import HieraBackbone, ReducedFeature2Pyramid, ViTBackbone

init_default_scope("mmseg")
BN = dict(type="BN", requires_grad=True)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log_messages():
    logger = MMLogger.get_current_instance()
    handler = _Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def _manual_block_outputs(vit, x: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
    """Block outputs of a backbones.VisionTransformer, run block by block, as [B, C, h, w]."""
    tokens, grid = vit.embed(x)
    outs = []
    for i, blk in enumerate(vit.blocks):
        tokens = blk(tokens, grid)
        if i in indices:
            outs.append(tokens[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grid))
    return outs


def test_vit_backbone_and_feature2pyramid_give_strides_4_to_32_with_192_channels():
    backbone = MODELS.build(dict(type="ViTBackbone", arch="vit_tiny", img_size=64, drop_path_rate=0.0)).eval()
    neck = MODELS.build(dict(type="Feature2Pyramid", embed_dim=192, rescales=[4, 2, 1, 0.5], norm_cfg=BN)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        maps = backbone(x)
        expected = _manual_block_outputs(backbone.encoder, x, [3, 5, 7, 11])
        pyramid = neck(maps)
    assert [tuple(m.shape) for m in maps] == [(2, 192, 4, 6)] * 4
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want)
    assert [tuple(p.shape) for p in pyramid] == [(2, 192, 16, 24), (2, 192, 8, 12), (2, 192, 4, 6), (2, 192, 2, 3)]
    assert backbone.out_channels == [192] * 4 and backbone.num_layers == 12


def test_vit_backbone_drops_classifier_parts_and_checks_out_indices():
    backbone = ViTBackbone(img_size=32)
    names = [n for n, _ in backbone.named_parameters()]
    assert not any(n.startswith(("encoder.norm.", "encoder.fc_norm.", "encoder.head.")) for n in names)
    with pytest.raises(ValueError, match="out_indices"):
        ViTBackbone(img_size=32, out_indices=(3, 12))


def test_reduced_feature2pyramid_projects_192_to_48_channels():
    neck = ReducedFeature2Pyramid(192, norm_cfg=BN).eval()
    maps = [torch.randn(1, 192, 8, 8) for _ in range(4)]
    with torch.no_grad():
        outs = neck(maps)
    assert [tuple(o.shape) for o in outs] == [(1, 48, 32, 32), (1, 48, 16, 16), (1, 48, 8, 8), (1, 48, 4, 4)]
    # ConvT(192,48,2)+BN(48)+ConvT(48,48,2) | ConvT(192,48,2) | Conv1x1(192,48) | Conv1x1(192,48)+pool
    convt_in, convt_mid, conv1 = 192 * 48 * 4 + 48, 48 * 48 * 4 + 48, 192 * 48 + 48
    assert sum(p.numel() for p in neck.parameters()) == convt_in + 2 * 48 + convt_mid + convt_in + 2 * conv1
    with pytest.raises(ValueError, match="rescales"):
        ReducedFeature2Pyramid(192, rescales=(8, 2, 1, 0.5), norm_cfg=BN)


def test_hiera_backbone_stage_maps_and_padding_of_small_inputs():
    backbone = MODELS.build(dict(type="HieraBackbone", arch="hiera_tiny", img_size=64, drop_path_rate=0.0)).eval()
    assert backbone.out_channels == [46, 92, 184, 368] and backbone.strides == [4, 8, 16, 32]
    assert backbone.num_layers == 12
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = backbone(x)
        small = x[..., :48, :40]
        cropped = backbone(small)
        padded_maps = backbone(F.pad(small, (0, 24, 0, 16)))
    assert [tuple(m.shape) for m in maps] == [(1, 46, 16, 16), (1, 92, 8, 8), (1, 184, 4, 4), (1, 368, 2, 2)]
    assert [tuple(m.shape[-2:]) for m in cropped] == [(12, 10), (6, 5), (3, 3), (2, 2)]
    for got, full in zip(cropped, padded_maps):
        torch.testing.assert_close(got, full[..., : got.shape[-2], : got.shape[-1]])
    with pytest.raises(ValueError, match="slide"):
        backbone(torch.randn(1, 3, 96, 64))
    with pytest.raises(ValueError, match="divisible"):
        HieraBackbone(img_size=48)


def test_pretrained_litevit_export_gives_the_source_model_outputs(tmp_path, log_messages):
    source = build_backbone("vit_tiny", img_size=224).eval()  # learned pos embed, token pooling, head
    path = save_backbone(source, tmp_path / "vit_tiny.pth", arch="vit_tiny")
    backbone = ViTBackbone(img_size=64, pretrained=str(path), drop_path_rate=0.0)
    backbone.init_weights()
    backbone.eval()
    result = backbone.load_result
    assert result.format == "litevit" and result.missing == [] and result.resized == ["pos_embed"]
    assert sorted(result.unexpected) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = source.forward_intermediates(x, [3, 5, 7, 11], intermediates_only=True)
        got = backbone(x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert any("vit_tiny.pth" in m and "litevit layout" in m and "pos_embed" in m for m in log_messages)


def test_pretrained_maelite_d2mae_layout_loads_student_only(tmp_path, log_messages):
    """A D²-MAE trainer file: DDP + wrapper prefixes, decoder, teacher, adapter, partial block 13."""
    student = build_backbone("vit_tiny", img_size=224, pos_embed="sincos", num_classes=0).eval()
    state = {f"module.model.{k}": v for k, v in student.state_dict().items()}
    state.update({
        "module.model.mask_token": torch.zeros(1, 1, 96),
        "module.model.decoder_embed.weight": torch.randn(96, 192),
        "module.model.decoder_pos_embed": torch.randn(1, 197, 96),
        "module.model.blocks.12.norm1.weight": torch.ones(192),
        "module.model.blocks.12.attn.qkv.weight": torch.randn(576, 192),
        "module.tch_model.blocks.0.attn.qkv.weight": torch.randn(2304, 768),
        "module.attn_adapter.weight": torch.randn(12, 12, 1, 1),
    })
    path = tmp_path / "mae_tiny_distill_d2_400e.pth.tar"
    torch.save({"model": state, "optimizer": {}, "start_epoch": 400}, path)
    backbone = MODELS.build(dict(type="ViTBackbone", img_size=224, drop_path_rate=0.0,
                                 init_cfg=dict(type="Pretrained", checkpoint=str(path))))
    backbone.init_weights()
    backbone.eval()
    result = backbone.load_result
    assert result.format == "maelite" and result.missing == []
    assert sorted(result.unexpected) == ["norm.bias", "norm.weight"]  # final norm: seg takes raw blocks
    assert {"mask_token", "decoder_embed.weight", "blocks.12.norm1.weight", "blocks.12.attn.qkv.weight",
            "tch_model.blocks.0.attn.qkv.weight", "attn_adapter.weight"} <= set(result.dropped)
    torch.testing.assert_close(backbone.encoder.pos_embed, student.pos_embed)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for g, w in zip(backbone(x), student.forward_intermediates(x, [3, 5, 7, 11], intermediates_only=True)):
            torch.testing.assert_close(g, w)
    assert any("maelite layout" in m for m in log_messages)


def test_pretrained_rpe_model_resizes_bias_tables_like_the_source_does(tmp_path):
    source = build_backbone("vit_tiny_rpe", img_size=224, num_classes=0).eval()
    with torch.no_grad():
        for blk in source.blocks:
            blk.attn.relative_position_bias_table.normal_(std=0.5)
    path = save_backbone(source, tmp_path / "rpe.pth", arch="vit_tiny_rpe")
    backbone = ViTBackbone(arch="vit_tiny_rpe", img_size=64, pretrained=str(path), drop_path_rate=0.0)
    backbone.init_weights()
    backbone.eval()
    assert backbone.load_result.missing == []
    assert len(backbone.load_result.resized) == 12
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for g, w in zip(backbone(x), source.forward_intermediates(x, [3, 5, 7, 11], intermediates_only=True)):
            torch.testing.assert_close(g, w)


def test_pretrained_hiera_export_loads_blocks_and_resamples_pos_embed(tmp_path):
    source = build_backbone("hiera_tiny", img_size=(224, 224))
    path = save_backbone(source, tmp_path / "hiera_tiny.pth", arch="hiera_tiny")
    backbone = HieraBackbone(img_size=64, pretrained=str(path))
    backbone.init_weights()
    assert backbone.load_result.missing == [] and backbone.load_result.resized == ["pos_embed"]
    own = backbone.encoder.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("blocks.") or key.startswith("patch_embed."):
            torch.testing.assert_close(own[key], value, msg=key)
    want = resample_abs_pos_embed(source.pos_embed.detach(), [16, 16], [56, 56], num_prefix_tokens=0)
    torch.testing.assert_close(own["pos_embed"], want)


def test_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="LITEVIT_PRETRAINED"):
        ViTBackbone(img_size=32, pretrained=str(tmp_path / "missing.pth")).init_weights()
    hiera = save_backbone(build_backbone("hiera_tiny"), tmp_path / "hiera.pth", arch="hiera_tiny")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        ViTBackbone(img_size=32, pretrained=str(hiera)).init_weights()
    with pytest.raises(ValueError, match="Pretrained"):
        ViTBackbone(img_size=32, init_cfg=dict(type="Kaiming"))
