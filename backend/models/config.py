"""Hyperparameters of the MotionLCM networks, as a JSON-safe dataclass tree.

The defaults are the official MotionLCM-V2 values (spatial ControlNet model: latent 16 x 32, hidden 256,
9-layer skip transformers, sentence-t5-large text embeddings of 768 dims, LCM w-conditioning of 256 dims).
Every module reads its sizes from here; nothing is hard-coded in the networks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StackConfig:
    """One skip-transformer stack: post-norm layers, GELU feed-forward, learned positions."""

    hidden_dim: int = 256
    ff_size: int = 1024
    num_layers: int = 9  # odd: (n-1)/2 input blocks, 1 middle block, (n-1)/2 output blocks
    num_heads: int = 4
    dropout: float = 0.1
    norm_eps: float = 1e-5
    max_len: int = 500  # rows of the learned positional embedding

    def validate(self, where: str) -> None:
        if self.num_layers < 1 or self.num_layers % 2 != 1:
            raise ValueError(f"{where}.num_layers must be a positive odd number, got {self.num_layers}")
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(f"{where}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{where}.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class VAEConfig(StackConfig):
    nfeats: int = 263  # HumanML3D feature size


@dataclass(frozen=True)
class DenoiserConfig(StackConfig):
    text_dim: int = 768  # text-embedding size (sentence-t5-large: 768, MiniLM: 384)
    time_dim: int = 768  # sinusoidal timestep embedding size
    time_cond_proj_dim: int | None = 256  # LCM w-embedding size; None for the MLD teacher (uses CFG instead)
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    controlnet_embed_dim: int = 256  # width of the ControlNet condition embedding MLP


@dataclass(frozen=True)
class TrajEncoderConfig(StackConfig):
    njoints: int = 22  # hint = njoints x 3 coordinates per frame


@dataclass(frozen=True)
class ModelConfig:
    latent_size: int = 16  # latent tokens
    latent_channels: int = 32  # channels per latent token
    vae: VAEConfig = field(default_factory=VAEConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    traj_encoder: TrajEncoderConfig = field(default_factory=TrajEncoderConfig)
    controlnet: bool = True  # build the motion ControlNet and the trajectory encoder

    def __post_init__(self) -> None:
        for name in ("vae", "denoiser", "traj_encoder"):
            getattr(self, name).validate(name)
        if self.latent_size < 1 or self.latent_channels < 1:
            raise ValueError(f"latent shape must be positive, got ({self.latent_size}, {self.latent_channels})")

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.latent_size, self.latent_channels)

    @property
    def text_dim(self) -> int:
        return self.denoiser.text_dim

    def with_text_dim(self, text_dim: int) -> "ModelConfig":
        """Same architecture for another text encoder (e.g. 384 for all-MiniLM-L6-v2)."""
        return dataclasses.replace(self, denoiser=dataclasses.replace(self.denoiser, text_dim=int(text_dim)))

    @classmethod
    def tiny(cls, text_dim: int = 384, controlnet: bool = True, time_cond_proj_dim: int | None = 32) -> "ModelConfig":
        """A few-hundred-kilobyte model of the same structure, for fast tests."""
        small = dict(hidden_dim=64, ff_size=128, num_layers=3, num_heads=4, max_len=260)
        return cls(
            latent_size=4, latent_channels=16,
            vae=VAEConfig(**small),
            denoiser=DenoiserConfig(**small, text_dim=text_dim, time_dim=64,
                                    time_cond_proj_dim=time_cond_proj_dim, controlnet_embed_dim=64),
            traj_encoder=TrajEncoderConfig(**small),
            controlnet=controlnet,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; unknown keys raise ValueError (a config from a newer format must not half-load)."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object, got {type(data).__name__}")
        subs = {"vae": VAEConfig, "denoiser": DenoiserConfig, "traj_encoder": TrajEncoderConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in subs:
                kwargs[key] = _build(subs[key], value, key)
            elif key in {"latent_size", "latent_channels", "controlnet"}:
                kwargs[key] = value
            else:
                raise ValueError(f"unknown model config key {key!r}")
        return cls(**kwargs)


def _build(kind: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"model config {where!r} must be an object, got {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(value) - names
    if unknown:
        raise ValueError(f"unknown keys in model config {where!r}: {sorted(unknown)}")
    return kind(**value)
