"""Atomic file writing (fileio): content, clean-up, failure and the temporary name."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from backbones import atomic_save
from fileio import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_writes_content_into_new_folders_and_leaves_no_temp(tmp_path):
    folder = tmp_path / "a" / "b"
    assert atomic_write_text(folder / "notes.txt", "größe 1\nzwei\n") == folder / "notes.txt"
    atomic_write_bytes(folder / "blob.bin", b"\x00\xff\x10")
    atomic_write_json(folder / "scores.json", {"auc": 0.5, "names": ["car-1"]})
    atomic_write_json(folder / "flat.json", [1, 2], indent=None)

    assert (folder / "notes.txt").read_text(encoding="utf-8") == "größe 1\nzwei\n"
    assert (folder / "blob.bin").read_bytes() == b"\x00\xff\x10"
    assert (folder / "scores.json").read_text() == '{\n  "auc": 0.5,\n  "names": [\n    "car-1"\n  ]\n}\n'
    assert (folder / "flat.json").read_text() == "[1, 2]\n"
    assert sorted(os.listdir(folder)) == ["blob.bin", "flat.json", "notes.txt", "scores.json"]


def test_replaces_an_existing_file(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["result.txt"]


@pytest.mark.parametrize("error", [ValueError, SystemExit])
def test_failure_keeps_the_target_and_removes_the_temp(tmp_path, error):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_path(target) as temp:
            temp.write_text("half written")
            raise error("stop")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.txt"]


def test_json_error_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "object.json", {"x": object()})
    assert os.listdir(tmp_path) == []


def test_json_is_standard_json(tmp_path):
    """NaN / inf become null (JSON has neither), numpy values plain numbers and lists."""
    import numpy as np

    path = atomic_write_json(tmp_path / "scores.json", {
        "nan": float("nan"), "inf": -float("inf"), "np_nan": np.float32("nan"), "auc": np.float64(0.25),
        "count": np.int64(3), "curve": np.array([0.5, np.nan]), "pair": (1, 2), "where": tmp_path})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": None, "np_nan": None, "auc": 0.25, "count": 3,
                                "curve": [0.5, None], "pair": [1, 2], "where": str(tmp_path)}


@pytest.mark.parametrize("name, suffix", [("plot.png", ".png"), ("archive.tar.gz", ".gz"), ("README", "")])
def test_temp_is_hidden_beside_the_target_with_its_extension(tmp_path, name, suffix):
    with atomic_path(tmp_path / name) as temp:
        assert temp.parent == tmp_path
        assert temp.name.startswith(".") and temp.suffix == suffix
        assert temp.exists()
        temp.write_bytes(b"x")
    assert os.listdir(tmp_path) == [name]


def test_extension_choosing_writer_works_on_the_temp(tmp_path):
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    with atomic_path(tmp_path / "image.png") as temp:
        assert cv2.imwrite(str(temp), image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "image.png")), image)


def test_file_mode_matches_a_plain_open(tmp_path):
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_atomic_save_round_trip(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3), "meta": {"epoch": 3}}
    path = atomic_save(state, tmp_path / "ckpt" / "last.pth")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["meta"] == {"epoch": 3}
    assert os.listdir(path.parent) == ["last.pth"]


def test_png_round_trip_and_bad_arrays(tmp_path):
    from PIL import Image

    from fileio import atomic_write_png

    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    for name, array in (("rgb.png", rgb), ("grey.png", grey)):
        with Image.open(atomic_write_png(tmp_path / name, array)) as image:
            np.testing.assert_array_equal(np.array(image), array)
    for bad in (rgb.astype(np.float32), np.zeros((4, 5, 2), np.uint8)):
        with pytest.raises(ValueError, match="bad.png: a PNG needs"):
            atomic_write_png(tmp_path / "bad.png", bad)
    assert not (tmp_path / "bad.png").exists()


def test_folder_replaces_an_existing_one_with_a_plain_mkdir_mode(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".data-tmp-") and not any(temp.iterdir())
        (temp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    (tmp_path / "plain").mkdir()
    assert target.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_folder_failure_keeps_the_old_one(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_dir(target) as temp:
            (temp / "part.txt").write_text("part")
            raise RuntimeError("half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (target / "old.txt").read_text() == "old"
