"""The engine's one data order (:class:`engine.EpochSampler`) and its one vocabulary of a training
run: the shards of the ranks, resumption inside an epoch, the deprecated keys and checkpoint name.
The tasks' runs through both are in tests/test_pretrain_engine.py and tests/test_track_train.py."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from mmengine.config import Config
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from engine import CHECKPOINT_NAME, EpochKeyed, EpochSampler, find_checkpoint, runtime_options, upgrade_config

REPO = Path(__file__).resolve().parents[1]

# What the previous release called each setting, and its name now (the table).
RENAMED = [
    ("runtime.log_every", "runtime.log_interval", 7),
    ("runtime.checkpoint_every", "runtime.checkpoint_interval", 100),
    ("optim.clip_grad", "runtime.clip_grad", 1.0),
    ("train.log_interval", "runtime.log_interval", 16),
    ("train.checkpoint_interval", "runtime.checkpoint_interval", 5),
    ("train.max_steps", "runtime.max_updates", 3),
    ("train.grad_clip", "runtime.clip_grad", 0.1),
    ("train.progress", "runtime.progress_bar", False),
    ("train.device", "runtime.device", "cpu"),
    ("train.precision", "runtime.precision", "bf16"),
    ("train.seed", "runtime.seed", 42),
    ("train.allow_world_size_change", "runtime.allow_world_size_change", True),
]


def _shards(length: int, world: int, shuffle: bool, steps: int, batch: int = 2, epochs: int = 3) -> list[list]:
    return [list(EpochSampler(length, steps, batch, epochs, rank=r, world_size=world, shuffle=shuffle, seed=5))
            for r in range(world)]


# ------------------------------------------------------------------------------- the sampler
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_ranks_shards_cover_each_epoch_exactly_once(world, shuffle):
    length, batch = 24, 2
    steps = length // world // batch
    shards = _shards(length, world, shuffle, steps, batch)
    orders = []
    for epoch in range(3):
        taken = [i for shard in shards for e, i in shard if e == epoch]
        assert sorted(taken) == list(range(length))  # every index once, none twice
        orders.append([i for e, i in shards[0] if e == epoch])
    assert (orders[0] != orders[1]) == shuffle  # a new permutation each epoch only when shuffled


@pytest.mark.parametrize("world", [1, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_each_epoch_is_torchs_distributed_sampler_order(world, shuffle):
    """Rank r's share of an epoch is ``DistributedSampler(drop_last=True)``'s for (seed, epoch),
    cut to the steps the loop runs (25 samples, 3 ranks: one is left out, as there)."""
    length, batch, steps = 25, 2, 3
    for rank, shard in enumerate(_shards(length, world, shuffle, steps, batch)):
        for epoch in range(3):
            reference = DistributedSampler(range(length), num_replicas=world, rank=rank, shuffle=shuffle, seed=5,
                                           drop_last=True)
            reference.set_epoch(epoch)
            assert [i for e, i in shard if e == epoch] == list(reference)[:steps * batch]


@pytest.mark.parametrize("shuffle", [False, True])
def test_started_inside_an_epoch_it_continues_the_uninterrupted_order(shuffle):
    full = list(EpochSampler(30, 5, 3, 4, rank=1, world_size=2, shuffle=shuffle, seed=9))
    assert len(full) == 4 * 5 * 3
    for epoch, step in [(0, 0), (1, 2), (2, 5), (3, 4)]:
        resumed = EpochSampler(30, 5, 3, 4, rank=1, world_size=2, shuffle=shuffle, seed=9, start_epoch=epoch,
                               start_step=step)
        assert list(resumed) == full[(epoch * 5 + step) * 3:] and len(resumed) == len(full) - (epoch * 5 + step) * 3


def test_an_epoch_longer_than_the_data_is_refused():
    with pytest.raises(ValueError, match=r"4 steps of 4 samples per rank need 32 samples an epoch; the dataset has 30"):
        EpochSampler(30, 4, 4, 1, world_size=2)
    with pytest.raises(ValueError, match="rank 2 is not one of 2"):
        EpochSampler(30, 1, 1, 1, rank=2, world_size=2)


class _EpochTagged(Dataset):
    """Sample ``i`` of the epoch last set is ``(epoch, i)``."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.epoch, index


@pytest.mark.parametrize("workers", [0, 2])
def test_one_loader_serves_every_epoch_with_the_epoch_of_each_key(workers):
    """Worker processes keep their own copy of the dataset: the epoch reaches them with each key."""
    sampler = EpochSampler(8, 2, 2, 3, shuffle=True, seed=1)
    loader = DataLoader(EpochKeyed(_EpochTagged()), batch_size=2, sampler=sampler, num_workers=workers,
                        collate_fn=list)
    assert [sample for batch in loader for sample in batch] == list(sampler)
    with pytest.raises(TypeError, match="list has no set_epoch"):
        EpochKeyed([1, 2])


# ---------------------------------------------------------------------------- the vocabulary
@pytest.mark.parametrize("old, new, value", RENAMED, ids=[old for old, _, _ in RENAMED])
def test_an_old_key_is_read_as_the_new_one_with_a_warning_naming_it(old, new, value):
    section, key = old.split(".")
    cfg = {"runtime": {"log_interval": 50, "clip_grad": None}}
    cfg.setdefault(section, {}).update({key: value, "other": 1})
    with pytest.warns(FutureWarning, match=rf"config key {old} is deprecated .*: use {new} "):
        upgraded = upgrade_config(cfg)
    new_section, new_key = new.split(".")
    assert upgraded[new_section][new_key] == value and runtime_options(upgraded)[new_key] == value
    assert key not in upgraded[section] and upgraded[section]["other"] == 1
    assert cfg[section][key] == value  # the caller's config is left as it was


def test_configs_in_the_tree_use_the_new_names_only():
    """Every training config of the tasks on the engine loads without a deprecation warning, and
    its ``runtime`` section names only keys of the vocabulary (or a task's own: eval_every ...)."""
    files = [p for folder in ("pretrain", "track", "study", "transfer")
             for p in (REPO / "configs" / folder).rglob("*.py") if "_base_" not in p.parts and "seg" not in p.parts]
    assert len(files) > 20
    for path in files:
        cfg = Config.fromfile(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            upgraded = upgrade_config(cfg)
        assert set(upgraded["runtime"]) <= set(runtime_options({})) | {"deterministic", "eval_every"}, path


def test_a_checkpoint_under_its_old_name_is_found_with_a_warning(tmp_path):
    assert find_checkpoint(tmp_path) is None
    (tmp_path / "last.pth").write_bytes(b"x")
    with pytest.warns(FutureWarning, match=rf"last.pth: a checkpoint under its old name.*writes {CHECKPOINT_NAME}"):
        assert find_checkpoint(tmp_path) == tmp_path / "last.pth"
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_checkpoint(tmp_path) == tmp_path / "latest.pth"  # the current name first


def test_a_log_interval_below_one_is_refused():
    with pytest.raises(ValueError, match=r"runtime.log_interval=0: must be at least 1"):
        runtime_options({"runtime": {"log_interval": 0}})
