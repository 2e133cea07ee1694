"""The main job's report (benchmarks/report.py) and its stage machinery (benchmarks/stages.py):
CPU-capability decisions, section selection, cached / resumable stages, and tables filled from
given results with exactly the evaluators' numbers."""
from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.demo_data.ade20k import make_ade20k_dataset
from benchmarks.demo_data.lasot import make_lasot_dataset
from benchmarks.report import CpuSupport, _named_paths, cpu_flags, detect_cpu, main, select_sections
from benchmarks.stages import Stage, StageError, StageProgress, StageRunner, config_digest
from evaluation.lasot import evaluate_tracker
from evaluation.miou import ade20k_class_names, evaluate_folders, read_label_map

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- the CPU
def test_cpu_flags_decide_the_bf16_rows(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse avx2 fma avx512_bf16\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "fma"}  # the first CPU's line
    assert cpu_flags(tmp_path / "missing") == set()
    avx2 = detect_cpu(flags={"avx2", "fma"}, capability="AVX2")
    assert avx2.dtypes == ["fp32"] and not avx2.native_bf16 and "left out" in avx2.note()
    assert "avx512_bf16 or amx_bf16" in avx2.note()
    for flag in ("avx512_bf16", "amx_bf16"):
        native = detect_cpu(flags={"avx2", flag}, capability="AVX512")
        assert native.dtypes == ["fp32", "bf16"] and native.native_bf16 and flag in native.note()
    restricted = detect_cpu(flags={"avx512f", "avx512_bf16"}, capability="AVX2")  # ATEN_CPU_CAPABILITY=avx2
    assert restricted.dtypes == ["fp32"] and "restricted to AVX2" in restricted.note()
    assert CpuSupport("AVX2", "x", False, False, "emulated").to_dict()["dtypes"] == ["fp32"]


def test_section_selection():
    def names(*requested):
        return [s.name for s in select_sections(list(requested))]

    assert names("all") == ["study", "models", "pretrain", "seg", "track"]
    assert names("speed") == ["pretrain", "seg", "track"]
    assert names("lasot") == names("ade20k") == names("eval") == ["study"]
    assert names("track", "models") == ["models", "track"]


def test_named_paths():
    assert _named_paths(["a=/x/y", "/p/q"], "--opt") == {"a": Path("/x/y"), "q": Path("/p/q")}
    with pytest.raises(SystemExit, match="given twice"):
        _named_paths(["q=/a", "/b/q"], "--opt")


# ------------------------------------------------------------------------------------ stages
def test_stage_runs_once_and_is_reused(tmp_path):
    calls = []

    def action(work: Path) -> dict:
        calls.append(work)
        print("working")  # goes to the stage's log, not the terminal
        (work / "artefact.txt").write_text("done")
        return {"value": 3}

    stage = Stage("demo", "demo stage", "k1", 1.0, action)
    runner = StageRunner(tmp_path / "cache", tmp_path / "logs")
    assert runner.run(stage) == {"value": 3}
    assert (tmp_path / "logs" / "demo.log").read_text().strip() == "working"
    again = StageRunner(tmp_path / "cache", tmp_path / "logs")
    assert again.run(stage) == {"value": 3} and len(calls) == 1
    assert again.records[0]["cached"] and not runner.records[0]["cached"]
    assert runner.records[0]["wall_s"] >= 0 and runner.records[0]["cpu_s"] >= 0
    other_key = Stage("demo", "demo stage", "k2", 1.0, action)
    again.run(other_key)
    assert len(calls) == 2 and calls[1] != calls[0]  # another key: another folder, run again


def test_failed_stage_is_rerun_in_the_same_folder(tmp_path):
    attempts = []

    def flaky(work: Path) -> dict:
        attempts.append((work / "partial.txt").exists())
        (work / "partial.txt").write_text("checkpoint")
        if len(attempts) == 1:
            raise ValueError("interrupted")
        return {}

    stage = Stage("flaky", "flaky stage", "k", 1.0, flaky)
    runner = StageRunner(tmp_path / "cache", tmp_path / "logs")
    with pytest.raises(StageError, match=r"(?s)flaky.*interrupted.*flaky\.log"):
        runner.run(stage)
    assert not (runner.folder(stage) / "stage.json").exists()
    assert "ValueError: interrupted" in (tmp_path / "logs" / "flaky.log").read_text()
    runner.run(stage)
    assert attempts == [False, True]  # the second attempt found the first one's work


