"""Pre-training on the shared engine, end to end on generated JPEG folders: exact resumption,
2-rank torchrun (then resumed on one process), export into the backbones, fine-tuning layer
decay, linear probing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from backbones import build_backbone, load_pretrained, read_checkpoint
from benchmarks.demo_data.imagenet import make_imagenet_folder
from pretrain.engine import Trainer, read_log, run
from conftest import load_tool, torchrun

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "pretrain" / "demo"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def demo_cfg(name: str, data: Path, work_dir: Path, **options) -> dict:
    cfg = Config.fromfile(str(DEMO / f"{name}.py"))
    cfg.merge_from_dict({"data.root": str(data), "work_dir": str(work_dir), "runtime.progress_bar": False,
                         "recipe": name, **options})
    return cfg.to_dict()


def _train_records(log: list[dict]) -> list[dict]:
    return [r for r in log if r["event"] == "train"]


@pytest.mark.parametrize("device", [
    pytest.param({"runtime.device": "cpu"}, id="cpu"),
    # loader workers in every run: loading in the main process reseeds the CUDA generator
    # (pretrain.data.seeded_random_state seeds through torch.manual_seed)
    pytest.param({"runtime.device": "cuda", "runtime.precision": "fp16", "data.num_workers": 2},
                 marks=needs_cuda, id="cuda-fp16"),
])
def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch, device):
    """On CPU (the uninterrupted run with 2 loader workers, the others with none), and on CUDA
    with pinned loader memory and fp16 autocast + GradScaler."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (CUDA only)
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=12, size=72, seed=0)  # 24 images: 3 batches of 8 an epoch
    options = {"runtime.deterministic": True, "schedule.epochs": 2, "schedule.warmup_epochs": 1,
               "model.drop_path_rate": 0.1, **device}  # drop path draws from the RNG too
    full = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "full", **{**options, "data.num_workers": 2}))
    assert full["finished"] and full["update"] == 6

    stopped = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "split", **options, **{"runtime.max_updates": 4}))
    assert not stopped["finished"] and (stopped["epoch"], stopped["epoch_step"], stopped["update"]) == (1, 1, 4)
    resumed = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "split", **options), resume=True)
    assert resumed["finished"] and resumed["update"] == 6

    a, b = read_checkpoint(tmp_path / "full" / "latest.pth"), read_checkpoint(tmp_path / "split" / "latest.pth")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    losses_full = {r["update"]: r["loss"] for r in _train_records(read_log(tmp_path / "full" / "log.jsonl"))}
    losses_split = {r["update"]: r["loss"] for r in _train_records(read_log(tmp_path / "split" / "log.jsonl"))}
    assert losses_full == losses_split
    assert not torch.are_deterministic_algorithms_enabled()  # the run restored the global setting


