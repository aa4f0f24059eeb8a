"""Stage 1: train the motion VAE (features <-> 16 x 32 latents).

Loss (official configs/vae.yaml): smooth-L1 on normalised features + smooth-L1 on joint positions
decoded from them, both averaged over the valid frames of each clip, + 1e-4 x KL(q(z|x) || N(0, I)).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from backend.motion.features import denormalize, features_to_joints
from backend.models import MotionLCM

from ..common import (Objective, augmentation, export, load_stage_config, model_config, stage_dir,
                      text_encoder_identity, train_settings)
from ..data.dataset import HumanML3D
from ..engine import TrainResult, train
from ..runtime import barrier, setup


def masked_smooth_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> mean over clips of the mean over valid frames (the official `mask_loss`)."""
    per_frame = F.smooth_l1_loss(a, b, reduction="none").flatten(2).mean(-1)
    mask = mask.to(per_frame.dtype)
    return ((per_frame * mask).sum(-1) / mask.sum(-1)).mean()


class VAEObjective(Objective):
    def __init__(self, model: MotionLCM, mean, std, weights: dict) -> None:
        super().__init__()
        self.vae = model.vae
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.weights = {k: float(v) for k, v in weights.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        feats, mask = batch["motion"], batch["mask"]
        rec, _, dist = self.vae(feats, mask)
        rec = rec.float()
        joints_rec = features_to_joints(denormalize(rec, self.mean, self.std), check_finite=False)
        joints_ref = features_to_joints(denormalize(feats, self.mean, self.std), check_finite=False)
        prior = torch.distributions.Normal(torch.zeros_like(dist.loc), torch.ones_like(dist.scale))
        terms = {
            "rec_feats": self.weights["rec_feats"] * masked_smooth_l1(rec, feats, mask),
            "rec_joints": self.weights["rec_joints"] * masked_smooth_l1(joints_rec, joints_ref, mask),
            "kl": self.weights["kl"] * torch.distributions.kl_divergence(dist, prior).mean(),
        }
        terms["loss"] = sum(terms.values())
        return terms


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg = load_stage_config("vae", preset, overrides, config)
    ctx = setup(int(cfg["train"]["seed"]))
    dataset = HumanML3D(data, "train", seed=int(cfg["train"]["seed"]), augmentation=augmentation(cfg))
    settings = train_settings(cfg, len(dataset), ctx.world_size)
    encoder_id, text_dim = text_encoder_identity(cfg.get("text_encoder"))
    model = MotionLCM(model_config(cfg, text_dim, time_cond_proj_dim=None, controlnet=False))
    objective = VAEObjective(model, dataset.mean, dataset.std, cfg["loss"])
    result = train(objective, dataset, settings, stage_dir(out, "vae"), ctx, resume=resume, stop_after=stop_after)
    if ctx.is_main and result.steps == settings.steps:
        export(model, out, "vae", cfg, None, dataset, (encoder_id, text_dim), result.steps)
    barrier(ctx)  # later stages (other ranks included) read this export
    return result
