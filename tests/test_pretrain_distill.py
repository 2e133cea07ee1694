"""Attention distillation: same visible patches for teacher and student, loss value, gradients,
teacher loading, compiled teacher.  Parity with MAE-Lite's own D²-MAE: ``test_peer_parity_pretrain.py``."""
from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from backbones import build_backbone
from pretrain.distill import AttentionDistillation, DistilledMAE, build_teacher
from pretrain.mae import MaskedAutoencoderViT, d2mae_vit_tiny
from pretrain.mae_hiera import mae_hiera_tiny


def _student(**kw) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(**{"arch": "vit_tiny", "img_size": 64, "embed_dim": 48, "depth": 2, **kw})


def _teacher(depth: int = 2):
    teacher, _ = build_teacher("vit_small", "random", 64, depth=depth)
    return teacher


def _reference_teacher_logits(teacher, imgs, ids_keep, block):
    """Conv patch embedding of every patch, gather, class token, blocks -> logits of `block`."""
    tokens, _ = teacher.patch_tokens(imgs)
    tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
    x = torch.cat([teacher.class_token(imgs.shape[0]), tokens], dim=1)
    for blk in teacher.blocks[:block]:
        x = blk(x)
    return teacher.blocks[block](x, return_logits=True)[1]


def test_teacher_sees_the_students_visible_patches():
    torch.manual_seed(0)
    student, teacher = _student(), _teacher()
    model = DistilledMAE(student, AttentionDistillation(teacher, 12, teacher_block=1), student_block=-1).eval()
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    ids_keep = torch.argsort(noise, dim=1)[:, :4]
    terms = model(imgs, noise=noise)
    enc = student.forward_encoder(imgs, noise, logits_from=(1,))
    assert torch.equal(enc.ids_keep, ids_keep)
    target = _reference_teacher_logits(teacher, imgs, ids_keep, 1)
    assert target.shape == (2, 6, 5, 5)
    expected = F.mse_loss(model.distill.adapter(enc.attn_logits[1]), target)
    torch.testing.assert_close(terms["loss_attn"], expected, rtol=1e-5, atol=1e-6)
    # another shuffle gives the teacher other tokens, hence another loss
    other = _reference_teacher_logits(teacher, imgs, torch.flip(ids_keep, [0]), 1)
    assert not torch.allclose(other, target)
    torch.testing.assert_close(terms["loss"], terms["loss_mae"] + terms["loss_attn"])


def test_distillation_zero_when_logits_agree_and_gradients_reach_adapter_and_student():
    torch.manual_seed(0)
    student = _student(embed_dim=192, depth=2)
    teacher = build_backbone("vit_tiny", num_classes=0, img_size=64, depth=2, pos_embed="sincos")
    teacher.load_state_dict({k: v for k, v in student.state_dict().items() if k in teacher.state_dict()})
    distill = AttentionDistillation(teacher, 12, teacher_block=1)
    with torch.no_grad():
        distill.adapter.weight.copy_(torch.eye(12)[..., None, None])
    imgs = torch.randn(2, 3, 64, 64)
    ids_keep = student.random_masking(2)[0]
    student_logits = distill.teacher_logits(imgs, ids_keep).clone().requires_grad_(True)
    term = distill(student_logits, imgs, ids_keep)["loss_attn"]
    assert term.item() == 0.0
    term.backward()
    assert torch.count_nonzero(student_logits.grad) == 0 and torch.count_nonzero(distill.adapter.weight.grad) == 0
    distill.adapter.weight.grad = None

    # end to end: a student whose encoder equals the teacher produces the teacher's logits
    model = DistilledMAE(student, distill, student_block=1)
    terms = model(imgs)
    assert terms["loss_attn"].item() < 1e-10

    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        distill.adapter.weight.add_(0.1 * torch.randn_like(distill.adapter.weight))
    terms = model(imgs)
    assert terms["loss_attn"].item() > 0
    terms["loss_attn"].backward()
    assert distill.adapter.weight.grad.abs().sum() > 0
    assert student.blocks[1].attn.qkv.weight.grad.abs().sum() > 0
    assert student.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_stays_frozen_in_eval_and_out_of_checkpoints():
    model = DistilledMAE(_student(), AttentionDistillation(_teacher(), 12, 1), -1)
    model.train()
    assert model.student.training and not model.distill.teacher.training
    state = model.state_dict()
    assert "distill.adapter.weight" in state and not any(".teacher." in k for k in state)
    model.load_state_dict(state)  # strict: the teacher's weights are not expected back


