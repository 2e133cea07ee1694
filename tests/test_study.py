"""The study of the main job (benchmarks/study/): the photo data, the study configs, the computed
baselines, the statistics and sentences under the tables, the stages' code keys, and the whole
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
from benchmarks.study import RECIPES, SMOKE, StudySettings, run_embedded
from benchmarks.study.drivers import run_pretrain
from benchmarks.study.settings import DOWNSTREAM, SEG_CONFIG, TEACHER_CONFIG, TRACK_CONFIG
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
    for task in DOWNSTREAM.values():
        cfg = Config.fromfile(str(task.config))
        assert cfg.model.num_classes == len(PHOTOS) and cfg.model.depth == 4 and cfg.model.img_size == 64
    for config in (TEACHER_CONFIG, *(r.config for r in RECIPES.values() if r.config and r.available())):
        cfg = Config.fromfile(str(config))
        assert cfg.runtime.precision == "fp32" and cfg.model.depth == 4 and cfg.model.img_size == 64


def test_teacher_export_feeds_the_distillation_recipes(tmp_path):
    """The study teacher (MAE, ViT-Small width) exports a backbone the D-MAE / D²-MAE configs load
    as a vit_small teacher of depth 4, every weight found; then one D²-MAE step runs."""
    import torch

    from pretrain.tasks import build_task

    make_photo_imagenet(tmp_path / "data", ("brick", "coffee"), per_class=8, size=72)
    short = {"data.root": str(tmp_path / "data"), "schedule.epochs": 1, "schedule.warmup_epochs": 0,
             "data.batch_size": 16, "runtime.checkpoint_interval": None}
    summary = run_pretrain(TEACHER_CONFIG, short, tmp_path / "teacher")
    teacher_ckpt = Path(summary["export"])
    cfg = Config.fromfile(str(RECIPES["d2mae"].config))
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


@pytest.mark.parametrize("recipe", ["supervised", "mocov3"])
def test_new_recipes_run_a_few_steps_and_export(tmp_path, recipe):
    """The supervised and MoCo-v3 study configs build, train two updates on the photo crops and
    export an encoder every downstream task loads: the 4-block 64 px ViT-Tiny, every weight found,
    equal to the trained (base) encoder in the run's checkpoint."""
    import torch

    from backbones import build_backbone, load_pretrained
    from benchmarks.study.drivers import run_recipe

    entry = RECIPES[recipe]
    assert entry.available(), f"{recipe}: {entry.missing()}"
    make_photo_imagenet(tmp_path / "data", tuple(PHOTOS), per_class=2, probe_per_class=1, val_per_class=1, size=72)
    summary = run_recipe(entry.config, {"data.root": str(tmp_path / "data"), "schedule.epochs": 1,
                                        "schedule.warmup_epochs": 0, "data.batch_size": 14, "runtime.log_interval": 1,
                                        "runtime.checkpoint_interval": None}, tmp_path / "run")
    assert summary["updates"] == 2 and summary["finished"] and math.isfinite(summary["loss_last"])
    export = tmp_path / "run" / "backbone.pth"
    backbone = build_backbone("vit_tiny", num_classes=0, depth=4, img_size=64)
    result = load_pretrained(backbone, export)
    assert result.missing == [] and result.unexpected == [] and result.resized == []
    state = torch.load(tmp_path / "run" / "latest.pth", weights_only=True)["model"]
    trained = [v for k, v in state.items() if k.endswith("blocks.3.attn.qkv.weight") and "momentum" not in k]
    assert len(trained) == 1 and torch.equal(trained[0], backbone.blocks[3].attn.qkv.weight)


def test_a_recipe_whose_code_is_not_merged_is_listed_not_run(tmp_path):
    from benchmarks.study.settings import Recipe

    unknown = tmp_path / "unknown_model.py"
    unknown.write_text(f"_base_ = [{str(RECIPES['mae'].config)!r}]\nmodel = dict(name='no_such_model')\n")
    assert "model `no_such_model` is not registered" in Recipe("x", "x", unknown).missing()
    no_base = tmp_path / "no_base.py"
    no_base.write_text("_base_ = ['./absent_base.py']\n")
    assert "absent_base.py" in Recipe("y", "y", no_base).missing() and not Recipe("y", "y", no_base).available()
    assert Recipe("mae", "MAE", RECIPES["mae"].config).missing() == ""


