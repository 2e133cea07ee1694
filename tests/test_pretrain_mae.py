"""MAE models: masking, loss against hand-computed values, the attention kernels, the registry's
backbones inside, D²-MAE structure, Hiera MAE layout.  Parity with MAE-Lite's own code:
``test_peer_parity_pretrain.py``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backbones import LogitsBlock, build_backbone
from pretrain import build_pretrain_model, list_pretrain_models
from pretrain.mae import (MaskedAutoencoderViT, d2mae_vit_tiny, embed_visible_patches, mae_vit_tiny, patchify,
                          random_masking, unpatchify)
from pretrain.mae_hiera import MaskedAutoencoderHiera, mae_hiera_tiny, random_unit_mask


def _tiny_mae(**kw) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(**{"arch": "vit_tiny", "img_size": 32, "embed_dim": 48, "depth": 2, **kw})


def test_random_masking_follows_the_noise():
    noise = torch.tensor([[0.1, 0.9, 0.5, 0.2], [0.7, 0.3, 0.2, 0.8]])
    ids_keep, ids_masked, mask, ids_restore = random_masking(2, 4, 0.5, noise)
    assert ids_keep.tolist() == [[0, 3], [2, 1]]
    assert ids_masked.tolist() == [[2, 1], [0, 3]]
    assert mask.tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]
    shuffled = torch.argsort(noise, dim=1)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore), torch.arange(4).expand(2, 4))


def test_patchify_layout_and_round_trip():
    imgs = torch.randn(2, 3, 32, 48)
    patches = patchify(imgs, 16)
    assert patches.shape == (2, 6, 16 * 16 * 3)
    # patch (row 1, column 2), pixel (row 3, column 5), channel 2
    assert patches[1, 1 * 3 + 2, (3 * 16 + 5) * 3 + 2] == imgs[1, 2, 16 + 3, 32 + 5]
    assert torch.equal(unpatchify(patches, 16, (2, 3)), imgs)


def test_loss_equals_hand_computed_value_raw_pixels():
    """Constant patches 1, 2, 3, 4; patches 1 and 2 masked; zero prediction -> (2² + 3²) / 2."""
    model = _tiny_mae(norm_pix_loss=False, mask_ratio=0.5)
    imgs = torch.zeros(1, 3, 32, 32)
    for i, v in enumerate([1.0, 2.0, 3.0, 4.0]):
        r, c = divmod(i, 2)
        imgs[..., r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = v
    noise = torch.tensor([[0.1, 0.9, 0.5, 0.2]])  # keeps patches 0 and 3
    out = model(imgs, noise=noise)
    assert out.encoding.mask.tolist() == [[0, 1, 1, 0]]
    assert out.pred_ids.tolist() == [[2, 1]] and out.pred.shape == (1, 2, 768)
    assert model.forward_loss(imgs, torch.zeros(1, 2, 768), out.pred_ids).item() == pytest.approx(6.5)
    # the model's own loss is that function of its prediction of the masked patches
    assert out.loss.item() == pytest.approx(((out.pred - torch.tensor([3.0, 2.0])[:, None]) ** 2).mean().item(),
                                            rel=1e-6)
    # the decoder run over every patch predicts the same for the masked ones
    pred_all = model.forward_decoder(out.encoding.latent, out.encoding.ids_restore)
    assert pred_all.shape == (1, 4, 768)
    torch.testing.assert_close(pred_all[0, [2, 1]], out.pred[0])


def test_norm_pix_loss_of_zero_prediction_is_767_over_768():
    """Per-patch normalisation with the unbiased variance: mean square of the target is (n-1)/n."""
    model = _tiny_mae(mask_ratio=0.75)
    imgs = torch.rand(3, 3, 32, 32)
    _, ids_masked, _, _ = model.random_masking(3)
    loss = model.forward_loss(imgs, torch.zeros(3, 3, 768), ids_masked).item()
    assert loss == pytest.approx(767 / 768, rel=1e-4)
    # MAE's formula written out on one patch of one image: (x - mean) / sqrt(var + 1e-6)
    i = int(ids_masked[0, 1])
    r, c = divmod(i, 2)
    pix = imgs[0, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].permute(1, 2, 0).reshape(-1)
    target = (pix - pix.mean()) / (pix.var() + 1e-6).sqrt()
    pred = torch.randn(1, 1, 768)
    assert model.forward_loss(imgs[:1], pred, torch.tensor([[i]])).item() == pytest.approx(
        ((pred[0, 0] - target) ** 2).mean().item(), rel=1e-5)


def test_visible_only_embedding_equals_the_conv_over_all_patches_then_gather():
    torch.manual_seed(1)
    model = _tiny_mae(img_size=64)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    ids_keep = model.random_masking(2, noise)[0]
    tokens, _ = model.patch_tokens(imgs)  # the backbone's conv over all 16 patches + positions
    expected = torch.cat([model.class_token(2), torch.stack([t[i] for t, i in zip(tokens, ids_keep)])], dim=1)
    got = embed_visible_patches(model, imgs, ids_keep)
    assert got.shape == (2, 1 + 4, 48)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_cpu_training_takes_explicit_attention_and_both_kernels_agree(monkeypatch):
    """On CPU with autograd every attention is an explicit softmax (faster there, see
    ``fused_attention_pays``); without autograd the fused kernel runs; both give the same loss."""
    torch.manual_seed(1)
    model = _tiny_mae(img_size=64, decoder_depth=2)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    fused_calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: fused_calls.append(1) or sdpa(*a, **k))
    training = model(imgs, noise).loss
    assert fused_calls == []
    with torch.no_grad():
        inference = model(imgs, noise).loss
    assert len(fused_calls) == 2 + 2  # encoder blocks + decoder blocks
    torch.testing.assert_close(inference, training.detach(), atol=1e-6, rtol=1e-5)


def test_mae_encoder_is_the_registry_backbone():
    """The MAE takes over ``build_backbone(arch)``: same keys and shapes, and its encoder weights
    loaded into that backbone compute the MAE's own features."""
    torch.manual_seed(0)
    mae = mae_vit_tiny(img_size=64)
    backbone = build_backbone("vit_tiny", num_classes=0, pos_embed="sincos", img_size=64)
    encoder = mae.encoder_state_dict()
    assert {k: v.shape for k, v in encoder.items()} == {k: v.shape for k, v in backbone.state_dict().items()}
    assert mae.arch == "vit_tiny" and mae.encoder_overrides == {"img_size": 64}
    backbone.load_state_dict(encoder)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(mae.forward_features(x), backbone.forward_features(x), rtol=0, atol=0)
    # overrides reach the backbone; a non-ViT backbone is refused by name
    assert len(build_pretrain_model("mae_vit_tiny", img_size=32, depth=3).blocks) == 3
    with pytest.raises(TypeError, match="hiera_tiny"):
        MaskedAutoencoderViT(arch="hiera_tiny")
    with pytest.raises(TypeError, match="vit_tiny"):
        MaskedAutoencoderHiera(arch="vit_tiny")
    with pytest.raises(KeyError, match="mae_vit_tiny"):
        build_pretrain_model("mae_vit_nano")
    assert {"mae_vit_tiny", "d2mae_vit_tiny", "mae_hiera_tiny"} <= set(list_pretrain_models())


