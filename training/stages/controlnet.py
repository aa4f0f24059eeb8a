"""Stage 4: motion ControlNet + trajectory encoder on the frozen MotionLCM.

The ControlNet starts as a copy of the LCM denoiser with zero-initialised condition embedding and
output projections, so at step 0 the model generates exactly as the LCM does. Per batch (official
mld.py with motionlcm_control_s.yaml): noise z0 to one of the 10 DDIM timesteps, sample w ~ U[5, 15],
run ControlNet + frozen denoiser, and take the predicted clean latent x0. Loss = MSE(x0, z0)
+ cond_ratio x smooth-L1 between the joints decoded from x0 through the frozen VAE and the hint, over
the controlled joints and frames only (the official "mask" reduction, in metres).

Two options for short runs (preset `default`; the official recipe has neither). In a few hundred steps the
trajectory encoder learns to ignore its input (its output's sensitivity to the hint fell from 7.9 to 0.6 in 60
steps) while the zero-initialised condition path has not yet opened. `control.traj_pretrain_steps` first
teaches the encoder to predict the clip's VAE posterior mean from the hint (R^2 0.6 on held-out clips after 200
steps) and then freezes it; `control.zero_cond_embedding: false` gives the condition embedding's last layer an
ordinary initialisation (the output projections stay zero, so step 0 still generates exactly as the LCM).

`control.caption_swap` (ours; 0 in the official recipe): the share of samples trained with another clip's
caption from the same batch. In the data a caption always agrees with its path, so a ControlNet never learns
what to do when they disagree, and the text wins: a held-out "bow" walks off while its hint stands still. A user
who draws a path for "a person jumps" wants the path followed; swapped captions teach the path to win.

`augment` (ours; 0 in every preset): mirrored and time-reversed samples (training/data/augment.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from backend.motion.features import denormalize, features_to_joints
from backend.models import MotionLCM
from backend.generation.schedulers import LCMScheduler, guidance_scale_embedding

from ..common import Objective, TextEmbedder, export, load_stage_output, model_config, stage_dir, start_text_stage
from ..data.dataset import HumanML3D, collate
from ..engine import TrainResult, train
from ..runtime import barrier


def masked_control_loss(joints: torch.Tensor, target: torch.Tensor, hint_mask: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 over controlled (frame, joint) entries: per clip sum / (count x 3), then the batch mean."""
    controlled = (hint_mask.sum(-1, keepdim=True) != 0).to(joints.dtype)  # (B, T, J, 1)
    loss = F.smooth_l1_loss(joints, target, reduction="none") * controlled
    per_clip = loss.flatten(1).sum(-1) / (controlled.flatten(1).sum(-1) * joints.shape[-1]).clamp(min=1)
    return per_clip.mean()


class ControlNetObjective(Objective):
    def __init__(self, model: MotionLCM, text: TextEmbedder, mean, std, raw_mean, raw_std, control: dict,
                 freeze_traj_encoder: bool = False) -> None:
        super().__init__()
        self.frozen = ("vae", "denoiser", "traj_encoder") if freeze_traj_encoder else ("vae", "denoiser")
        self.vae, self.denoiser = model.vae, model.denoiser
        self.controlnet, self.traj_encoder = model.controlnet, model.traj_encoder
        self.text = text
        for name, value in (("mean", mean), ("std", std), ("raw_mean", raw_mean), ("raw_std", raw_std)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))
        self.w_min, self.w_max = float(control["w_min"]), float(control["w_max"])
        self.cond_ratio = float(control["cond_ratio"])
        self.caption_swap = float(control.get("caption_swap", 0.0))
        self.schedule = LCMScheduler()
        step = self.schedule.num_train_timesteps // int(control["num_ddim_timesteps"])
        self.timesteps = torch.arange(step - 1, self.schedule.num_train_timesteps, step)
        self.freeze()
        self.controlnet.latent_post.requires_grad_(False)  # unused by the ControlNet (official layout only)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        mask, hint, hint_mask = batch["mask"], batch["hint"], batch["hint_mask"]
        with torch.no_grad():
            z, _ = self.vae.encode(batch["motion"], mask)
        bsz, device = z.shape[0], z.device
        texts = list(batch["text"])
        if self.caption_swap > 0:
            swap = torch.rand(bsz) < self.caption_swap
            order = torch.randperm(bsz)
            texts = [batch["text"][int(order[i])] if swap[i] else text for i, text in enumerate(texts)]
        emb = self.text(texts)
        t = self.timesteps.to(device)[torch.randint(0, len(self.timesteps), (bsz,), device=device)]
        noisy = self.schedule.add_noise(z, torch.randn_like(z), t)
        w = self.w_min + (self.w_max - self.w_min) * torch.rand(bsz)
        w_emb = guidance_scale_embedding(w, self.denoiser.time_cond_proj_dim).to(device)
        cond = self.traj_encoder(hint, hint_mask)
        residuals = self.controlnet(noisy, t, emb, timestep_cond=w_emb, controlnet_cond=cond)
        eps = self.denoiser(noisy, t, emb, timestep_cond=w_emb, controlnet_residuals=residuals).float()
        x0 = self.schedule.predict_x0(eps, t, noisy)
        feats = self.vae.decode(x0, mask).float()
        joints = features_to_joints(denormalize(feats, self.mean, self.std), check_finite=False)
        target = hint * self.raw_std + self.raw_mean  # back to metres (uncontrolled entries are masked out)
        terms = {"latent": F.mse_loss(x0, z),
                 "control": self.cond_ratio * masked_control_loss(joints, target, hint_mask)}
        terms["loss"] = terms["latent"] + terms["control"]
        return terms


