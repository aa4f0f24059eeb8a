"""Noise schedules: LCM (MotionLCM student, 1-4 steps) and DDIM (MLD teacher), plus the LCM w-embedding.

Both share the scaled-linear beta schedule of the official configs, computed in float32:
betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2, alphas_cumprod = cumprod(1 - betas).
Arithmetic follows the reference operation order in float32 so that sampling reproduces official outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


# Official MotionLCM inference settings (configs/modules/scheduler_lcm.yaml).
LCM_TIMESTEPS: dict[int, tuple[int, ...]] = {1: (799,), 2: (699, 299), 4: (699, 399, 299, 299)}
CFG_STEP_MAP: dict[int, float] = {1: 8.0, 2: 12.5, 4: 13.5}


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) values -> (B, dim) float32 sinusoids: v = 1000 w, freqs exp(-ln(1e4) k / (dim/2 - 1)), (sin, cos).

    The official sampler embeds w = guidance - 1 (see `lcm_guidance_embedding`). Evaluated in float32 like the
    reference: the arguments reach ~1e4 rad, where float64 would differ from it by up to ~5e-4.
    """
    if w.dim() != 1:
        raise ValueError(f"w must be a 1-D tensor, got shape {tuple(w.shape)}")
    half = dim // 2
    base = torch.log(torch.tensor(10000.0)) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -base).to(w.device)
    args = (w.float() * 1000.0)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


