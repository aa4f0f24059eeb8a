"""One path from latents to joints for a loaded checkpoint: latent tuning (optional) -> LCM steps with the
ControlNet (or DDIM for a checkpoint without LCM w-conditioning) -> VAE decode -> denormalise -> features to
joints. The pipeline, the evaluation and `motionlcm replay` all sample through it, so a change to sampling is made
here once. Guidance and LCM timesteps are the checkpoint's own (its sampling map) unless a caller overrides them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from backend.checkpoints import LoadedCheckpoint
from backend.motion.features import denormalize, features_to_joints
from backend.generation.latent_tuning import TuningSettings, tune_latents
from backend.generation.sampler import decode_latents, sample_ddim, sample_lcm

DDIM_GUIDANCE = 7.5  # the MLD teacher's validation setting, for checkpoints without LCM w-conditioning


class LatentSampler:
    def __init__(self, checkpoint: LoadedCheckpoint, device: torch.device | str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.device = torch.device(device)
        self.mean = torch.from_numpy(checkpoint.mean).to(self.device)
        self.std = torch.from_numpy(checkpoint.std).to(self.device)

    @property
    def is_lcm(self) -> bool:
        return self.model.denoiser.time_cond_proj_dim is not None

    def guidance(self, steps: int, guidance: float | None = None) -> float:
        """The LCM w of the checkpoint's sampling map for `steps` (DDIM: its CFG scale), unless given."""
        if guidance is not None:
            return float(guidance)
        return self.checkpoint.sampling.cfg_step_map.get(steps) if self.is_lcm else DDIM_GUIDANCE

    def tune(self, z_T: torch.Tensor, text_emb: torch.Tensor, hint: torch.Tensor, hint_mask: torch.Tensor,
             lengths: Sequence[int], steps: int, guidance: float, noise: Sequence[torch.Tensor] | None,
             iterations: int, penalty: float | None = None,
             callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """z_T after `iterations` of consistency latent tuning towards the controls in `hint` (penalty: the
        checkpoint's correlation penalty unless given)."""
        settings = TuningSettings(iterations=iterations, correlation_penalty=self.checkpoint.sampling.tuning_penalty
                                  if penalty is None else penalty)
        return tune_latents(self.model, z_T, text_emb, hint=hint, hint_mask=hint_mask,
                            raw_mean=torch.from_numpy(self.checkpoint.raw_mean),
                            raw_std=torch.from_numpy(self.checkpoint.raw_std), lengths=list(lengths),
                            mean=self.mean, std=self.std, steps=steps, guidance=guidance,
                            scheduler=self.checkpoint.sampling.lcm_scheduler(), noise=noise, settings=settings,
                            callback=callback)

    def sample(self, text_emb: torch.Tensor, z_T: torch.Tensor, steps: int, guidance: float,
               hint: torch.Tensor | None = None, hint_mask: torch.Tensor | None = None,
               noise: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None,
               record: dict | None = None, uncond_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Clean latents z_0: the checkpoint's LCM schedule (noise or generator for re-noising, `record` for
        every intermediate), or DDIM with classifier-free guidance against `uncond_emb`."""
        if not self.is_lcm:
            return sample_ddim(self.model, text_emb, z_T, uncond_emb=uncond_emb, hint=hint, hint_mask=hint_mask,
                               steps=steps, guidance=guidance)
        return sample_lcm(self.model, text_emb, z_T, hint=hint, hint_mask=hint_mask, steps=steps, guidance=guidance,
                          noise=noise, generator=generator, record=record,
                          scheduler=self.checkpoint.sampling.lcm_scheduler())

    def decode(self, z0: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised, denormalised) features of z_0; frames past each length are padding."""
        feats = decode_latents(self.model, z0, lengths)
        return feats, denormalize(feats, self.mean.to(feats), self.std.to(feats))

    @staticmethod
    def joints(features: torch.Tensor) -> torch.Tensor:
        """Joint positions (..., T, 22, 3) of denormalised features."""
        return features_to_joints(features)