def pretrain_trajectory_encoder(model: MotionLCM, dataset: HumanML3D, steps: int, batch_size: int, lr: float,
                                seed: int, device: torch.device) -> None:
    """MSE between the trajectory encoder's output (16 x 32, the latent's shape) and the posterior mean of the
    clip's VAE latent, on the dataset's random hints: an encoder that carries the path into the ControlNet."""
    encoder = model.traj_encoder.train()
    model.vae.eval()  # the targets are posterior means: no dropout in them
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(steps), desc="trajectory encoder"):
        batch = collate([dataset[int(i)] for i in rng.integers(0, len(dataset), batch_size)])
        with torch.no_grad():
            target = model.vae.encode(batch["motion"].to(device), batch["mask"].to(device))[1].loc
        loss = F.mse_loss(encoder(batch["hint"].to(device), batch["hint_mask"].to(device)), target)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg, seed, ctx, dataset, settings, text = start_text_stage("controlnet", data, preset, overrides, config)
    lcm_model = load_stage_output(out, "lcm")
    model = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=lcm_model.denoiser.time_cond_proj_dim,
                                   controlnet=True))
    model.vae.load_state_dict(lcm_model.vae.state_dict())
    model.denoiser.load_state_dict(lcm_model.denoiser.state_dict())
    # ControlNet = the denoiser's weights (it has no final norm); its condition embedding and output
    # projections stay zero.
    weights = {k: v for k, v in lcm_model.denoiser.state_dict().items() if not k.startswith("encoder.norm.")}
    missing, unexpected = model.controlnet.load_state_dict(weights, strict=False)
    if unexpected or any(not k.startswith("controlnet_") for k in missing):
        raise ValueError(f"ControlNet init from the denoiser: missing {missing}, unexpected {unexpected}")
    control = cfg["control"]
    if not control.get("zero_cond_embedding", True):
        model.controlnet.controlnet_cond_embedding[-1].reset_parameters()
    pretrain = int(control.get("traj_pretrain_steps", 0))
    if pretrain and not resume:  # a resumed run loads the pretrained encoder with the rest of its state
        model.to(ctx.device)
        pretrain_trajectory_encoder(model, dataset, pretrain, settings.batch_size, settings.learning_rate, seed,
                                    ctx.device)
    objective = ControlNetObjective(model, text, dataset.mean, dataset.std, dataset.raw_mean, dataset.raw_std,
                                    control, freeze_traj_encoder=pretrain > 0)
    result = train(objective, dataset, settings, stage_dir(out, "controlnet"), ctx, resume=resume,
                   stop_after=stop_after)
    if ctx.is_main and result.steps == settings.steps:
        export(model, out, "controlnet", cfg, text, dataset, steps=result.steps)
    barrier(ctx)  # later stages (other ranks included) read this export
    return result
