"""Length-bucketed batches (train.length_buckets): less padding, same items, and an order that depends only on
(seed, epoch) so a resumed run sees the same batches."""

from __future__ import annotations

import numpy as np
import torch

from training.engine import Context, ResumableSampler


class _Clips(torch.utils.data.Dataset):
    def __init__(self, lengths):
        self.lengths = list(lengths)

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return index

    def clip_lengths(self):
        return self.lengths


CTX = Context(rank=0, world_size=1, device=torch.device("cpu"))
LENGTHS = np.random.default_rng(0).integers(40, 197, size=203).tolist()


def _batches(sampler, size=8):
    order = list(sampler)
    return [order[i:i + size] for i in range(0, len(order) - size + 1, size)]


def _padding(batches):
    return sum(max(LENGTHS[i] for i in b) * len(b) - sum(LENGTHS[i] for i in b) for b in batches)


def test_bucketed_batches_cover_the_epoch_with_far_less_padding():
    plain = ResumableSampler(_Clips(LENGTHS), CTX, seed=3, batch_size=8)
    bucketed = ResumableSampler(_Clips(LENGTHS), CTX, seed=3, batch_size=8, length_buckets=10)
    assert len(list(bucketed)) == len(bucketed) == 200  # whole batches only, as the DataLoader keeps them
    assert len(set(bucketed)) == 200
    assert _padding(_batches(bucketed)) < 0.3 * _padding(_batches(plain))


def test_bucketed_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch():
    def sampler(epoch, start=0):
        s = ResumableSampler(_Clips(LENGTHS), CTX, seed=3, batch_size=8, length_buckets=10)
        s.set_epoch(epoch)
        s.start = start
        return list(s)

    assert sampler(1) == sampler(1) and sampler(1) != sampler(2)
    assert sampler(1, start=48) == sampler(1)[48:]
    assert sorted(sampler(2)) != sampler(2)  # batches are shuffled, not sorted over the epoch
