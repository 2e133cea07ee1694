"""Transfer and supervised recipes: the configs say what MAE-Lite / DeiT say, the demo runs train end to
end (metrics.json records the data set, subset and seed; the supervised run exports a backbone that
loads), and the published figures match their sources."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from backbones import build_backbone, load_backbone, load_pretrained, read_checkpoint
from benchmarks.demo_data.imagenet import make_imagenet_folder
from benchmarks.demo_data.transfer import make_transfer_set
from benchmarks.published import PUBLISHED, published_markdown, published_rows
from pretrain.datasets import TRANSFER_SETS
from pretrain.engine import read_log, run, with_best

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TRANSFER = REPO / "configs" / "transfer"
PRETRAIN = REPO / "configs" / "pretrain"


def load(path: Path) -> dict:
    return Config.fromfile(str(path)).to_dict()


def lr_at_total_batch(cfg: dict) -> float:
    optim = cfg["optim"]
    return optim["base_lr"] * optim["total_batch"] / optim.get("base_batch", 256)


@pytest.mark.parametrize("name", sorted(TRANSFER_SETS))
def test_transfer_configs_follow_mae_lite(name):
    cfg = load(TRANSFER / f"finetune_vit_tiny_{name}.py")
    assert cfg["task"] == "finetune" and cfg["data"]["dataset"] == name
    assert cfg["model"]["num_classes"] == TRANSFER_SETS[name].num_classes
    model = cfg["model"]
    assert (model["arch"], model["global_pool"], model["drop_path_rate"]) == ("vit_tiny", "avg", 0.0)
    optim = cfg["optim"]
    assert (optim["opt"], optim["momentum"], optim["weight_decay"], optim["layer_decay"], cfg["runtime"]["clip_grad"],
            optim["total_batch"]) == ("sgd", 0.9, 0.0, 0.75, 1.0, 512)
    assert cfg["data"]["aug"] == {"auto_augment": None, "color_jitter": None, "re_prob": 0.0,
                                  "interpolation": "bicubic"}
    assert cfg["mixup"] == {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "label_smoothing": 0.0}
    assert "subset" not in cfg["data"] and cfg["runtime"]["eval_every"] == 10
    schedule = cfg["schedule"]
    if name.startswith("cifar"):  # scripts/transfer.sh
        assert (schedule["epochs"], schedule["warmup_epochs"]) == (50, 10)
        assert lr_at_total_batch(cfg) == pytest.approx(0.1)
    else:  # finetuning_transfer_exp.py's defaults
        assert (schedule["epochs"], schedule["warmup_epochs"]) == (300, 20)
        assert lr_at_total_batch(cfg) == pytest.approx(0.03)
    assert (schedule["warmup_lr"], schedule["min_lr"]) == (0.0, 1e-6)


def test_transfer_linear_probe_and_supervised_configs():
    probe = load(TRANSFER / "linprobe_vit_tiny_cifar100.py")
    assert (probe["task"], probe["data"]["dataset"], probe["model"]["num_classes"]) == ("linprobe", "cifar100", 100)
    assert probe["optim"]["opt"] == "lars" and probe["optim"]["total_batch"] == 512
    sup = load(PRETRAIN / "supervised_vit_tiny_300e_in1k.py")
    assert sup["task"] == "finetune" and sup["export_backbone"] is True and sup["model"]["pretrained"] is None
    assert (sup["model"]["arch"], sup["model"]["drop_path_rate"]) == ("vit_tiny", 0.1)
    assert sup["data"]["aug"]["auto_augment"] == "rand-m9-mstd0.5-inc1"
    assert (sup["data"]["aug"]["re_prob"], sup["data"]["aug"]["re_mode"]) == (0.25, "pixel")
    assert sup["mixup"] == {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "label_smoothing": 0.1}
    assert (sup["optim"]["opt"], sup["optim"]["weight_decay"], sup["optim"]["total_batch"]) == ("adamw", 0.05, 1024)
    assert lr_at_total_batch(sup) == pytest.approx(5e-4 * 1024 / 512)
    assert sup["schedule"] == {"epochs": 300, "warmup_epochs": 5, "warmup_lr": 1e-6, "min_lr": 1e-5}
    assert "layer_decay" not in sup["optim"]


def test_sgd_is_nesterov_as_mae_lite():
    from timm.optim import create_optimizer_v2

    opt = create_optimizer_v2(torch.nn.Linear(2, 2), opt="sgd", lr=0.1, momentum=0.9, weight_decay=0.0)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_demo_transfer_finetune_on_a_fraction_records_the_subset(tmp_path):
    root = tmp_path / "data"
    make_transfer_set("cifar10", root, train_per_class=8, test_per_class=2, seed=0)
    cfg = load(TRANSFER / "demo" / "finetune_vit_tiny_cifar10_demo.py")
    cfg.update(work_dir=str(tmp_path / "run"), recipe="demo")
    cfg["data"]["root"] = str(root)
    cfg["runtime"]["progress_bar"] = False
    summary = run(cfg)
    assert summary["finished"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "cifar10" and metrics["subset"] == {"fraction": 0.5, "per_class": None, "seed": 0}
    assert (metrics["train_images"], metrics["train_images_total"], metrics["images"]) == (40, 80, 20)
    assert metrics["epoch"] == 2 and metrics["best_epoch"] in (1, 2) and metrics["best_top1"] >= metrics["top1"]
    assert 0.0 <= metrics["top1"] <= 100.0 and metrics["num_classes"] == 10
    start = next(r for r in read_log(tmp_path / "run" / "log.jsonl") if r.get("event") == "start")
    assert start["train_images"] == 40 and start["data"]["subset"]["seed"] == 0
    assert start["lr"] == pytest.approx(0.1 * 8 / 512)  # lr stated at batch 512, scaled to the demo's 8
    assert not (tmp_path / "run" / "backbone.pth").exists()  # transfer runs export nothing


def test_metrics_keep_the_best_evaluation_and_the_last():
    record: dict = {}
    for epoch, top1 in enumerate([40.0, 55.0, 55.0, 50.0], start=1):
        record = with_best(record, {"top1": top1, "top5": top1 + 20, "loss": 1.0}, epoch)
    assert (record["top1"], record["epoch"]) == (50.0, 4)
    assert (record["best_top1"], record["best_top5"], record["best_epoch"]) == (55.0, 75.0, 2)


def test_supervised_demo_trains_and_exports_a_backbone_every_path_loads(tmp_path):
    make_imagenet_folder(tmp_path / "data", classes=4, per_class=8, size=64, val_per_class=2)
    cfg = load(PRETRAIN / "demo" / "supervised_vit_tiny_demo.py")
    cfg.update(work_dir=str(tmp_path / "run"), recipe="supervised")
    cfg["data"]["root"] = str(tmp_path / "data")
    cfg["runtime"]["progress_bar"] = False
    summary = run(cfg)
    assert summary["finished"] and summary["export"] == str(tmp_path / "run" / "backbone.pth")
    export = read_checkpoint(tmp_path / "run" / "backbone.pth")
    meta = export["meta"]
    assert (meta["arch"], meta["recipe"], meta["pretrain_model"]) == ("vit_tiny", "supervised", "supervised")
    assert meta["arch_kwargs"] == {"global_pool": "avg", "img_size": 64, "depth": 2}
    assert not any(k.startswith("head.") for k in export["state_dict"])
    trained = {k[len("model."):]: v for k, v in read_checkpoint(tmp_path / "run" / "latest.pth")["model"].items()}
    for key, value in export["state_dict"].items():
        assert torch.equal(value, trained[key]), key
    backbone = load_backbone(tmp_path / "run" / "backbone.pth", num_classes=0).eval()
    classifier = build_backbone("vit_tiny", num_classes=4, global_pool="avg", img_size=64, depth=2).eval()
    classifier.load_state_dict(trained)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x), classifier.forward_head(classifier.forward_features(x), pre_logits=True))
    downstream = build_backbone("vit_tiny", num_classes=10, global_pool="avg", img_size=64, depth=2)
    result = load_pretrained(downstream, tmp_path / "run" / "backbone.pth")
    assert result.unexpected == [] and sorted(result.missing) == ["head.bias", "head.weight"]


def test_published_figures_name_their_sources():
    assert {(r.model, r.value) for r in published_rows("ImageNet-1k top-1")} >= {
        ("MoCov3-Tiny", 76.8), ("DeiT-Tiny (supervised ViT-Tiny)", 75.8)}
    assert all(r.source and r.recipe and 0 < r.value < 100 for r in PUBLISHED)
    table = published_markdown()
    assert table.count("\n") == len(PUBLISHED) + 1 and "MOCOV3.md" in table


def test_published_figures_match_the_peer_files(shared_dir):
    """Rows citing MAE-Lite's MOCOV3.md or the protocol facts carry the value those files state."""
    mocov3 = (shared_dir / "peers" / "maelite" / "projects" / "mocov3" / "MOCOV3.md").read_text()
    assert re.search(r"\[impr\.\].*\| 300 \| 76\.8 \|", mocov3)
    protocols = (shared_dir / "PROTOCOLS.md").read_text()
    facts = re.search(r"Published ImageNet top-1: (.*?)\.\n", protocols, re.S).group(1)
    stated = {name.strip(): float(value) for name, value in re.findall(r"([A-Za-z²+\- ()0-9]+?) (\d\d\.\d)", facts)}
    ours = {r.model: r.value for r in published_rows("ImageNet-1k top-1")}
    aliases = {"DeiT-Tiny": "DeiT-Tiny (supervised ViT-Tiny)", "MoCo-v3-Tiny": "MoCov3-Tiny",
               "D²-MAE-Tiny+RPE (1000 ep)": "D²-MAE-Tiny + RPE"}
    compared = {name: (ours[aliases.get(name, name)], value) for name, value in stated.items()
                if aliases.get(name, name) in ours}
    assert len(compared) >= 6, (stated, compared)
    assert all(mine == theirs for mine, theirs in compared.values()), compared
