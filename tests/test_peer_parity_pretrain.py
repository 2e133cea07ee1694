"""Our MAE-Tiny and D²-MAE-Tiny compute what MAE-Lite's own code computes.

With MAE-Lite's weights copied in (perturbed first, so that no bias or norm sits at its initial
value) and the same masking noise, the losses, the reconstructed patches, the distillation term
and the gradients agree.  MAE-Lite draws the mask as ``argsort(torch.rand(N, L))`` inside
``random_masking``; its MAE takes the resulting ``ids_shuffle`` as an argument, its D²-MAE module
draws it itself, so there the same seed is set before both draws.

Needs the peers' code (``shared/peers``, or ``$LITEVIT_SHARED/peers``); skipped without it.  The
CUDA cases (fused attention on our side, explicit on theirs) run where a GPU is, TF32 off.
"""
from __future__ import annotations

import pytest
import torch

from backbones import build_backbone
from benchmarks.peers import load_peers, unavailable_reason
from pretrain.distill import AttentionDistillation, DistilledMAE
from pretrain.mae import d2mae_vit_tiny, mae_vit_tiny

peers = load_peers()
pytestmark = pytest.mark.skipif(peers is None, reason=str(unavailable_reason()))

PATCHES = 196  # 224 / 16 squared
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture
def device(request, monkeypatch):
    if request.param == "cuda":  # full fp32 on both sides: no TF32 in convolutions either
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    return request.param


def _perturbed_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's weights plus noise (in place), so biases and norms are not at 0 / 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "pos_embed" not in name:  # fixed sin-cos tables stay as they are
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.state_dict()


def _grads(model: torch.nn.Module, names: list[str]) -> list[torch.Tensor]:
    params = dict(model.named_parameters())
    return [params[n].grad for n in names]


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_mae_tiny_loss_predictions_and_gradients_equal_maelite(device):
    torch.manual_seed(0)
    theirs = peers.maelite_mae_tiny()
    ours = mae_vit_tiny()
    state = _perturbed_state(theirs, seed=1)
    assert set(state) == set(ours.state_dict())  # one key layout: MAE-Lite's files load as they are
    ours.load_state_dict(state)
    theirs.to(device), ours.to(device)
    imgs, noise = torch.randn(2, 3, 224, 224, device=device), torch.rand(2, PATCHES, device=device)

    loss_t, pred_t, mask_t, _ = theirs(imgs, 0.75, ids_shuffle=torch.argsort(noise, dim=1))
    out = ours(imgs, noise=noise)
    torch.testing.assert_close(out.loss, loss_t, rtol=1e-5, atol=1e-6)
    assert torch.equal(out.encoding.mask, mask_t)
    # our head predicts the masked patches only; theirs every patch: equal where both predict
    torch.testing.assert_close(out.pred, torch.stack([p[i] for p, i in zip(pred_t, out.pred_ids)]),
                               rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        every = ours.forward_decoder(out.encoding.latent, out.encoding.ids_restore)
    torch.testing.assert_close(every, pred_t.detach(), rtol=1e-4, atol=1e-5)

    loss_t.backward()
    out.loss.backward()
    names = ["patch_embed.proj.weight", "cls_token", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias",
             "norm.weight", "mask_token", "decoder_blocks.0.attn.proj.weight", "decoder_pred.weight"]
    for name, g_ours, g_theirs in zip(names, _grads(ours, names), _grads(theirs, names)):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_d2mae_tiny_mae_and_distillation_terms_equal_maelite(device):
    torch.manual_seed(0)
    theirs = peers.maelite_d2mae_tiny(batch_size=2)
    theirs.train(True)
    student = d2mae_vit_tiny()
    teacher = build_backbone("vit_base", num_classes=0, pos_embed="sincos")
    ours = DistilledMAE(student, AttentionDistillation(teacher, 12, teacher_block=11), student_block=-1).train()
    student_state = _perturbed_state(theirs.model, seed=1)
    assert set(student_state) == set(student.state_dict())  # blocks.12 = norm1 + attn.qkv in both
    student.load_state_dict(student_state)
    teacher.load_state_dict(_perturbed_state(theirs.tch_model, seed=2))
    adapter = theirs.attn_adapter["adapter11"]
    with torch.no_grad():
        adapter.weight.copy_(torch.randn(adapter.weight.shape, generator=torch.Generator().manual_seed(3)))
        ours.distill.adapter.weight.copy_(adapter.weight)
    theirs.to(device), ours.to(device)

    student_out = {}  # their student's (loss, pred, mask, ids_shuffle); the loss cloned: they add to it in place
    theirs.model.register_forward_hook(
        lambda m, args, out: student_out.update(mae=(out[0].detach().clone(), *out[1:])))
    imgs = torch.randn(2, 3, 224, 224, device=device)
    torch.manual_seed(7)
    noise = torch.rand(2, PATCHES, device=device)  # what their random_masking draws after the same seed
    terms = ours(imgs, noise=noise)
    torch.manual_seed(7)
    loss_t, logged = theirs(imgs)

    loss_mae_t, _, mask_t, ids_shuffle_t = student_out["mae"]
    assert torch.equal(ids_shuffle_t, torch.argsort(noise, dim=1))  # the same masking, proven
    assert torch.equal(student.random_masking(2, noise)[2], mask_t)
    torch.testing.assert_close(terms["loss_mae"], loss_mae_t, rtol=1e-5, atol=1e-6)
    assert terms["loss_attn"].item() == pytest.approx(logged["attn"], rel=1e-4)
    assert terms["loss_attn"].item() > 1e-3  # a real difference between student and teacher logits
    torch.testing.assert_close(terms["loss"], loss_t, rtol=1e-5, atol=1e-6)

    loss_t.backward()
    terms["loss"].backward()
    names = ["blocks.12.attn.qkv.weight", "blocks.12.norm1.weight", "blocks.11.mlp.fc1.weight",
             "blocks.7.attn.proj.weight", "norm.bias", "decoder_pred.bias", "patch_embed.proj.weight"]
    for name, g_ours, g_theirs in zip(names, _grads(student, names), _grads(theirs.model, names)):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(ours.distill.adapter.weight.grad, adapter.weight.grad, rtol=1e-4, atol=1e-6)
