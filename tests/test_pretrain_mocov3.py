"""MoCo-v3 pre-training (``pretrain/mocov3.py``): the loss by hand, the momentum schedule, the
fast forward against the plain one, one update against MAE-Lite's own code, two gloo ranks
against one process, the view pair against MAE-Lite's, and the demo recipe end to end through
``tools/pretrain.py`` (export, exact resumption, bad input).

Run as a script under torchrun, this file is the 2-rank worker of the distributed test.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # as a torchrun script

from backbones import build_backbone, load_pretrained, read_checkpoint  # noqa: E402
from benchmarks.demo_data.imagenet import make_imagenet_folder  # noqa: E402
from benchmarks.peers import load_peers, unavailable_reason  # noqa: E402
from engine import CrossRankBatchNorm, close_distributed, init_distributed, sync_batchnorm, wrap_ddp  # noqa: E402
from pretrain.data import mocov3_train_transform  # noqa: E402
from pretrain.engine import build_optimizer, read_log  # noqa: E402
from pretrain import mocov3  # noqa: E402
from pretrain.mocov3 import MoCoTask, MoCoV3, contrastive_loss, momentum_at, mocov3_vit_tiny  # noqa: E402
from conftest import load_tool, torchrun  # noqa: E402

DEMO = REPO / "configs" / "pretrain" / "demo" / "mocov3_vit_tiny_demo.py"
RECIPE = REPO / "configs" / "pretrain" / "mocov3_vit_tiny_400e_in1k.py"
TINY = dict(img_size=32, depth=2, dim=16, mlp_dim=64)  # 4 patches of 16 px


def _tiny_task(batch: int, seed: int = 0) -> MoCoTask:
    torch.manual_seed(seed)
    return MoCoTask(mocov3_vit_tiny(**TINY), batch).train()


def _views(batch: int, seed: int = 1, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 2, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _perturb_(module: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    """Noise on every parameter but the fixed position table, so no bias or norm sits at 0 / 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "pos_embed" not in name:
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


# ------------------------------------------------------------------------------ the loss by hand
def test_momentum_schedule_at_known_steps():
    assert momentum_at(0, 100) == pytest.approx(0.99, abs=1e-15)
    assert momentum_at(50, 100) == pytest.approx(0.995, abs=1e-15)  # cos(pi/2) = 0: half way to 1
    assert momentum_at(100, 100) == pytest.approx(1.0, abs=1e-15)
    assert momentum_at(25, 100) == pytest.approx(1 - 0.01 * (1 + math.sqrt(0.5)) / 2, abs=1e-15)
    assert momentum_at(10, 40, base=0.9) == pytest.approx(1 - 0.1 * (1 + math.cos(math.pi / 4)) / 2, abs=1e-15)
    steps = [momentum_at(t, 37) for t in range(38)]
    assert all(a < b for a, b in zip(steps, steps[1:]))
    with pytest.raises(ValueError, match="total=0"):
        momentum_at(0, 0)


