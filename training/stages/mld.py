"""Stage 2: train the MLD teacher, latent diffusion over the frozen VAE's latents.

DDPM with 1000 scaled-linear steps and epsilon prediction (MSE); 10 % of captions are replaced by the
empty text so the same network also predicts unconditionally (classifier-free guidance). Validation
samples a few clips with DDIM + CFG (official: 50 steps, scale 7.5) and logs their feature error.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from backend.models import MotionLCM
from backend.generation.sampler import decode_latents, sample_ddim
from backend.generation.schedulers import DDIMScheduler

from ..common import Objective, TextEmbedder, export, load_stage_output, model_config, stage_dir, start_text_stage
from ..data.dataset import HumanML3D, collate
from ..engine import TrainResult, train
from ..runtime import barrier


class MLDObjective(Objective):
    frozen = ("vae",)

    def __init__(self, model: MotionLCM, text: TextEmbedder, text_dropout: float) -> None:
        super().__init__()
        self.vae, self.denoiser = model.vae, model.denoiser
        self.text, self.text_dropout = text, text_dropout
        self.schedule = DDIMScheduler()
        self.freeze()

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z, _ = self.vae.encode(batch["motion"], batch["mask"])
        drop = torch.rand(len(batch["text"])) < self.text_dropout
        texts = ["" if d else t for t, d in zip(batch["text"], drop.tolist())]
        noise = torch.randn_like(z)
        t = torch.randint(0, self.schedule.num_train_timesteps, (z.shape[0],), device=z.device)
        eps = self.denoiser(self.schedule.add_noise(z, noise, t), t, self.text(texts))
        loss = F.mse_loss(eps.float(), noise)
        return {"diffusion": loss, "loss": loss}


def ddim_validation(model: MotionLCM, text: TextEmbedder, dataset: HumanML3D, count: int, steps: int,
                    guidance: float) -> dict[str, float]:
    """Feature MAE between DDIM samples and the reference clips of the same captions (a sanity signal,
    not a quality metric: generation is not reconstruction)."""
    batch = collate([dataset[i] for i in range(min(count, len(dataset)))])
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(0)
    z_T = torch.randn((len(batch["text"]), *model.config.latent_shape), generator=generator).to(device)
    z0 = sample_ddim(model, text(batch["text"]), z_T, uncond_emb=text([""]), steps=steps, guidance=guidance)
    feats = decode_latents(model, z0, batch["length"].to(device))
    mask = batch["mask"].to(device)[..., None]
    error = ((feats - batch["motion"].to(device)).abs() * mask).sum() / (mask.sum() * feats.shape[-1])
    return {"ddim_feature_mae": float(error)}


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg, seed, ctx, dataset, settings, text = start_text_stage("mld", data, preset, overrides, config)
    vae_model = load_stage_output(out, "vae")
    model = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=None, controlnet=False))
    model.vae.load_state_dict(vae_model.vae.state_dict())
    diffusion = cfg["diffusion"]
    objective = MLDObjective(model, text, float(diffusion["text_dropout"]))
    try:
        val_set = HumanML3D(data, "val", seed=seed)
    except (OSError, ValueError):  # no usable val split: validate on training clips rather than not at all
        val_set = dataset

    def validate() -> dict[str, float]:
        return ddim_validation(model, text, val_set, int(cfg["validation"]["samples"]),
                               int(diffusion["ddim_steps"]), float(diffusion["guidance_scale"]))

    result = train(objective, dataset, settings, stage_dir(out, "mld"), ctx, resume=resume, stop_after=stop_after,
                   validate=validate, validate_every=int(cfg["validation"]["every"]))
    if ctx.is_main and result.steps == settings.steps:
        export(model, out, "mld", cfg, text, dataset, steps=result.steps)
    barrier(ctx)  # later stages (other ranks included) read this export
    return result
