"""Tracking losses, schedules and the training loop (exact resume, checkpoints, tiny run)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from backbones import build_backbone, read_checkpoint, save_backbone
from track.losses import (TrackingLoss, box_losses, focal_loss, gaussian_heatmap,
                          gaussian_radius)
from track.model import load_tracker_checkpoint
from benchmarks.demo_data.lasot import fill_generated_lasot_roots, make_lasot_dataset
from track.config import build_model
from track.sampler import TrackingPairDataset
from track.train import ce_keep_ratio, param_groups, read_log, train
from conftest import load_tool, torchrun

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "track" / "vit_tiny_ce_tiny_synthetic.py"
PROBE_CONFIG = REPO / "configs" / "study" / "track" / "vit_tiny-d4_probe_photos.py"
RECIPE_CONFIG = REPO / "configs" / "track" / "vit_tiny_ce_4xb32_300ep_lasot_got10k_coco_trackingnet.py"


# ----------------------------------------------------------------------------------- losses
def test_giou_and_l1_on_hand_built_boxes():
    box = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    terms = box_losses(box, box)
    assert terms["giou"].item() == pytest.approx(0.0, abs=1e-5)  # torchvision adds eps 1e-7
    assert terms["l1"].item() == 0.0 and terms["iou"].item() == pytest.approx(1.0)
    # xyxy (0.4, 0.4, 0.6, 0.6) vs (0.4, 0.3, 0.6, 0.7): |dy1| = |dy2| = 0.1 -> mean 0.05
    terms = box_losses(torch.tensor([[0.5, 0.5, 0.2, 0.2]]), box)
    assert terms["l1"].item() == pytest.approx(0.05, abs=1e-7)
    # IoU = 0.04 / 0.08 = 0.5; the union fills the enclosing box: GIoU loss = 0.5
    assert terms["giou"].item() == pytest.approx(0.5, abs=1e-6)
    # disjoint: [0, 0.2] x [0, 0.2] and [0.4, 0.6] x [0, 0.2]: IoU 0, enclosing area 0.12,
    # union 0.08 -> GIoU = -(0.12 - 0.08) / 0.12 = -1/3, loss 4/3
    terms = box_losses(torch.tensor([[0.1, 0.1, 0.2, 0.2]]), torch.tensor([[0.5, 0.1, 0.2, 0.2]]))
    assert terms["giou"].item() == pytest.approx(4 / 3, abs=1e-6)
    assert terms["l1"].item() == pytest.approx(0.4 * 2 / 4, abs=1e-7)


def test_ground_truth_is_clamped_to_the_crop():
    # gt xyxy (-0.2, 0.5, 0.2, 0.7) is clamped to (0, 0.5, 0.2, 0.7) = the prediction
    pred = torch.tensor([[0.1, 0.6, 0.2, 0.2]])
    terms = box_losses(pred, torch.tensor([[0.0, 0.6, 0.4, 0.2]]))
    assert terms["l1"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["giou"].item() == pytest.approx(0.0, abs=1e-5)


def test_focal_loss_hand_computed():
    target = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    pred = torch.tensor([[0.8, 0.4], [0.1, 0.2]])
    expected = -(math.log(0.8) * 0.2 ** 2                      # positive cell
                 + math.log(1 - 0.4) * 0.4 ** 2 * 0.5 ** 4     # negative, target 0.5
                 + math.log(1 - 0.1) * 0.1 ** 2                # negative, target 0
                 + math.log(1 - 0.2) * 0.2 ** 2)
    assert focal_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    # two maps: the sum is divided by the two positives
    both = focal_loss(torch.stack([pred, pred]), torch.stack([target, target]))
    assert both.item() == pytest.approx(expected, rel=1e-6)
    # a perfect prediction (score-map clamp 1e-4 / 1 - 1e-4 at the peak) costs ~nothing
    heatmap = gaussian_heatmap(torch.tensor([0.5, 0.5, 0.3, 0.3]))
    perfect = torch.full_like(heatmap, 1e-4)
    perfect[heatmap == 1] = 1 - 1e-4
    assert focal_loss(perfect, heatmap).item() < 1e-6
    assert focal_loss(torch.full_like(heatmap, 0.5), heatmap).item() > 1.0


def test_gaussian_radius_and_heatmap():
    # CornerNet, h = w = 10, overlap 0.7:
    #   r1 = (20 + sqrt(20^2 - 4 * 100 * 0.3 / 1.7)) / 2 = 19.07
    #   r2 = (40 + sqrt(40^2 - 4 * 4 * 30)) / 2 = 36.73
    #   r3 = (-28 + sqrt(28^2 + 4 * 2.8 * 30)) / 2 = (-28 + sqrt(1120)) / 2 = 2.733
    assert gaussian_radius(10, 10, 0.7) == pytest.approx((-28 + math.sqrt(1120)) / 2)
    # h = 4, w = 16, overlap 0.5: r1 = (20 + sqrt(400 - 4 * 64 * 0.5 / 1.5)) / 2 = 18.94,
    # r2 = (40 + sqrt(1600 - 16 * 32)) / 2 = 36.49, r3 = (-20 + sqrt(400 + 8 * 32)) / 2 = 2.806
    assert gaussian_radius(4, 16, 0.5) == pytest.approx((-20 + math.sqrt(656)) / 2)
    # 10x10 cells on the 16x16 map centred at (8, 8): radius int(2.73) = 2, sigma 5 / 6
    heatmap = gaussian_heatmap(torch.tensor([0.5, 0.5, 10 / 16, 10 / 16]), 16)
    assert heatmap[8, 8] == 1.0 and (heatmap == 1).sum() == 1
    assert heatmap[8, 10].item() == pytest.approx(math.exp(-4 / (2 * (5 / 6) ** 2)), rel=1e-6)
    assert heatmap[9, 9].item() == pytest.approx(math.exp(-2 / (2 * (5 / 6) ** 2)), rel=1e-6)
    assert heatmap[8, 11] == 0 and heatmap[5, 8] == 0 and (heatmap > 0).sum() == 25
    # the kernel is cut at the border: centre cell (col 0, row 15) still 1
    edge = gaussian_heatmap(torch.tensor([0.01, 0.99, 0.3, 0.3]), 16)
    assert edge[15, 0] == 1.0 and (edge > 0).sum() == 4  # radius 1: a 2x2 corner of the 3x3


def test_tracking_loss_weights():
    outputs = {"pred_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]]),
               "score_map": torch.full((1, 1, 4, 4), 0.3)}
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    heatmap = gaussian_heatmap(gt[0], 4)
    terms = TrackingLoss()(outputs, gt, heatmap[None])
    assert terms["total"].item() == pytest.approx(
        2 * terms["giou"].item() + 5 * terms["l1"].item() + terms["focal"].item(), rel=1e-6)
    assert set(terms) == {"giou", "l1", "focal", "iou", "total"}


# -------------------------------------------------------------------------------- schedules
def test_ce_keep_ratio_schedule():
    values = {epoch: ce_keep_ratio(epoch) for epoch in (0, 19, 20, 60, 100, 200)}
    assert values[0] == values[19] == values[20] == 1.0
    assert values[60] == pytest.approx(0.85)  # half way along the cosine
    assert values[100] == values[200] == 0.7
    assert ce_keep_ratio(40) == pytest.approx(0.7 + 0.3 * 0.5 * (1 + math.cos(math.pi / 4)))
    ratios = [ce_keep_ratio(e) for e in range(20, 101)]
    assert all(a >= b for a, b in zip(ratios, ratios[1:]))


def test_param_groups_backbone_lr():
    cfg = Config.fromfile(str(TINY_CONFIG))
    model = build_model({"model": dict(cfg.model, depth=1, ce_locations=(0,))}, None)
    head, backbone = param_groups(model, 4e-4, 0.1, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert backbone["lr"] == pytest.approx(4e-5) and head["lr"] == 4e-4
    assert {names[id(p)] for p in backbone["params"]} >= {"pos_embed_z", "pos_embed_x",
                                                         "backbone.blocks.0.attn.qkv.weight"}
    assert all(names[id(p)].startswith("head.") for p in head["params"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(head["params"]) + len(backbone["params"]) == len(trainable)


def test_recipe_config_values():
    cfg = Config.fromfile(str(RECIPE_CONFIG))
    assert [d["type"] for d in cfg.data.datasets] == ["lasot", "got10k", "coco", "trackingnet"]
    assert cfg.data.ratios == [1, 1, 1, 1] and cfg.data.samples_per_epoch == 60000
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (300, 128, 4e-4)
    assert cfg.train.lr_drop_epochs == [240] and cfg.runtime.clip_grad == 0.1 and cfg.runtime.seed == 42
    assert cfg.train.backbone_lr_mult == 0.1 and cfg.train.weight_decay == 1e-4
    assert cfg.model.drop_path_rate == 0.1
    assert (cfg.model.template_size, cfg.model.search_size) == (128, 256)
    assert (cfg.loss.giou_weight, cfg.loss.l1_weight, cfg.loss.focal_weight) == (2.0, 5.0, 1.0)


def test_pretrained_backbone_is_loaded(tmp_path):
    cfg = Config.fromfile(str(TINY_CONFIG))
    source = build_backbone("vit_tiny", depth=1, num_classes=0)
    path = save_backbone(source, tmp_path / "vit.pth", arch="vit_tiny")
    model = build_model({"model": dict(cfg.model, depth=1, ce_locations=(0,))}, str(path))
    assert torch.equal(model.backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert model.backbone_load_result.format == "litevit"


# ---------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def small_lasot(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasot_small")
    make_lasot_dataset(root, classes=("cat",), seqs_per_class=2, num_frames=24, size=(96, 72),
                       test_per_class=1)
    return root


def _small_overrides() -> dict:
    """A 2-block ViT on 32/64 px crops, 2 epochs of 2 steps of 2 pairs (flat keys, so the same
    values also go through ``--cfg-options``)."""
    return {
        "model.depth": 2, "model.template_size": 32, "model.search_size": 64,
        "model.ce_locations": [1], "model.head_width": 16, "model.drop_path_rate": 0.1,
        "data.samples_per_epoch": 4, "data.generate": None, "data.num_workers": 0,
        "train.epochs": 2, "train.batch_size": 2, "train.lr_drop_epochs": [1],
        "train.ce.start_epoch": 0, "train.ce.end_epoch": 2, "runtime.log_interval": 1,
        "train.num_threads": 1, "runtime.progress_bar": False, "train.plot": False,
    }


def _small_cfg(lasot_root: Path, **extra) -> Config:
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.merge_from_dict({**_small_overrides(), "data.datasets.0.root": str(lasot_root), **extra})
    return cfg


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("device", [
    pytest.param({"runtime.device": "cpu"}, id="cpu"),
    pytest.param({"runtime.device": "cuda", "runtime.precision": "fp16"}, marks=needs_cuda, id="cuda-fp16"),
])
def test_resume_is_bit_identical(small_lasot, tmp_path, device):
    """Stopped mid-epoch or at an epoch end and resumed through the tool, the run ends with the
    weights, optimizer and RNG state of an uninterrupted one (on CUDA: pinned loader memory,
    fp16 autocast with GradScaler)."""
    threads = torch.get_num_threads()
    reference = train(_small_cfg(small_lasot, **device, **{"train.plot": True, "runtime.checkpoint_interval": 1}),
                      tmp_path / "full")
    assert reference["update"] == 4 and reference["finished"]
    assert torch.get_num_threads() == threads  # train.num_threads is undone at the end
    full = read_checkpoint(tmp_path / "full" / "tracker_final.pth")
    full_state = read_checkpoint(tmp_path / "full" / "latest.pth")
    assert (tmp_path / "full" / "loss.png").stat().st_size > 0
    records = read_log(tmp_path / "full" / "log.jsonl")
    steps = [r for r in records if r["event"] == "train"]
    assert [r["update"] for r in steps] == [1, 2, 3, 4]
    assert [r["keep_ratio"] for r in steps] == [1.0, 1.0, 0.85, 0.85]
    assert steps[0]["lr"] == pytest.approx(1e-3) and steps[3]["lr"] == pytest.approx(1e-4)
    assert steps[0]["lr_backbone"] == pytest.approx(1e-3)  # tiny config: mult 1.0
    assert all(math.isfinite(r["total"]) for r in steps)

    # interrupted after step 1 (mid-epoch) and after step 2 (epoch end), resumed with the CLI
    tool = load_tool("track_train")
    for stop in (1, 2):
        work = tmp_path / f"stop{stop}"
        partial = train(_small_cfg(small_lasot, **device, **{"runtime.max_updates": stop}), work)
        assert not partial["finished"] and partial["final_checkpoint"] is None
        state = read_checkpoint(work / "latest.pth")
        assert state["position"] == ({"epoch": 0, "epoch_step": 1, "update": 1} if stop == 1
                                     else {"epoch": 1, "epoch_step": 0, "update": 2})
        assert ("scale" in state["scaler"]) == (device.get("runtime.precision") == "fp16")
        options = [f"{k}={json.dumps(v) if isinstance(v, list) else v}"
                   for k, v in {**_small_overrides(), **device}.items()]
        summary = tool.main([str(TINY_CONFIG), "--work-dir", str(work), "--resume",
                             "--lasot-root", str(small_lasot), "--cfg-options", *options])
        assert summary["update"] == 4
        _assert_same_state(full["net"], read_checkpoint(work / "tracker_final.pth")["net"])
        resumed_state = read_checkpoint(work / "latest.pth")
        for group_a, group_b in zip(full_state["optimizer"]["state"].values(),
                                    resumed_state["optimizer"]["state"].values()):
            _assert_same_state(group_a, group_b)
        assert torch.equal(full_state["rng"][0]["torch"], resumed_state["rng"][0]["torch"])

    # the final file is what the inference side loads
    model = build_model(_small_cfg(small_lasot), None)
    result = load_tracker_checkpoint(model, tmp_path / "full" / "tracker_final.pth", strict=True)
    assert not result.missing and not result.unexpected
    assert not any(torch.equal(p, q) for p, q in zip(
        model.head.parameters(), build_model(_small_cfg(small_lasot), None).head.parameters())
        if p.dim() > 1)


def test_old_keys_train_the_same_tracker(small_lasot, tmp_path):
    """A config in the previous release's words (train.max_steps, train.grad_clip, train.log_interval,
    train.seed ...) trains bit for bit as the new ``runtime`` keys, each old key with a warning naming
    the new one; the summary and the log count updates as pre-training's do."""
    new = {"runtime.max_updates": 3, "runtime.clip_grad": 0.01, "runtime.log_interval": 2, "runtime.seed": 3,
           "runtime.device": "cpu"}
    old = {"train.max_steps": 3, "train.grad_clip": 0.01, "train.log_interval": 2, "train.seed": 3,
           "train.device": "cpu", "train.progress": False}
    summary = train(_small_cfg(small_lasot, **new), tmp_path / "new")
    with pytest.warns(FutureWarning) as warned:
        old_summary = train(_small_cfg(small_lasot, **old), tmp_path / "old")
    messages = " ".join(str(w.message) for w in warned)
    for key, renamed in [("train.max_steps", "runtime.max_updates"), ("train.grad_clip", "runtime.clip_grad"),
                         ("train.log_interval", "runtime.log_interval"), ("train.seed", "runtime.seed"),
                         ("train.device", "runtime.device"), ("train.progress", "runtime.progress_bar")]:
        assert f"config key {key} is deprecated and will be removed in the next release: use {renamed}" in messages
    _assert_same_state(read_checkpoint(tmp_path / "new" / "latest.pth")["net"],
                       read_checkpoint(tmp_path / "old" / "latest.pth")["net"])
    logged = {name: [(r["update"], r["total"]) for r in read_log(tmp_path / name / "log.jsonl")
                     if r["event"] == "train"] for name in ("new", "old")}
    assert logged["new"] == logged["old"] and [u for u, _ in logged["new"]] == [2, 3]  # every 2, epoch end, stop
    for result in (summary, old_summary):
        assert (result["epoch"], result["epoch_step"], result["update"], result["finished"]) == (1, 1, 3, False)
        assert result["checkpoint"] == str(Path(result["checkpoint"]).parent / "latest.pth")
        assert "global_step" not in result and result["last"]["update"] == 3