def test_before_update_moves_the_momentum_encoder_by_that_updates_momentum():
    task = _tiny_task(4)
    model = task.student
    _perturb_(model.encoder, 1)
    _perturb_(model.projector, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task.before_update(7, 20)
    m = momentum_at(7, 20)
    assert task.momentum == m and task.log_fields() == {"momentum": m}
    after = model.state_dict()
    for part in ("encoder", "projector"):
        for key in getattr(model, part).state_dict():
            base, old, new = before[f"{part}.{key}"], before[f"momentum_{part}.{key}"], after[f"momentum_{part}.{key}"]
            if "running" in key or "num_batches" in key:
                assert torch.equal(new, old), key  # batch-norm statistics are not averaged
            else:
                torch.testing.assert_close(new, m * old + (1 - m) * base, rtol=1e-6, atol=1e-7,
                                           msg=lambda text, key=key: f"{key}: {text}")
                assert torch.equal(after[f"{part}.{key}"], base)  # the base encoder is untouched


def test_contrastive_loss_against_a_hand_computation():
    T = 0.2
    # queries of any length are normalised: q = (3, 0) and (0, 2) point along the keys (1, 0), (0, 1)
    q = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    # each row: logits (1/T, 0) with label the diagonal: -log(e^(1/T) / (e^(1/T) + 1)) = log(1 + e^(-1/T))
    expected = 2 * T * math.log(1 + math.exp(-1 / T))
    assert contrastive_loss(q, k, T).item() == pytest.approx(expected, rel=1e-6)
    # keys swapped: the positive is orthogonal to its query, the negative aligned
    assert contrastive_loss(q, k.flip(0), T).item() == pytest.approx(2 * T * math.log(1 + math.exp(1 / T)), rel=1e-6)
    # three samples at 0, 90 and 180 degrees, temperature 1: cosines [[1, 0, -1], [0, 1, 0], [-1, 0, 1]]
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    e = math.e
    rows = [-1 + math.log(e + 1 + 1 / e), -1 + math.log(1 + e + 1), -1 + math.log(1 / e + 1 + e)]
    assert contrastive_loss(unit, unit, 1.0).item() == pytest.approx(2 * sum(rows) / 3, rel=1e-6)


def test_one_view_pair_loss_is_the_sum_of_both_directions():
    task = _tiny_task(4)
    _perturb_(task.student, 3)
    x = _views(4)
    out = task.student(x[:, 0], x[:, 1])
    q1, q2 = out.q.chunk(2)
    k1, k2 = out.k.chunk(2)
    T = task.student.temperature
    torch.testing.assert_close(out.loss, contrastive_loss(q1, k2, T) + contrastive_loss(q2, k1, T))
    assert out.k.grad_fn is None and out.q.grad_fn is not None  # keys without autograd


@pytest.mark.parametrize("chunk", [16, 3])
def test_the_fast_forward_equals_each_view_through_the_plain_backbone_and_heads(monkeypatch, chunk):
    """Both views as one batch with per-view batch-norm statistics, the encoders in calls of at
    most ``CPU_ENCODER_CHUNK`` images, the last block for the class token only: the same queries,
    keys and running statistics as each view through the backbone's own ``forward`` and the heads
    called once per view (float64: batch norm over 5 samples would amplify float32 rounding past
    any tight tolerance)."""
    monkeypatch.setattr(mocov3, "CPU_ENCODER_CHUNK", chunk)
    task = _tiny_task(5).double()
    model = task.student
    _perturb_(model, 4)
    model.update_momentum_encoder(0.5)  # a momentum encoder unlike the base
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    x = _views(5, dtype=torch.float64)
    out = model(x[:, 0], x[:, 1])
    fast_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(plain)

    def plain_head(head: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        for layer in head:
            z = layer(z)
        return z

    q = torch.cat([plain_head(model.predictor, plain_head(model.projector, model.encoder(v))) for v in x.unbind(1)])
    with torch.no_grad():
        k = torch.cat([plain_head(model.momentum_projector, model.momentum_encoder(v)) for v in x.unbind(1)])
    torch.testing.assert_close(out.q, q, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.k, k, rtol=1e-10, atol=1e-12)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fast_state[key], value, rtol=1e-10, atol=1e-12,
                                   msg=lambda text, key=key: f"{key}: {text}")


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_long_sequences_train_with_fused_attention_in_float32(monkeypatch, autocast):
    """CPU training at 145 tokens (>= FUSED_MIN_TOKENS): every full block runs the fused kernel, on
    float32 inputs also under bf16 autocast, and the features equal the explicit softmax's."""
    torch.manual_seed(0)
    model = mocov3_vit_tiny(img_size=192, depth=2, dim=16, mlp_dim=64).train()
    _perturb_(model, 6)
    imgs = torch.randn(2, 3, 192, 192)
    seen = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, *a, **k: seen.append(q.dtype) or sdpa(q, *a, **k))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        fused = model.forward_encoder(model.encoder, imgs)
        assert seen == [torch.float32]  # block 0 fused; the last block runs for the class token only
        x, grid = model.encoder.embed(imgs)
        x = model.encoder.blocks[0](x, grid, return_logits=True)[0]
        x = model.encoder.blocks[1](x, grid, return_logits=True)[0]
        explicit = model.encoder.norm(x)[:, 0]
    tolerance = dict(rtol=0.05, atol=0.05) if autocast else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.float(), explicit.float(), **tolerance)