def _demo_stages(cache: Path, fail: str = "", key: str = "k") -> list[Stage]:
    """Three stages: c reads what a and b wrote (listed first, so the runner must reorder)."""
    def stage(name: str, value: int, reads: tuple[str, ...] = ()) -> Stage:
        def action(work: Path) -> dict:
            total = value + sum(int((cache / f"{r}-{key}" / "out.txt").read_text()) for r in reads)
            if name == fail:
                raise ValueError(f"{name} broke")
            (work / "out.txt").write_text(str(total))
            return {"total": total, "pid": os.getpid()}
        return Stage(name, f"stage {name}", key, 1.0, action, after=reads)
    return [stage("c", 10, ("a", "b")), stage("a", 1), stage("b", 2)]


def test_stages_run_at_once_in_workers_after_their_inputs(tmp_path):
    cache = tmp_path / "cache"
    runner = StageRunner(cache, tmp_path / "logs", StageProgress(3, enabled=False))
    summaries = runner.run_all(_demo_stages(cache), jobs=2, rebuild=partial(_demo_stages, cache))
    assert [summaries[n]["total"] for n in ("c", "a", "b")] == [13, 1, 2]
    assert all(s["pid"] != os.getpid() for s in summaries.values())     # in worker processes
    assert sorted(r["stage"] for r in runner.records) == ["a", "b", "c"]
    assert (tmp_path / "logs" / "c.log").is_file()
    again = StageRunner(cache, tmp_path / "logs")
    assert again.run_all(_demo_stages(cache), jobs=2, rebuild=partial(_demo_stages, cache)) == summaries
    assert all(r["cached"] for r in again.records)
    one_by_one = tmp_path / "sequential"
    in_process = StageRunner(one_by_one, tmp_path / "logs")
    summaries = in_process.run_all(_demo_stages(one_by_one), jobs=1)
    assert [summaries[n]["total"] for n in ("c", "a", "b")] == [13, 1, 2]
    assert [r["stage"] for r in in_process.records] == ["a", "b", "c"] and summaries["c"]["pid"] == os.getpid()


def test_a_failing_worker_stage_stops_the_study_and_keeps_the_rest(tmp_path):
    cache = tmp_path / "cache"
    runner = StageRunner(cache, tmp_path / "logs")
    with pytest.raises(StageError, match=r"(?s)stage c .*c broke"):
        runner.run_all(_demo_stages(cache, fail="c"), jobs=2, rebuild=partial(_demo_stages, cache, "c"))
    assert (cache / "a-k" / "stage.json").is_file() and (cache / "b-k" / "stage.json").is_file()
    assert not (cache / "c-k" / "stage.json").exists()
    with pytest.raises(StageError, match="the worker process planned other"):  # the code changed meanwhile
        runner.run_all(_demo_stages(cache), jobs=2, rebuild=partial(_demo_stages, cache, key="other"))
    with pytest.raises(ValueError, match=r"not planned: \['a', 'b'\]"):
        runner.run_all(_demo_stages(cache)[:1], jobs=2)


def test_config_digest_follows_content_not_environment(monkeypatch):
    config = REPO / "configs/study/seg/upernet_vit-tiny-d4_photos-64x64.py"
    base = config_digest(config)
    monkeypatch.setenv("LITEVIT_ADE20K", "/somewhere/else")
    assert config_digest(config) == base
    assert config_digest(config, {"train_cfg.max_iters": 7}) != base