def test_d2mae_distils_the_logits_block_against_the_teachers_last_block():
    torch.manual_seed(0)
    student = d2mae_vit_tiny(img_size=64, depth=3, decode_idx=2)
    teacher = _teacher(depth=3)
    model = DistilledMAE(student, AttentionDistillation(teacher, 12, teacher_block=-1), student_block=-1)
    assert model.student_block == 3 and model.distill.teacher_block == 2
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 16)
    terms = model(imgs, noise=noise)
    enc = student.forward_encoder(imgs, noise, logits_from=(3,))
    target = _reference_teacher_logits(teacher, imgs, enc.ids_keep, 2)
    torch.testing.assert_close(terms["loss_attn"], F.mse_loss(model.distill.adapter(enc.attn_logits[3]), target),
                               rtol=1e-5, atol=1e-6)


def test_hiera_distillation_uses_the_same_mask_units():
    torch.manual_seed(0)
    student = mae_hiera_tiny(img_size=64, mask_ratio=0.5)
    teacher, _ = build_teacher("hiera_tiny", "random", 64)
    model = DistilledMAE(student, AttentionDistillation(teacher, 8, teacher_block=11), student_block=11)
    assert model.distill.adapter.weight.shape == (8, 8, 1, 1)
    imgs, noise = torch.randn(1, 3, 64, 64), torch.tensor([[0.1, 0.9, 0.8, 0.2]])
    terms = model(imgs, noise=noise)
    keep = torch.tensor([[True, False, False, True]])
    _, _, t_logits = teacher.forward_features_with_logits(imgs, keep, logits_from=(11,))
    _, _, s_logits = student.forward_features_with_logits(imgs, keep, logits_from=(11,))
    assert t_logits[11].shape == (1, 8, 8, 8)
    expected = F.mse_loss(model.distill.adapter(s_logits[11]), t_logits[11])
    torch.testing.assert_close(terms["loss_attn"], expected, rtol=1e-5, atol=1e-6)


def test_teacher_checkpoint_in_official_mae_format(tmp_path):
    source = build_backbone("vit_tiny", num_classes=0, img_size=64, depth=2, pos_embed="sincos")
    state = {**source.state_dict(), "mask_token": torch.zeros(1, 1, 8), "decoder_embed.weight": torch.zeros(8, 192)}
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": state}, path)
    teacher, info = build_teacher("vit_tiny", path, 64, depth=2)
    assert info["random_teacher"] is False and info["teacher_ckpt"] == str(path)
    for k, v in source.state_dict().items():
        assert torch.equal(teacher.state_dict()[k], v), k
    assert not teacher.training


def test_missing_teacher_file_and_implicit_random_teacher_are_errors(tmp_path):
    missing = tmp_path / "no_such_teacher.pth"
    with pytest.raises(FileNotFoundError, match="no_such_teacher.pth"):
        build_teacher("vit_tiny", missing, 64, depth=1)
    with pytest.raises(ValueError, match="teacher checkpoint"):
        build_teacher("vit_tiny", None, 64, depth=1)
    _, info = build_teacher("vit_tiny", None, 64, allow_random=True, depth=1)
    assert info["random_teacher"] is True
    _, info = build_teacher("vit_tiny", "random", 64, depth=1)
    assert info["random_teacher"] is True


def test_teacher_weights_stored_in_bf16_give_exactly_the_autocast_result():
    torch.manual_seed(0)
    teacher = _teacher(depth=2)
    plain = AttentionDistillation(teacher, 12, teacher_block=1)
    imgs = torch.randn(2, 3, 64, 64)
    ids_keep = torch.argsort(torch.rand(2, 16), dim=1)[:, :4]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain.teacher_logits(imgs, ids_keep)
    stored = AttentionDistillation(_teacher(depth=2), 12, teacher_block=1)
    stored.teacher.load_state_dict(teacher.state_dict())
    stored.store_teacher_matmul_weights(torch.bfloat16)
    assert stored.teacher.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert stored.teacher.blocks[0].norm1.weight.dtype == torch.float32
    assert torch.equal(stored.teacher_logits(imgs, ids_keep), expected)  # runs under autocast by itself


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler")
def test_compiled_teacher_gives_the_eager_logits():
    """The frozen, compiled teacher returns the eager teacher's logits (fp32; bf16 to bf16
    rounding), stays out of state dicts, and is rebuilt after a dtype change."""
    torch.manual_seed(0)
    teacher = _teacher(depth=2)
    eager = AttentionDistillation(teacher, 12, teacher_block=1)
    compiled = AttentionDistillation(teacher, 12, teacher_block=1, compile_teacher=True)
    imgs = torch.randn(2, 3, 64, 64)
    for seed in (1, 2):  # a second mask runs the cached graph
        ids_keep = torch.argsort(torch.rand(2, 16, generator=torch.Generator().manual_seed(seed)), dim=1)[:, :4]
        torch.testing.assert_close(compiled.teacher_logits(imgs, ids_keep), eager.teacher_logits(imgs, ids_keep),
                                   rtol=1e-5, atol=1e-5)
    assert compiled._compiled_teacher is not None and compiled.compile_teacher
    assert not any("compiled" in k for k in compiled.state_dict())
    compiled.store_teacher_matmul_weights(torch.bfloat16)
    eager.store_teacher_matmul_weights(torch.bfloat16)
    assert compiled._compiled_teacher is None  # dtype changed: built again at the next call
    expected = eager.teacher_logits(imgs, ids_keep).float()
    torch.testing.assert_close(compiled.teacher_logits(imgs, ids_keep).float(), expected,
                               rtol=0.02, atol=0.02 * expected.abs().max().item())


