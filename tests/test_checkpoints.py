"""Checkpoint formats: each official key layout is written from our weights, then loaded back."""
from __future__ import annotations

import collections
import os

import pytest
import torch
from timm.layers import resample_abs_pos_embed

from backbones import (CheckpointError, build_backbone, detect_format, load_backbone, load_pretrained,
                       read_checkpoint, save_backbone)
from benchmarks.peers import load_peers, unavailable_reason


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial values everywhere (zero biases would hide mixed-up keys)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    return model


def assert_same_weights(model: torch.nn.Module, reference: dict[str, torch.Tensor], skip=()):
    own = model.state_dict()
    for k, v in reference.items():
        if k in skip:
            continue
        assert torch.equal(own[k], v), k


def decoder_keys() -> dict[str, torch.Tensor]:
    return {"mask_token": torch.zeros(1, 1, 96), "decoder_embed.weight": torch.zeros(96, 192),
            "decoder_blocks.0.attn.qkv.weight": torch.zeros(288, 96), "decoder_pred.weight": torch.zeros(768, 96)}


def test_maelite_pretrain_file(tmp_path):
    src = randomised(build_backbone("vit_tiny", num_classes=0, pos_embed="sincos"))
    model_sd = {f"module.model.{k}": v for k, v in src.state_dict().items()}
    model_sd.update({f"module.model.{k}": v for k, v in decoder_keys().items()})
    torch.save({"model": model_sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
                "scheduler": {"last_epoch": 3}, "start_epoch": 4}, tmp_path / "mae.pth.tar")
    dst = build_backbone("vit_tiny", num_classes=0, pos_embed="sincos")
    result = load_pretrained(dst, tmp_path / "mae.pth.tar")
    assert result.format == "maelite" and not result.missing and not result.unexpected
    assert set(result.dropped) == set(decoder_keys())
    assert_same_weights(dst, src.state_dict())


def test_maelite_distill_and_d2_files(tmp_path):
    src = randomised(build_backbone("vit_tiny", num_classes=0, pos_embed="sincos"))
    teacher = build_backbone("vit_base", num_classes=0, depth=1)
    sd = {f"module.model.{k}": v for k, v in src.state_dict().items()}
    sd.update({f"module.tch_model.{k}": v for k, v in teacher.state_dict().items()})
    sd["module.attn_adapter.weight"] = torch.zeros(12, 12, 1, 1)
    extra = {"blocks.12.norm1.weight": torch.ones(192), "blocks.12.norm1.bias": torch.zeros(192),
             "blocks.12.attn.qkv.weight": torch.zeros(576, 192), "blocks.12.attn.qkv.bias": torch.zeros(576)}
    sd.update({f"module.model.{k}": v for k, v in extra.items()})
    torch.save({"model": sd, "start_epoch": 1}, tmp_path / "d2.pth.tar")
    dst = build_backbone("vit_tiny", num_classes=0, pos_embed="sincos")
    result = load_pretrained(dst, tmp_path / "d2.pth.tar")
    assert not result.missing and not result.unexpected
    assert "attn_adapter.weight" in result.dropped and set(extra) <= set(result.dropped)
    assert any(k.startswith("tch_model.") for k in result.dropped)
    assert_same_weights(dst, src.state_dict())


def test_maelite_finetuned_rpe_with_plain_qkv_bias(tmp_path):
    """A released +RPE checkpoint carries qkv.bias instead of q_bias / v_bias."""
    src = randomised(build_backbone("vit_tiny_rpe", num_classes=1000))
    sd = {}
    for k, v in src.state_dict().items():
        if k.endswith("attn.q_bias"):
            base = k[: -len("q_bias")]
            sd[f"module.model.{base}qkv.bias"] = torch.cat(
                [v, torch.randn(192), src.state_dict()[base + "v_bias"]])
        elif not k.endswith("attn.v_bias"):
            sd[f"module.model.{k}"] = v
    sd["module.model.blocks.0.attn.relative_position_index"] = torch.zeros(197, 197, dtype=torch.long)
    torch.save({"model": sd}, tmp_path / "ft_rpe.pth.tar")
    dst = build_backbone("vit_tiny_rpe", num_classes=1000)
    result = load_pretrained(dst, tmp_path / "ft_rpe.pth.tar")
    assert not result.missing and not result.unexpected, result
    assert_same_weights(dst, src.state_dict())
    # the key bias is dropped, which leaves the attention output unchanged
    dst.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = dst(x)
        for blk in dst.blocks:
            blk.attn.k_bias.normal_()
        torch.testing.assert_close(dst(x), before, atol=1e-5, rtol=0)