def test_old_keys_and_the_old_checkpoint_name_train_the_same_run(tmp_path):
    """A config in the previous release's words (runtime.log_every, runtime.checkpoint_every,
    optim.clip_grad) trains bit for bit as the new ``runtime`` keys, each old key with a warning naming
    the new one; its checkpoint renamed to the old ``last.pth`` is still resumed, with a warning."""
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=12, size=72, seed=0)  # 24 images: 3 batches of 8 an epoch
    common = {"runtime.device": "cpu", "schedule.epochs": 2, "schedule.warmup_epochs": 1}
    new = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "new", **common, **{
        "runtime.log_interval": 2, "runtime.checkpoint_interval": 2, "runtime.clip_grad": 0.05}))
    old = {**common, "runtime.log_every": 2, "runtime.checkpoint_every": 2, "optim.clip_grad": 0.05}
    with pytest.warns(FutureWarning) as warned:
        stopped = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "old", **old, **{"runtime.max_updates": 4}))
    messages = " ".join(str(w.message) for w in warned)
    for key, renamed in [("runtime.log_every", "runtime.log_interval"), ("optim.clip_grad", "runtime.clip_grad"),
                         ("runtime.checkpoint_every", "runtime.checkpoint_interval")]:
        assert f"config key {key} is deprecated and will be removed in the next release: use {renamed}" in messages
    assert stopped["update"] == 4 and not stopped["finished"]
    (tmp_path / "old" / "latest.pth").rename(tmp_path / "old" / "last.pth")
    with pytest.warns(FutureWarning) as warned:  # the old keys again, and the old name
        resumed = run(demo_cfg("mae_vit_tiny_demo", data, tmp_path / "old", **old), resume=True)
    assert any(f"{tmp_path / 'old' / 'last.pth'}: a checkpoint under its old name; resuming from it" in str(w.message)
               for w in warned)
    assert resumed["finished"] and resumed["update"] == new["update"] == 6
    a, b = read_checkpoint(tmp_path / "new" / "latest.pth"), read_checkpoint(tmp_path / "old" / "latest.pth")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    logged = {name: [(r["update"], r["loss"]) for r in _train_records(read_log(tmp_path / name / "log.jsonl"))]
              for name in ("new", "old")}
    assert logged["new"] == logged["old"] and [u for u, _ in logged["new"]] == [2, 3, 4, 6]  # every 2, epoch ends
    for summary in (new, stopped, resumed):  # the words tracker training's summary uses too
        assert {"epoch", "epoch_step", "update", "finished", "checkpoint"} <= set(summary)
        assert summary["checkpoint"] == str(Path(summary["checkpoint"]).parent / "latest.pth")


def test_torchrun_two_ranks_learn_stay_in_sync_and_resume_on_one(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=4, per_class=16, size=72, seed=0)  # 64 images
    files = sorted((data / "train").glob("*/*.JPEG"))
    files[3].write_bytes(b"\x00" * 100)  # unreadable: skipped, counted, never fatal
    files[40].write_bytes(files[40].read_bytes()[:300])
    work = tmp_path / "work"
    options = ["runtime.progress_bar=False", "optim.base_lr=0.02", "optim.total_batch=32", "schedule.epochs=4",
               "runtime.device=cpu"]  # gloo, also where there is a GPU
    proc = torchrun(REPO / "tools" / "pretrain.py", DEMO / "d2mae_vit_tiny_demo.py", "--data", data, "--work-dir", work,
             "--cfg-options", *options, "runtime.max_updates=7", timeout=240)
    log = read_log(work / "log.jsonl")
    start, end = log[0], log[-1]
    assert start["world_size"] == 2 and start["accum_iter"] == 2 and start["effective_batch"] == 32
    assert start["lr"] == pytest.approx(0.02 * 32 / 256)
    assert start["random_teacher"] is True
    records = _train_records(log)
    # 32 images per rank = 4 batches of 8 = 2 updates an epoch; stopped inside the 4th epoch
    assert [(r["update"], r["epoch"], r["epoch_step"]) for r in records][-2:] == [(6, 2, 4), (7, 3, 2)]
    first, last = sum(r["loss"] for r in records[:2]) / 2, sum(r["loss"] for r in records[-2:]) / 2
    assert last < first - 0.05, [r["loss"] for r in records]
    assert {"loss_mae", "loss_attn"} <= set(records[0])
    assert end["ranks_in_sync"] and len(end["rank_weight_digests"]) == 2 and not end["finished"]
    assert records[5]["skipped_images"] == 2 * 3  # the two broken files, once an epoch, over both ranks
    assert "skipped unreadable image" in proc.stderr

    # one process: refused, then resumed with the override at the same update and epoch fraction
    tool = load_tool("pretrain")
    argv = [str(DEMO / "d2mae_vit_tiny_demo.py"), "--data", str(data), "--work-dir", str(work), "--resume",
            "--cfg-options", *options]
    with pytest.raises(ValueError, match=r"written by 2 process\(es\), resumed by 1.*"
                                         r"runtime.allow_world_size_change=True"):
        tool.main(argv)
    summary = tool.main(argv + ["--allow-world-size-change"])
    assert summary["finished"] and summary["update"] == 8
    log = read_log(work / "log.jsonl")
    resume = [r for r in log if r["event"] == "resume"][-1]
    assert resume["exact"] is False and "not bit-identical" in resume["note"]
    after = _train_records(log)[len(records):]
    assert [(r["update"], r["epoch"], r["epoch_step"]) for r in after] == [(8, 3, 8)]  # 4 of 8 batches left
    assert read_checkpoint(work / "latest.pth")["world_size"] == 1
    meta = read_checkpoint(work / "backbone.pth")["meta"]
    assert meta["random_teacher"] is True and meta["recipe"] == "d2mae_vit_tiny_demo"