# ------------------------------------------------------------------------ statistics, sentences
def test_noise_verdict():
    """Known values: Welch's standard error over seeds, the verdict of every step, and the whole
    sentences under a table."""
    from benchmarks.study.scoring import (Estimate, baseline_sentence, compare_means, compare_paired,
                                          compare_to_value, ordered_steps, ranking_sentence)

    rows = {"A": Estimate.of([50, 52, 54]), "B": Estimate.of([47, 48, 49]), "C": Estimate.of([46, 48, 50])}
    assert (rows["A"].mean, rows["A"].std, rows["B"].std) == (52.0, 2.0, 1.0) and rows["A"].cell() == "52.0 ± 2.0"
    steps = ordered_steps(rows)
    assert [(c.a, c.b) for c in steps] == [("A", "B"), ("B", "C")]
    assert steps[0].se == pytest.approx(math.sqrt(4 / 3 + 1 / 3)) and steps[0].verdict == "above"
    assert steps[1].difference == 0 and steps[1].verdict == "within noise"
    assert ranking_sentence(steps, ("A", 52.0), "Top-1", "Welch, over seeds") == (
        "Top-1 in order: A 52.0 > B 48.0 (+4.0 ± 1.3, beyond the noise) > C 48.0 (+0.0 ± 1.3, within noise). "
        "A step is beyond the noise when it exceeds 2 standard errors of the difference (Welch, over seeds).")
    against = [compare_to_value(n, e, "majority", 49.0) for n, e in rows.items()]
    assert baseline_sentence(against, "the majority class", 49.0, "standard error of the seed mean") == (
        "Against the majority class (49.0): above it beyond the noise: A (+3.0 ± 1.2); within the noise: "
        "B (-1.0 ± 0.6), C (-1.0 ± 1.2) (noise: standard error of the seed mean).")
    low = [compare_to_value(n, e, "floor", 40.0) for n, e in rows.items()]
    assert baseline_sentence(low, "a floor", 40.0, "s.e.") == (
        "Against a floor (40.0): every row is above it beyond the noise: A (+12.0 ± 1.2), B (+8.0 ± 0.6), "
        "C (+8.0 ± 1.2) (noise: s.e.).")
    one = compare_means("A", Estimate.of([50]), "B", rows["B"])
    assert one.verdict == "no noise estimate" and one.text() == "+2.0"
    paired = compare_paired("t", [30.0, 40.0, 50.0], "static", [20.0, 36.0, 41.0])  # differences 10, 4, 9
    assert paired.difference == pytest.approx(23 / 3)
    assert paired.se == pytest.approx(np.std([10, 4, 9], ddof=1) / math.sqrt(3)) and paired.verdict == "above"
    with pytest.raises(ValueError, match="3 against 2 values"):
        compare_paired("t", [1.0, 2.0, 3.0], "s", [1.0, 2.0])


def test_classification_table_holds_the_runs_metrics():
    """The engines' metrics.json values, mean ± std per scale, and the sentences computed from them."""
    from benchmarks.study.tables import classification_table

    runs = {"MAE": {"all": [{"top1": 50.0}, {"top1": 52.0}, {"top1": 54.0}], "10pct": [{"top1": 20.0}] * 3},
            "none": {"all": [{"top1": 47.0}, {"top1": 48.0}, {"top1": 49.0}], "10pct": [{"top1": 21.0}] * 3}}
    md, rows, sentences = classification_table(runs, {"all": "all images", "10pct": "10%"}, "T",
                                               {"all": 7.0, "10pct": 7.0})
    assert "| MAE | 52.0 ± 2.0 (n=3) | 20.0 ± 0.0 (n=3) |" in md
    assert "| none | 48.0 ± 1.0 (n=3) | 21.0 ± 0.0 (n=3) |" in md
    assert rows["MAE"]["all"]["top1"] == [50.0, 52.0, 54.0] and rows["none"]["all"]["top1_std"] == 1.0
    assert sentences == [
        "all images: Top-1 in order: MAE 52.0 > none 48.0 (+4.0 ± 1.3, beyond the noise). A step is beyond the noise "
        "when it exceeds 2 standard errors of the difference (Welch, over seeds).",
        "all images: Against the majority class (7.0): every row is above it beyond the noise: MAE (+45.0 ± 1.2), "
        "none (+41.0 ± 0.6) (noise: standard error of the seed mean).",
        "10%: Top-1 in order: none 21.0 > MAE 20.0 (+1.0 ± 0.0, beyond the noise). A step is beyond the noise when "
        "it exceeds 2 standard errors of the difference (Welch, over seeds).",
        "10%: Against the majority class (7.0): every row is above it beyond the noise: MAE (+13.0 ± 0.0), "
        "none (+14.0 ± 0.0) (noise: standard error of the seed mean)."]
    assert md.endswith("\n\n".join(sentences))