def test_rpe_into_plain_model_and_back(tmp_path):
    src = randomised(build_backbone("vit_tiny_rpe", num_classes=0))
    plain = build_backbone("vit_tiny", num_classes=0, pos_embed="none", global_pool="avg", rel_pos_bias=False)
    result = load_pretrained(plain, src.state_dict())
    bias = plain.state_dict()["blocks.3.attn.qkv.bias"]
    assert torch.equal(bias[:192], src.state_dict()["blocks.3.attn.q_bias"])
    assert torch.all(bias[192:384] == 0)
    assert all("relative_position_bias_table" in k for k in result.unexpected)


def test_official_mae_file_and_pos_embed_resize(tmp_path):
    src = randomised(build_backbone("vit_base", num_classes=0, depth=2))
    sd = dict(src.state_dict())
    sd.update({"mask_token": torch.zeros(1, 1, 512), "decoder_pos_embed": torch.zeros(1, 197, 512)})
    torch.save({"model": sd}, tmp_path / "mae_pretrain_vit_base.pth")
    assert detect_format(read_checkpoint(tmp_path / "mae_pretrain_vit_base.pth")) == "mae"
    dst = build_backbone("vit_base", num_classes=0, depth=2, img_size=256)
    result = load_pretrained(dst, tmp_path / "mae_pretrain_vit_base.pth")
    assert result.resized == ["pos_embed"] and not result.missing and not result.unexpected
    expected = resample_abs_pos_embed(src.pos_embed.detach(), [16, 16], [14, 14], num_prefix_tokens=1)
    torch.testing.assert_close(dst.pos_embed.detach(), expected)
    assert_same_weights(dst, src.state_dict(), skip={"pos_embed"})


def test_official_hiera_file(tmp_path):
    src = randomised(build_backbone("hiera_tiny"))
    official = {}
    for k, v in src.state_dict().items():
        k = k.replace("head.fc.", "head.projection.").replace("head.norm.", "norm.")
        official[k] = v
    official["multi_scale_fusion_heads.0.weight"] = torch.zeros(4)
    official["decoder_embed.weight"] = torch.zeros(4)
    torch.save({"model_state": official}, tmp_path / "hiera_tiny_official.pth")
    dst = build_backbone("hiera_tiny")
    result = load_pretrained(dst, tmp_path / "hiera_tiny_official.pth")
    assert result.format == "hiera" and not result.missing and not result.unexpected
    assert_same_weights(dst, src.state_dict())


def test_hiera_pos_embed_resized_for_larger_input():
    src = randomised(build_backbone("hiera_tiny", num_classes=0))
    dst = build_backbone("hiera_tiny", num_classes=0, img_size=(256, 256))
    result = load_pretrained(dst, src.state_dict())
    assert result.resized == ["pos_embed"] and dst.pos_embed.shape == (1, 64 * 64, 46)


def test_timm_and_ostrack_files(tmp_path):
    src = randomised(build_backbone("vit_tiny"))
    torch.save(src.state_dict(), tmp_path / "deit.pth")
    dst = build_backbone("vit_tiny")
    assert load_pretrained(dst, tmp_path / "deit.pth").format == "timm"
    assert_same_weights(dst, src.state_dict())

    net = {f"backbone.{k}": v for k, v in src.state_dict().items() if not k.startswith("head.")}
    net["backbone.pos_embed_z"] = torch.zeros(1, 64, 192)
    net["box_head.conv1_ctr.0.weight"] = torch.zeros(256, 192, 3, 3)
    torch.save({"net": net, "epoch": 300}, tmp_path / "ostrack.pth.tar")
    dst = build_backbone("vit_tiny", num_classes=0)
    result = load_pretrained(dst, tmp_path / "ostrack.pth.tar")
    assert result.format == "ostrack" and result.unexpected == ["pos_embed_z"] and not result.missing
    assert "box_head.conv1_ctr.0.weight" not in result.unexpected
    assert_same_weights(dst, {k: v for k, v in src.state_dict().items() if not k.startswith("head.")})


