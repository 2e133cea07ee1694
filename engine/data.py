"""The training data order of every task on the engine: one sampler over the whole run.

:class:`EpochSampler` yields ``(epoch, index)`` keys: this rank's share of each epoch, from a
position (epoch, batch) to the end of the schedule. One ``DataLoader`` then serves every epoch
(its worker processes live for the run), the epoch travels with each index (a worker needs no
epoch state), and resuming in the middle of an epoch starts the sampler at that batch, so the
resumed run sees exactly the samples the uninterrupted one would.

A dataset indexed by ``(epoch, index)`` (``track.sampler.TrackingPairDataset``) takes the keys as
they are; one indexed by ``index`` alone with ``set_epoch`` (the pre-training image folders) is
wrapped in :class:`EpochKeyed`.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochKeyed", "EpochSampler"]


class EpochSampler(Sampler):
    """``(epoch, index)`` for rank ``rank``'s ``steps_per_epoch x batch_size`` samples of each epoch.

    Each epoch's order is ``range(length)``, or with ``shuffle`` a permutation drawn from
    ``seed + epoch`` (the draw of torch's ``DistributedSampler``). The first ``length // world_size
    x world_size`` positions of the order are dealt round-robin, rank ``r`` taking positions
    ``r, r + world_size, ...`` (``DistributedSampler`` with ``drop_last=True``), so the ranks' shares
    of an epoch are disjoint; each rank uses the first ``steps_per_epoch x batch_size`` of its share.

    Args:
        length: samples in the dataset (an epoch's index range).
        steps_per_epoch: batches each rank takes an epoch.
        batch_size: samples of one batch on one rank.
        epochs: the schedule's epochs (the sampler ends after epoch ``epochs - 1``).
        rank, world_size: this process and the number of processes.
        shuffle: a new permutation each epoch; otherwise the dataset order.
        seed: the permutations' seed.
        start_epoch, start_step: where to start (a resumed run's position: ``start_step`` batches
            of ``start_epoch`` already consumed).
    """

    def __init__(self, length: int, steps_per_epoch: int, batch_size: int, epochs: int, *, rank: int = 0,
                 world_size: int = 1, shuffle: bool = False, seed: int = 0, start_epoch: int = 0,
                 start_step: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} process(es)")
        per_rank = length // world_size
        if steps_per_epoch * batch_size > per_rank:
            raise ValueError(f"{steps_per_epoch} steps of {batch_size} samples per rank need "
                             f"{steps_per_epoch * batch_size * world_size} samples an epoch; the dataset has {length}")
        self.length, self.steps_per_epoch, self.batch_size, self.epochs = length, steps_per_epoch, batch_size, epochs
        self.rank, self.world_size, self.shuffle, self.seed = rank, world_size, shuffle, seed
        self.start_epoch, self.start_step = start_epoch, min(start_step, steps_per_epoch)

    def indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order (``steps_per_epoch x batch_size`` of them)."""
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(self.length)
        return order[self.rank::self.world_size][:self.steps_per_epoch * self.batch_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in range(self.start_epoch, self.epochs):
            first = self.start_step * self.batch_size if epoch == self.start_epoch else 0
            for index in self.indices(epoch)[first:]:
                yield epoch, index

    def __len__(self) -> int:
        epochs = max(0, self.epochs - self.start_epoch)
        return max(0, epochs * self.steps_per_epoch - self.start_step) * self.batch_size


class EpochKeyed(Dataset):
    """An index-only dataset with ``set_epoch(epoch)`` indexed by ``(epoch, index)`` keys.

    Each key sets the epoch of this process's copy (a worker's own) before reading the index, so
    the epoch's augmentation draws follow the key wherever it is read.
    """

    def __init__(self, dataset: Dataset) -> None:
        if not callable(getattr(dataset, "set_epoch", None)):
            raise TypeError(f"{type(dataset).__name__} has no set_epoch(epoch): it cannot take (epoch, index) keys")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.dataset.set_epoch(int(epoch))
        return self.dataset[int(index)]
