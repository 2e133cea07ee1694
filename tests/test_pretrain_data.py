"""ImageNet-layout folders: real decoding, unreadable files skipped and counted, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from benchmarks.demo_data.imagenet import make_imagenet_folder
from pretrain.data import ImageFolderDataset, SkippedImage, collate_skipping, mae_train_transform


def _corrupt(folder: Path) -> list[str]:
    """One file of garbage bytes, one JPEG cut in half."""
    files = sorted((folder / "train").glob("*/*.JPEG"))
    files[1].write_bytes(b"this is not a jpeg")
    data = files[5].read_bytes()
    files[5].write_bytes(data[: len(data) // 2])
    return [str(files[1]), str(files[5])]


def test_generated_folder_is_real_jpeg_imagenet_layout(tmp_path):
    info = make_imagenet_folder(tmp_path, classes=3, per_class=2, size=40, seed=1, val_per_class=1)
    assert info["counts"] == {"train": 6, "val": 3}
    ds = ImageFolderDataset(tmp_path, "train", mae_train_transform(32))
    assert ds.classes == info["classes"] and len(ds) == 6
    assert [label for _, label in ds.samples] == [0, 0, 1, 1, 2, 2]
    assert (tmp_path / "train" / ds.classes[0]).is_dir()
    assert Path(ds.samples[0][0]).read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG signature
    img, label = ds[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label == 0


def test_unreadable_images_are_skipped_and_reported(tmp_path):
    make_imagenet_folder(tmp_path, classes=2, per_class=4, size=40)
    bad = _corrupt(tmp_path)
    ds = ImageFolderDataset(tmp_path, "train", mae_train_transform(32))
    out = [ds[i] for i in range(len(ds))]
    skipped = [s for s in out if isinstance(s, SkippedImage)]
    assert sorted(s.path for s in skipped) == sorted(bad)
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_skipping)
    batches = list(loader)
    assert sum(len(b.skipped) for b in batches) == 2
    assert sum(b.images.shape[0] for b in batches) == 6
    assert all(b.images.shape[0] == b.labels.shape[0] for b in batches)


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        ImageFolderDataset(tmp_path / "nowhere", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderDataset(tmp_path, "train")
    (tmp_path / "train" / "n0001").mkdir()
    (tmp_path / "train" / "n0001" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path, "train")


def test_augmentation_depends_on_seed_epoch_index_only(tmp_path):
    make_imagenet_folder(tmp_path, classes=1, per_class=3, size=48)
    ds = ImageFolderDataset(tmp_path, "train", mae_train_transform(32), seed=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = ds[1][0]
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    assert torch.equal(ds[1][0], first)
    ds.set_epoch(1)
    assert not torch.equal(ds[1][0], first)


def test_seeded_random_state_leaves_gpu_generators_alone(monkeypatch):
    """Seeding for one image must not reseed the GPU generators the training step draws masks from."""
    from pretrain.data import seeded_random_state

    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    before = torch.get_rng_state()
    with seeded_random_state(123):
        first = torch.rand(3)
    with seeded_random_state(123):
        assert torch.equal(torch.rand(3), first)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)
