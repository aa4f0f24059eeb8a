"""Finite scalar quantisation (Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple", 2023): the
bottleneck of the MotionMillion-style motion tokenizer.

Each of d channels is bounded (tanh) to L_i levels and rounded; the straight-through estimator passes the
gradient through the rounding. The codebook is implicit (the product of the levels), so it cannot collapse and
needs no commitment loss. A code vector maps to one integer token (mixed radix over the levels) and back.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

# The FSQ paper's recommended levels per codebook size (its Table 1).
LEVELS_FOR_CODEBOOK = {2 ** 8: (8, 6, 5), 2 ** 10: (8, 5, 5, 5), 2 ** 12: (7, 5, 5, 5, 5), 2 ** 14: (8, 8, 8, 6, 5),
                       2 ** 16: (8, 8, 8, 5, 5, 5)}
_EPS = 1e-3


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """round(z) forward, identity backward."""
    return z + (torch.round(z) - z).detach()


class FSQ(nn.Module):
    """(..., d) -> quantised (..., d) in [-1, 1] per channel, and integer tokens (...,) in [0, codebook_size)."""

    def __init__(self, levels: tuple[int, ...] = LEVELS_FOR_CODEBOOK[2 ** 16]) -> None:
        super().__init__()
        if not levels or any(int(level) < 2 for level in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels_list = tuple(int(level) for level in levels)
        levels_t = torch.tensor(self.levels_list, dtype=torch.float32)
        self.register_buffer("levels", levels_t, persistent=False)
        basis = torch.cumprod(torch.tensor((1,) + self.levels_list[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("basis", basis, persistent=False)
        self.codebook_size = math.prod(self.levels_list)

    @property
    def dim(self) -> int:
        return len(self.levels_list)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Each channel squashed into (-(L-1)/2, (L-1)/2) and shifted so that rounding gives L values (an even L
        has its values at half-integers, then offset back by 1/2)."""
        half = (self.levels - 1) * (1 + _EPS) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantised values in [-1, 1], tokens). The gradient reaches z through the rounding unchanged."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ with {self.dim} levels needs (..., {self.dim}) inputs, got {tuple(z.shape)}")
        quantised = round_ste(self.bound(z)) / (self.levels // 2)
        return quantised, self.codes_to_tokens(quantised)

    def codes_to_tokens(self, quantised: torch.Tensor) -> torch.Tensor:
        """(..., d) quantised values -> (...,) int64 tokens (mixed radix over the levels)."""
        digits = torch.round(quantised * (self.levels // 2) + self.levels // 2).to(torch.int64)
        return (digits * self.basis).sum(dim=-1)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """(...,) tokens -> (..., d) quantised values, the inverse of codes_to_tokens."""
        if (tokens < 0).any() or (tokens >= self.codebook_size).any():
            raise ValueError(f"tokens must be in [0, {self.codebook_size})")
        digits = (tokens[..., None] // self.basis) % self.levels.to(torch.int64)
        return (digits - self.levels.to(torch.int64) // 2).to(torch.float32) / (self.levels // 2)
