"""Trajectory encoder: normalised joint hints -> the ControlNet condition (B, latent_size, latent_channels)."""

from __future__ import annotations

import torch
import torch.nn as nn

from backend.models.config import ModelConfig
from backend.models.transformer import EncoderLayer, LearnedPositions, SkipTransformer, attention_mask


def controlled_frames(hint_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, J, 3) or (B, T, J*3) hint mask -> (B, T) bool: frames with at least one controlled coordinate."""
    return hint_mask.reshape(hint_mask.shape[0], hint_mask.shape[1], -1).sum(dim=-1) != 0


class TrajectoryEncoder(nn.Module):
    """latent_size learned tokens + one token per frame; only controlled frames are visible to attention.

    In eval mode the invisible frame tokens are dropped before the transformer and the last layer computes only
    the learned tokens' rows (same result, less work; training keeps the full computation and its RNG use).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        t = cfg.traj_encoder
        self.njoints = t.njoints
        self.skel_embedding = nn.Linear(3 * t.njoints, t.hidden_dim)
        # On the CPU even on the meta device, like LearnedPositions' table (models.transformer).
        self.global_motion_token = nn.Parameter(torch.randn(cfg.latent_size, t.hidden_dim, device="cpu"))
        self.query_pos_encoder = LearnedPositions(t.max_len, t.hidden_dim)
        self.encoder = SkipTransformer(t, EncoderLayer, final_norm=True)
        self.latent_proj = nn.Linear(t.hidden_dim, cfg.latent_channels)

    def forward(self, hint: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
        """hint: (B, T, J, 3) normalised positions (0 where uncontrolled); hint_mask: same shape, 1 = controlled."""
        batch, frames = hint.shape[:2]
        hint = hint.reshape(batch, frames, -1)
        if hint.shape[-1] != 3 * self.njoints:
            raise ValueError(f"hint must carry {self.njoints} joints x 3 per frame, got {hint.shape[-1]} values")
        tokens = self.global_motion_token.expand(batch, -1, -1)
        x = torch.cat([tokens, self.skel_embedding(hint)], dim=1)
        frame_visible = controlled_frames(hint_mask)
        visible = torch.cat([frame_visible.new_ones(batch, tokens.shape[1]), frame_visible], dim=1)
        x = self.query_pos_encoder(x)
        keep = None
        if not self.training:
            x, visible = _drop_hidden(x, visible)
            keep = tokens.shape[1]  # only the learned tokens are read out: the last layer skips the frame rows
        x, _ = self.encoder(x, mask=attention_mask(visible), keep=keep)
        return self.latent_proj(x[:, : tokens.shape[1]])


def _drop_hidden(x: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove tokens no one can attend to (uncontrolled frames), keeping the visible ones in order.

    Exact: hidden tokens are masked as keys in every layer, so they never influence visible tokens, and
    positions were added before. Sparse controls (a few keyframes) then cost a few tokens instead of T.
    """
    keep = int(visible.sum(dim=1).max())
    if keep == visible.shape[1]:
        return x, visible
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)[:, :keep]
    return x.gather(1, order[..., None].expand(-1, -1, x.shape[-1])), visible.gather(1, order)
