"""Motion VAE: HumanML3D feature sequences <-> latents of shape (latent_size, latent_channels)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributions import Normal

from backend.models.config import ModelConfig
from backend.models.transformer import DecoderLayer, EncoderLayer, LearnedPositions, SkipTransformer, attention_mask


class MotionVAE(nn.Module):
    """Transformer VAE (official `MldVae`, arch `encoder_decoder`).

    Encoder: 2 x latent_size learned distribution tokens prepended to the embedded frames; their outputs give
    mu and log-variance. Decoder: one query per frame (zeros + learned position) cross-attending to the
    latent tokens, self-attention masked to the valid frames; padded frames of the output are exactly 0.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        v = cfg.vae
        self.latent_size = cfg.latent_size
        self.hidden_dim = v.hidden_dim
        self.skel_embedding = nn.Linear(v.nfeats, v.hidden_dim)
        # On the CPU even on the meta device, like LearnedPositions' table (models.transformer).
        self.global_motion_token = nn.Parameter(torch.randn(2 * cfg.latent_size, v.hidden_dim, device="cpu"))
        self.query_pos_encoder = LearnedPositions(v.max_len, v.hidden_dim)
        self.encoder = SkipTransformer(v, EncoderLayer, final_norm=True)
        self.latent_pre = nn.Linear(v.hidden_dim, cfg.latent_channels)  # encoder tokens -> latent channels
        self.latent_post = nn.Linear(cfg.latent_channels, v.hidden_dim)  # latent channels -> decoder memory
        self.query_pos_decoder = LearnedPositions(v.max_len, v.hidden_dim)
        self.decoder = SkipTransformer(v, DecoderLayer, final_norm=True)
        self.final_layer = nn.Linear(v.hidden_dim, v.nfeats)

    def encode(self, features: torch.Tensor, mask: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, Normal]:
        """(B, T, nfeats) normalised features + (B, T) valid-frame mask -> z (B, L, C) sampled, and q(z|x).

        The returned distribution is batch-first, loc/scale of shape (B, L, C).
        """
        batch = features.shape[0]
        tokens = self.global_motion_token.expand(batch, -1, -1)
        x = torch.cat([tokens, self.skel_embedding(features)], dim=1)
        visible = torch.cat([mask.new_ones(batch, tokens.shape[1]), mask.bool()], dim=1)
        x, _ = self.encoder(self.query_pos_encoder(x), mask=attention_mask(visible))
        dist_tokens = self.latent_pre(x[:, : tokens.shape[1]])
        mu, logvar = dist_tokens.split(self.latent_size, dim=1)
        std = logvar.exp().pow(0.5)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + std * eps, Normal(mu, std)

    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z (B, L, C) + (B, T) valid-frame mask -> (B, T, nfeats) normalised features, 0 on padded frames."""
        mask = mask.bool()
        memory = self.latent_post(z)
        batch, frames = mask.shape
        queries = self.query_pos_decoder(memory.new_zeros(batch, frames, self.hidden_dim))
        x, _ = self.decoder(queries, memory, mask=attention_mask(mask))
        return self.final_layer(x).masked_fill(~mask[..., None], 0.0)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Normal]:
        """Reconstruction for VAE training: (features_rec, z, q(z|x))."""
        z, dist = self.encode(features, mask)
        return self.decode(z, mask), z, dist
