"""Stage 3: distil the MLD teacher into a one-step latent consistency model (MotionLCM).

Per batch (official train_motionlcm.py): pick one of the 10 DDIM timesteps t_{n+k} (k = 100), noise z0
to it, and sample a guidance scale w ~ U[5, 15] that the student sees through its w-embedding
(cond_proj). The teacher runs one DDIM step with classifier-free guidance x0 = x0_c + w (x0_c - x0_u)
from t_{n+k} to t_n; the EMA target network (decay 0.95) maps that point to its boundary-scaled
estimate, and the student's estimate at t_{n+k} is pulled towards it with a pseudo-Huber loss (c = 0.5).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from backend.models import MotionLCM
from backend.generation.schedulers import LCMScheduler, guidance_scale_embedding

from ..common import Objective, TextEmbedder, export, load_stage_output, model_config, stage_dir, start_text_stage
from ..engine import TrainResult, train
from ..runtime import barrier


class DDIMSolver:
    """The teacher's skipped-timestep grid: t = 99, 199, ..., 999 for 10 steps, and alpha-bar one step earlier."""

    def __init__(self, alphas_cumprod: torch.Tensor, num_ddim_timesteps: int) -> None:
        total = alphas_cumprod.shape[0]
        self.step = total // num_ddim_timesteps
        self.timesteps = torch.arange(1, num_ddim_timesteps + 1) * self.step - 1
        self.alpha_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[self.timesteps[:-1]]])

    def ddim_step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a_prev = self.alpha_prev.to(x0.device)[index].reshape(-1, *([1] * (x0.dim() - 1)))
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


class LCMObjective(Objective):
    frozen = ("vae", "teacher", "target")

    def __init__(self, vae, teacher, student, text: TextEmbedder, distill: dict) -> None:
        super().__init__()
        self.vae, self.teacher, self.student = vae, teacher, student
        self.target = copy.deepcopy(student)
        self.text = text
        self.w_min, self.w_max = float(distill["w_min"]), float(distill["w_max"])
        self.huber_c, self.ema_decay = float(distill["huber_c"]), float(distill["ema_decay"])
        self.schedule = LCMScheduler()
        self.solver = DDIMSolver(self.schedule.alphas_cumprod, int(distill["num_ddim_timesteps"]))
        self.freeze()

    def _boundary(self, t: torch.Tensor, noisy: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        c_skip, c_out = (c.reshape(-1, 1, 1).to(noisy.dtype) for c in self.schedule.boundary_scalings(t))
        return c_skip * noisy + c_out * self.schedule.predict_x0(eps, t, noisy)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            z, _ = self.vae.encode(batch["motion"], batch["mask"])
        bsz, device = z.shape[0], z.device
        emb, uncond = self.text(batch["text"]), self.text([""] * bsz)
        index = torch.randint(0, len(self.solver.timesteps), (bsz,), device=device)
        t_start = self.solver.timesteps.to(device)[index]
        t_end = (t_start - self.solver.step).clamp(min=0)
        noisy = self.schedule.add_noise(z, torch.randn_like(z), t_start)
        w = self.w_min + (self.w_max - self.w_min) * torch.rand(bsz)
        w_emb = guidance_scale_embedding(w, self.student.time_cond_proj_dim).to(device)
        prediction = self._boundary(t_start, noisy, self.student(noisy, t_start, emb, timestep_cond=w_emb).float())
        with torch.no_grad():
            eps_c = self.teacher(noisy, t_start, emb).float()
            eps_u = self.teacher(noisy, t_start, uncond).float()
            x0_c = self.schedule.predict_x0(eps_c, t_start, noisy)
            x0_u = self.schedule.predict_x0(eps_u, t_start, noisy)
            w_ = w.to(device).reshape(-1, 1, 1)
            x_prev = self.solver.ddim_step(x0_c + w_ * (x0_c - x0_u), eps_c + w_ * (eps_c - eps_u), index)
            target = self._boundary(t_end, x_prev, self.target(x_prev, t_end, emb, timestep_cond=w_emb).float())
        loss = (torch.sqrt((prediction - target) ** 2 + self.huber_c ** 2) - self.huber_c).mean()
        return {"consistency": loss, "loss": loss}

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        for tgt, src in zip(self.target.parameters(), self.student.parameters()):
            tgt.mul_(self.ema_decay).add_(src.detach(), alpha=1 - self.ema_decay)


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg, seed, ctx, dataset, settings, text = start_text_stage("lcm", data, preset, overrides, config)
    teacher_model = load_stage_output(out, "mld")
    distill = cfg["distill"]
    model = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=int(distill["time_cond_proj_dim"]),
                                   controlnet=False))
    model.vae.load_state_dict(teacher_model.vae.state_dict())
    # The student starts as the teacher; its w-embedding (cond_proj) is new.
    missing, unexpected = model.denoiser.load_state_dict(teacher_model.denoiser.state_dict(), strict=False)
    if unexpected or any("cond_proj" not in k for k in missing):
        raise ValueError(f"teacher and student differ beyond cond_proj: missing {missing}, unexpected {unexpected}")
    objective = LCMObjective(model.vae, teacher_model.denoiser, model.denoiser, text, distill)
    result = train(objective, dataset, settings, stage_dir(out, "lcm"), ctx, resume=resume, stop_after=stop_after)
    if ctx.is_main and result.steps == settings.steps:
        # Like the official script, ship the online student (the EMA target only provides training targets).
        export(model, out, "lcm", cfg, text, dataset, steps=result.steps)
    barrier(ctx)  # later stages (other ranks included) read this export
    return result
