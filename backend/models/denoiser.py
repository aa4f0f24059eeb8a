"""Latent denoiser (MLD teacher / MotionLCM student) and its motion-ControlNet copy.

Token sequence per sample: [latent_size latent tokens, 1 time token, text tokens], learned positions added to
all of them, no attention mask. The denoiser predicts epsilon for the latent tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from backend.models.config import ModelConfig
from backend.models.embeddings import TimestepEmbedding, timestep_sinusoids
from backend.models.transformer import EncoderLayer, LearnedPositions, SkipTransformer


class Denoiser(nn.Module):
    """epsilon(z_t, t, text, w) for latents z_t of shape (B, latent_size, latent_channels)."""

    is_controlnet = False

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.denoiser
        self.cfg = d
        self.latent_pre = nn.Linear(cfg.latent_channels, d.hidden_dim)
        self.latent_post = nn.Linear(d.hidden_dim, cfg.latent_channels)
        self.time_embedding = TimestepEmbedding(d.time_dim, d.hidden_dim, d.time_cond_proj_dim)
        # Index 0 is the (absent) text activation of the official layout, kept for key compatibility.
        self.emb_proj = nn.Sequential(nn.Identity(), nn.Linear(d.text_dim, d.hidden_dim))
        self.query_pos = LearnedPositions(d.max_len, d.hidden_dim)
        self.encoder = SkipTransformer(d, EncoderLayer, final_norm=not self.is_controlnet)

    @property
    def time_cond_proj_dim(self) -> int | None:
        return self.cfg.time_cond_proj_dim

    def _run(self, sample: torch.Tensor, timestep: torch.Tensor, text_emb: torch.Tensor,
             timestep_cond: torch.Tensor | None, residuals: list[torch.Tensor] | None,
             collect: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch = sample.shape[0]
        if text_emb.dim() != 3 or text_emb.shape[0] != batch or text_emb.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"text embeddings must be (B={batch}, tokens, {self.cfg.text_dim}), "
                             f"got {tuple(text_emb.shape)}")
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        sinus = timestep_sinusoids(timesteps, self.cfg.time_dim, self.cfg.flip_sin_to_cos, self.cfg.freq_shift)
        time_token = self.time_embedding(sinus.to(sample.dtype), timestep_cond)[:, None]
        x = torch.cat([self.latent_pre(sample), time_token, self.emb_proj(text_emb)], dim=1)
        return self.encoder(self.query_pos(x), residuals=residuals, collect=collect)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, text_emb: torch.Tensor,
                timestep_cond: torch.Tensor | None = None,
                controlnet_residuals: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Predicted noise (B, L, C).

        timestep: scalar or (B,) integers; text_emb: (B, tokens, text_dim); timestep_cond: (B, time_cond_proj_dim)
        w-embedding (LCM only); controlnet_residuals: one (B, tokens, hidden) tensor per layer, added after it.
        """
        x, _ = self._run(sample, timestep, text_emb, timestep_cond, controlnet_residuals, collect=False)
        return self.latent_post(x[:, : sample.shape[1]])


class ControlNet(Denoiser):
    """Trainable copy of the denoiser that turns a trajectory condition into per-layer residuals.

    The condition (B, L, C) is embedded by a zero-initialised MLP and added to z_t; each layer's output
    goes through its own zero-initialised linear (`controlnet_down_mid_blocks`). No final norm.
    `latent_post` exists (official layout) but is unused.
    """

    is_controlnet = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        d, c, e = cfg.denoiser, cfg.latent_channels, cfg.denoiser.controlnet_embed_dim
        self.controlnet_cond_embedding = nn.Sequential(
            nn.Linear(c, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU(), nn.Linear(e, c))
        self.controlnet_down_mid_blocks = nn.ModuleList(nn.Linear(d.hidden_dim, d.hidden_dim)
                                                        for _ in range(d.num_layers))
        for module in (self.controlnet_cond_embedding[-1], *self.controlnet_down_mid_blocks):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int,  # type: ignore[override]
                text_emb: torch.Tensor, timestep_cond: torch.Tensor | None = None,
                controlnet_cond: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Residuals for the denoiser: num_layers tensors of shape (B, tokens, hidden)."""
        if controlnet_cond is None:
            raise ValueError("ControlNet needs controlnet_cond (the trajectory encoder output)")
        sample = sample + self.controlnet_cond_embedding(controlnet_cond)
        _, outputs = self._run(sample, timestep, text_emb, timestep_cond, None, collect=True)
        return [block(h) for h, block in zip(outputs, self.controlnet_down_mid_blocks)]