def test_world_size_change_with_another_effective_batch_is_refused(tmp_path):
    """With optim.total_batch=None the effective batch follows the world size: a checkpoint of 2
    processes (batch 16, 1 update an epoch) cannot continue its schedule on 1 process (batch 8,
    2 updates an epoch), even with the override; with total_batch=16 it can."""
    from engine import WorldSizeChangeError

    data = tmp_path / "data"
    make_imagenet_folder(data, classes=2, per_class=8, size=72, seed=0)  # 16 images
    work = tmp_path / "work"
    options = {"runtime.allow_world_size_change": True, "schedule.epochs": 1}
    first = Trainer(demo_cfg("mae_vit_tiny_demo", data, work, **options))
    assert (first.effective_batch, first.updates_per_epoch) == (8, 2)
    first.engine.save()
    ckpt = read_checkpoint(work / "latest.pth")
    assert ckpt["meta"]["updates_per_epoch"] == 2
    # as 2 processes of 8 images each would have written it: 1 batch of 8 an epoch, no accumulation
    ckpt.update(world_size=2, rng=ckpt["rng"] * 2)
    ckpt["meta"].update(world_size=2, effective_batch=16, accum_iter=1, updates_per_epoch=1)
    torch.save(ckpt, work / "latest.pth")

    trainer = Trainer(demo_cfg("mae_vit_tiny_demo", data, work, **options))
    with pytest.raises(WorldSizeChangeError) as error:
        trainer.resume()
    text = str(error.value)
    assert str(work / "latest.pth") in text and "written by 2 process(es), resumed by 1" in text
    assert "effective_batch 16 -> 8" in text and "updates_per_epoch 1 -> 2" in text
    assert "optim.total_batch=16" in text
    assert not (work / "log.jsonl").exists()  # refused before loading anything (or logging a resume)
    assert trainer.engine.position.update == 0

    fixed = Trainer(demo_cfg("mae_vit_tiny_demo", data, work, **options, **{"optim.total_batch": 16}))
    assert (fixed.effective_batch, fixed.updates_per_epoch, fixed.accum) == (16, 1, 2)
    assert fixed.resume()
    assert [r["exact"] for r in read_log(work / "log.jsonl") if r["event"] == "resume"] == [False]


def test_export_d2mae_keeps_twelve_blocks_and_loads_into_vit_tiny(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=1, per_class=4, size=40, seed=0)
    work = tmp_path / "d2"
    summary = run(demo_cfg("d2mae_vit_tiny_demo", data, work, **{
        "model.img_size": 32, "model.depth": 12, "model.decode_idx": 8, "data.batch_size": 4,
        "schedule.epochs": 1, "distill.teacher_overrides.depth": 1, "distill.teacher_block": 0}))
    export = read_checkpoint(summary["export"])
    state, meta = export["state_dict"], export["meta"]
    assert meta["arch"] == "vit_tiny" and meta["random_teacher"] is True and meta["epochs"] == 1
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    assert blocks == set(range(12))
    assert not any(k.startswith(("decoder", "mask_token", "distill", "teacher")) for k in state)
    model = build_backbone("vit_tiny", num_classes=0, img_size=32)
    result = load_pretrained(model, summary["export"], strict=True)
    assert not result.missing and not result.unexpected
    trained = read_checkpoint(work / "latest.pth")["model"]
    assert torch.equal(model.blocks[11].mlp.fc2.weight, trained["student.blocks.11.mlp.fc2.weight"])
    assert "student.blocks.12.attn.qkv.weight" in trained  # the logits block was trained, then dropped
    # the default 224 px backbone takes it too (position embedding resampled)
    assert not load_pretrained(build_backbone("vit_tiny", num_classes=0), summary["export"]).missing


