"""The study of the main job (benchmarks/study.py): the photo data, the study configs, and the whole
pipeline end to end (shortened: one recipe, a few steps) through the same code as the full run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from benchmarks.demo_data.ade20k import make_ade20k_dataset
from benchmarks.demo_data.lasot import make_lasot_dataset
from benchmarks.demo_data.photos import (PHOTOS, load_photo, make_photo_imagenet, photo_folder, photo_region)
from benchmarks.study import (PRETRAIN_CONFIGS, SEG_CONFIG, SMOKE, StudySettings, TEACHER_CONFIG, TRACK_CONFIG,
                              _run_pretrain, noise_verdict, run_embedded)
from evaluation.lasot import evaluate_tracker
from evaluation.miou import evaluate_folders, read_label_map

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ photos
def test_photos_are_the_packaged_files_and_split_disjointly():
    folder = photo_folder()
    for name, file in PHOTOS.items():
        assert (folder / file).is_file(), f"{file} must ship inside the scikit-image wheel"
        photo = load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        train, held = photo_region(name, "train"), photo_region(name, "heldout")
        # the two regions tile the photo exactly: no pixel is in both
        assert np.array_equal(np.concatenate([train, held], axis=1), photo)
        assert held.shape[1] == photo.shape[1] - train.shape[1] >= photo.shape[1] // 5


def test_photo_imagenet_layout_and_determinism(tmp_path):
    photos = ("brick", "coffee")
    record = make_photo_imagenet(tmp_path / "a", photos, per_class=3, probe_per_class=2, val_per_class=1, size=32)
    assert record["counts"] == {"train": 6, "probe": 4, "val": 2}
    for split, count in (("train", 3), ("probe", 2), ("val", 1)):
        assert sorted(p.name for p in (tmp_path / "a" / split).iterdir()) == sorted(photos)
        for name in photos:
            files = sorted((tmp_path / "a" / split / name).glob("*.JPEG"))
            assert len(files) == count
            assert cv2.imread(str(files[0])).shape == (32, 32, 3)
    make_photo_imagenet(tmp_path / "b", photos, per_class=3, probe_per_class=2, val_per_class=1, size=32)
    for path in sorted((tmp_path / "a").rglob("*.JPEG")):
        assert (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="unknown photos"):
        make_photo_imagenet(tmp_path / "c", ("no_such_photo",))


def test_photo_ade20k_paints_each_photo_as_its_class(tmp_path):
    root = make_ade20k_dataset(tmp_path, num_train=3, num_val=2, size=(96, 72), num_classes=len(PHOTOS),
                               photos=list(PHOTOS))
    seen = set()
    for label_path in sorted((root / "annotations").rglob("*.png")):
        label = read_label_map(label_path)
        image = cv2.imread(str(root / "images" / label_path.parent.name / f"{label_path.stem}.jpg"))
        assert image.shape[:2] == label.shape
        values = set(np.unique(label).tolist())
        assert values <= set(range(len(PHOTOS) + 1))
        seen |= values - {0}
    assert len(seen) >= 3


def test_photo_lasot_sequences(tmp_path):
    names = make_lasot_dataset(tmp_path, ("coins", "rocket"), seqs_per_class=2, num_frames=8, size=(96, 72),
                               test_per_class=1, source="photos")
    assert names == ["coins-1", "coins-2", "rocket-1", "rocket-2"]
    assert (tmp_path / "testing_set.txt").read_text().split() == ["coins-1", "rocket-1"]
    nlp = (tmp_path / "coins" / "coins-1" / "nlp.txt").read_text()
    assert "cut from the coins photograph" in nlp and "over the coins" not in nlp
    gt = np.loadtxt(tmp_path / "rocket" / "rocket-2" / "groundtruth.txt", delimiter=",")
    assert gt.shape == (8, 4) and (gt[:, 2:] > 0).all()
    with pytest.raises(ValueError, match="photo names"):
        make_lasot_dataset(tmp_path / "x", ("car",), source="photos")


# ------------------------------------------------------------------------------------ configs
def test_study_configs_name_the_photo_classes_in_order():
    seg = Config.fromfile(str(SEG_CONFIG))
    assert list(seg.photo_classes["classes"]) == list(PHOTOS)
    assert len(seg.photo_classes["palette"]) == len(PHOTOS) == seg.model.decode_head.num_classes
    assert seg.test_dataloader.dataset.type == "BaseSegDataset"
    track = Config.fromfile(str(TRACK_CONFIG))
    assert list(track.data.generate.classes) == list(PHOTOS)
    probe = Config.fromfile(str(REPO / "configs/study/linprobe_vit_tiny-d4_photos-64px.py"))
    assert probe.model.num_classes == len(PHOTOS)
    for config in (TEACHER_CONFIG, *PRETRAIN_CONFIGS.values()):
        cfg = Config.fromfile(str(config))
        assert cfg.runtime.precision == "fp32" and cfg.model.depth == 4 and cfg.model.img_size == 64


def test_teacher_export_feeds_the_distillation_recipes(tmp_path):
    """The study teacher (MAE, ViT-Small width) exports a backbone the D-MAE / D²-MAE configs load
    as a vit_small teacher of depth 4, every weight found; then one D²-MAE step runs."""
    import torch

    from pretrain.tasks import build_task

    make_photo_imagenet(tmp_path / "data", ("brick", "coffee"), per_class=8, size=72)
    short = {"data.root": str(tmp_path / "data"), "schedule.epochs": 1, "schedule.warmup_epochs": 0,
             "data.batch_size": 16, "runtime.checkpoint_every": None}
    summary = _run_pretrain(TEACHER_CONFIG, short, tmp_path / "teacher")
    teacher_ckpt = Path(summary["export"])
    cfg = Config.fromfile(str(PRETRAIN_CONFIGS["d2mae"]))
    cfg.merge_from_dict({**short, "distill.teacher_ckpt": str(teacher_ckpt)})
    task, info = build_task(cfg.to_dict())
    assert info["random_teacher"] is False and info["teacher_ckpt"] == str(teacher_ckpt)
    assert "missing" not in info["teacher_load"] and "unexpected" not in info["teacher_load"]
    teacher = task.distill.teacher
    assert len(teacher.blocks) == 4 and teacher.embed_dim == 384
    saved = torch.load(teacher_ckpt, weights_only=True)["state_dict"]
    assert torch.equal(teacher.blocks[3].attn.qkv.weight, saved["blocks.3.attn.qkv.weight"])
    assert task.distill.adapter.weight.shape == (6, 12, 1, 1)  # student heads -> teacher heads
    terms = task(torch.randn(2, 3, 64, 64), torch.zeros(2, dtype=torch.long))
    assert torch.isfinite(terms["loss"]) and terms["loss_attn"] > 0


def test_noise_verdict():
    assert "within noise" in noise_verdict({"a": 50.0, "b": 51.0}, {"a": 0.5, "b": 1.0}, "x")
    assert "exceeds" in noise_verdict({"a": 50.0, "b": 55.0}, {"a": 0.5, "b": 1.0}, "x")
    assert noise_verdict({"a": 50.0}, {"a": 1.0}, "x") == ""


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The shortened study (one recipe, a few steps), run once for the module."""
    root = tmp_path_factory.mktemp("study")
    text, data = run_embedded(root / "out", SMOKE, threads=2, cache=root / "cache", progress=False)
    return {"root": root, "text": text, "data": data}


