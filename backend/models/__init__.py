"""MotionLCM networks (own implementation; state-dict keys match the official checkpoints).

`MotionLCM(cfg)` holds `vae`, `denoiser`, and when `cfg.controlnet` also `controlnet` and `traj_encoder`.
Sampling loops live in `backend.generation.sampler`, noise schedules in `backend.generation.schedulers`,
loading/saving in `backend.checkpoints`.
"""

from __future__ import annotations

import torch.nn as nn

from backend.models.config import DenoiserConfig, ModelConfig, StackConfig, TrajEncoderConfig, VAEConfig
from backend.models.denoiser import ControlNet, Denoiser
from backend.models.traj_encoder import TrajectoryEncoder, controlled_frames
from backend.models.vae import MotionVAE


class MotionLCM(nn.Module):
    """Container whose `state_dict()` has the official prefixes vae. / denoiser. / controlnet. / traj_encoder."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vae = MotionVAE(cfg)
        self.denoiser = Denoiser(cfg)
        self.controlnet = ControlNet(cfg) if cfg.controlnet else None
        self.traj_encoder = TrajectoryEncoder(cfg) if cfg.controlnet else None

    @property
    def has_controlnet(self) -> bool:
        return self.controlnet is not None


__all__ = ["MotionLCM", "ModelConfig", "StackConfig", "VAEConfig", "DenoiserConfig", "TrajEncoderConfig",
           "MotionVAE", "Denoiser", "ControlNet", "TrajectoryEncoder", "controlled_frames"]