def test_export_hiera_loads_into_hiera_tiny(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=1, per_class=2, size=72, seed=0)
    summary = run(demo_cfg("dmae_hiera_tiny_demo", data, tmp_path / "hiera", **{"data.batch_size": 2}))
    export = read_checkpoint(summary["export"])
    assert export["meta"]["arch"] == "hiera_tiny" and export["meta"]["random_teacher"] is True
    assert "head.norm.weight" in export["state_dict"]
    assert not any("fusion" in k or k.startswith("decoder") for k in export["state_dict"])
    model = build_backbone("hiera_tiny", num_classes=0, img_size=64)
    result = load_pretrained(model, summary["export"], strict=True)
    assert not result.missing and not result.unexpected


def test_finetune_layer_decay_groups_and_lr_scaling(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=4, per_class=4, size=40, seed=0)  # 2 batches of 8: one update of 16
    trainer = Trainer(demo_cfg("finetune_vit_tiny_demo", data, tmp_path / "ft", **{
        "model.depth": 12, "model.img_size": 32, "optim.total_batch": 16}))
    assert trainer.accum == 2 and trainer.lr == pytest.approx(1e-3 * 16 / 256)
    model = trainer.task.model
    params = dict(model.named_parameters())
    group_of = {id(p): g for g in trainer.optimizer.param_groups for p in g["params"]}

    def scale(name: str) -> float:
        return group_of[id(params[name])]["lr_scale"]

    for name in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        assert scale(name) == pytest.approx(0.85 ** 13), name
    for i in range(12):
        assert scale(f"blocks.{i}.attn.qkv.weight") == pytest.approx(0.85 ** (12 - i))
        assert scale(f"blocks.{i}.norm1.bias") == pytest.approx(0.85 ** (12 - i))
    for name in ("fc_norm.weight", "head.weight", "head.bias"):
        assert scale(name) == pytest.approx(1.0), name
    assert group_of[id(params["blocks.3.mlp.fc1.weight"])]["weight_decay"] == 0.05
    for name in ("blocks.3.mlp.fc1.bias", "cls_token", "pos_embed", "fc_norm.weight"):
        assert group_of[id(params[name])]["weight_decay"] == 0.0, name
    trainer.scheduler.step_update(trainer.updates_per_epoch)  # end of the 1-epoch warm-up: full lr
    for g in trainer.optimizer.param_groups:
        assert g["lr"] == pytest.approx(trainer.lr * g["lr_scale"])


def test_linear_probe_trains_only_the_head(tmp_path):
    data = tmp_path / "data"
    make_imagenet_folder(data, classes=4, per_class=4, size=72, seed=0, val_per_class=2)
    trainer = Trainer(demo_cfg("linprobe_vit_tiny_demo", data, tmp_path / "lp", **{"schedule.epochs": 1}))
    probe = trainer.task.model
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    bn, fc = probe.head
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert optimised == {id(fc.weight), id(fc.bias)}
    before = {k: v.clone() for k, v in probe.backbone.state_dict().items()}
    head_before = fc.weight.clone()
    summary = trainer.fit()
    assert probe.backbone.training is False
    assert all(torch.equal(before[k], v) for k, v in probe.backbone.state_dict().items())
    assert not torch.equal(head_before, fc.weight)
    assert bn.num_batches_tracked.item() > 0
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 100.0 and summary["images"] == 8
    metrics = json.loads((tmp_path / "lp" / "metrics.json").read_text())
    assert metrics["top1"] == summary["top1"]