# -------------------------------------------------------------------------------- findings
def _top1(values):
    return {"top1": list(values)}


def test_findings_hold_exactly_the_computed_verdicts():
    """Fixed results give each verdict (agrees, disagrees, within noise, no noise estimate, not run)
    with the difference and standard error computed by hand; the published column is read from the
    rows it is given."""
    from benchmarks.published import Published
    from benchmarks.study.findings import findings, findings_table

    mae, moco, sup, d2 = "MAE", "MoCo-v3", "supervised", "D²-MAE"
    classification = {
        "probe": {mae: {"all": _top1([60, 61, 62]), "10pct": _top1([30, 31, 32])},
                  moco: {"all": _top1([50, 51, 52]), "10pct": _top1([40, 41, 42])},
                  sup: {"all": _top1([55, 56, 57]), "10pct": _top1([29, 31, 33])},
                  d2: {"all": _top1([60, 61, 62]), "10pct": _top1([20, 21, 22])}},
        "finetune": {mae: {"all": _top1([50, 51, 52]), "10pct": _top1([30, 31, 32])},
                     moco: {"all": _top1([50.5, 51.5, 52.5]), "10pct": _top1([30])},
                     d2: {"all": _top1([50, 51, 52]), "10pct": _top1([30.2, 31.2, 32.2])}},
    }
    seg = {mae: {"mIoU": 30.0}, moco: {"mIoU": 20.0}}
    track = {mae: [10.0, 20.0, 30.0, 40.0], moco: [21.0, 29.0, 41.0, 50.0]}  # differences -11, -9, -11, -10
    cka = [{"a": mae, "b": moco, "layers_a": list("01234"), "layers_b": list("01234"),
            "matrix": [[0.9 if i == j == 0 else 0.8 if i == j == 1 else 0.5 if i == j == 2 else
                        0.3 if i == j == 3 else 0.2 if i == j == 4 else 0.1 for j in range(5)] for i in range(5)]}]
    rows = [Published("MAE-Tiny", "ImageNet-1k top-1", 70.0, "r", "src A"),
            Published("MoCov3-Tiny", "ImageNet-1k top-1", 60.0, "r", "src B")]
    evidence = findings(classification, {"all": "all images", "10pct": "10%"}, seg, track, cka, published_rows=rows)
    got = {(e.claim, e.what): e for e in evidence if e.claim != "b"}
    expect = {
        ("a", "probe top-1, all images"): ("agrees", 10.0, math.sqrt(2 / 3)),
        ("a", "finetune top-1, all images"): ("within noise", -0.5, math.sqrt(2 / 3)),
        ("a", "segmentation mIoU"): ("no noise estimate", 10.0, math.nan),
        ("a", "tracking AUC"): ("disagrees", -10.25, np.std([-11, -9, -11, -10], ddof=1) / 2),
        ("c", "same-layer CKA, MAE vs MoCo-v3: last layers − first layers"):
            ("agrees", 0.25 - 0.85, math.sqrt(0.005 / 2 + 0.005 / 2)),
        ("c", "same-layer CKA, MAE vs supervised: last layers − first layers"): ("not run", None, None),
        ("d", "probe top-1, 10%"): ("disagrees", -10.0, math.sqrt(2 / 3)),
        ("d", "finetune top-1, 10%"): ("within noise", 0.2, math.sqrt(2 / 3)),
    }
    for key, (verdict, difference, se) in expect.items():
        e = got[key]
        assert e.verdict == verdict, key
        if difference is None:
            assert e.comparison is None
        else:
            assert e.comparison.difference == pytest.approx(difference)
            assert (math.isnan(se) and math.isnan(e.comparison.se)) or e.comparison.se == pytest.approx(se)
    b_rows = [e for e in evidence if e.claim == "b"]  # MAE vs MoCo-v3, then MAE vs supervised, per task
    assert [(e.comparison.b if e.comparison else e.missing, e.verdict) for e in b_rows] == [
        (moco, "agrees"), (moco, "no noise estimate"), (sup, "within noise"), ("supervised not run", "not run")]
    assert [e.comparison.difference for e in b_rows[:3]] == pytest.approx([-10.0, 1.0, 0.0])  # MoCo-v3: one seed
    md, data = findings_table(evidence)
    assert "| (a) MIM (MAE) above contrastive (MoCo-v3) with enough data | probe top-1, all images | " \
           "MAE − MoCo-v3 = +10.00 ± 0.82 | Welch, over seeds | **agrees** | MAE-Tiny 70.0 vs MoCov3-Tiny 60.0 " \
           "(ImageNet-1k top-1; src A) |" in md
    assert "(b) of 4 comparison(s): 1 agrees, 1 within noise, 1 no noise estimate, 1 not run." in md
    assert "no checked transfer top-1, small data figure" in data["b"]["rows"][0]["published"]
    assert data["a"]["counts"] == {"agrees": 1, "disagrees": 1, "within noise": 1, "no noise estimate": 1,
                                   "not run": 0}
    only_mae = findings({"probe": {mae: {"all": _top1([1, 2])}}}, {"all": "all"}, published_rows=rows)
    assert {e.verdict for e in only_mae} == {"not run"}


