"""The motion tokenizer of the MotionMillion engine: a 1D-convolutional encoder and decoder around an FSQ
bottleneck (the T2M-GPT / MotionMillion tokenizer shape: `down_t` stride-2 stages, each with a dilated residual
stack, so one token covers 2**down_t frames).

(B, T, 272) features -> (B, T / 2**down_t) integer tokens -> (B, T, 272) features. T must be a multiple of
2**down_t. Parameter names follow the public code's layout where it costs nothing (`encoder`, `decoder`,
`quantizer`), so that a converted checkpoint could be mapped later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.fsq import FSQ, LEVELS_FOR_CODEBOOK
from backend.motion.rep272 import FEATURE_DIM_272


@dataclass(frozen=True)
class TokenizerConfig:
    features: int = FEATURE_DIM_272
    width: int = 512  # the public code's default width and output embedding
    down_t: int = 2  # stride-2 stages: 4 frames per token
    depth: int = 3  # residual blocks per stage
    dilation_growth: int = 3
    levels: tuple[int, ...] = LEVELS_FOR_CODEBOOK[2 ** 16]

    @property
    def frames_per_token(self) -> int:
        return 2 ** self.down_t


class ResidualStack(nn.Sequential):
    """`depth` blocks of ReLU -> dilated conv (k 3) -> ReLU -> conv (k 1), each added to its input."""

    def __init__(self, width: int, depth: int, growth: int, reverse: bool = False) -> None:
        dilations = [growth ** i for i in range(depth)]
        super().__init__(*(_ResidualBlock(width, d) for d in (dilations[::-1] if reverse else dilations)))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class MotionTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig = TokenizerConfig()) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.width
        encoder: list[nn.Module] = [nn.Conv1d(cfg.features, w, 3, padding=1), nn.ReLU()]
        for _ in range(cfg.down_t):
            encoder += [nn.Conv1d(w, w, 4, stride=2, padding=1), ResidualStack(w, cfg.depth, cfg.dilation_growth)]
        encoder.append(nn.Conv1d(w, len(cfg.levels), 3, padding=1))
        self.encoder = nn.Sequential(*encoder)
        self.quantizer = FSQ(cfg.levels)
        decoder: list[nn.Module] = [nn.Conv1d(len(cfg.levels), w, 3, padding=1), nn.ReLU()]
        for _ in range(cfg.down_t):
            decoder += [ResidualStack(w, cfg.depth, cfg.dilation_growth, reverse=True),
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(w, w, 3, padding=1)]
        decoder += [nn.Conv1d(w, w, 3, padding=1), nn.ReLU(), nn.Conv1d(w, cfg.features, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    def _check(self, features: torch.Tensor) -> None:
        step = self.config.frames_per_token
        if features.ndim != 3 or features.shape[-1] != self.config.features or features.shape[1] % step:
            raise ValueError(f"the tokenizer needs (B, T, {self.config.features}) features with T a multiple of "
                             f"{step}, got {tuple(features.shape)}")

    def encode(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) normalised features -> (quantised codes (B, T/s, d), tokens (B, T/s))."""
        self._check(features)
        return self.quantizer(self.encoder(features.transpose(1, 2)).transpose(1, 2))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T/s, d) quantised codes -> (B, T, F) features."""
        return self.decoder(codes.transpose(1, 2)).transpose(1, 2)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T/s) tokens -> (B, T, F) features."""
        return self.decode_codes(self.quantizer.tokens_to_codes(tokens))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (through the straight-through quantiser) and the tokens."""
        codes, tokens = self.encode(features)
        return self.decode_codes(codes), tokens