def test_registered_models_and_recipe_settings():
    torch.manual_seed(0)
    model = mocov3_vit_tiny()
    assert [tuple(m.weight.shape) for m in model.projector if isinstance(m, torch.nn.Linear)] == \
        [(4096, 192), (4096, 4096), (256, 4096)]
    assert [tuple(m.weight.shape) for m in model.predictor if isinstance(m, torch.nn.Linear)] == \
        [(4096, 256), (256, 4096)]
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features >= 256
               and m not in set(model.encoder.modules()) | set(model.momentum_encoder.modules()))
    assert not model.projector[-1].affine and not model.predictor[-1].affine
    assert model.temperature == 0.2 and model.base_momentum == 0.99
    assert not model.encoder.pos_embed.requires_grad and model.encoder.patch_embed.proj.weight.requires_grad
    assert torch.equal(model.encoder.pos_embed[0, 0], torch.zeros(192))  # zero class position
    assert not any(p.requires_grad for p in [*model.momentum_encoder.parameters(),
                                             *model.momentum_projector.parameters()])
    assert model.encoder.cls_token.std() < 1e-5  # MoCo-v3's N(0, 1e-6) class token
    with pytest.raises(TypeError, match="hiera_tiny"):
        MoCoV3("hiera_tiny")


# ------------------------------------------------------------------------------ MAE-Lite's own code
peers = load_peers()
needs_peers = pytest.mark.skipif(peers is None, reason=str(unavailable_reason()))


def test_recipe_says_what_the_published_recipe_says():
    from mmengine.config import Config

    cfg = Config.fromfile(str(RECIPE)).to_dict()
    assert cfg["model"] == {"name": "mocov3_vit_tiny", "img_size": 224, "dim": 256, "mlp_dim": 4096,
                            "temperature": 0.2, "momentum": 0.99}
    assert cfg["optim"] == {"opt": "adamw", "base_lr": 1.5e-4, "weight_decay": 0.1, "betas": (0.9, 0.999),
                            "filter_bias_and_bn": False, "total_batch": 1024}
    assert cfg["runtime"]["clip_grad"] is None
    assert cfg["schedule"] == {"epochs": 400, "warmup_epochs": 40, "warmup_lr": 1e-6, "min_lr": 0.0}
    assert cfg["data"]["transform"] == "mocov3" and cfg["task"] == "pretrain"
    if peers is None:
        return
    peers._maelite_path()
    sys.path.insert(0, str(Path(peers.HERE) / "maelite" / "projects" / "mocov3"))
    try:
        import mocov3_exp
    finally:
        sys.path.pop(0)
    exp = mocov3_exp.Exp(1024, 400)
    assert (exp.moco_dim, exp.moco_mlp_dim, exp.moco_t, exp.moco_m, exp.encoder_arch, exp.image_size) == \
        (256, 4096, 0.2, 0.99, "vit_tiny", 224)
    assert (exp.opt, exp.weight_decay, exp.basic_lr_per_img * 256, exp.scheduler, exp.warmup_epochs, exp.warmup_lr,
            exp.max_epoch, exp.stop_grad_conv1, exp.transform) == \
        ("AdamW", 0.1, pytest.approx(1.5e-4), "warmcos", 40, 1e-6, 400, False, "ssl_transform")