def test_a_data_scale_column_reads_what_its_runs_trained_on():
    """The 10% column's label carries the images its runs trained on (their metrics); a run whose
    subset is not its scale's is refused."""
    from benchmarks.study.run import scale_label

    tenth = {"subset": {"fraction": 0.1, "per_class": None, "seed": 0}, "train_images": 42, "train_images_total": 448}
    assert scale_label("10pct", [tenth, tenth], "probe").endswith(": 42 of 448 images")
    full = {"subset": None, "train_images": 448, "train_images_total": 448}
    assert scale_label("all", [full], "probe").endswith(": 448 of 448 images")
    with pytest.raises(RuntimeError, match="probe, 10pct: a run trained on subset None"):
        scale_label("10pct", [tenth, full], "probe")
    with pytest.raises(RuntimeError, match="no subset"):
        scale_label("all", [{"top1": 1.0}], "probe")


# -------------------------------------------------------------------------------- baselines
def test_majority_class_is_counted_from_the_folders(tmp_path):
    from benchmarks.study.data import majority_class_top1

    for split, counts in (("train", {"b": 5, "a": 3, "c": 5}), ("val", {"a": 2, "b": 3, "c": 1})):
        for name, count in counts.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                (tmp_path / split / name / f"{i}.JPEG").write_bytes(b"x")
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    # b and c tie with 5 training images: b comes first in sorted order; 3 of the 6 val images are b
    assert majority_class_top1(tmp_path, "train", "val") == {"class": "b", "top1": 50.0, "val_images": 6}
    with pytest.raises(FileNotFoundError, match="probe"):
        majority_class_top1(tmp_path, "probe", "val")