def test_frozen_backbone_trains_the_head_only(small_lasot, tmp_path):
    """train.freeze_backbone: the saved backbone comes back bit-identical (weights, position
    embeddings), in eval mode during training (drop path off), without gradients; the head learns."""
    source = build_backbone("vit_tiny", depth=2, num_classes=0)
    path = save_backbone(source, tmp_path / "vit.pth", arch="vit_tiny")
    cfg = _small_cfg(small_lasot, **{"model.pretrained": str(path), "train.freeze_backbone": True,
                                     "model.drop_path_rate": 0.5})
    start = build_model(cfg.to_dict())
    model = build_model(cfg.to_dict()).freeze_backbone()
    model.train()
    assert model.head.training and not model.backbone.training
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("head."))
    assert len(param_groups(model, 1e-3, 0.1, 1e-4)[1]["params"]) == 0
    z, x = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(z, x)["score_map"], model(z, x)["score_map"])  # no drop path

    train(cfg, tmp_path / "run")
    trained = read_checkpoint(tmp_path / "run" / "tracker_final.pth")["net"]
    for name, value in start.state_dict().items():
        if name.startswith("head."):
            continue
        assert torch.equal(trained[name], value), name
    changed = [n for n, v in start.state_dict().items()
               if n.startswith("head.") and n.endswith("weight") and not torch.equal(trained[n], v)]
    assert changed