def moco_training_state(encoder: dict[str, torch.Tensor], hidden: int = 64, dim: int = 16) -> dict[str, torch.Tensor]:
    """A MoCo-v3 ViT's ``state_dict()`` as DDP saves it: base encoder = ``encoder`` plus its projector
    as ``head`` (Linear-BN-ReLU x2, Linear, BN without affine), a momentum encoder holding other values,
    and the 2-layer predictor (hidden width reduced to keep the file small)."""
    width = encoder["cls_token"].shape[-1]
    g = torch.Generator().manual_seed(1)

    def bn(prefix: str, n: int, affine: bool = True) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.running_mean": torch.randn(n, generator=g), f"{prefix}.running_var": torch.rand(n, generator=g),
               f"{prefix}.num_batches_tracked": torch.tensor(7)}
        if affine:
            out.update({f"{prefix}.weight": torch.randn(n, generator=g), f"{prefix}.bias": torch.randn(n, generator=g)})
        return out

    def mlp(prefix: str, sizes: list[int]) -> dict[str, torch.Tensor]:
        out = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            out[f"{prefix}.{3 * i}.weight"] = torch.randn(b, a, generator=g)
            out.update(bn(f"{prefix}.{3 * i + 1}", b, affine=i < len(sizes) - 2))
        return out

    state = {f"module.base_encoder.{k}": v for k, v in encoder.items()}
    state.update(mlp("module.base_encoder.head", [width, hidden, hidden, dim]))
    state.update({f"module.momentum_encoder.{k}": v + 1.0 for k, v in encoder.items()})
    state.update(mlp("module.momentum_encoder.head", [width, hidden, hidden, dim]))
    state.update(mlp("module.predictor", [dim, hidden, dim]))
    return state


MOCO_CONTAINERS = {
    # MAE-Lite's trainer (projects/mocov3 through mae_lite/tools/train.py)
    "maelite": lambda sd: {"start_epoch": 5, "model": sd, "optimizer": {"state": {}, "param_groups": []},
                           "scheduler": {"last_epoch": 4}, "best_top1": 0.0, "scaler": {}},
    # facebookresearch/moco-v3 main_moco.py
    "facebookresearch": lambda sd: {"epoch": 5, "arch": "vit_tiny", "state_dict": sd,
                                    "optimizer": {"state": {}, "param_groups": []}, "scaler": {}},
    # the same, trained without DistributedDataParallel (no "module." prefix)
    "single-process": lambda sd: {"epoch": 5, "state_dict": {k.removeprefix("module."): v for k, v in sd.items()}},
}


@pytest.mark.parametrize("layout", sorted(MOCO_CONTAINERS))
def test_mocov3_files_load_the_base_encoder(tmp_path, layout):
    src = randomised(build_backbone("vit_tiny", num_classes=0, pos_embed="sincos")).eval()
    state = moco_training_state(src.state_dict())
    torch.save(MOCO_CONTAINERS[layout](state), tmp_path / "moco.pth.tar")
    dst = build_backbone("vit_tiny", num_classes=0, pos_embed="sincos").eval()
    result = load_pretrained(dst, tmp_path / "moco.pth.tar")
    assert result.format == "mocov3" and not result.missing and not result.unexpected, result
    not_backbone = {k[len("module."):] for k in state if not k.startswith("module.base_encoder.")
                    or k.startswith("module.base_encoder.head.")}
    assert set(result.dropped) == not_backbone
    assert {k.split(".")[0] for k in result.dropped} == {"base_encoder", "momentum_encoder", "predictor"}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(dst.forward_features(x), src.forward_features(x))
    assert_same_weights(dst, src.state_dict())


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_mocov3_file_of_maelite_model_gives_its_base_encoder_features(tmp_path):
    """The real key layout: MAE-Lite's own MoCo-v3 ViT-Tiny, saved as its trainer saves it (DDP names)."""
    torch.manual_seed(0)
    moco = load_peers().maelite_mocov3_tiny(total_iters=10, mlp_dim=256).eval()
    torch.save(MOCO_CONTAINERS["maelite"]({f"module.{k}": v for k, v in moco.state_dict().items()}),
               tmp_path / "last_epoch_ckpt.pth.tar")
    dst = build_backbone("vit_tiny", num_classes=0).eval()
    result = load_pretrained(dst, tmp_path / "last_epoch_ckpt.pth.tar")
    assert result.format == "mocov3" and not result.missing and not result.unexpected, result
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(dst.forward_features(x), moco.base_encoder.forward_features(x),
                                   atol=1e-5, rtol=1e-5)


