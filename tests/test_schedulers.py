"""LCM and DDIM schedules against analytic values, and the float32 embedding recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.models.embeddings import timestep_sinusoids
from backend.generation.schedulers import (CFG_STEP_MAP, DDIMScheduler, LCMScheduler, guidance_scale_embedding,
                                lcm_guidance_embedding)


def test_alphas_cumprod_match_official_values():
    s = LCMScheduler()
    # The official fixtures' notes: alphas_cumprod at the LCM timesteps (8 significant digits there).
    for t, want in {799: 0.03719497, 699: 0.08312827, 399: 0.42608613, 299: 0.59218282}.items():
        assert abs(float(s.alphas_cumprod[t]) - want) < 5e-8, t
    assert s.alphas_cumprod.dtype == torch.float32
    torch.testing.assert_close(s.betas[[0, -1]], torch.tensor([0.00085, 0.012]), rtol=1e-6, atol=0)
    # Scaled-linear: sqrt(beta) is an arithmetic progression.
    assert torch.diff(s.betas.sqrt(), n=2).abs().max() < 1e-7


def test_lcm_timestep_maps_and_bad_step_counts():
    s = LCMScheduler()
    assert s.set_timesteps(1).tolist() == [799]
    assert s.set_timesteps(2).tolist() == [699, 299]
    assert s.set_timesteps(4).tolist() == [699, 399, 299, 299]
    assert CFG_STEP_MAP == {1: 8.0, 2: 12.5, 4: 13.5}
    with pytest.raises(ValueError, match="supports"):
        s.set_timesteps(3)


def test_boundary_scalings_formula():
    s = LCMScheduler()
    for t in (0, 1, 299, 799):
        c_skip, c_out = s.boundary_scalings(torch.tensor(t))
        x = 10.0 * t
        assert float(c_skip) == pytest.approx(0.25 / (x * x + 0.25), rel=1e-6)
        assert float(c_out) == pytest.approx(x / math.sqrt(x * x + 0.25), rel=1e-6, abs=1e-12)
    c_skip, c_out = s.boundary_scalings(0)
    assert (float(c_skip), float(c_out)) == (1.0, 0.0)  # consistency boundary: f(x, 0) = x


def test_lcm_step_analytic():
    torch.manual_seed(0)
    x0, eps, noise = torch.randn(3, 2, 4, 8).unbind(0)
    s = LCMScheduler()
    s.set_timesteps(2)
    a = s.alphas_cumprod
    x_t = a[699].sqrt() * x0 + (1 - a[699]).sqrt() * eps
    out = s.step(eps, 699, x_t, noise=noise)
    c_skip, c_out = s.boundary_scalings(699)
    torch.testing.assert_close(out.denoised, c_out * x0 + c_skip * x_t, atol=2e-6, rtol=1e-5)
    # Re-noised to the next listed timestep with exactly the given noise.
    torch.testing.assert_close(out.prev_sample, a[299].sqrt() * out.denoised + (1 - a[299]).sqrt() * noise,
                               atol=1e-6, rtol=1e-6)
    last = s.step(eps, 299, out.prev_sample)
    assert torch.equal(last.prev_sample, last.denoised)  # no noise after the final step
    with pytest.raises(RuntimeError):
        s.step(eps, 299, out.prev_sample)


def test_lcm_step_order_and_generator():
    s = LCMScheduler()
    s.set_timesteps(4)
    with pytest.raises(ValueError, match="expects timestep 699"):
        s.step(torch.zeros(1, 2, 2), 399, torch.zeros(1, 2, 2))
    outs = []
    for seed in (7, 7, 8):
        s.set_timesteps(2)
        outs.append(s.step(torch.zeros(1, 2, 2), 699, torch.ones(1, 2, 2),
                           generator=torch.Generator().manual_seed(seed)).prev_sample)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_ddim_timesteps_and_exact_inversion():
    s = DDIMScheduler()
    ts = s.set_timesteps(50)
    assert ts[:3].tolist() == [981, 961, 941] and ts[-1].item() == 1 and len(ts) == 50
    torch.manual_seed(1)
    x0, eps = torch.randn(2, 4, 16, 32).unbind(0)
    for t in (981, 501, 21):
        x_t = s.add_noise(x0, eps, torch.full((4,), t))
        out = s.step(eps, t, x_t)
        torch.testing.assert_close(out.denoised, x0, atol=2e-5, rtol=1e-5)
        # eta = 0 is deterministic and lands exactly on the forward process at t - 20.
        torch.testing.assert_close(out.prev_sample, s.add_noise(x0, eps, torch.full((4,), t - 20)),
                                   atol=2e-5, rtol=1e-5)
        assert torch.equal(out.prev_sample, s.step(eps, t, x_t).prev_sample)
    # Last step: set_alpha_to_one = False -> lands on alphas_cumprod[0], not on x0 itself.
    x_1 = s.add_noise(x0, eps, torch.full((4,), 1))
    a0 = s.alphas_cumprod[0]
    torch.testing.assert_close(s.step(eps, 1, x_1).prev_sample, a0.sqrt() * x0 + (1 - a0).sqrt() * eps,
                               atol=1e-6, rtol=1e-6)


def test_ddim_full_loop_with_oracle_eps_recovers_data():
    s = DDIMScheduler()
    torch.manual_seed(2)
    x0 = torch.randn(1, 16, 32)
    x = torch.randn(1, 16, 32)
    a = s.alphas_cumprod
    for t in s.set_timesteps(10):
        eps = (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()  # the ideal denoiser for a single data point
        x = s.step(eps, t, x).prev_sample
    assert (x - x0).abs().max() < 0.1  # ends at sqrt(a_0) x0 + sqrt(1 - a_0) eps, |eps| ~ 1
    assert (x - x0).abs().max() > 0


def test_add_noise_per_sample_timesteps():
    s = DDIMScheduler()
    x0, eps = torch.ones(2, 3), torch.zeros(2, 3)
    out = s.add_noise(x0, eps, torch.tensor([0, 999]))
    torch.testing.assert_close(out[:, 0], s.alphas_cumprod[[0, 999]].sqrt())


def _w_arguments(guidance: float, half: int = 128) -> np.ndarray:
    """(half,) the embedding's sinusoid arguments 1000 (guidance - 1) freq_k, evaluated in float64."""
    return 1000.0 * (guidance - 1.0) * np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))