def test_cached_features_train_as_the_images_do(small_lasot, tmp_path, monkeypatch):
    """train.cache_features: the head trained on the frozen backbone's stored features ends with the
    weights of the head trained on the images themselves, when both see the same pairs every epoch;
    stopped after one step and resumed, it ends with the same weights again."""
    source = build_backbone("vit_tiny", depth=2, num_classes=0)
    path = save_backbone(source, tmp_path / "vit.pth", arch="vit_tiny")
    frozen = {"model.pretrained": str(path), "train.freeze_backbone": True, "train.ce.final_ratio": 1.0}
    cached = _small_cfg(small_lasot, **frozen, **{"train.cache_features": True})
    train(cached, tmp_path / "cached")
    train(_small_cfg(small_lasot, **frozen, **{"train.cache_features": True, "runtime.max_updates": 1}),
          tmp_path / "resumed")
    train(cached, tmp_path / "resumed", resume=True)

    original = TrackingPairDataset.__getitem__
    monkeypatch.setattr(TrackingPairDataset, "__getitem__", lambda self, key: original(self, (0, key[1])))
    train(_small_cfg(small_lasot, **frozen), tmp_path / "images")
    reference = read_checkpoint(tmp_path / "images" / "tracker_final.pth")["net"]
    losses = {run: [r["total"] for r in read_log(tmp_path / run / "log.jsonl") if r["event"] == "train"]
              for run in ("cached", "images")}
    assert len(losses["images"]) == 4
    # the stored maps are contiguous, the backbone's a transposed view: the head's convolutions
    # round differently in the last bits, which four AdamW steps (lr 1e-3) carry to ~1e-4
    np.testing.assert_allclose(losses["cached"], losses["images"], rtol=1e-5)
    start = build_model(cached.to_dict()).state_dict()
    for run in ("cached", "resumed"):
        weights = read_checkpoint(tmp_path / run / "tracker_final.pth")["net"]
        assert weights.keys() == reference.keys()
        for name, value in reference.items():
            torch.testing.assert_close(weights[name], value, rtol=0, atol=5e-4, msg=f"{run}: {name}")
    resumed = read_checkpoint(tmp_path / "resumed" / "tracker_final.pth")["net"]
    cached_weights = read_checkpoint(tmp_path / "cached" / "tracker_final.pth")["net"]
    _assert_same_state(resumed, cached_weights)
    assert any(not torch.equal(reference[n], v) for n, v in start.items() if n.startswith("head."))