def lcm_guidance_embedding(guidance: float, batch: int, dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """The `timestep_cond` the official LCM sampler feeds for guidance scale `guidance`: embedding of (guidance - 1)."""
    w = torch.tensor(float(guidance) - 1.0, dtype=torch.float32).repeat(batch)
    return guidance_scale_embedding(w, dim).to(device)


@dataclass
class StepOutput:
    prev_sample: torch.Tensor  # z for the next step (the final latent after the last step)
    denoised: torch.Tensor  # the step's clean-latent estimate


class _BetaSchedule:
    """Scaled-linear DDPM schedule shared by both samplers (and by training: `add_noise`, `predict_x0`)."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps,
                                    dtype=torch.float32) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.final_alpha_cumprod = self.alphas_cumprod[0]  # set_alpha_to_one = False
        self.timesteps = torch.empty(0, dtype=torch.long)

    def _alpha(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alphas_cumprod[t] broadcastable against `like` (t scalar or (B,))."""
        t = torch.as_tensor(t, dtype=torch.long)
        a = self.alphas_cumprod.to(like.device)[t.to(like.device)]
        return a.reshape(a.shape + (1,) * (like.dim() - a.dim())) if a.dim() else a

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x_0): sqrt(a_t) x0 + sqrt(1 - a_t) noise, per-sample timesteps (B,)."""
        a = self._alpha(timesteps, x0)
        return a ** 0.5 * x0 + (1 - a) ** 0.5 * noise

    def predict_x0(self, eps: torch.Tensor, timesteps: torch.Tensor | int, sample: torch.Tensor) -> torch.Tensor:
        """x0 implied by an epsilon prediction: (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
        a = self._alpha(timesteps, sample)
        return (sample - (1 - a).sqrt() * eps) / a.sqrt()


class LCMScheduler(_BetaSchedule):
    """Multistep latent-consistency sampling with the official fixed timestep lists.

    Each step maps z_t to denoised = c_out(t) x0 + c_skip(t) z_t; before every step but the last it re-noises
    the estimate to the next listed timestep with N(0, I) noise (given, or drawn from `generator`).
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 timestep_scaling: float = 10.0, sigma_data: float = 0.5,
                 timesteps_step_map: dict[int, tuple[int, ...]] | None = None) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end)
        self.timestep_scaling = timestep_scaling
        self.sigma_data = sigma_data
        self.timesteps_step_map = dict(timesteps_step_map or LCM_TIMESTEPS)
        self._index = 0

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        if num_inference_steps not in self.timesteps_step_map:
            raise ValueError(f"LCM sampling supports {sorted(self.timesteps_step_map)} steps, "
                             f"got {num_inference_steps}")
        self.timesteps = torch.tensor(self.timesteps_step_map[num_inference_steps], dtype=torch.long)
        self._index = 0
        return self.timesteps

    def boundary_scalings(self, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_skip, c_out) = (s^2 / ((k t)^2 + s^2), k t / sqrt((k t)^2 + s^2)), s = sigma_data, k = scaling."""
        scaled = torch.as_tensor(t) * self.timestep_scaling
        c_skip = self.sigma_data ** 2 / (scaled ** 2 + self.sigma_data ** 2)
        c_out = scaled / (scaled ** 2 + self.sigma_data ** 2) ** 0.5
        return c_skip, c_out

    def step(self, model_output: torch.Tensor, t: torch.Tensor | int, sample: torch.Tensor,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> StepOutput:
        """One LCM step at the current position of `timesteps` (call in order after `set_timesteps`)."""
        if self._index >= len(self.timesteps):
            raise RuntimeError("LCMScheduler.step called more often than set_timesteps allowed")
        if int(t) != int(self.timesteps[self._index]):
            raise ValueError(f"step {self._index} expects timestep {int(self.timesteps[self._index])}, got {int(t)}")
        t = self.timesteps[self._index]
        last = self._index == len(self.timesteps) - 1
        a_t = self.alphas_cumprod[t].to(sample.device)
        x0 = (sample - (1 - a_t).sqrt() * model_output) / a_t.sqrt()
        c_skip, c_out = (c.to(sample.device) for c in self.boundary_scalings(t))
        denoised = c_out * x0 + c_skip * sample
        if last:
            prev = denoised
        else:
            a_prev = self.alphas_cumprod[self.timesteps[self._index + 1]].to(sample.device)
            if noise is None:
                noise = torch.randn(denoised.shape, generator=generator, dtype=denoised.dtype,
                                    device=generator.device if generator is not None else denoised.device)
            prev = a_prev.sqrt() * denoised + (1 - a_prev).sqrt() * noise.to(denoised.device)
        self._index += 1
        return StepOutput(prev_sample=prev, denoised=denoised)


class DDIMScheduler(_BetaSchedule):
    """DDIM (eta = 0 by default) with "leading" spacing and steps_offset 1, as the MLD teacher config.

    For n steps: timesteps = arange(n)[::-1] * (1000 // n) + 1, e.g. 50 steps -> 981, 961, ..., 1.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012,
                 steps_offset: int = 1) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end)
        self.steps_offset = steps_offset
        self.num_inference_steps = 0

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        if not 1 <= num_inference_steps <= self.num_train_timesteps:
            raise ValueError(f"DDIM steps must be in 1..{self.num_train_timesteps}, got {num_inference_steps}")
        self.num_inference_steps = num_inference_steps
        ratio = self.num_train_timesteps // num_inference_steps
        steps = np.arange(num_inference_steps)[::-1] * ratio + self.steps_offset
        self.timesteps = torch.from_numpy(steps.copy()).long()
        return self.timesteps

    def step(self, model_output: torch.Tensor, t: torch.Tensor | int, sample: torch.Tensor, eta: float = 0.0,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> StepOutput:
        """x_{t-k} from x_t and predicted epsilon; `eta` > 0 adds the DDPM-like variance noise."""
        if self.num_inference_steps == 0:
            raise RuntimeError("call DDIMScheduler.set_timesteps before step")
        t = int(t)
        prev_t = t - self.num_train_timesteps // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        a_t, a_prev = a_t.to(sample.device), a_prev.to(sample.device)
        x0 = (sample - (1 - a_t) ** 0.5 * model_output) / a_t ** 0.5
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        std = eta * variance ** 0.5
        prev = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * model_output
        if eta > 0:
            if noise is None:
                noise = torch.randn(sample.shape, generator=generator, dtype=sample.dtype,
                                    device=generator.device if generator is not None else sample.device)
            prev = prev + std * noise.to(sample.device)
        return StepOutput(prev_sample=prev, denoised=x0)


__all__ = ["LCMScheduler", "DDIMScheduler", "StepOutput", "guidance_scale_embedding", "lcm_guidance_embedding",
           "LCM_TIMESTEPS", "CFG_STEP_MAP"]
