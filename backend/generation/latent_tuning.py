"""Consistency latent tuning (CLT, MotionLCM-V2's `--optimize`): make the motion meet its joint controls.

The ControlNet steers the sampler towards the controls but does not enforce them. Tuning treats the initial
noise z_T as the free variable and minimises the control error of the decoded motion by gradient descent
through the consistency sampler, the VAE decoder and features -> joints (all frozen). The sampler stays the
same 1-4 step LCM, so the result is still a sample of the model, only one that meets the controls.

Per sample: loss = mean squared error of the controlled coordinates (metres)
                   + `correlation_penalty` x multi-scale autocorrelation of z_T (keeps it white-noise-like).
Adam with linear warm-up then cosine decay; each sample's gradient is scaled to unit norm so every sample
moves at the same rate whatever its error. Defaults are the official noise-optimizer settings; a checkpoint
can recommend another penalty for itself (its config's `sampling.tuning_correlation_penalty`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from backend.errors import InvalidRequest
from backend.motion.features import denormalize, features_to_joints
from backend.limits import MAX_TUNING
from backend.generation.sampling_config import OFFICIAL_CORRELATION_PENALTY, valid_penalty
from backend.models import MotionLCM
from backend.generation.sampler import lengths_to_mask, sample_lcm
from backend.generation.schedulers import LCMScheduler



@dataclass(frozen=True)
class TuningSettings:
    iterations: int = 400
    learning_rate: float = 0.1
    warmup: int = 50
    correlation_penalty: float = OFFICIAL_CORRELATION_PENALTY

    def validate(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or not 1 <= self.iterations <= MAX_TUNING:
            raise InvalidRequest(f"latent tuning iterations must be an integer in 1..{MAX_TUNING}, "
                                 f"got {self.iterations!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InvalidRequest(f"latent tuning learning rate must be positive, got {self.learning_rate!r}")
        if not valid_penalty(self.correlation_penalty):
            raise InvalidRequest(f"latent tuning correlation penalty must be 0 or more, "
                                 f"got {self.correlation_penalty!r}")


def noise_correlation(z: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B,): squared lag-1 autocorrelation of z along its tokens, summed over 2x coarsenings.

    White noise scores about 0; structure that tuning might carve into z_T scores high."""
    total = z.new_zeros(z.shape[0])
    while z.shape[1] > 2:
        total = total + (z * torch.roll(z, shifts=1, dims=1)).mean(dim=(1, 2)).pow(2)
        even = z.shape[1] // 2 * 2
        z = z[:, :even].reshape(z.shape[0], even // 2, 2, z.shape[2]).mean(dim=2)
    return total


def _learning_rate(settings: TuningSettings, iteration: int) -> float:
    if iteration < settings.warmup:
        return settings.learning_rate * (iteration + 1) / settings.warmup
    progress = (iteration - settings.warmup) / max(1, settings.iterations - settings.warmup)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def tune_latents(model: MotionLCM, z_T: torch.Tensor, text_emb: torch.Tensor, *, hint: torch.Tensor,
                 hint_mask: torch.Tensor, raw_mean: torch.Tensor, raw_std: torch.Tensor, lengths: Sequence[int],
                 mean: torch.Tensor, std: torch.Tensor, steps: int = 1, guidance: float,
                 scheduler: LCMScheduler | None = None, noise: Sequence[torch.Tensor] | None = None,
                 settings: TuningSettings = TuningSettings(),
                 callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Return z_T tuned so that `sample_lcm` -> decode -> joints meets the controls in `hint`.

    hint, hint_mask: (B, T, 22, 3), the normalised controls as the ControlNet takes them (backend.generation.controls),
    T >= max(lengths); raw_mean/raw_std (22, 3) turn them back into metres. The ControlNet sees them too when
    the model has one. noise: the fixed re-noising tensors of a multi-step sampler, so that every iteration
    sees the same sampler. callback(i, errors) after each iteration with the per-sample control MSE (it may
    raise to cancel)."""
    settings.validate()
    if model.denoiser.time_cond_proj_dim is None:
        raise ValueError("latent tuning needs an LCM checkpoint (with w-conditioning)")
    if float(hint_mask.sum()) == 0:
        raise ValueError("latent tuning needs at least one joint control")
    # Normal tensors throughout: the caller may be in inference mode, whose tensors cannot enter a graph.
    with torch.inference_mode(False), torch.enable_grad():
        hint, hint_mask = hint.clone(), hint_mask.clone()
        target = hint * raw_std.to(hint) + raw_mean.to(hint)  # metres; masked entries never count
        return _tune(model, z_T.clone(), text_emb.clone(), target, hint_mask, lengths, mean.clone(), std.clone(),
                     hint if model.has_controlnet else None, hint_mask if model.has_controlnet else None, steps,
                     guidance, scheduler, None if noise is None else [n.clone() for n in noise], settings, callback)


def _tune(model: MotionLCM, z_T: torch.Tensor, text_emb: torch.Tensor, target: torch.Tensor,
          target_mask: torch.Tensor, lengths: Sequence[int], mean: torch.Tensor, std: torch.Tensor,
          hint: torch.Tensor | None, hint_mask: torch.Tensor | None, steps: int, guidance: float,
          scheduler: LCMScheduler | None, noise: list[torch.Tensor] | None, settings: TuningSettings,
          callback: Callable[[int, torch.Tensor], None] | None) -> torch.Tensor:
    frames = lengths_to_mask(lengths, z_T.device)
    target, target_mask = target[:, :frames.shape[1]], target_mask[:, :frames.shape[1]]
    controlled = target_mask.sum(dim=(1, 2, 3)).clamp(min=1)
    active = (target_mask.flatten(1).amax(dim=1) > 0).to(z_T.dtype)[:, None, None]  # samples without controls stay
    with torch.no_grad():
        cond = model.traj_encoder(hint, hint_mask) if hint is not None else None

    z = z_T.detach().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=settings.learning_rate)
    was_training = model.training
    model.eval()
    try:
        for i in range(settings.iterations):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(settings, i)
            z0 = sample_lcm(model, text_emb, z, hint=hint, hint_mask=hint_mask, steps=steps, guidance=guidance,
                            noise=noise, scheduler=scheduler, controlnet_cond=cond, differentiable=True)
            feats = denormalize(model.vae.decode(z0, frames), mean, std)
            joints = features_to_joints(feats, check_finite=False)
            errors = ((joints - target) ** 2 * target_mask).sum(dim=(1, 2, 3)) / controlled
            loss = errors + settings.correlation_penalty * noise_correlation(z)
            (grad,) = torch.autograd.grad(loss.sum(), z)
            z.grad = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None] * active
            optimizer.step()
            if callback is not None:
                callback(i, errors.detach())
    finally:
        model.train(was_training)
    return z.detach()