@pytest.mark.parametrize("extra, message", [
    ({"train.freeze_backbone": False}, "train.freeze_backbone"),
    ({"train.freeze_backbone": True}, "train.ce.final_ratio"),   # the small config's CE drops tokens
])
def test_cached_features_refuse_a_changing_backbone(small_lasot, tmp_path, extra, message):
    cfg = _small_cfg(small_lasot, **{"train.cache_features": True, **extra})
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "latest.pth").exists()


def test_bf16_step_with_pretrained_backbone(small_lasot, tmp_path):
    """One bf16-autocast step from a saved backbone gives the loss of the same fp32 step (same weights,
    same pairs) up to bf16 rounding, and not bit for bit (it ran in bf16); the load report goes to the log."""
    source = build_backbone("vit_tiny", depth=2, num_classes=0)
    path = save_backbone(source, tmp_path / "vit.pth", arch="vit_tiny")
    first = {}
    for precision in ("fp32", "bf16"):
        cfg = _small_cfg(small_lasot, **{"runtime.precision": precision, "runtime.max_updates": 1,
                                         "model.pretrained": str(path)})
        train(cfg, tmp_path / precision)
        records = read_log(tmp_path / precision / "log.jsonl")
        init = [r for r in records if r["event"] == "init"]
        assert len(init) == 1 and init[0]["format"] == "litevit" and init[0]["missing"] == []
        steps = [r for r in records if r["event"] == "train"]
        assert len(steps) == 1
        first[precision] = steps[0]
    assert first["bf16"]["total"] != first["fp32"]["total"]
    for term in ("total", "focal", "giou", "l1"):   # bf16 keeps 8 bits of mantissa: ~0.4% per rounding
        assert first["bf16"][term] == pytest.approx(first["fp32"][term], rel=1e-2), term
    with pytest.raises(ValueError, match="fp16.*needs a GPU"):
        train(_small_cfg(small_lasot, **{"runtime.precision": "fp16", "runtime.device": "cpu"}),
              tmp_path / "fp16")


