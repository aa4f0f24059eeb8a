"""The MotionMillion generator (backend.models.ar_transformer): the key/value cache gives the same logits as
the full causal pass, sampling is deterministic for a seed, guidance and the end token behave."""

from __future__ import annotations

import pytest
import torch

from backend.models.ar_transformer import ARConfig, MotionGPT

CFG = ARConfig(codebook_size=64, text_dim=12, dim=32, layers=2, heads=4, max_tokens=20)


@pytest.fixture
def model() -> MotionGPT:
    torch.manual_seed(0)
    return MotionGPT(CFG).eval()


def test_cached_incremental_logits_equal_the_full_causal_pass(model):
    text = torch.randn(2, 12)
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        full = model(text, tokens)  # (2, 10, vocab): after the text and after each token
        caches = [{} for _ in model.layers]
        steps = [model(text, tokens[:, :0], caches)]
        for i in range(tokens.shape[1]):
            steps.append(model(None, tokens[:, i:i + 1], caches, start=i + 1))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    # Causal: a later token never changes an earlier position's logits.
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 64
    with torch.no_grad():
        torch.testing.assert_close(model(text, changed)[:, :-1], full[:, :-1])


def test_sampling_is_deterministic_for_a_seed_and_stops_at_the_length(model):
    text = torch.randn(3, 12)

    def sample(seed: int, **kwargs) -> list[list[int]]:
        return model.generate(text, generator=torch.Generator().manual_seed(seed), **kwargs)

    first = sample(5, max_tokens=12, top_k=10)
    assert first == sample(5, max_tokens=12, top_k=10) and first != sample(6, max_tokens=12, top_k=10)
    assert all(len(row) <= 12 and all(0 <= t < 64 for t in row) for row in first)


def test_guidance_needs_the_empty_prompt_and_changes_the_samples(model):
    text, empty = torch.randn(2, 12), torch.zeros(1, 12)
    with pytest.raises(ValueError, match="needs the empty prompt"):
        model.generate(text, guidance=3.0)
    plain = model.generate(text, generator=torch.Generator().manual_seed(1), max_tokens=10)
    guided = model.generate(text, empty, guidance=3.0, generator=torch.Generator().manual_seed(1), max_tokens=10)
    assert plain != guided


def test_the_end_token_ends_a_motion(model):
    with torch.no_grad():  # make the end token overwhelmingly likely
        model.output = torch.nn.Linear(CFG.dim, CFG.vocab)
        model.output.weight.zero_()
        model.output.bias.fill_(-20.0)
        model.output.bias[CFG.end_token] = 20.0
    assert model.generate(torch.randn(2, 12), generator=torch.Generator().manual_seed(0)) == [[], []]
    with pytest.raises(ValueError, match="at most 20 motion tokens"):
        model(torch.randn(1, 12), torch.zeros(1, 21, dtype=torch.long))
