"""Several sequences in lock-step: the same boxes as alone, slots refilled, bad input isolated, resumable."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from track.batched import SequenceJob, track_sequences
from track.config import build_model, load_config
from track.datasets.lasot import list_sequences, load_sequence, read_image, sequence_class
from track.tracker import BatchedTracker, Tracker

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs/track/vit_tiny_ce_tiny_synthetic.py"     # 4 blocks, 64 / 128 px crops, CE after 1, 2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    """The tiny config's network, random weights: its boxes depend on the template (a wrong
    template row moves them by pixels), which the batched checks rely on."""
    torch.manual_seed(3)
    return build_model(load_config(TINY), pretrained=None).eval()


def _make_lasot(root: Path, lengths: dict[str, int], size=(160, 120)) -> list[str]:
    """One test sequence per class, each class its own length (make_lasot_dataset writes one length
    per call), listed together in testing_set.txt."""
    from benchmarks.demo_data.lasot import make_lasot_dataset

    names = []
    for class_name, length in lengths.items():
        names += make_lasot_dataset(root, (class_name,), seqs_per_class=1, num_frames=length, size=size,
                                    write_training_set=False)
    (root / "testing_set.txt").write_text("".join(f"{n}\n" for n in names))
    return names


@pytest.fixture(scope="module")
def lasot(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lasot")
    _make_lasot(root, {"car": 7, "dog": 4, "cat": 9, "bird": 5})
    return root


def _jobs(root: Path) -> list[SequenceJob]:
    jobs = []
    for name in list_sequences(root, "test"):
        sequence = load_sequence(root / sequence_class(name) / name)
        jobs.append(SequenceJob(name, sequence.frames, sequence.gt_boxes[0]))
    return jobs


def _alone(model, root: Path, **kwargs) -> dict[str, np.ndarray]:
    result = {}
    for job in _jobs(root):
        tracker = Tracker(model, device="cpu", **kwargs)
        result[job.name] = tracker.track_sequence([read_image(f) for f in job.frames], job.init_box)[0]
    return result


@pytest.fixture(scope="module")
def alone(model, lasot) -> dict[str, np.ndarray]:
    return _alone(model, lasot)


@pytest.mark.parametrize("slots", [2, 3])
def test_batched_sequences_equal_alone(model, lasot, alone, slots):
    """Four sequences of 7, 4, 9 and 5 frames through 2 or 3 slots (finished slots take the next
    sequence, batches shrink at the end): every box within 1e-3 px of tracking it alone (fp32)."""
    tracker = BatchedTracker(model, slots=slots, device="cpu")
    done = {}
    stats = track_sequences(tracker, _jobs(lasot), lambda r: done.setdefault(r.name, r), decode_threads=2)
    assert sorted(done) == sorted(alone) and not stats.errors
    for name, result in done.items():
        np.testing.assert_allclose(result.boxes, alone[name], atol=1e-3, rtol=0)
        assert result.seconds.shape == (len(alone[name]),) and (result.seconds > 0).all()
        assert result.scores[0] == 1.0 and np.isfinite(result.scores).all()
    assert stats.frames == 7 + 4 + 9 + 5 and stats.sequences == 4
    assert stats.steps < stats.frames - 4                               # frames really went together
    assert stats.network > 0 and stats.decode > 0
    assert 0 < stats.decode_cpu < stats.cpu                             # the decoders' CPU is part of the run's


def test_warm_up_builds_every_batch_the_run_steps(model, lasot, alone, monkeypatch):
    """With fixed shapes (compiled / CUDA graph), the run steps padded batches of 1 .. slots as
    sequences finish: warm-up builds each of them, so none is built while a frame is timed. (Fixed
    shapes are switched on without compiling: the padding logic is what is checked.)"""
    from track.tracker import InferenceNetwork

    monkeypatch.setattr(InferenceNetwork, "fixed_shapes", property(lambda self: True))
    tracker = BatchedTracker(model, slots=3, device="cpu")
    built = []
    step_for = tracker.network._step_for
    monkeypatch.setattr(tracker.network, "_step_for", lambda batch: built.append(batch) or step_for(batch))
    tracker.warm_up(60, 80)
    warmed, built[:] = set(built), []
    done = {}
    track_sequences(tracker, _jobs(lasot), lambda r: done.setdefault(r.name, r))
    assert warmed == {1, 2, 3} and set(built) <= warmed and len(set(built)) > 1
    for name, result in done.items():  # padded batches give the same boxes
        np.testing.assert_allclose(result.boxes, alone[name], atol=1e-3, rtol=0)


def test_batched_openvino_equals_its_single_stream(model, lasot):
    """The OpenVINO runtime (dynamic batch) gives each sequence the boxes it gives it alone."""
    pytest.importorskip("openvino")
    single = _alone(model, lasot, backend="openvino")
    done = {}
    tracker = BatchedTracker(model, slots=3, device="cpu", backend="openvino")
    track_sequences(tracker, _jobs(lasot), lambda r: done.setdefault(r.name, r))
    for name, result in done.items():
        np.testing.assert_allclose(result.boxes, single[name], atol=1e-3, rtol=0)


def test_bad_sequences_stop_alone(model, tmp_path, alone, lasot):
    """A truncated JPEG, a missing frame, an invalid first box and an unreadable sequence each stop
    their own sequence with an error naming the cause; the others keep the boxes they get alone."""
    import shutil

    root = tmp_path / "lasot"
    shutil.copytree(lasot, root)
    truncated = root / "car" / "car-1" / "img" / "00000004.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    jobs = {job.name: job for job in _jobs(root)}
    jobs["cat-1"].frames = list(jobs["cat-1"].frames)
    jobs["cat-1"].frames[5] = root / "cat" / "cat-1" / "img" / "missing.jpg"
    jobs["bird-1"].init_box = (0.0, 0.0, 0.0, 0.0)
    order = [jobs["car-1"], SequenceJob("zebra-1", error="FileNotFoundError: no such folder"), jobs["dog-1"],
             jobs["cat-1"], jobs["bird-1"]]
    done, reported = {}, {}
    tracker = BatchedTracker(model, slots=2, device="cpu")
    stats = track_sequences(tracker, order, lambda r: done.setdefault(r.name, r), decode_threads=2,
                            on_error=lambda name, message: reported.setdefault(name, message))
    assert sorted(done) == ["dog-1"]
    np.testing.assert_allclose(done["dog-1"].boxes, alone["dog-1"], atol=1e-3, rtol=0)
    assert reported == stats.errors and sorted(stats.errors) == ["bird-1", "car-1", "cat-1", "zebra-1"]
    assert "truncated" in stats.errors["car-1"].lower() and "00000004.jpg" in stats.errors["car-1"]
    assert "missing.jpg" in stats.errors["cat-1"]
    assert "first frame" in stats.errors["bird-1"] and "positive width" in stats.errors["bird-1"]
    assert stats.errors["zebra-1"] == "FileNotFoundError: no such folder"


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/track_test.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_track_test_tool_batched_resumable(model, tmp_path, lasot):
    """--batch-sequences writes the single-stream run's files; a corrupt frame fails its sequence
    (exit 1, error listed) while the others are written; a rerun tracks only that one."""
    import shutil

    from track.model import save_tracker_checkpoint

    root = tmp_path / "lasot"
    shutil.copytree(lasot, root)
    checkpoint = tmp_path / "tiny.pth"
    save_tracker_checkpoint(model, str(checkpoint))
    common = [str(TINY), str(checkpoint), "--lasot-root", str(root), "--device", "cpu", "--dtype", "fp32",
              "--backend", "torch", "--threads", "1", "--decode-threads", "2"]
    single = _run_tool(*common, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr[-3000:]
    frame = root / "cat" / "cat-1" / "img" / "00000006.jpg"
    good = frame.read_bytes()
    frame.write_bytes(good[:200])
    out = tmp_path / "batched"
    failed = _run_tool(*common, "--out", str(out), "--batch-sequences", "3", "--stats-json", str(tmp_path / "s.json"))
    assert failed.returncode == 1
    assert "1 sequence(s) failed" in failed.stderr and "cat-1" in failed.stderr and "00000006.jpg" in failed.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{n}{s}" for n in ("bird-1", "car-1", "dog-1") for s in (".txt", "_time.txt"))
    for name in ("bird-1", "car-1", "dog-1"):
        np.testing.assert_allclose(np.loadtxt(out / f"{name}.txt", delimiter=","),
                                   np.loadtxt(tmp_path / "single" / f"{name}.txt", delimiter=","), atol=1e-3)
        assert len(np.loadtxt(out / f"{name}_time.txt")) == len(np.loadtxt(out / f"{name}.txt", delimiter=","))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    frame.write_bytes(good)
    rerun = _run_tool(*common, "--out", str(out), "--batch-sequences", "3")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "3 already finished" in rerun.stdout and "1 to run" in rerun.stdout
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) if n in stamps} == stamps
    np.testing.assert_allclose(np.loadtxt(out / "cat-1.txt", delimiter=","),
                               np.loadtxt(tmp_path / "single" / "cat-1.txt", delimiter=","), atol=1e-3)
