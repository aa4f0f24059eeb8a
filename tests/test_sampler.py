"""Sampling loops on a tiny model: CFG arithmetic, batch independence, seeding, input validation."""

from __future__ import annotations

import pytest
import torch

from backend.models import MotionLCM, ModelConfig
from backend.generation.sampler import decode_latents, lengths_to_mask, sample_ddim, sample_lcm
from backend.generation.schedulers import DDIMScheduler, LCMScheduler, lcm_guidance_embedding


def _model(**tiny_kwargs) -> MotionLCM:
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig.tiny(**tiny_kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model() -> MotionLCM:
    return _model()


@pytest.fixture(scope="module")
def batch(model):
    g = torch.Generator().manual_seed(1)
    cfg = model.config
    hint_mask = torch.zeros(2, 50, 22, 3)
    hint_mask[0, :, 0] = 1
    hint_mask[1, 5:30:4, 20] = 1
    return dict(text=torch.randn(2, 1, cfg.text_dim, generator=g), z=torch.randn(2, *cfg.latent_shape, generator=g),
                hint=torch.randn(2, 50, 22, 3, generator=g) * hint_mask, hint_mask=hint_mask)


def test_lcm_matches_a_hand_written_loop(model, batch):
    noise = [torch.randn_like(batch["z"]) for _ in range(3)]
    got = sample_lcm(model, batch["text"], batch["z"], hint=batch["hint"], hint_mask=batch["hint_mask"],
                     steps=4, guidance=10.0, noise=noise)
    with torch.no_grad():
        w = lcm_guidance_embedding(10.0, 2, model.config.denoiser.time_cond_proj_dim)
        cond = model.traj_encoder(batch["hint"], batch["hint_mask"])
        sched, z = LCMScheduler(), batch["z"]
        for k, t in enumerate(sched.set_timesteps(4)):
            res = model.controlnet(z, t, batch["text"], timestep_cond=w, controlnet_cond=cond)
            eps = model.denoiser(z, t, batch["text"], timestep_cond=w, controlnet_residuals=res)
            z = sched.step(eps, t, z, noise=noise[k] if k < 3 else None).prev_sample
    assert torch.equal(got, z)


def test_lcm_batch_items_are_independent(model, batch):
    both = sample_lcm(model, batch["text"], batch["z"], hint=batch["hint"], hint_mask=batch["hint_mask"])
    one = sample_lcm(model, batch["text"][1:], batch["z"][1:], hint=batch["hint"][1:, :30],
                     hint_mask=batch["hint_mask"][1:, :30])  # trailing uncontrolled frames are invisible
    torch.testing.assert_close(both[1:], one, atol=1e-5, rtol=1e-5)
    feats = decode_latents(model, both, [50, 20])
    alone = decode_latents(model, both[1:], [20])
    torch.testing.assert_close(feats[1, :20], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(feats[1, 20:] == 0)


def test_lcm_seeding_and_control(model, batch):
    def run(seed, **kw):
        return sample_lcm(model, batch["text"], batch["z"], steps=4, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(5), run(5)) and not torch.equal(run(5), run(6))
    controlled = run(5, hint=batch["hint"], hint_mask=batch["hint_mask"])
    assert (controlled - run(5)).abs().max() > 1e-3  # the ControlNet is used when a hint is given


def test_ddim_classifier_free_guidance(model, batch):
    uncond = torch.randn(1, 1, model.config.text_dim)
    got = sample_ddim(model, batch["text"], batch["z"], uncond_emb=uncond, steps=3, guidance=4.0)
    with torch.no_grad():
        sched, z = DDIMScheduler(), batch["z"]
        for t in sched.set_timesteps(3):
            e_text = model.denoiser(z, t, batch["text"])
            e_unc = model.denoiser(z, t, uncond.expand(2, -1, -1))
            z = sched.step(e_unc + 4.0 * (e_text - e_unc), t, z).prev_sample
    torch.testing.assert_close(got, z, atol=1e-5, rtol=1e-5)
    plain = sample_ddim(model, batch["text"], batch["z"], steps=3, guidance=1.0)
    assert (plain - got).abs().max() > 1e-4
    controlled = sample_ddim(model, batch["text"], batch["z"], uncond_emb=uncond, steps=3, guidance=4.0,
                             hint=batch["hint"], hint_mask=batch["hint_mask"])
    assert (controlled - got).abs().max() > 1e-4


def test_invalid_inputs(model, batch):
    text, z = batch["text"], batch["z"]
    cases = [
        (lambda: sample_lcm(model, text, z[:, :2]), "z_T must be"),
        (lambda: sample_lcm(model, text[:, :, :10], z), "text embeddings"),
        (lambda: sample_lcm(model, text, z, steps=3), "supports"),
        (lambda: sample_lcm(model, text, z, steps=4, noise=[z]), "3 times"),
        (lambda: sample_lcm(model, text, z, steps=2, noise=[z[:1]]), "shape"),
        (lambda: sample_lcm(model, text, z, hint=batch["hint"]), "together"),
        (lambda: sample_lcm(model, text, z, hint=batch["hint"][..., :2], hint_mask=batch["hint_mask"][..., :2]),
         "hint and hint_mask"),
        (lambda: sample_ddim(model, text, z, guidance=3.0), "uncond_emb"),
        (lambda: lengths_to_mask([30, 0]), "at least 1"),
        (lambda: decode_latents(model, z, [30]), "1 lengths for a batch of 2"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    plain = _model(controlnet=False, time_cond_proj_dim=None)
    with pytest.raises(ValueError, match="no ControlNet"):
        sample_ddim(plain, text, z, guidance=1.0, hint=batch["hint"], hint_mask=batch["hint_mask"])
    with pytest.raises(ValueError, match="no LCM w-conditioning"):
        sample_lcm(plain, text, z)
