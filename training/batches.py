"""Which clips each step trains on: a sampler that resumes mid-epoch (with length buckets), and the clip
order of a curriculum. Every order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import DistributedSampler

from .runtime import Context
from .settings import TrainSettings


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start mid-epoch.

    With `length_buckets` > 0 and a dataset that reports `clip_lengths()`, each run of `length_buckets`
    batches is sorted by clip length before it is cut into batches, and the batches are shuffled: padding
    (and so wasted compute on frames that are masked out anyway) drops by about half on clips of mixed
    length. The order depends only on (seed, epoch), so resuming mid-epoch still reproduces it."""

    def __init__(self, dataset, ctx: Context, seed: int, batch_size: int = 1, length_buckets: int = 0) -> None:
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0
        self.batch_size = batch_size
        lengths = getattr(dataset, "clip_lengths", None)
        self.lengths = np.asarray(lengths()) if length_buckets > 0 and callable(lengths) else None
        self.length_buckets = length_buckets
        self.pool: list[int] | None = None  # set by a curriculum phase: draw only from these clips

    def __iter__(self) -> Iterator[int]:
        if self.pool is not None:
            return iter(self._pool_order()[self.start:])
        order = list(super().__iter__())
        if self.lengths is not None:
            order = self._bucketed(order)
        return iter(order[self.start:])

    def _bucketed(self, order: list[int]) -> list[int]:
        size = self.batch_size
        order = order[: len(order) // size * size]  # whole batches only, as the DataLoader drops the rest
        chunk = size * self.length_buckets
        batches = []
        for begin in range(0, len(order), chunk):
            part = sorted(order[begin:begin + chunk], key=lambda i: self.lengths[i])
            batches += [part[i:i + size] for i in range(0, len(part), size)]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return [index for b in rng.permutation(len(batches)) for index in batches[b]]

    def _pool_order(self) -> list[int]:
        """This rank's share of the pool, shuffled per epoch and repeated until it fills one batch per rank."""
        per_step = self.batch_size * self.num_replicas
        rng = np.random.default_rng([self.seed, self.epoch])
        order: list[int] = []
        while len(order) < per_step:
            order += rng.permutation(self.pool).tolist()
        return order[: len(order) // per_step * per_step][self.rank::self.num_replicas]

    def __len__(self) -> int:
        if self.pool is not None:
            return max(0, len(self._pool_order()) - self.start)
        total = self.num_samples // self.batch_size * self.batch_size if self.lengths is not None else self.num_samples
        return max(0, total - self.start)


def curriculum_order(dataset, settings: TrainSettings) -> list[int]:
    """Clip indices in a seeded order, those whose name contains `curriculum_first` first."""
    names = getattr(dataset, "clip_names", None)
    if not callable(names):
        raise ValueError("train.curriculum needs a dataset with clip_names()")
    names = names()
    shuffled = np.random.default_rng([settings.seed, len(names)]).permutation(len(names)).tolist()
    first = [i for i in shuffled if settings.curriculum_first and settings.curriculum_first in names[i]]
    chosen = set(first)
    return first + [i for i in shuffled if i not in chosen]