@needs_peers
def test_learning_rate_schedule_is_maelites(tmp_path):
    """The trainer's per-update lr for the recipe's schedule (3 updates an epoch here) equals
    MAE-Lite's ``warmcos`` with the same steps, warm-up from 1e-6 and peak lr."""
    from mmengine.config import Config

    from pretrain.engine import Trainer

    peers._maelite_path()
    from mae_lite.layers.lr_scheduler import _WarmCosineScheduler

    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=12, size=40, seed=0)
    cfg = Config.fromfile(str(RECIPE))
    cfg.merge_from_dict({"data.root": str(data), "data.batch_size": 8, "data.num_workers": 0,
                         "work_dir": str(tmp_path), "optim.total_batch": None, "runtime.device": "cpu",
                         **{f"model.{k}": v for k, v in TINY.items()}})
    trainer = Trainer(cfg.to_dict())
    total, warmup = trainer.total_updates, 40 * 3
    assert total == 400 * 3 and trainer.lr == pytest.approx(1.5e-4 * 8 / 256)
    theirs = _WarmCosineScheduler(trainer.lr, total, warmup_steps=warmup, warmup_lr_start=1e-6)
    for update in (0, 1, 60, warmup - 1, warmup, warmup + 1, 700, total - 1):
        trainer.scheduler.step_update(update)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(theirs(update), rel=1e-9, abs=1e-15), update


def _to_ours(key: str) -> str:
    """MAE-Lite's MoCo keys -> ours: the projector is their encoders' ``head``."""
    for theirs, ours in (("base_encoder.head.", "projector."), ("momentum_encoder.head.", "momentum_projector."),
                         ("base_encoder.", "encoder.")):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


@needs_peers
def test_one_update_equals_maelites():
    """Same weights (perturbed, momentum encoder unlike the base), same two views, the momentum of
    update 3 of 10, float64 on both sides: the loss, the momentum encoder after its update, the
    gradients, and the base encoder after one AdamW step with the recipe's optimizer settings
    (ours: ``pretrain.engine.build_optimizer``; theirs: torch's AdamW over ``model.parameters()``
    with weight decay 0.1, as ``mocov3_exp.py``)."""
    from mmengine.config import Config

    torch.manual_seed(0)
    dtype, total, step, lr = torch.float64, 10, 3, 1e-3
    theirs = peers.maelite_mocov3_tiny(total_iters=total).to(dtype).train()
    _perturb_(theirs, 1)
    _perturb_(theirs.momentum_encoder, 2)
    theirs.set_current_state(step)
    ours = mocov3_vit_tiny().to(dtype)
    ours.load_state_dict({_to_ours(k): v for k, v in theirs.state_dict().items()})
    task = MoCoTask(ours, 3).train()
    x = _views(3, size=224, dtype=dtype)

    with peers.single_process():
        loss_t, logged = theirs([x[:, 0], x[:, 1]])
    task.before_update(step, total)
    loss = task(x)["loss"]
    assert task.momentum == pytest.approx(logged["momentum"], abs=1e-15)
    torch.testing.assert_close(loss, loss_t, rtol=1e-10, atol=0)
    state_t = {_to_ours(k): v for k, v in theirs.state_dict().items()}
    for key, value in ours.state_dict().items():  # momentum encoder moved, running statistics updated alike
        torch.testing.assert_close(value, state_t[key], rtol=1e-10, atol=1e-12,
                                   msg=lambda text, key=key: f"{key}: {text}")

    recipe = Config.fromfile(str(RECIPE))
    optimizer = build_optimizer(task, recipe.optim, lr)
    optimizer_t = torch.optim.AdamW(theirs.parameters(), lr=lr, weight_decay=0.1)
    assert optimizer.defaults["betas"] == optimizer_t.defaults["betas"] == (0.9, 0.999)
    loss_t.backward()
    loss.backward()
    grads_t = {_to_ours(k): p.grad for k, p in theirs.named_parameters() if p.grad is not None}
    grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    assert grads.keys() == grads_t.keys()
    for key in grads:
        torch.testing.assert_close(grads[key], grads_t[key], rtol=1e-7, atol=1e-10,
                                   msg=lambda text, key=key: f"{key}: {text}")
    before = ours.encoder.blocks[0].attn.qkv.weight.detach().clone()
    optimizer.step()
    optimizer_t.step()
    assert (ours.encoder.blocks[0].attn.qkv.weight - before).abs().max() > 0.5 * lr  # the step moved it
    state_t = {_to_ours(k): v for k, v in theirs.state_dict().items()}
    for key, value in ours.state_dict().items():  # Adam moves each weight by about lr: equal to 1e-5 of that
        torch.testing.assert_close(value, state_t[key], rtol=0, atol=1e-5 * lr,
                                   msg=lambda text, key=key: f"{key}: {text}")