def test_tool_reports_missing_root(tmp_path):
    tool = load_tool("track_train")
    with pytest.raises(SystemExit, match="'lasot' has no root"):
        tool.main([str(RECIPE_CONFIG), "--work-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="no checkpoint to resume from"):
        tool.main([str(TINY_CONFIG), "--work-dir", str(tmp_path / "none"), "--resume",
                   "--lasot-root", str(tmp_path)])


@pytest.mark.slow
def test_ddp_two_processes_gloo_then_one(small_lasot, tmp_path):
    """torchrun with two CPU processes (gloo): each rank takes half of every batch. Stopped after
    3 steps, the run is refused on one process, then resumed there with the override."""
        
    work = tmp_path / "ddp"
    options = [f"{k}={json.dumps(v) if isinstance(v, list) else v}"
               for k, v in _small_overrides().items()] + ["train.batch_size=4", "data.samples_per_epoch=8",
                                                          "runtime.device=cpu"]  # gloo, also where there is a GPU
    torchrun(REPO / "tools" / "track_train.py", TINY_CONFIG, "--work-dir", work, "--lasot-root", small_lasot,
             "--cfg-options", *options, "runtime.max_updates=3", timeout=600)
    steps = [r for r in read_log(work / "log.jsonl") if r["event"] == "train"]
    assert [r["update"] for r in steps] == [1, 2, 3]
    state = read_checkpoint(work / "latest.pth")
    assert len(state["rng"]) == 2 and state["meta"]["world_size"] == 2 and state["world_size"] == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])

    tool = load_tool("track_train")
    argv = [str(TINY_CONFIG), "--work-dir", str(work), "--resume", "--lasot-root", str(small_lasot),
            "--cfg-options", *options]
    with pytest.raises(SystemExit, match=r"latest.pth: written by 2 process\(es\), resumed by 1.*"
                                         r"runtime.allow_world_size_change=True"):
        tool.main(argv)
    summary = tool.main(argv + ["--allow-world-size-change"])
    assert summary["update"] == 4 and summary["finished"]
    records = read_log(work / "log.jsonl")
    resume = [r for r in records if r["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["exact"] is False and "not bit-identical" in resume[0]["note"]
    assert [r["update"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]
    model = build_model(_small_cfg(small_lasot), None)
    load_tracker_checkpoint(model, work / "tracker_final.pth", strict=True)


def _track_and_score(model, cfg, lasot_root: Path, out: Path):
    """Run the tracker and a static-box baseline (frame 1's box repeated) over the test split;
    score both with the LaSOT protocol."""
    from track.config import tracker_kwargs
    from track.datasets.lasot import LasotDataset
    from evaluation.lasot import evaluate_tracker, load_annotations
    from track.tracker import Tracker

    dirs = {"tracker": out / "tracker", "static": out / "static"}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    for sequence in LasotDataset(lasot_root, split="test"):
        frames = [sequence.image(i) for i in range(len(sequence))]
        tracker = Tracker(model.eval(), **tracker_kwargs(cfg))
        boxes, _, _ = tracker.track_sequence(frames, sequence.gt_boxes[0])
        static = np.repeat(sequence.gt_boxes[:1], len(sequence), axis=0)
        for name, rows in (("tracker", boxes), ("static", static)):
            np.savetxt(dirs[name] / f"{sequence.name}.txt", rows, fmt="%.4f", delimiter=",")
    annos = load_annotations(lasot_root)
    return {name: evaluate_tracker(folder, annos, progress=False) for name, folder in dirs.items()}


@pytest.mark.slow
def test_tiny_config_learns_to_track(tmp_path):
    """The tiny config (generated LaSOT-layout data) trains a tracker that beats a static box
    on held-out generated sequences, scored with the LaSOT protocol."""
    from track.config import model_from_checkpoint

    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.merge_from_dict({"train.num_threads": 1, "runtime.progress_bar": False})
    work = tmp_path / "tiny"
    lasot_root = fill_generated_lasot_roots(cfg.data, work)
    summary = train(cfg, work)
    model, _ = model_from_checkpoint(cfg, summary["final_checkpoint"])
    scores = _track_and_score(model, cfg, lasot_root, tmp_path / "results")
    report = {name: {"AUC": r.AUC, "P": r.P, "NP": r.NP} for name, r in scores.items()}
    print(json.dumps(report))
    assert len(scores["tracker"].sequences) >= 6
    assert scores["tracker"].AUC > scores["static"].AUC + 5


@pytest.mark.slow
def test_study_probe_config_beats_the_static_box(tmp_path):
    """The study's tracking probe (frozen random-init backbone, head only, photo sequences without
    events) follows the objects better than frame 1's box, by more than two standard errors of
    the paired per-sequence AUC difference (evaluation.baselines)."""
    pytest.importorskip("skimage")
    from evaluation.baselines import compare_with_static_box
    from track.config import model_from_checkpoint

    cfg = Config.fromfile(str(PROBE_CONFIG))
    cfg.merge_from_dict({"train.num_threads": 2, "runtime.progress_bar": False, "train.plot": False})
    work = tmp_path / "probe"
    lasot_root = fill_generated_lasot_roots(cfg.data, work)
    summary = train(cfg, work)
    model, _ = model_from_checkpoint(cfg, summary["final_checkpoint"])
    _track_and_score(model, cfg, lasot_root, tmp_path / "results")
    result = compare_with_static_box({"probe": tmp_path / "results" / "tracker"}, lasot_root, tmp_path / "static")
    difference = result.differences["probe"]
    print(json.dumps(result.to_dict()["trackers"]["probe"]["minus_static_box"] | {"per_sequence": None}))
    assert len(difference.sequences) == 42
    assert difference.beats(z=2.0)