def test_most_frequent_class_and_static_box_are_computed_from_the_data(tmp_path):
    from benchmarks.study.data import most_frequent_class_predictions, static_box_results

    ade = make_ade20k_dataset(tmp_path / "ade", num_train=3, num_val=2, size=(96, 72), num_classes=len(PHOTOS),
                              photos=list(PHOTOS))
    counts = np.zeros(256, np.int64)
    for path in sorted((ade / "annotations" / "training").glob("*.png")):
        values, n = np.unique(read_label_map(path), return_counts=True)
        counts[values] += n
    counts[0] = 0
    preds, value = most_frequent_class_predictions(ade, tmp_path / "floor")
    assert value == int(np.argmax(counts)) and value > 0
    for path in sorted((ade / "annotations" / "validation").glob("*.png")):
        pred = read_label_map(preds / path.name)
        assert pred.shape == read_label_map(path).shape and (pred == value).all()
    lasot = tmp_path / "lasot"
    make_lasot_dataset(lasot, ("coins", "rocket"), seqs_per_class=2, num_frames=5, size=(96, 72), test_per_class=1,
                       source="photos")
    static = static_box_results(lasot, tmp_path / "static")
    assert sorted(p.name for p in static.iterdir()) == ["coins-1.txt", "rocket-1.txt"]
    for name in ("coins-1", "rocket-1"):
        gt = np.loadtxt(lasot / name.split("-")[0] / name / "groundtruth.txt", delimiter=",")
        np.testing.assert_allclose(np.loadtxt(static / f"{name}.txt", delimiter=","), np.repeat(gt[:1], 5, 0),
                                   atol=1e-4)