@needs_peers
def test_view_pair_is_maelites():
    """Our pair of views has MAE-Lite's steps, parameters and probabilities, and torchvision's
    Gaussian kernel blurs as PIL's filter does (mean difference under 1.5 grey levels on noise)."""
    from PIL import Image, ImageFilter
    from torchvision import transforms as T
    from torchvision.transforms import functional as TF

    peers._maelite_path()
    from mae_lite.data.transforms import ssl_transform

    def steps(compose: T.Compose) -> list[tuple]:
        out = []
        for t in compose.transforms:
            p = 1.0
            if isinstance(t, T.RandomApply):
                p, t = t.p, t.transforms[0]
            name = type(t).__name__
            if name == "ToRGB":
                continue
            if isinstance(t, T.RandomResizedCrop):
                out.append(("crop", t.size, t.scale, t.ratio, t.interpolation))
            elif isinstance(t, T.ColorJitter):
                out.append(("jitter", p, t.brightness, t.contrast, t.saturation, t.hue))
            elif name == "GaussianBlur":
                out.append(("blur", p, tuple(t.sigma)))
            elif isinstance(t, T.RandomSolarize):
                out.append(("solarize", t.p, t.threshold))
            elif name == "Solarization":
                out.append(("solarize", p, 128))  # PIL's ImageOps.solarize default
            elif isinstance(t, (T.RandomGrayscale, T.RandomHorizontalFlip)):
                out.append((name, t.p))
            elif isinstance(t, T.Normalize):
                out.append(("normalize", tuple(t.mean), tuple(t.std)))
            else:
                out.append((name,))
        return out

    ours = mocov3_train_transform(224)
    for mine, theirs in zip((ours.first, ours.second), ssl_transform(224)):
        assert steps(mine) == steps(theirs)
    noise = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    for sigma in (0.5, 1.0, 2.0):
        pil = np.asarray(noise.filter(ImageFilter.GaussianBlur(radius=sigma)), dtype=float)
        tv = np.asarray(TF.gaussian_blur(noise, 23, sigma), dtype=float)
        assert np.abs(pil - tv).mean() < 1.5 < np.abs(pil - np.asarray(noise, dtype=float)).mean()


def test_view_pair_is_seeded_and_two_different_views():
    from pretrain.data import seeded_random_state
    from PIL import Image

    img = Image.fromarray((np.random.default_rng(1).random((48, 40, 3)) * 255).astype(np.uint8))
    pair = mocov3_train_transform(32)
    with seeded_random_state(5):
        a = pair(img)
    with seeded_random_state(5):
        b = pair(img)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


# ------------------------------------------------------------------------------ two gloo ranks
def _rank_batch(x: torch.Tensor, rank: int, sizes: tuple[int, ...]) -> torch.Tensor:
    start = sum(sizes[:rank])
    return x[start:start + sizes[rank]]


