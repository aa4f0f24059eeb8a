"""Latent sampling loops on raw tensors, and VAE decoding.

* `sample_lcm`: MotionLCM consistency sampling (1, 2 or 4 steps), w enters through the guidance embedding,
  optional motion ControlNet (trajectory encoder -> controlnet_cond -> per-layer residuals for the denoiser).
* `sample_ddim`: DDIM for the MLD teacher (or any checkpoint without `cond_proj`), classifier-free guidance
  by batch doubling [text; empty text].
* `decode_latents`: z_0 -> normalised HumanML3D features, padded frames 0.

`record` (a dict) receives every intermediate under the official fixtures' array names (as
tests/test_models_official.py reads them); residuals are stored sequence-first (tokens, B, hidden) as there.
All functions run under `torch.inference_mode()` (sample_lcm can keep its graph for latent tuning).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from backend.models import MotionLCM
from backend.generation.schedulers import CFG_STEP_MAP, DDIMScheduler, LCMScheduler, lcm_guidance_embedding


def lengths_to_mask(lengths: Sequence[int] | torch.Tensor, device: str | torch.device = "cpu",
                    max_len: int | None = None) -> torch.Tensor:
    """(B,) frame counts -> (B, max_len) bool mask, True on the first lengths[i] frames."""
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=device).reshape(-1)
    if lengths.numel() == 0 or int(lengths.min()) < 1:
        raise ValueError(f"every motion length must be at least 1 frame, got {lengths.tolist()}")
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=device)[None, :] < lengths[:, None]


def _check_inputs(model: MotionLCM, text_emb: torch.Tensor, z_T: torch.Tensor,
                  hint: torch.Tensor | None, hint_mask: torch.Tensor | None) -> None:
    cfg = model.config
    if z_T.dim() != 3 or tuple(z_T.shape[1:]) != cfg.latent_shape:
        raise ValueError(f"z_T must be (B, {cfg.latent_size}, {cfg.latent_channels}), got {tuple(z_T.shape)}")
    if text_emb.dim() != 3 or text_emb.shape[0] != z_T.shape[0] or text_emb.shape[-1] != cfg.text_dim:
        raise ValueError(f"text embeddings must be (B={z_T.shape[0]}, tokens, {cfg.text_dim}), "
                         f"got {tuple(text_emb.shape)}")
    if (hint is None) != (hint_mask is None):
        raise ValueError("hint and hint_mask must be given together")
    if hint is None:
        return
    if not model.has_controlnet:
        raise ValueError("this checkpoint has no ControlNet: trajectory controls are not supported")
    if hint.shape != hint_mask.shape or hint.dim() != 4 or hint.shape[0] != z_T.shape[0] \
            or tuple(hint.shape[2:]) != (cfg.traj_encoder.njoints, 3):
        raise ValueError(f"hint and hint_mask must both be (B, T, {cfg.traj_encoder.njoints}, 3), "
                         f"got {tuple(hint.shape)} and {tuple(hint_mask.shape)}")


def _seq_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).clone()


def sample_lcm(model: MotionLCM, text_emb: torch.Tensor, z_T: torch.Tensor, *,
               hint: torch.Tensor | None = None, hint_mask: torch.Tensor | None = None,
               steps: int = 1, guidance: float | None = None,
               generator: torch.Generator | None = None, noise: Sequence[torch.Tensor] | None = None,
               scheduler: LCMScheduler | None = None, record: dict[str, torch.Tensor] | None = None,
               controlnet_cond: torch.Tensor | None = None, differentiable: bool = False) -> torch.Tensor:
    """Consistency sampling: z_T (B, L, C) -> z_0.

    text_emb: (B, tokens, text_dim). hint/hint_mask: (B, T, J, 3) normalised control positions and their mask
    (None: no control, the ControlNet is skipped). guidance: the w of the LCM w-embedding, default
    `CFG_STEP_MAP[steps]`. Re-noising between steps uses `noise[k]` after step k when given (steps - 1
    tensors of z's shape), otherwise N(0, I) from `generator` (global RNG when None).
    controlnet_cond: the trajectory encoder's output for `hint`, when the caller already has it (latent tuning
    samples many times with one hint). differentiable: keep the autograd graph to z_T (latent tuning);
    otherwise everything runs in inference mode.
    """
    with torch.inference_mode(not differentiable):
        return _sample_lcm(model, text_emb, z_T, hint, hint_mask, steps, guidance, generator, noise, scheduler,
                           record, controlnet_cond)


def _sample_lcm(model: MotionLCM, text_emb: torch.Tensor, z_T: torch.Tensor, hint: torch.Tensor | None,
                hint_mask: torch.Tensor | None, steps: int, guidance: float | None,
                generator: torch.Generator | None, noise: Sequence[torch.Tensor] | None,
                scheduler: LCMScheduler | None, record: dict[str, torch.Tensor] | None,
                controlnet_cond: torch.Tensor | None) -> torch.Tensor:
    _check_inputs(model, text_emb, z_T, hint, hint_mask)
    proj_dim = model.denoiser.time_cond_proj_dim
    if proj_dim is None:
        raise ValueError("this checkpoint has no LCM w-conditioning (cond_proj); use sample_ddim")
    scheduler = scheduler or LCMScheduler()
    timesteps = scheduler.set_timesteps(steps)
    if noise is not None and (len(noise) != steps - 1 or any(n.shape != z_T.shape for n in noise)):
        raise ValueError(f"{steps}-step sampling re-noises {steps - 1} times: expected {steps - 1} noise "
                         f"tensors of shape {tuple(z_T.shape)}, got {[tuple(n.shape) for n in noise]}")
    if guidance is None:
        if steps not in CFG_STEP_MAP:
            raise ValueError(f"no default guidance for {steps} steps: pass guidance explicitly")
        guidance = CFG_STEP_MAP[steps]
    guidance = float(guidance)
    batch, device = z_T.shape[0], z_T.device
    w_emb = lcm_guidance_embedding(guidance, batch, proj_dim, device).to(z_T.dtype)

    if hint is not None and controlnet_cond is None:
        controlnet_cond = model.traj_encoder(hint, hint_mask)
    elif hint is None:
        controlnet_cond = None
    if record is not None:
        record.update(timesteps=timesteps.clone(), guidance_scale=torch.tensor(guidance, dtype=torch.float32),
                      w_embedding=w_emb.clone(), z_T=z_T.clone())
        if controlnet_cond is not None:
            record["controlnet_cond"] = controlnet_cond.clone()

    z = z_T
    for k, t in enumerate(timesteps):
        residuals = None
        if controlnet_cond is not None:
            residuals = model.controlnet(z, t, text_emb, timestep_cond=w_emb, controlnet_cond=controlnet_cond)
        eps = model.denoiser(z, t, text_emb, timestep_cond=w_emb, controlnet_residuals=residuals)
        step_noise = noise[k] if noise is not None and k < len(noise) else None
        if step_noise is None and k < steps - 1:
            step_noise = torch.randn(z.shape, generator=generator, dtype=z.dtype,
                                     device=generator.device if generator is not None else device).to(device)
        out = scheduler.step(eps, t, z, noise=step_noise)
        if record is not None:
            if k == 0 and residuals is not None:
                record.update({f"controlnet_residual_step0_block{i}": _seq_first(r) for i, r in enumerate(residuals)})
            record.update({f"step{k}_t": t.clone(), f"step{k}_sample_in": z.clone(),
                           f"step{k}_model_output": eps.clone(), f"step{k}_denoised": out.denoised.clone(),
                           f"step{k}_prev_sample": out.prev_sample.clone()})
            if step_noise is not None:
                record[f"step{k}_injected_noise"] = step_noise.clone()
        z = out.prev_sample
    if record is not None:
        record["z_0"] = z.clone()
    return z


@torch.inference_mode()
def sample_ddim(model: MotionLCM, text_emb: torch.Tensor, z_T: torch.Tensor, *,
                uncond_emb: torch.Tensor | None = None,
                hint: torch.Tensor | None = None, hint_mask: torch.Tensor | None = None,
                steps: int = 50, guidance: float = 7.5, eta: float = 0.0,
                generator: torch.Generator | None = None, scheduler: DDIMScheduler | None = None,
                record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """DDIM sampling with classifier-free guidance: eps = eps_uncond + guidance (eps_text - eps_uncond).

    uncond_emb: the text encoder's embedding of the empty prompt, (B or 1, tokens, text_dim); required when
    guidance != 1. The ControlNet (when hint is given) sees both halves of the doubled batch.
    """
    _check_inputs(model, text_emb, z_T, hint, hint_mask)
    cfg_on = guidance != 1.0
    if cfg_on:
        if uncond_emb is None:
            raise ValueError("classifier-free guidance needs uncond_emb (the empty-text embedding)")
        text_emb = torch.cat([text_emb, uncond_emb.expand_as(text_emb)])
    scheduler = scheduler or DDIMScheduler()
    timesteps = scheduler.set_timesteps(steps)
    controlnet_cond = model.traj_encoder(hint, hint_mask) if hint is not None else None
    if controlnet_cond is not None and cfg_on:
        controlnet_cond = torch.cat([controlnet_cond, controlnet_cond])
    if record is not None:
        record.update(timesteps=timesteps.clone(), guidance_scale=torch.tensor(guidance, dtype=torch.float32),
                      z_T=z_T.clone())

    z = z_T
    for k, t in enumerate(timesteps):
        z_in = torch.cat([z, z]) if cfg_on else z
        residuals = None
        if controlnet_cond is not None:
            residuals = model.controlnet(z_in, t, text_emb, controlnet_cond=controlnet_cond)
        eps = model.denoiser(z_in, t, text_emb, controlnet_residuals=residuals)
        if cfg_on:
            eps_text, eps_uncond = eps.chunk(2)
            eps = eps_uncond + guidance * (eps_text - eps_uncond)
        out = scheduler.step(eps, t, z, eta=eta, generator=generator)
        if record is not None:
            record.update({f"step{k}_t": t.clone(), f"step{k}_sample_in": z.clone(),
                           f"step{k}_model_output": eps.clone(), f"step{k}_denoised": out.denoised.clone(),
                           f"step{k}_prev_sample": out.prev_sample.clone()})
        z = out.prev_sample
    if record is not None:
        record["z_0"] = z.clone()
    return z


@torch.inference_mode()
def decode_latents(model: MotionLCM, z0: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """z_0 (B, L, C) -> normalised features (B, max(lengths), nfeats); frames past each length are exactly 0."""
    mask = lengths_to_mask(lengths, z0.device)
    if mask.shape[0] != z0.shape[0]:
        raise ValueError(f"{mask.shape[0]} lengths for a batch of {z0.shape[0]} latents")
    return model.vae.decode(z0, mask)
