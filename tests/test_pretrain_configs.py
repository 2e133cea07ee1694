"""The recipe configs say what the published recipes say, and the full-size models they build fit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from pretrain import list_pretrain_models
from pretrain.tasks import build_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
RECIPES = sorted(p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)


def load(name: str) -> dict:
    return Config.fromfile(str(CONFIGS / name)).to_dict()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_parses_with_a_known_task(path):
    cfg = Config.fromfile(str(path)).to_dict()
    assert cfg["task"] in ("pretrain", "finetune", "linprobe")
    assert cfg["data"]["batch_size"] > 0 and cfg["schedule"]["epochs"] > 0


@pytest.mark.parametrize("name", ["mae_vit_tiny_400e_in1k.py", "dmae_vit_tiny_400e_in1k.py",
                                  "d2mae_vit_tiny_400e_in1k.py", "mae_hiera_tiny_400e_in1k.py",
                                  "dmae_hiera_tiny_400e_in1k.py"])
def test_pretraining_recipes_follow_mae_lite(name):
    cfg = load(name)
    assert cfg["schedule"] == {"epochs": 400, "warmup_epochs": 40, "min_lr": 0.0}
    optim = cfg["optim"]
    assert (optim["opt"], optim["base_lr"], optim["weight_decay"], tuple(optim["betas"]), optim["total_batch"]) == \
        ("adamw", 1.5e-4, 0.05, (0.9, 0.95), 4096)
    aug = cfg["data"]["aug"]
    assert (tuple(aug["scale"]), tuple(aug["ratio"]), aug["hflip"]) == ((0.08, 1.0), (0.75, 4 / 3), 0.5)
    model = cfg["model"]
    assert model["name"] in list_pretrain_models()
    assert model["norm_pix_loss"] and model["decoder_embed_dim"] == 96 and model["decoder_depth"] == 1
    assert model["decoder_num_heads"] == 3
    if "hiera" in name:
        assert model["mask_ratio"] == 0.4 and model["q_pool"] == 2
    else:
        assert model["mask_ratio"] == 0.75
    distill = cfg.get("distill")
    if name.startswith("dmae_vit"):
        assert (distill["teacher_arch"], distill["student_block"], distill["teacher_block"], distill["weight"]) == \
            ("vit_base", 11, 11, 1.0)
    elif name.startswith("d2mae"):
        assert model["name"] == "d2mae_vit_tiny" and model["decode_idx"] == 8 and model["logits_block"]
        assert (distill["student_block"], distill["teacher_block"]) == (12, 11)
    elif name.startswith("dmae_hiera"):
        assert (distill["teacher_arch"], distill["student_block"], distill["teacher_block"]) == ("hiera_base", 11, 23)
    else:
        assert distill is None


@pytest.mark.parametrize("path", sorted((CONFIGS / "demo").glob("*.py")), ids=lambda p: p.name)
def test_demo_configs_build_their_task(path):
    """Each demo config builds (random teacher allowed there); pre-training names a registered
    model whose encoder is the backbone the export will write."""
    cfg = Config.fromfile(str(path)).to_dict()
    task, info = build_task(cfg)
    if cfg["task"] == "pretrain":
        assert info["model"] == cfg["model"]["name"]
        assert info["arch"] == task.student.arch == ("hiera_tiny" if "hiera" in path.name else "vit_tiny")
        assert info["random_teacher"] is bool(cfg.get("distill"))
    else:
        assert info["arch"] == cfg["model"]["arch"]


def test_finetune_and_probe_recipes():
    ft = load("finetune_vit_tiny_300e_in1k.py")
    assert ft["schedule"] == {"epochs": 300, "warmup_epochs": 5, "min_lr": 1e-6}
    assert ft["optim"]["layer_decay"] == 0.85 and ft["optim"]["base_lr"] == 1e-3 and ft["optim"]["total_batch"] == 1024
    assert ft["mixup"] == {"mixup_alpha": 0.2, "cutmix_alpha": 0.0, "label_smoothing": 0.0}
    assert ft["data"]["aug"] == {"auto_augment": "rand-m10-mstd0.5", "color_jitter": 0.3, "re_prob": 0.0,
                                 "interpolation": "bicubic"}
    assert ft["model"]["global_pool"] == "avg" and ft["model"]["drop_path_rate"] == 0.0
    rpe = load("finetune_vit_tiny_rpe_1000e_in1k.py")
    assert rpe["model"]["arch"] == "vit_tiny_rpe" and rpe["schedule"]["epochs"] == 1000
    assert rpe["optim"] == ft["optim"]
    lp = load("linprobe_vit_tiny_90e_in1k.py")
    assert lp["task"] == "linprobe" and lp["optim"]["weight_decay"] == 0.0 and lp["schedule"]["epochs"] == 90


@pytest.mark.slow
@pytest.mark.parametrize("name, logits_shape", [
    ("dmae_vit_tiny_400e_in1k.py", (1, 12, 50, 50)),
    ("d2mae_vit_tiny_400e_in1k.py", (1, 12, 50, 50)),
    ("dmae_hiera_tiny_400e_in1k.py", (1, 8, 116, 116)),
])
def test_full_size_distillation_shapes(name, logits_shape):
    cfg = load(name)
    cfg["distill"]["teacher_ckpt"] = "random"
    task, info = build_task(cfg)
    assert info["random_teacher"] is True
    imgs = torch.randn(1, 3, 224, 224)
    student = task.student
    out = student(imgs, logits_from=(task.student_block,))
    logits = out.encoding.attn_logits[task.student_block]
    assert logits.shape == logits_shape
    keep = out.encoding.ids_keep if hasattr(out.encoding, "ids_keep") else out.encoding.keep
    assert task.distill.teacher_logits(imgs, keep).shape == logits_shape
    terms = task(imgs)
    assert torch.isfinite(terms["loss"]) and set(terms) == {"loss", "loss_mae", "loss_attn"}