def _ddp_worker(work: Path) -> None:
    """torchrun worker: the tiny model on this rank's share of a fixed batch, heads' batch norms
    over both ranks (``engine.sync_batchnorm`` -> CrossRankBatchNorm on CPU), DDP gradients.
    (1) halves of 6: loss averaged over ranks, gradients, running statistics; (2) 3 + 2 images
    (capacity 3, a rank that lost an image): this rank's loss. Float64, as the single process it
    is compared with: batch norm over 3 samples amplifies float32 rounding."""
    info = init_distributed("cpu")
    try:
        assert info.world_size == 2
        x = _views(6, dtype=torch.float64)
        task = _tiny_task(3).double()
        _perturb_(task.student, 5)
        sync_batchnorm(task, info)
        assert isinstance(task.student.projector[1], CrossRankBatchNorm)
        model = wrap_ddp(task, info)
        task.before_update(2, 10)
        loss = model(_rank_batch(x, info.rank, (3, 3)))["loss"]
        loss.backward()
        mean = loss.detach().clone()
        torch.distributed.all_reduce(mean)
        result = {"loss": mean / 2, "grads": {k: p.grad for k, p in task.named_parameters() if p.grad is not None},
                  "state": task.state_dict()}
        uneven = _tiny_task(3).double()
        _perturb_(uneven.student, 5)
        sync_batchnorm(uneven, info)
        with torch.no_grad():
            result["uneven_loss"] = uneven(_rank_batch(x, info.rank, (3, 2)))["loss"]
        torch.save(result, work / f"rank{info.rank}.pt")
    finally:
        close_distributed()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("moco_ddp")
    torchrun(__file__, work, OMP_NUM_THREADS="1")
    return work