def test_tables_of_fixed_result_folders_hold_exactly_the_evaluators_numbers(tmp_path):
    """Two trackers and the static box on fixed sequences, two segmentations and the most frequent
    class: every cell and every number in the sentences is what the evaluators give."""
    from benchmarks.study.data import most_frequent_class_predictions, static_box_results
    from benchmarks.study.tables import lasot_table, seg_table

    lasot = tmp_path / "lasot"
    make_lasot_dataset(lasot, ("car", "dog", "cat"), seqs_per_class=1, num_frames=12, size=(96, 72),
                       write_training_set=False)
    rng = np.random.default_rng(0)
    folders = {}
    for name, noise in (("good", 1.0), ("poor", 15.0)):
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        for seq in ("car-1", "dog-1", "cat-1"):
            gt = np.loadtxt(lasot / seq.split("-")[0] / seq / "groundtruth.txt", delimiter=",")
            pred = gt + rng.normal(0, noise, gt.shape)
            pred[:, 2:] = np.maximum(pred[:, 2:], 1)
            np.savetxt(folder / f"{seq}.txt", pred, fmt="%.3f", delimiter=",")
    static = static_box_results(lasot, tmp_path / "static")
    md, rows, sentences, _ = lasot_table(folders, lasot, "T", baseline=("static box", static))
    direct = {n: evaluate_tracker(f, lasot, progress=False) for n, f in {**folders, "static box": static}.items()}
    per_seq = {n: np.array([r.per_sequence[s]["AUC"] for s in r.sequences]) for n, r in direct.items()}
    for name, result in direct.items():
        se = per_seq[name].std(ddof=1) / math.sqrt(3)
        assert (rows[name]["AUC"], rows[name]["NP"]) == (result.AUC, result.NP)
        assert f"| {name} | {result.AUC:.2f} | {se:.2f} | {result.P:.2f} | {result.NP:.2f} | 3 |" in md
    step = per_seq["good"] - per_seq["poor"]
    step_se = step.std(ddof=1) / math.sqrt(3)
    verdict = "beyond the noise" if step.mean() > 2 * step_se else "within noise"
    noise = "standard error of the paired per-sequence difference"
    assert sentences[0] == (
        f"AUC in order: good {direct['good'].AUC:.2f} > poor {direct['poor'].AUC:.2f} "
        f"({step.mean():+.2f} ± {step_se:.2f}, {verdict}). A step is beyond the noise when it exceeds 2 standard "
        f"errors of the difference ({noise}).")
    versus = {n: per_seq[n] - per_seq["static box"] for n in folders}
    cells = {n: f"{n} ({d.mean():+.2f} ± {d.std(ddof=1) / math.sqrt(3):.2f})" for n, d in versus.items()}
    above = [n for n, d in versus.items() if d.mean() > 2 * d.std(ddof=1) / math.sqrt(3)]
    assert above == ["good"]  # the fixed folders: the noisy tracker does not beat the static box beyond the noise
    poor = versus["poor"]
    group = "below it beyond the noise" if poor.mean() < -2 * poor.std(ddof=1) / math.sqrt(3) else "within the noise"
    assert sentences[1] == (f"Against static box ({direct['static box'].AUC:.2f}): above it beyond the noise: "
                            f"{cells['good']}; {group}: {cells['poor']} (noise: {noise}).")

    ade = make_ade20k_dataset(tmp_path / "ade", num_train=3, num_val=3, size=(96, 72), num_classes=len(PHOTOS),
                              photos=list(PHOTOS))
    gt_dir = ade / "annotations" / "validation"
    preds = tmp_path / "preds"
    preds.mkdir()
    for path in sorted(gt_dir.glob("*.png")):
        label = read_label_map(path).copy()
        label[: label.shape[0] // 2] = label[: label.shape[0] // 2][:, ::-1]
        cv2.imwrite(str(preds / path.name), label)
    floor, value = most_frequent_class_predictions(ade, tmp_path / "floor")
    md, rows, sentences = seg_table({"half": preds, "exact": gt_dir}, gt_dir, len(PHOTOS), list(PHOTOS), "S",
                                    baseline=("most frequent", floor))
    scores = {n: evaluate_folders(f, gt_dir, len(PHOTOS), reduce_zero_label=True, pred_raw=True,
                                  class_names=list(PHOTOS), progress=False)
              for n, f in (("half", preds), ("exact", gt_dir), ("most frequent", floor))}
    for name, result in scores.items():
        assert rows[name]["mIoU"] == result["mIoU"] and f"| {name} | {result['mIoU']:.2f} | {result['aAcc']:.2f} |" in md
    assert scores["exact"]["mIoU"] == 100.0
    floor_miou = scores["most frequent"]["mIoU"]
    assert sentences == [f"Against most frequent (mIoU {floor_miou:.2f}), one seed a row (no noise estimate): above it: "
                         f"half ({scores['half']['mIoU'] - floor_miou:+.2f}), exact ({100 - floor_miou:+.2f})."]


# ------------------------------------------------------------------------------- cache keys
def _copy_code(root: Path) -> Path:
    import shutil

    for package in ("fileio", "backbones", "engine", "evaluation", "pretrain", "seg", "track", "analysis",
                    "benchmarks", "tools"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def test_code_digest_follows_the_imports(tmp_path):
    """A stage's code key changes with every project file its entry points reach (function-level
    imports and package __init__ files included) and with nothing else."""
    from benchmarks.stages import code_digest, code_files

    code = _copy_code(tmp_path / "code")
    files = {str(p.relative_to(code)) for p in code_files(run_pretrain, root=code)}
    assert {"pretrain/__init__.py", "pretrain/engine.py", "engine/loop.py", "backbones/vit.py",
            "fileio/__init__.py"} <= files
    assert not any(f.startswith(("track/", "seg/", "benchmarks/")) for f in files)
    before = {name: code_digest(*entries, root=code) for name, entries in
              (("pretrain", (run_pretrain,)), ("track", ("track.train",)), ("photos", ("benchmarks.demo_data.photos",)))}
    vit = code / "backbones" / "vit.py"
    vit.write_text(vit.read_text() + "\n# changed\n")
    after = {name: code_digest(*entries, root=code) for name, entries in
             (("pretrain", (run_pretrain,)), ("track", ("track.train",)), ("photos", ("benchmarks.demo_data.photos",)))}
    assert after["pretrain"] != before["pretrain"] and after["track"] != before["track"]
    assert after["photos"] == before["photos"]
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        code_digest("no_such_module", root=code)


def test_a_code_change_reruns_the_stages_it_affects(tmp_path):
    """plan_study's keys over a copy of the code: editing the MAE model re-keys pre-training and all
    that reads its exports, leaves the data and random-init segmentation alone; editing the
    inference-time tracker re-keys the tracking runs and nothing else."""
    from benchmarks.stages import StageRunner
    from benchmarks.study import plan_study

    code = _copy_code(tmp_path / "code")
    settings = StudySettings(recipes=("none", "mae"), seeds=(0,))
    runner = StageRunner(tmp_path / "cache", tmp_path / "logs")

    def keys() -> dict[str, str]:
        return {s.name: s.key for s in plan_study(settings, runner, code_root=code).stages}

    base = keys()
    assert keys() == base
    mae = code / "pretrain" / "mae.py"
    mae.write_text(mae.read_text() + "\n# changed\n")
    changed = {n for n, k in keys().items() if k != base[n]}
    assert {"pretrain-mae", "probe-mae-all-seed0", "probe-none-all-seed0", "seg-mae", "track-train-mae",
            "track-test-mae"} <= changed
    assert not changed & {"data-photos", "data-ade20k", "data-lasot", "seg-none", "track-train-none", "sizes"}
    base = keys()
    tracker = code / "track" / "tracker.py"
    tracker.write_text(tracker.read_text() + "\n# changed\n")
    changed = {n for n, k in keys().items() if k != base[n]}
    assert changed == {"track-test-none", "track-test-mae"}


def test_a_recipe_and_a_data_scale_plug_in_as_entries(tmp_path, monkeypatch):
    """Adding a recipe is adding an entry with its config: it gets its pre-training stage, its
    probes and fine-tunes at every scale and seed, segmentation and tracking; a data scale's options
    reach its stages' configs; a recipe whose config is missing is refused before any work."""
    from benchmarks.stages import StageRunner
    from benchmarks.study import SCALES, plan_study
    from benchmarks.study import settings as study_settings

    config = tmp_path / "contrastive_recipe.py"
    config.write_text(f"_base_ = [{str(RECIPES['mae'].config)!r}]\nmodel = dict(mask_ratio=0.5)\n")
    monkeypatch.setitem(study_settings.RECIPES, "toy", study_settings.Recipe("toy", "toy", config, estimate_s=5))
    settings = StudySettings(recipes=("none", "toy"), scales=("all", "10pct"), seeds=(0, 1, 2))
    runner = StageRunner(tmp_path / "cache", tmp_path / "logs")
    plan = plan_study(settings, runner)
    names = {s.name for s in plan.stages}
    assert {"pretrain-toy", "seg-toy", "track-train-toy", "track-test-toy"} <= names and "pretrain-teacher" not in names
    for task in ("probe", "finetune"):
        for scale in ("all", "10pct"):
            stages = plan.downstream[task][scale]["toy"]
            assert [s.name for s in stages] == [f"{task}-toy-{scale}-seed{i}" for i in range(3)]
            assert len({s.key for s in stages}) == 3
    assert plan.downstream["probe"]["10pct"]["toy"][0].key != plan.downstream["probe"]["all"]["toy"][0].key
    assert SCALES["10pct"].options["data.subset"] == {"fraction": 0.1, "seed": 0}
    monkeypatch.setitem(study_settings.RECIPES, "ghost", study_settings.Recipe("ghost", "ghost", tmp_path / "no.py"))
    assert "ghost" not in study_settings.available_recipes()
    with pytest.raises(FileNotFoundError, match=r"cannot run: ghost \(`.*no\.py` not in the tree yet\)"):
        plan_study(StudySettings(recipes=("none", "ghost")), runner)
    with pytest.raises(ValueError, match="unknown data scale"):
        plan_study(StudySettings(recipes=("none",), scales=("half",)), runner)


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
    for sentence in data["sentences"]["lasot"] + data["sentences"]["seg"] + data["sentences"]["probe"]:
        assert sentence in text
    preds = Path(_stage(smoke, "seg-mae")["summary"]["preds"])
    ade = Path(_stage(smoke, "data-ade20k")["summary"]["root"])
    miou = evaluate_folders(preds, ade / "annotations" / "validation", len(PHOTOS), reduce_zero_label=True,
                            pred_raw=True, class_names=list(PHOTOS), progress=False)
    assert data["seg"]["MAE"]["mIoU"] == miou["mIoU"] and f"| MAE | {miou['mIoU']:.2f} |" in text
    assert len(list(preds.glob("*.png"))) == SMOKE.ade20k["num_val"]  # written by mmseg's IoUMetric
    for task in ("probe", "finetune"):
        metrics = json.loads((Path(_stage(smoke, f"{task}-mae-all-seed0")["folder"]) / "metrics.json").read_text())
        assert data["classification"][task]["MAE"]["all"]["top1"] == [metrics["top1"]]
    for picture in data["pictures"]:
        assert (smoke["root"] / "out" / picture).stat().st_size > 1000
    for task in ("probe", "finetune"):  # the 10% runs trained on the class-stratified tenth (at least one a class)
        metrics = json.loads((Path(_stage(smoke, f"{task}-mae-10pct-seed0")["folder"]) / "metrics.json").read_text())
        assert metrics["subset"]["fraction"] == 0.1 and metrics["train_images_total"] == SMOKE.photos[
            "probe_per_class"] * len(PHOTOS)
        assert metrics["train_images"] == len(PHOTOS)
        assert data["classification"][task]["MAE"]["10pct"]["top1"] == [metrics["top1"]]
    assert f"{len(PHOTOS)} of {SMOKE.photos['probe_per_class'] * len(PHOTOS)} images" in text
    assert "**Findings" in text and set(data["findings"]) == {"a", "b", "c", "d"}
    assert all(row["verdict"] == "not run" for claim in data["findings"].values() for row in claim["rows"])


def test_smoke_export_is_what_every_task_starts_from(smoke):
    export = Path(_stage(smoke, "pretrain-mae")["folder"]) / "backbone.pth"
    assert export.is_file()
    for task in ("probe", "finetune"):
        log = [json.loads(line) for line in
               (Path(_stage(smoke, f"{task}-mae-all-seed0")["folder"]) / "log.jsonl").read_text().splitlines()]
        assert next(r for r in log if r.get("event") == "start")["pretrained"] == str(export)
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
    for task in ("classification", "seg", "lasot", "sentences"):  # the baselines are written into each run's out
        assert json.dumps(data[task], sort_keys=True, default=str).replace(str(tmp_path / "out"), "OUT") == \
            json.dumps(smoke["data"][task], sort_keys=True, default=str).replace(str(root / "out"), "OUT")


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
    """The embedded default of ``make benchmark``: every recipe in the tree, full toy budget (minutes)."""
    settings = StudySettings()
    text, data = run_embedded(tmp_path / "out", settings, threads=2, cache=tmp_path / "cache", progress=False)
    names = [RECIPES[r].label for r in settings.recipes]
    for task in ("seg", "lasot"):
        assert all(n in data[task] for n in names)
    for task in settings.downstream:
        assert all(len(data["classification"][task][n]["all"]["top1"]) == len(settings.seeds) for n in names)
    lasot_root = Path(next(r for r in data["stages"] if r["stage"] == "data-lasot")["summary"]["root"])
    for n, recipe in zip(names, settings.recipes):
        assert math.isfinite(data["lasot"][n]["AUC"]) and data["lasot"][n]["fps"] > 0
        stage = next(r for r in data["stages"] if r["stage"] == f"track-test-{recipe}")
        assert evaluate_tracker(stage["summary"]["results"], lasot_root, progress=False).AUC == data["lasot"][n]["AUC"]
    assert all(s["finished"] for s in data["pretraining"].values())


def test_smoke_report_holds_the_encoders_analyses(smoke):
    """The study's encoders go through analysis.report_section: a CKA of the export with itself is 1."""
    analysis = smoke["data"]["analysis"]
    assert "Analyses of the encoders" in smoke["text"]
    matrix = analysis["cka"]["pairs"][0]["matrix"]  # one recipe: the export against itself
    assert abs(matrix[-1][-1] - 1.0) < 1e-6
    for figure in ("attention_distance.png", "attention_distance_panels.png", "attention_entropy_panels.png"):
        assert (smoke["root"] / "out" / "study" / "analysis" / figure).stat().st_size > 1000


def test_smoke_pretraining_summary_reads_the_training_log(smoke):
    """The pre-training summary and its report line are the engine log's first and last train records."""
    folder = Path(_stage(smoke, "pretrain-mae")["folder"])
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("event") == "train"]
    summary = smoke["data"]["pretraining"]["pretrain-mae"]
    assert len(train) >= 2 and train[0]["loss"] != train[-1]["loss"]
    assert (summary["loss_first"], summary["loss_last"]) == (train[0]["loss"], train[-1]["loss"])
    assert summary["updates"] == train[-1]["update"]
    assert (f"mae: {train[-1]['update']} updates, loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}"
            in smoke["text"])