def test_a_checkpoint_without_backbone_weights_is_refused(tmp_path):
    """A ResNet MoCo-v3 file and a classifier of another family: nothing fits the ViT, so loading
    them is an error naming the file and what the file holds, never a model with every key missing."""
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1), "layer1.1.conv1.weight": torch.zeros(64, 64, 1, 1),
              "fc.0.weight": torch.zeros(32, 2048)}
    state = {f"module.base_encoder.{k}": v for k, v in resnet.items()}
    state.update({f"module.momentum_encoder.{k}": v for k, v in resnet.items()})
    state["module.predictor.0.weight"] = torch.zeros(32, 16)
    torch.save({"epoch": 100, "arch": "resnet50", "state_dict": state}, tmp_path / "r-50-1000ep.pth.tar")
    model = build_backbone("vit_tiny", num_classes=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_pretrained(model, tmp_path / "r-50-1000ep.pth.tar")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'r-50-1000ep.pth.tar'}: no backbone weight")
    assert "'state_dict' entry holds module.base_encoder.* (5), module.momentum_encoder.* (5), module.predictor.* (1)" \
        in message and "mocov3-layout" in message and "VisionTransformer" in message
    assert_same_weights(model, before)

    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "classifier.weight": torch.zeros(10, 8)},
               tmp_path / "cnn.pth")
    with pytest.raises(CheckpointError, match=r"cnn.pth: no backbone weight of this timm-layout checkpoint .*"
                                              r"it holds features\.\* \(1\), classifier\.\* \(1\)"):
        load_pretrained(build_backbone("hiera_tiny", num_classes=0), tmp_path / "cnn.pth")


def test_fine_tuned_head_reported_when_model_has_none():
    src = randomised(build_backbone("vit_tiny", global_pool="avg"))
    dst = build_backbone("vit_tiny", global_pool="avg", num_classes=0)
    result = load_pretrained(dst, src.state_dict())
    assert sorted(result.unexpected) == ["head.bias", "head.weight"] and not result.missing
    with pytest.raises(CheckpointError, match="keys do not match"):
        load_pretrained(dst, src.state_dict(), strict=True)


def test_export_roundtrip_is_atomic_and_complete(tmp_path):
    src = randomised(build_backbone("hiera_tiny", num_classes=0))
    path = save_backbone(src, tmp_path / "out" / "hiera.pth", arch="hiera_tiny", source="unit-test", epochs=3)
    assert sorted(os.listdir(path.parent)) == ["hiera.pth"]  # no temporary file left behind
    ckpt = read_checkpoint(path)
    assert ckpt["meta"] == {"arch": "hiera_tiny", "format_version": 1, "source": "unit-test", "epochs": 3}
    model = load_backbone(path, num_classes=0)
    assert_same_weights(model, src.state_dict())


# ---------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(build_backbone("vit_tiny"), tmp_path / "nope.pth")


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(build_backbone("vit_tiny").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated or corrupt"):
        read_checkpoint(path)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cut.pth"):
        read_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_unsafe_pickle_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pth: refused to load"):
        read_checkpoint(path)


def test_argparse_namespace_is_allowed(tmp_path):
    import argparse

    path = tmp_path / "with_args.pth"
    src = build_backbone("vit_tiny", num_classes=0)
    torch.save({"model": src.state_dict(), "args": argparse.Namespace(lr=1e-3)}, path)
    assert load_pretrained(build_backbone("vit_tiny", num_classes=0), path).format == "mae"


def test_unknown_layout_and_non_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="odd.pth: unknown checkpoint layout.*weights"):
        load_pretrained(build_backbone("vit_tiny"), tmp_path / "odd.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth: expected a dict"):
        read_checkpoint(tmp_path / "list.pth")


def test_shape_mismatch_names_key_and_shapes():
    sd = build_backbone("vit_small", num_classes=0).state_dict()
    with pytest.raises(CheckpointError, match=r"cls_token: checkpoint \(1, 1, 384\) vs model \(1, 1, 192\)"):
        load_pretrained(build_backbone("vit_tiny", num_classes=0), collections.OrderedDict(sd))


def test_load_backbone_needs_arch_for_foreign_files(tmp_path):
    torch.save(build_backbone("vit_tiny").state_dict(), tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not a litevit export"):
        load_backbone(tmp_path / "plain.pth")
    assert load_backbone(tmp_path / "plain.pth", arch="vit_tiny").arch == "vit_tiny"


def test_export_rebuilds_its_recorded_architecture(tmp_path):
    """An export of a reduced model (4 blocks, 64 px) loads into that model, not a 12-block default."""
    src = randomised(build_backbone("vit_tiny", num_classes=0, depth=4, img_size=64))
    path = save_backbone(src, tmp_path / "small.pth", arch="vit_tiny", arch_kwargs={"depth": 4, "img_size": 64})
    model = load_backbone(path, num_classes=0)
    assert len(model.blocks) == 4 and model.grid_size == (4, 4)
    assert_same_weights(model, src.state_dict())
