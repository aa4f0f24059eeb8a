"""Diffusion-timestep embedding: sinusoidal features, optional LCM w-conditioning, then a small MLP."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_sinusoids(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool = True,
                       freq_shift: float = 0.0, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) float32 sinusoids.

    Frequencies exp(-ln(max_period) k / (dim/2 - freq_shift)), k < dim/2; output (cos, sin) when flipped.
    Evaluated in float32 in the same operation order as the reference: at t ~ 800 the arguments reach
    hundreds of radians, where a float64 evaluation would differ in the last bits.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = timesteps.float()[:, None] * freqs[None, :]
    sin, cos = torch.sin(args), torch.cos(args)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedding(nn.Module):
    """sinusoids (+ cond_proj(w_embedding)) -> linear_1 -> SiLU -> linear_2: one token of size `out_dim`."""

    def __init__(self, in_dim: int, out_dim: int, cond_proj_dim: int | None) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        # Zero-initialised so that adding w-conditioning to a trained teacher starts as the identity.
        self.cond_proj = nn.Linear(cond_proj_dim, in_dim, bias=False) if cond_proj_dim is not None else None
        if self.cond_proj is not None:
            nn.init.zeros_(self.cond_proj.weight)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, sinusoids: torch.Tensor, timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        if timestep_cond is not None:
            if self.cond_proj is None:
                raise ValueError("this denoiser has no cond_proj: it takes no guidance (w) embedding")
            sinusoids = sinusoids + self.cond_proj(timestep_cond)
        return self.linear_2(F.silu(self.linear_1(sinusoids)))