def _stage(smoke, name: str) -> dict:
    return next(r for r in smoke["data"]["stages"] if r["stage"] == name)


def test_smoke_tables_hold_exactly_the_evaluators_numbers(smoke):
    data, text = smoke["data"], smoke["text"]
    results = Path(_stage(smoke, "track-test-mae")["summary"]["results"])
    lasot_root = Path(_stage(smoke, "data-lasot")["summary"]["root"])
    direct = evaluate_tracker(results, lasot_root, progress=False)
    assert data["lasot"]["MAE"]["AUC"] == direct.AUC and data["lasot"]["MAE"]["NP"] == direct.NP
    assert f"| MAE | {direct.AUC:.2f} |" in text
    static = evaluate_tracker(smoke["root"] / "out" / "study" / "static_box_results", lasot_root, progress=False)
    assert data["lasot"]["static box (frame 1 repeated)"]["AUC"] == static.AUC
    preds = Path(_stage(smoke, "seg-mae")["summary"]["preds"])
    ade = Path(_stage(smoke, "data-ade20k")["summary"]["root"])
    miou = evaluate_folders(preds, ade / "annotations" / "validation", len(PHOTOS), reduce_zero_label=True,
                            pred_raw=True, class_names=list(PHOTOS), progress=False)
    assert data["seg"]["MAE"]["mIoU"] == miou["mIoU"] and f"| MAE | {miou['mIoU']:.2f} |" in text
    assert len(list(preds.glob("*.png"))) == SMOKE.ade20k["num_val"]  # written by mmseg's IoUMetric
    metrics = json.loads((Path(_stage(smoke, "probe-mae-seed0")["folder"]) / "metrics.json").read_text())
    assert data["probe"]["MAE"]["top1"] == [metrics["top1"]]
    for picture in data["pictures"]:
        assert (smoke["root"] / "out" / picture).stat().st_size > 1000