# ------------------------------------------------------------------------------ given results
@pytest.fixture()
def given(tmp_path):
    """A LaSOT-layout set with two result folders, an ADE20K-layout set with predictions encoded
    as mmseg writes them, and a metrics.json."""
    lasot = tmp_path / "lasot"
    make_lasot_dataset(lasot, ("car", "dog"), seqs_per_class=1, num_frames=12, size=(96, 72))
    rng = np.random.default_rng(0)
    results = {}
    for name, noise in (("good", 1.0), ("poor", 12.0)):
        folder = tmp_path / "results" / name
        folder.mkdir(parents=True)
        for seq in ("car-1", "dog-1"):
            gt = np.loadtxt(lasot / seq.split("-")[0] / seq / "groundtruth.txt", delimiter=",")
            pred = gt + rng.normal(0, noise, gt.shape)
            pred[:, 2:] = np.maximum(pred[:, 2:], 1)
            np.savetxt(folder / f"{seq}.txt", pred, fmt="%.3f", delimiter=",")
        results[name] = folder
    ade = make_ade20k_dataset(tmp_path / "ade", num_train=0, num_val=3)
    preds = tmp_path / "preds"
    preds.mkdir()
    for path in sorted((ade / "annotations" / "validation").glob("*.png")):
        label = read_label_map(path).copy()
        label[: label.shape[0] // 3] = label[: label.shape[0] // 3][:, ::-1]  # wrong in the top third
        cv2.imwrite(str(preds / path.name), label)
    metrics = tmp_path / "ft" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"top1": 71.25, "top5": 90.5}))
    return {"lasot": lasot, "results": results, "ade": ade, "preds": preds, "metrics": metrics}


def test_given_results_fill_the_tables_exactly(given, tmp_path, monkeypatch):
    monkeypatch.setenv("LITEVIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    report = main(["--sections", "study", "--out", str(out), "--no-progress",
                   "--lasot-results", *(f"{n}={p}" for n, p in given["results"].items()),
                   "--lasot-annos", str(given["lasot"]),
                   "--ade20k-results", f"seg={given['preds']}", "--ade20k", str(given["ade"]),
                   "--imagenet-results", f"ft={given['metrics'].parent}"])
    markdown = (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["study"]["mode"] == "given"
    for name, folder in given["results"].items():
        direct = evaluate_tracker(folder, given["lasot"], progress=False)
        row = report["study"]["lasot"][name]
        assert (row["AUC"], row["P"], row["NP"]) == (direct.AUC, direct.P, direct.NP)
        assert f"| {name} | {direct.AUC:.2f} |" in markdown
    assert report["study"]["lasot"]["good"]["AUC"] > report["study"]["lasot"]["poor"]["AUC"]
    miou = evaluate_folders(given["preds"], given["ade"] / "annotations" / "validation", 150,
                            reduce_zero_label=True, pred_raw=True, class_names=ade20k_class_names(),
                            progress=False)
    assert report["study"]["seg"]["seg"]["mIoU"] == miou["mIoU"] and 0 < miou["mIoU"] < 100
    assert f"| seg | {miou['mIoU']:.2f} |" in markdown
    assert report["study"]["probe"]["ft"]["given"]["top1"] == [71.25] and "| ft | 71.2 |" in markdown
    assert (out / "study" / "lasot_plots" / "success_plot.png").is_file()
    assert not (tmp_path / "cache").exists()  # nothing generated, trained or cached


def test_given_results_are_checked_before_any_work(given, tmp_path, monkeypatch):
    monkeypatch.delenv("LITEVIT_LASOT_ANNOS", raising=False)
    with pytest.raises(SystemExit, match="needs the LaSOT annotations"):
        main(["--sections", "study", "--out", str(tmp_path / "r"), "--lasot-results", str(given["results"]["good"])])
    with pytest.raises(SystemExit, match="no_such_folder: not found"):
        main(["--sections", "study", "--out", str(tmp_path / "r"), "--lasot-results", "x=/no_such_folder",
              "--lasot-annos", str(given["lasot"])])
    assert not (tmp_path / "r").exists()


def test_a_failing_section_is_reported_and_fails_the_run(tmp_path):
    bad = tmp_path / "not_a_checkpoint.pth"
    bad.write_text("plain text")
    with pytest.raises(SystemExit, match="section\\(s\\) failed: study"):
        main(["--sections", "study", "--out", str(tmp_path / "r"), "--no-progress", "--backbone", f"bad={bad}"])
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "**Failed**" in markdown and "not_a_checkpoint.pth" in markdown
    assert "error" in json.loads((tmp_path / "r" / "report.json").read_text())["study"]