def test_mae_tiny_shapes_and_logits():
    model = mae_vit_tiny()
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("decoder", "mask_token"))) \
        == 5_717_416 - 192 * 1000 - 1000  # ViT-Tiny without its 1000-class head
    out = model(torch.randn(2, 3, 224, 224), logits_from=(-1,))
    assert out.pred.shape == (2, 147, 768)
    assert out.encoding.latent.shape == (2, 50, 192)
    assert out.encoding.attn_logits[11].shape == (2, 12, 50, 50)


def test_d2mae_student_structure_and_decoder_input():
    model = d2mae_vit_tiny(img_size=64)
    assert len(model.blocks) == 13
    extra = model.blocks[12]
    assert isinstance(extra, LogitsBlock) and not hasattr(extra, "mlp") and extra.attn.proj is None
    assert not any(n.startswith("blocks.12.mlp") for n, _ in model.named_parameters())
    outputs = {}
    for i in (7, 11):
        model.blocks[i].register_forward_hook(
            lambda m, a, o, i=i: outputs.__setitem__(i, o[0] if isinstance(o, tuple) else o))
    enc = model.forward_encoder(torch.randn(2, 3, 64, 64), logits_from=(12,))
    assert model.decode_idx == 8
    torch.testing.assert_close(enc.latent, model.norm(outputs[7]), rtol=0, atol=0)
    assert not torch.allclose(enc.latent, model.norm(outputs[11]))
    assert enc.attn_logits[12].shape == (2, 12, 5, 5)
    # the logits block reads block 12's output
    torch.testing.assert_close(enc.attn_logits[12], extra(outputs[11]), rtol=0, atol=0)


def test_hiera_mae_unit_mask_maps_to_the_right_pixels():
    torch.manual_seed(0)
    model = mae_hiera_tiny(img_size=64)  # 16x16 tokens, 2x2 mask units of 8x8, final tokens 4x4
    assert model.num_mask_units == 4 and model.pred_stride == 16
    noise = torch.tensor([[0.1, 0.9, 0.8, 0.2]])
    model.mask_ratio = 0.5
    keep = model.random_mask(1, noise)
    assert keep.tolist() == [[True, False, False, True]]
    imgs = torch.randn(1, 3, 64, 64)
    out = model(imgs, noise=noise, logits_from=(11,))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = expected[2:, 2:] = True  # units (0, 0) and (1, 1)
    assert torch.equal(out.visible.view(4, 4), expected)
    assert out.pred.shape == (1, 16, 768)
    assert out.encoding.latent.shape == (1, 2, 2, 2, 368)
    assert out.encoding.attn_logits[11].shape == (1, 8, 8, 8)  # 2 kept units x 2x2 tokens
    masked = ~out.visible
    target = model.forward_target(imgs)
    direct = ((out.pred.float() - target) ** 2).mean(-1)[masked].mean()
    torch.testing.assert_close(out.loss, direct)
    # MAE's norm-pix formula on one final token's 16x16 patch (row 2, column 1: a masked unit)
    pix = imgs[0, :, 32:48, 16:32].permute(1, 2, 0).reshape(-1)
    torch.testing.assert_close(target[0, 2 * 4 + 1], (pix - pix.mean()) / (pix.var() + 1e-6).sqrt(),
                               rtol=1e-5, atol=1e-5)


def test_hiera_mae_encoder_is_the_registry_backbone():
    mae = mae_hiera_tiny(img_size=64)
    backbone = build_backbone("hiera_tiny", num_classes=0, img_size=64)
    encoder = mae.encoder_state_dict()
    assert "head.norm.weight" in encoder and not any(k.startswith(("decoder", "multi_scale", "mask")) for k in encoder)
    assert {k: v.shape for k, v in encoder.items()} == {k: v.shape for k, v in backbone.state_dict().items()}


def test_hiera_mask_ratio_04_keeps_29_of_49_units():
    keep = random_unit_mask(3, 49, 0.4)
    assert keep.sum(1).tolist() == [29, 29, 29]
