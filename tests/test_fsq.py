"""Finite scalar quantisation (backend.models.fsq): values on the levels' grid, tokens that invert exactly,
the straight-through gradient, and an implicit codebook that random inputs actually use."""

from __future__ import annotations

import itertools

import pytest
import torch

from backend.models.fsq import FSQ, LEVELS_FOR_CODEBOOK


@pytest.mark.parametrize("levels", [(3, 4), (8, 5, 5, 5), LEVELS_FOR_CODEBOOK[2 ** 16]])
def test_values_lie_on_each_channels_grid_and_tokens_are_in_range(levels):
    fsq = FSQ(levels)
    torch.manual_seed(0)
    quantised, tokens = fsq(10 * torch.randn(4096, len(levels)))
    for channel, level in enumerate(levels):
        steps = quantised[:, channel] * (level // 2)
        assert torch.equal(steps, torch.round(steps))  # integers on the grid
        assert steps.min() >= -(level // 2) and steps.max() <= (level - 1) - level // 2
        assert set(torch.unique(steps).tolist()) == set(range(-(level // 2), level - level // 2))  # all L values
    assert tokens.dtype == torch.int64 and tokens.min() >= 0 and tokens.max() < fsq.codebook_size


def test_every_token_maps_to_one_code_and_back():
    fsq = FSQ((3, 4, 5))
    tokens = torch.arange(fsq.codebook_size)
    codes = fsq.tokens_to_codes(tokens)
    assert torch.equal(fsq.codes_to_tokens(codes), tokens)
    assert len({tuple(c) for c in codes.tolist()}) == fsq.codebook_size == 60
    grid = {tuple(x / (level // 2) for x, level in zip(combo, (3, 4, 5)))
            for combo in itertools.product(range(-1, 2), range(-2, 2), range(-2, 3))}
    assert {tuple(c) for c in codes.tolist()} == grid
    with pytest.raises(ValueError, match=r"tokens must be in \[0, 60\)"):
        fsq.tokens_to_codes(torch.tensor([60]))


def test_gradient_passes_the_rounding_straight_through():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(64, 4, requires_grad=True)
    quantised, _ = fsq(z)
    (quantised * torch.arange(1.0, 5.0)).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (fsq.bound(z2) / (fsq.levels // 2) * torch.arange(1.0, 5.0)).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)
    assert z.grad.abs().min() > 0


def test_random_inputs_use_most_of_a_small_codebook_and_bad_levels_are_refused():
    fsq = FSQ(LEVELS_FOR_CODEBOOK[2 ** 8])
    torch.manual_seed(1)
    _, tokens = fsq(2 * torch.randn(20000, fsq.dim))
    assert torch.unique(tokens).numel() / fsq.codebook_size > 0.9
    with pytest.raises(ValueError, match="levels must be integers >= 2"):
        FSQ((8, 1))
    with pytest.raises(ValueError, match=r"needs \(\.\.\., 3\) inputs"):
        FSQ((8, 6, 5))(torch.zeros(2, 4))