def test_smoke_export_is_what_every_task_starts_from(smoke):
    export = Path(_stage(smoke, "pretrain-mae")["folder"]) / "backbone.pth"
    assert export.is_file()
    probe_log = [json.loads(line) for line in
                 (Path(_stage(smoke, "probe-mae-seed0")["folder"]) / "log.jsonl").read_text().splitlines()]
    assert next(r for r in probe_log if r.get("event") == "start")["pretrained"] == str(export)
    track_log = [json.loads(line) for line in
                 (Path(_stage(smoke, "track-train-mae")["folder"]) / "log.jsonl").read_text().splitlines()]
    init = next(r for r in track_log if r.get("event") == "init")
    assert init["pretrained"] == str(export) and init["missing"] == []
    seg_log = Path(_stage(smoke, "seg-mae")["log"]).read_text()
    assert f"loaded {export}" in seg_log


def test_smoke_second_run_reuses_the_cache(smoke, tmp_path):
    root = smoke["root"]
    text, data = run_embedded(tmp_path / "out", SMOKE, threads=2, cache=root / "cache", progress=False)
    assert all(r["cached"] for r in data["stages"])
    for task in ("probe", "seg", "lasot"):
        assert json.dumps(data[task], sort_keys=True, default=str) == \
            json.dumps(smoke["data"][task], sort_keys=True, default=str)


def test_given_mmseg_and_tracker_outputs_are_scored_exactly(smoke, tmp_path):
    """Real outputs (mmseg's prediction PNGs, the tracker tool's result folder) given to the report:
    its tables hold exactly what the evaluators compute, and nothing is trained."""
    from benchmarks.report import main

    preds = _stage(smoke, "seg-mae")["summary"]["preds"]
    ade = Path(_stage(smoke, "data-ade20k")["summary"]["root"])
    results = _stage(smoke, "track-test-mae")["summary"]["results"]
    lasot_root = _stage(smoke, "data-lasot")["summary"]["root"]
    report = main(["--sections", "study", "--out", str(tmp_path), "--no-progress",
                   "--ade20k-results", f"ours={preds}", "--ade20k", str(ade),
                   "--lasot-results", f"ours={results}", "--lasot-annos", lasot_root])
    from evaluation.miou import ade20k_class_names

    miou = evaluate_folders(preds, ade / "annotations" / "validation", 150, reduce_zero_label=True,
                            pred_raw=True, class_names=ade20k_class_names(), progress=False)
    direct = evaluate_tracker(results, lasot_root, progress=False)
    assert report["study"]["seg"]["ours"]["mIoU"] == miou["mIoU"]
    assert report["study"]["lasot"]["ours"]["AUC"] == direct.AUC
    markdown = (tmp_path / "report.md").read_text()
    assert f"| ours | {miou['mIoU']:.2f} |" in markdown and f"| ours | {direct.AUC:.2f} |" in markdown
    assert "ImageNet: no results given" in markdown
    assert not (tmp_path / "logs" / "study").exists()  # no stage ran


@pytest.mark.slow
def test_full_embedded_study(tmp_path):
    """The embedded default of ``make benchmark``: every recipe, full toy budget (minutes)."""
    text, data = run_embedded(tmp_path / "out", StudySettings(), threads=2, cache=tmp_path / "cache",
                              progress=False)
    names = ["none (random init)", "MAE", "D-MAE", "D²-MAE"]
    for task in ("probe", "seg", "lasot"):
        assert all(n in data[task] for n in names)
    assert all(len(data["probe"][n]["top1"]) == 2 for n in names)
    for n in names:
        assert math.isfinite(data["lasot"][n]["AUC"]) and data["lasot"][n]["fps"] > 0
    lasot_root = Path(next(r for r in data["stages"] if r["stage"] == "data-lasot")["summary"]["root"])
    for n, recipe in zip(names, ("none", "mae", "dmae", "d2mae")):
        stage = next(r for r in data["stages"] if r["stage"] == f"track-test-{recipe}")
        assert evaluate_tracker(stage["summary"]["results"], lasot_root, progress=False).AUC == data["lasot"][n]["AUC"]
    assert data["pretraining"]["pretrain-dmae"]["finished"] and data["pretraining"]["pretrain-d2mae"]["finished"]


def test_smoke_report_holds_the_encoders_analyses(smoke):
    """The study's encoders go through analysis.report_section: a CKA of the export with itself is 1."""
    analysis = smoke["data"]["analysis"]
    assert "Analyses of the encoders" in smoke["text"]
    matrix = analysis["cka"]["pairs"][0]["matrix"]  # one recipe: the export against itself
    assert abs(matrix[-1][-1] - 1.0) < 1e-6
    assert (smoke["root"] / "out" / "study" / "analysis" / "attention_distance.png").stat().st_size > 1000


def test_smoke_pretraining_summary_reads_the_training_log(smoke):
    """The pre-training summary and loss plot read the engine's train records (first and last loss)."""
    summary = smoke["data"]["pretraining"]["pretrain-mae"]
    assert summary["updates"] > 0 and summary["loss_first"] > 0 and summary["loss_last"] > 0
    assert "loss - -> -" not in smoke["text"]