def test_guidance_embedding_float32_recipe():
    emb = lcm_guidance_embedding(8.0, batch=2, dim=256)
    assert emb.shape == (2, 256) and emb.dtype == torch.float32 and torch.equal(emb[0], emb[1])
    # Column 0 is sin(1000 (w - 1)) at frequency 1, column 128 its cosine.
    assert float(emb[0, 0]) == pytest.approx(math.sin(7000.0), abs=1e-6)
    assert float(emb[0, 128]) == pytest.approx(math.cos(7000.0), abs=1e-6)
    # A float64 evaluation agrees only to ~5e-4 (arguments up to 1e4 rad); ours is the float32 recipe.
    args = _w_arguments(8.0)
    ref64 = np.concatenate([np.sin(args), np.cos(args)])
    assert np.abs(emb[0].numpy() - ref64).max() < 1e-3
    with pytest.raises(ValueError):
        guidance_scale_embedding(torch.zeros(2, 1), 256)


def test_guidance_embedding_matches_fixture(fixtures_dir):
    for steps, w in ((1, 8.0), (4, 13.5)):
        with np.load(fixtures_dir / f"outputs_steps{steps}.npz") as data:
            want = data["w_embedding"]
        got = lcm_guidance_embedding(w, batch=2, dim=256).numpy()
        # Bit-exact on the CPU kernels the fixture was made with. Elsewhere torch's vectorised exp may round a
        # frequency's last bit differently (AVX2 vs AVX-512): with the product's rounding that moves an argument
        # of up to ~1.25e4 rad by up to two of its float32 ulps (~1e-3 each), and sin/cos by as much.
        ulp = 2 * np.spacing(_w_arguments(w).astype(np.float32)).astype(np.float64)
        excess = np.abs(got.astype(np.float64) - want) - np.concatenate([ulp, ulp])
        assert excess.max() <= 0, np.abs(got - want).max()


def test_timestep_sinusoids():
    emb = timestep_sinusoids(torch.tensor([0, 799]), 768)
    assert emb.shape == (2, 768)
    assert torch.equal(emb[0, :384], torch.ones(384)) and torch.equal(emb[0, 384:], torch.zeros(384))
    assert float(emb[1, 0]) == pytest.approx(math.cos(799.0), abs=1e-5)
    assert float(emb[1, 384]) == pytest.approx(math.sin(799.0), abs=1e-5)
    lowest = 799.0 * math.exp(-math.log(10000.0) * 383 / 384)
    assert float(emb[1, 767]) == pytest.approx(math.sin(lowest), abs=1e-6)
