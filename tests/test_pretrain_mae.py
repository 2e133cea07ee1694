"""MAE models: masking, loss against hand-computed values, D²-MAE structure, Hiera MAE layout."""
from __future__ import annotations

import pytest
import torch

from backbones import LogitsBlock
from pretrain.mae import (MaskedAutoencoderViT, d2mae_vit_tiny, embed_visible_patches, mae_vit_tiny, patchify,
                          random_masking, unpatchify)
from pretrain.mae_hiera import mae_hiera_tiny, random_unit_mask


def _tiny_mae(**kw) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(**{"img_size": 32, "embed_dim": 48, "depth": 2, "num_heads": 12, **kw})


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
    pred = torch.zeros(1, 4, 768)
    assert model.forward_loss(imgs, pred, out.encoding.mask).item() == pytest.approx(6.5)
    # the model's own loss is the same function of its prediction, which covers the masked patches
    assert torch.equal(out.pred_ids, out.encoding.ids_masked) and out.pred.shape == (1, 2, 768)
    assert out.loss.item() == pytest.approx(
        model.forward_loss(imgs, out.pred, out.encoding.mask, ids_pred=out.pred_ids).item(), rel=1e-6)
    pred_all = model.forward_decoder(out.encoding.latent, out.encoding.ids_restore)
    assert pred_all.shape == (1, 4, 768)
    torch.testing.assert_close(pred_all[0, [2, 1]], out.pred[0])
    assert out.loss.item() == pytest.approx(model.forward_loss(imgs, pred_all, out.encoding.mask).item(), rel=1e-6)


def test_norm_pix_loss_of_zero_prediction_is_767_over_768():
    """Per-patch normalisation with the unbiased variance: mean square of the target is (n-1)/n."""
    model = _tiny_mae(mask_ratio=0.75)
    imgs = torch.rand(3, 3, 32, 32)
    _, ids_masked, mask, _ = model.random_masking(3)
    loss = model.forward_loss(imgs, torch.zeros(3, 4, 768), mask).item()
    assert loss == pytest.approx(767 / 768, rel=1e-4)
    # the masked-patches-only path (layer-norm target) is the same function
    pred = torch.randn(3, 4, 768)
    pred_masked = torch.gather(pred, 1, ids_masked[..., None].expand(-1, -1, 768))
    torch.testing.assert_close(model.forward_loss(imgs, pred_masked, mask, ids_pred=ids_masked),
                               model.forward_loss(imgs, pred, mask), rtol=1e-5, atol=1e-6)
    # direct computation on one masked patch of one image
    b, i = 0, int(mask[0].nonzero()[0])
    r, c = divmod(i, 2)
    pix = imgs[b, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].permute(1, 2, 0).reshape(-1)
    target = (pix - pix.mean()) / (pix.var() + 1e-6).sqrt()
    pred = torch.randn(3, 4, 768)
    one = torch.zeros_like(mask)
    one[b, i] = 1
    assert model.forward_loss(imgs, pred, one).item() == pytest.approx(((pred[b, i] - target) ** 2).mean().item(),
                                                                       rel=1e-5)


def test_visible_only_embedding_and_fused_attention_match_the_reference_path():
    torch.manual_seed(1)
    fast = _tiny_mae(img_size=64)
    ref = _tiny_mae(img_size=64, attention="explicit", embed_visible_only=False, loss_on_masked_only=False)
    ref.load_state_dict(fast.state_dict())
    fused = _tiny_mae(img_size=64, attention="fused")
    fused.load_state_dict(fast.state_dict())
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    ids_keep = fast.random_masking(2, noise)[0]
    a = embed_visible_patches(fast, imgs, ids_keep, visible_only=True)
    b = embed_visible_patches(fast, imgs, ids_keep, visible_only=False)
    assert a.shape == (2, 1 + 4, 48)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast(imgs, noise).loss, ref(imgs, noise).loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused(imgs, noise).loss, ref(imgs, noise).loss, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # "auto" takes the fused kernel without autograd
        torch.testing.assert_close(fast(imgs, noise).loss, ref(imgs, noise).loss, atol=1e-5, rtol=1e-5)


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


def test_hiera_mask_ratio_04_keeps_29_of_49_units():
    keep = random_unit_mask(3, 49, 0.4)
    assert keep.sum(1).tolist() == [29, 29, 29]