def test_two_gloo_ranks_with_half_the_batch_each_equal_one_process_with_all(two_rank_run):
    ranks = [torch.load(two_rank_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    x = _views(6, dtype=torch.float64)
    task = _tiny_task(6).double()
    _perturb_(task.student, 5)
    task.before_update(2, 10)
    loss = task(x)["loss"]
    loss.backward()
    for rank in ranks:
        torch.testing.assert_close(rank["loss"], loss.detach(), rtol=1e-10, atol=0)
        for key, p in task.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(rank["grads"][key], p.grad, rtol=1e-8, atol=1e-10,
                                           msg=lambda text, key=key: f"{key}: {text}")
        for key, value in task.state_dict().items():  # momentum encoder, global running statistics
            torch.testing.assert_close(rank["state"][key], value, rtol=1e-10, atol=1e-12,
                                       msg=lambda text, key=key: f"{key}: {text}")
    assert ranks[0]["grads"].keys() == {k for k, p in task.named_parameters() if p.grad is not None}


def test_a_rank_with_fewer_images_keeps_every_key_in_place(two_rank_run):
    """Rank 0 holds images 0-2, rank 1 images 3-4 (one lost): each rank's loss is the mean, over
    its own queries, of the per-query losses one process computes on the 5 images."""
    ranks = [torch.load(two_rank_run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    task = _tiny_task(5).double()
    _perturb_(task.student, 5)
    x = _views(6, dtype=torch.float64)[:5]
    with torch.no_grad():
        out = task.student(x[:, 0], x[:, 1])
    T = task.student.temperature
    q1, q2 = (F.normalize(q, dim=1) for q in out.q.chunk(2))
    k1, k2 = (F.normalize(k, dim=1) for k in out.k.chunk(2))
    labels = torch.arange(5)
    per_query = (F.cross_entropy(q1 @ k2.t() / T, labels, reduction="none")
                 + F.cross_entropy(q2 @ k1.t() / T, labels, reduction="none")) * 2 * T
    torch.testing.assert_close(ranks[0]["uneven_loss"], per_query[:3].mean(), rtol=1e-10, atol=0)
    torch.testing.assert_close(ranks[1]["uneven_loss"], per_query[3:].mean(), rtol=1e-10, atol=0)


# ------------------------------------------------------------------------------ the recipe end to end
def test_demo_runs_exports_and_resumes_exactly(tmp_path):
    """tools/pretrain.py on the demo config: 2 epochs of 3 updates uninterrupted, and stopped after
    4 then resumed: the same weights (momentum encoder and running statistics included), optimizer
    state, losses and momenta; the export is a plain vit_tiny computing the base encoder's features."""
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=12, size=72, seed=0)  # 24 images: 3 batches of 8
    tool = load_tool("pretrain")
    options = ["runtime.progress_bar=False", "runtime.deterministic=True", "runtime.device=cpu",
               "model.drop_path_rate=0.1", "optim.base_lr=0.05", "schedule.warmup_epochs=1"]

    def argv(work: Path, *extra: str) -> list[str]:
        return [str(DEMO), "--data", str(data), "--work-dir", str(work), *extra, "--cfg-options", *options]

    full = tool.main(argv(tmp_path / "full"))
    assert full["finished"] and full["update"] == 6 and full["export"]
    stopped = tool.main(argv(tmp_path / "split") + ["runtime.max_updates=4"])
    assert not stopped["finished"] and stopped["update"] == 4 and not (tmp_path / "split" / "backbone.pth").exists()
    resumed = tool.main(argv(tmp_path / "split", "--resume"))
    assert resumed["finished"] and resumed["update"] == 6

    a, b = read_checkpoint(tmp_path / "full" / "latest.pth"), read_checkpoint(tmp_path / "split" / "latest.pth")
    assert a["model"].keys() == b["model"].keys()
    assert any(k.startswith("student.momentum_encoder.") for k in a["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    records = {name: [r for r in read_log(tmp_path / name / "log.jsonl") if r["event"] == "train"]
               for name in ("full", "split")}
    assert [(r["update"], r["loss"], r["momentum"]) for r in records["full"]] == \
        [(r["update"], r["loss"], r["momentum"]) for r in records["split"]]
    assert [r["momentum"] for r in records["full"]] == pytest.approx([momentum_at(t, 6) for t in range(6)])
    start = read_log(tmp_path / "full" / "log.jsonl")[0]
    assert start["model"] == "mocov3_vit_tiny" and start["arch"] == "vit_tiny"

    export = read_checkpoint(tmp_path / "full" / "backbone.pth")
    assert export["meta"]["arch"] == "vit_tiny" and export["meta"]["pretrain_model"] == "mocov3_vit_tiny"
    vit = build_backbone("vit_tiny", num_classes=0, img_size=64, depth=2)
    result = load_pretrained(vit, tmp_path / "full" / "backbone.pth")
    assert not result.missing and not result.unexpected
    moco = mocov3_vit_tiny(img_size=64, depth=2, dim=64, mlp_dim=256)
    moco.load_state_dict({k[len("student."):]: v for k, v in a["model"].items()})
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(vit.eval()(images), moco.encoder.eval()(images))
        assert not torch.allclose(vit(images), moco.momentum_encoder.eval()(images))


def test_one_image_per_process_is_refused_before_anything_is_written(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=4, size=72, seed=0)
    work = tmp_path / "work"
    tool = load_tool("pretrain")
    with pytest.raises(ValueError, match=r"data\.batch_size=1: MoCo-v3 needs at least 2 images per process"):
        tool.main([str(DEMO), "--data", str(data), "--work-dir", str(work), "--cfg-options", "data.batch_size=1",
                   "runtime.progress_bar=False", "runtime.device=cpu"])
    assert not work.exists()


def test_batches_without_negatives_or_without_two_views_are_named():
    task = _tiny_task(4)
    with pytest.raises(ValueError, match=r"batch of 1 image\(s\) has no negatives \(data\.batch_size=4"):
        task(_views(1))
    with pytest.raises(ValueError, match=r"two views .*\[4, 3, 32, 32\].*data\.transform='mocov3'"):
        task(torch.randn(4, 3, 32, 32))


# ------------------------------------------------------------------------------ the speed benchmark
def test_benchmark_step_includes_the_momentum_update_and_splits_out_the_heads():
    """Our MoCo-v3 step in ``benchmarks.pretrain_speed``: two views a sample, the momentum encoder
    moved each step, the heads' 4096-wide products counted within the matrix products; MAE-Lite's
    step (where its code is) profiled the same way; the table says pairs."""
    from benchmarks import pretrain_speed
    from benchmarks.pretrain_speed import Stepper, build_maelite, build_ours, step_breakdown

    torch.manual_seed(0)
    task, loss_fn, optimizer = build_ours("mocov3_vit_tiny", img_size=32)
    ours = Stepper(task, loss_fn, optimizer, batch=2, img_size=32, dtype="fp32", views=2)
    assert ours.images.shape == (2, 2, 3, 32, 32)
    parts = step_breakdown(ours, steps=1, head_width=4096)
    assert task.momentum > 0.99  # the second step's momentum: the schedule moved
    assert 0 < parts["heads_matmul_ms"] < parts["matmul_ms"] and parts["attention_ms"] > 0
    assert parts["ops"]["aten::lerp_"]["part"] == "other"  # the momentum update, one fused op a tensor
    if peers is not None:
        theirs = Stepper(*build_maelite(peers, "mocov3_vit_tiny", batch=2), batch=2, img_size=224, dtype="fp32",
                         views=2)
        parts_t = step_breakdown(theirs, steps=1, warm=False, head_width=4096)
        assert 0 < parts_t["heads_matmul_ms"] < parts_t["matmul_ms"]
        assert any("scaled_dot_product" in op and v["part"] == "attention" for op, v in parts_t["ops"].items())
    ours.step()
    data = {"device": "cpu", "threads": 1, "torch": torch.__version__, "peers_missing": None,
            "rows": [{"model": "mocov3_vit_tiny", "dtype": "fp32", "batch": 2, "views": 2, "load_average": 0.0,
                      "ours": {**ours.result(), "breakdown": parts}}]}
    text = pretrain_speed.markdown(data)
    assert "| mocov3_vit_tiny | fp32 | 2 x 2 views |" in text and "heads' matmuls" in text


def test_benchmark_step_by_parts_is_the_training_step():
    """The benchmark's part-by-part MoCo-v3 step (``mocov3_step_ours`` / ``mocov3_step_maelite``) is
    the step it times whole: from the same start, two steps of each leave every parameter, buffer and
    optimizer state identical, ours and (where its code is) MAE-Lite's; ``mocov3_parts`` books every
    part, and its table lists them."""
    from benchmarks.pretrain_speed import (MOCO_PARTS, Stepper, build_maelite, build_ours, mocov3_parts,
                                           mocov3_step_maelite, mocov3_step_ours, parts_markdown)

    def state(model, optimizer):
        return {**model.state_dict(), **{f"opt.{i}.{k}": v for i, s in enumerate(optimizer.state.values())
                                        for k, v in s.items()}}

    def assert_same(a, b):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key

    built = []
    for _ in range(2):
        torch.manual_seed(0)
        built.append(build_ours("mocov3_vit_tiny", img_size=32))
    (task, loss_fn, optimizer), (task_p, _, optimizer_p) = built
    whole = Stepper(task, loss_fn, optimizer, batch=2, img_size=32, dtype="fp32", views=2)
    assert_same(state(task, optimizer), state(task_p, optimizer_p))
    task_p.train()
    laps = []
    for update in range(2):  # the first update's momentum step is a no-op (both encoders start equal)
        whole.step()
        mocov3_step_ours(task_p, optimizer_p, whole.images, update, lap=laps.append)
    assert laps == 2 * list(MOCO_PARTS)
    assert_same(state(task, optimizer), state(task_p, optimizer_p))
    if peers is not None:
        built = []
        for _ in range(2):
            torch.manual_seed(0)
            built.append(build_maelite(peers, "mocov3_vit_tiny", batch=2))
        (model, loss_fn, optimizer), (model_p, _, optimizer_p) = built
        whole = Stepper(model, loss_fn, optimizer, batch=2, img_size=224, dtype="fp32", views=2)
        model_p.train()
        for _ in range(2):
            whole.step()
            mocov3_step_maelite(peers, model_p, optimizer_p, whole.images)
        assert_same(state(model, optimizer), state(model_p, optimizer_p))
    result = mocov3_parts(batch=2, steps=1, peers=None, img_size=32, cpu_time=True)
    assert all(result["ours"][part] >= 0 for part in MOCO_PARTS) and result["ours"]["encoder forward"] > 0
    assert result["ours"]["total"] == pytest.approx(sum(result["ours"][part] for part in MOCO_PARTS))
    text = parts_markdown(result)
    assert all(f"| {part} |" in text for part in MOCO_PARTS) and "2 pairs of views" in text
    with pytest.raises(ValueError, match="224 px images, got img_size=32"):
        mocov3_parts(batch=2, steps=1, peers=object(), img_size=32)


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))