def test_teacher_falls_back_to_eager_when_compiling_fails(monkeypatch):
    torch.manual_seed(0)
    distill = AttentionDistillation(_teacher(depth=2), 12, teacher_block=1, compile_teacher=True)
    imgs, ids_keep = torch.randn(2, 3, 64, 64), torch.argsort(torch.rand(2, 16), dim=1)[:, :4]

    def broken_compile(module, **kwargs):
        def run(*args):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        logits = distill.teacher_logits(imgs, ids_keep)
    assert not distill.compile_teacher
    torch.testing.assert_close(logits, distill._teacher_logits(imgs, ids_keep))


# ------------------------------------------------- the pre-training speed benchmark (benchmarks/pretrain_speed.py)
def _breakdown_checks(parts: dict, attention_layers: int) -> None:
    ops = parts["ops"]
    assert 0 < parts["matmul_ms"] < parts["total_ms"] and parts["attention_ms"] > 0
    assert ops["aten::addmm"]["part"] == "matmul" and ops["aten::mm"]["calls"] > 0  # forward and backward
    explicit_attention = ("aten::bmm", "aten::_softmax", "aten::_softmax_backward_data")
    assert {ops[op]["part"] for op in explicit_attention} == {"attention"}
    assert parts["attention_ms"] == pytest.approx(sum(o["ms"] for o in ops.values() if o["part"] == "attention"))
    # one explicit softmax per attention layer and step, forward and backward; no fused kernel
    assert ops["aten::_softmax"]["calls"] == ops["aten::_softmax_backward_data"]["calls"] == attention_layers
    assert not any("scaled_dot_product" in op for op in ops)


def test_step_breakdown_classifies_the_ops_of_our_step_and_maelites_alike():
    """MAE-Tiny on CPU: 12 encoder + 1 decoder attention layers, each an explicit softmax in both
    implementations, counted under attention; the linear layers' products under matmul."""
    from benchmarks.peers import load_peers
    from benchmarks.pretrain_speed import Stepper, build_maelite, build_ours, step_breakdown

    torch.manual_seed(0)
    ours = Stepper(*build_ours("mae_vit_tiny", img_size=32), batch=2, img_size=32, dtype="fp32")
    _breakdown_checks(step_breakdown(ours, steps=1), attention_layers=13)
    peers = load_peers()
    if peers is not None:
        theirs = Stepper(*build_maelite(peers, "mae_vit_tiny", batch=1), batch=1, img_size=224, dtype="fp32")
        _breakdown_checks(step_breakdown(theirs, steps=1), attention_layers=13)


def test_bf16_rows_need_native_bf16(monkeypatch):
    from engine import bf16_unsupported_reason

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert "without avx512_bf16 or amx_bf16" in bf16_unsupported_reason("cpu", frozenset({"avx512f", "avx2"}))
    assert bf16_unsupported_reason("cpu", frozenset({"avx512f", "avx512_bf16"})) is None
    assert bf16_unsupported_reason("cpu", frozenset({"avx2", "amx_bf16", "amx_tile"})) is None
    assert "unknown" in bf16_unsupported_reason("cpu", frozenset())
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert "restricted to AVX2" in bf16_unsupported_reason("cpu", frozenset({"avx512f", "avx512_bf16"}))


def test_benchmark_without_peers_reports_ours_and_says_why(monkeypatch, tmp_path):
    """No peers' code: our row alone, the reason, the figures measured with MAE-Lite's code
    elsewhere; a bf16 row on a CPU without native bf16 is skipped with its reason."""
    from benchmarks import pretrain_speed

    monkeypatch.setenv("LITEVIT_SHARED", str(tmp_path))
    monkeypatch.setattr(pretrain_speed, "bf16_unsupported_reason", lambda device: "no native bf16 here")
    data = pretrain_speed.run(models=("mae_vit_tiny",), batch=2, steps=1, warmup=0)
    fp32, bf16 = data["rows"]
    assert fp32["ours"]["img_per_s"] > 0 and "maelite" not in fp32 and "ratio" not in fp32
    assert bf16 == {"model": "mae_vit_tiny", "dtype": "bf16", "skipped": "no native bf16 here"}
    assert str(tmp_path) in data["peers_missing"]
    text = pretrain_speed.markdown(data)
    assert "skipped: no native bf16 here" in text and str(tmp_path) in text and "7,454 fp32 (TF32)" in text
