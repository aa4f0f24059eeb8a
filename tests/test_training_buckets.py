"""Batch order: length buckets (train.length_buckets: less padding, same items) and the clip curriculum
(train.curriculum), both depending only on (seed, epoch, step) so that a resumed run sees the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.batches import ResumableSampler, curriculum_order
from training.engine import train
from training.runtime import Context
from training.settings import TrainSettings


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


class _Named(torch.utils.data.Dataset):
    """Motion-shaped items whose names say which clip a batch held."""

    def __init__(self, names):
        self.names = names

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        return {"name": self.names[index], "text": "", "tokens": "", "length": 4, "motion": torch.zeros(4, 3)}

    def clip_names(self):
        return self.names


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen: list[list[str]] = []

    def forward(self, batch):
        self.seen.append(list(batch["name"]))
        return {"loss": (self.w ** 2).sum()}


NAMES = [f"clip_{'walk' if i % 5 == 0 else 'wave'}_{i}" for i in range(40)]


def _curriculum_run(out, stop_after=None, resume=False):
    settings = TrainSettings.from_dict(dict(steps=12, batch_size=4, learning_rate=1e-3, warmup_steps=0,
                                            checkpoint_every=4, log_every=1, curriculum=[[3, 2], [6, 10]],
                                            curriculum_first="walk"))
    recorder = _Recorder()
    train(recorder, _Named(NAMES), settings, out, CTX, resume=resume, stop_after=stop_after)
    return recorder.seen, curriculum_order(_Named(NAMES), settings)


def test_curriculum_draws_from_growing_pools_and_resumes_at_a_phase_boundary(tmp_path):
    seen, order = _curriculum_run(tmp_path / "straight")
    assert sorted(order) == list(range(40)) and all("walk" in NAMES[i] for i in order[:8])
    first, second = {NAMES[i] for i in order[:2]}, {NAMES[i] for i in order[:10]}
    assert len(seen) == 12 and all(len(batch) == 4 for batch in seen)
    assert {n for batch in seen[:3] for n in batch} == first  # a pool smaller than a batch is repeated
    assert {n for batch in seen[3:6] for n in batch} <= second
    assert len({n for batch in seen[3:6] for n in batch}) > 2
    assert not {n for batch in seen[6:] for n in batch} <= second  # then the whole dataset

    before, _ = _curriculum_run(tmp_path / "resumed", stop_after=6)  # stops (and checkpoints) mid-epoch, at a boundary
    after, _ = _curriculum_run(tmp_path / "resumed", resume=True)
    assert before + after == seen


@pytest.mark.parametrize("phases", [[[8, 16], [4, 64]], [[500]], [[500, 0]], [["500", 16]]])
def test_curriculum_must_be_integer_pairs_with_rising_steps(phases):
    with pytest.raises(ValueError, match="rising steps"):
        TrainSettings.from_dict({"curriculum": phases})
