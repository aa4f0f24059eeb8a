"""The generation pipeline: prompts (+ joint controls) -> HumanML3D motion.

Composes the data path (README.md, Layout): text encoder -> hint -> LCM sampler with ControlNet -> VAE decode ->
263-dim features -> 22 joint positions. Every sample has its own seed, so a variation is reproducible
on its own and independent of the batch it was generated in.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from backend.checkpoints import LoadedCheckpoint, load_any
from backend.generation.controls import JointControl, build_hint, scale_controls
from backend.errors import CheckpointError, InvalidRequest
from backend.limits import MAX_PROMPT_CHARS, MAX_VARIATIONS
from backend.models import cpu_inference
from backend.generation.latent_sampler import LatentSampler
from backend.generation.latent_tuning import TuningSettings
from backend.motion import Motion
from backend.motion.skeleton import FPS, MAX_FRAMES, MIN_FRAMES
from backend.generation.text_encoders import PromptCache, check_text_encoder, load_text_encoder

if TYPE_CHECKING:  # imported on use: fitting brings scipy, 0.4 s of start-up that text-only generation skips
    from backend.generation.fitting import FitReport

# The checkpoint shipped inside the package (a folder in our safetensors + JSON format).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "default_model"

ProgressFn = Callable[[str, float], None]


@dataclass
class GenerationResult:
    joints: np.ndarray  # (N, T, 22, 3) metres, HumanML3D axes; frames past lengths[i] are padding
    features: np.ndarray | None  # (N, T, 263) denormalised HumanML3D features (None from the AR engine)
    lengths: list[int]
    prompts: list[str]  # one per sample (each prompt repeated `variations` times, prompt-major)
    seeds: list[int]
    timings: dict[str, float]  # milliseconds per stage, plus "total"
    settings: dict[str, Any] = field(default_factory=dict)
    fit_reports: list[FitReport] = field(default_factory=list)  # one per sample with controls, else empty
    rotations: np.ndarray | None = None  # (N, T, 22, 4) local rotations, from engines that make them (Motion)

    @property
    def motions(self) -> list[Motion]:
        """One `Motion` per sample, trimmed to its length, with prompt, seed and settings in `meta`."""
        return [Motion(joints=self.joints[i, :n], fps=FPS,
                       features=None if self.features is None else self.features[i, :n],
                       rotations=None if self.rotations is None else self.rotations[i, :n],
                       meta={**self.settings, "prompt": self.prompts[i], "seed": self.seeds[i],
                             **({"controls": self.fit_reports[i].to_dict()} if self.fit_reports else {})})
                for i, n in enumerate(self.lengths)]


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    return device


def validate_batch(prompts: Sequence[str], lengths: Sequence[int], variations: int, longest: int) -> None:
    """What every engine checks of a request: non-empty prompts of at most MAX_PROMPT_CHARS, one length per prompt in MIN_FRAMES..`longest`
    model frames (the engine's trained range), and 1..MAX_VARIATIONS variations."""
    if isinstance(prompts, str) or not prompts:
        raise InvalidRequest("prompts must be a non-empty list of strings")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise InvalidRequest(f"prompt {p!r} is empty; describe the motion, e.g. 'a person walks forward'")
        if len(p) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"a prompt has {len(p)} characters; at most {MAX_PROMPT_CHARS}")
    if len(lengths) != len(prompts):
        raise InvalidRequest(f"{len(lengths)} lengths for {len(prompts)} prompts")
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not MIN_FRAMES <= n <= longest:
            raise InvalidRequest(f"length {n!r} frames is outside the trained range {MIN_FRAMES}..{longest} "
                                 f"frames ({MIN_FRAMES / FPS:g}..{longest / FPS:g} s at {FPS:g} fps)")
    if isinstance(variations, bool) or not isinstance(variations, int) or not 1 <= variations <= MAX_VARIATIONS:
        raise InvalidRequest(f"variations must be an integer in 1..{MAX_VARIATIONS}, got {variations!r}")


class MotionLCMPipeline:
    def __init__(self, checkpoint: LoadedCheckpoint, text_encoder: Any, device: torch.device,
                 optimise_cpu: bool = True) -> None:
        """`optimise_cpu`: on a CPU, packed weights and threads only where they pay (backend.models.cpu_inference;
        the checkpoint's model is then for inference only). False is the plain path, for comparisons."""
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.optimise_cpu = optimise_cpu and cpu_inference.available(device)
        if self.optimise_cpu:
            cpu_inference.pack_linear_weights(self.model)
        self.text_encoder = text_encoder
        self.prompt_cache = PromptCache(text_encoder)
        self.device = device
        self.sampler = LatentSampler(checkpoint, device)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        text_encoder: str | Path | None = None, optimise_cpu: bool = True) -> "MotionLCMPipeline":
        """Load a checkpoint (our folder or an official .ckpt; None: the shipped default) and its text encoder.
        `text_encoder`: None picks the embedded MiniLM when the checkpoint was trained with it; official
        checkpoints need a local sentence-t5-large folder."""
        device = resolve_device(device)
        if path is None:
            if not (DEFAULT_CHECKPOINT / "config.json").is_file():
                raise CheckpointError(f"no default checkpoint is installed at {DEFAULT_CHECKPOINT}; "
                                      "pass --checkpoint PATH (a checkpoint folder or an official .ckpt)")
            path = DEFAULT_CHECKPOINT
        checkpoint = load_any(path, device)
        encoder = load_text_encoder(text_encoder, device)
        check_text_encoder(encoder, checkpoint.text_encoder_id, checkpoint.text_dim, checkpoint.checkpoint_id)
        return cls(checkpoint, encoder, device, optimise_cpu=optimise_cpu)

    @property
    def has_controlnet(self) -> bool:
        return self.model.has_controlnet

    @property
    def is_lcm(self) -> bool:
        return self.sampler.is_lcm

    def _validate(self, prompts: Sequence[str], lengths: Sequence[int], controls: Any, steps: int,
                  guidance: float | None, variations: int) -> list[list[JointControl]]:
        validate_batch(prompts, lengths, variations, MAX_FRAMES)
        allowed = self.checkpoint.sampling.lcm_timesteps
        if self.is_lcm and steps not in allowed:
            raise InvalidRequest(f"steps must be one of {sorted(allowed)} for this LCM checkpoint, got {steps!r}")
        if not self.is_lcm and (not isinstance(steps, int) or not 1 <= steps <= 1000):
            raise InvalidRequest(f"steps must be an integer in 1..1000 for DDIM sampling, got {steps!r}")
        if guidance is not None and not (np.isfinite(guidance) and guidance >= 1.0):
            raise InvalidRequest(f"guidance must be a finite number >= 1, got {guidance!r}")
        if controls is None:
            return [[] for _ in prompts]
        if len(controls) != len(prompts):
            raise InvalidRequest(f"{len(controls)} control lists for {len(prompts)} prompts")
        per_sample = [list(c or []) for c in controls]
        if any(per_sample) and not self.has_controlnet:
            raise InvalidRequest(f"checkpoint {self.checkpoint.checkpoint_id} has no ControlNet: trajectory "
                                 "controls need a checkpoint trained with one")
        return per_sample

    def generate(self, prompts: Sequence[str], lengths: Sequence[int],
                 controls: Sequence[Sequence[JointControl] | None] | None = None, steps: int = 1,
                 guidance: float | None = None, seed: int | None = None, variations: int = 1,
                 tuning: int = 0, fit: bool = True, control_scale: float = 1.0,
                 progress: ProgressFn | None = None) -> GenerationResult:
        """Generate `variations` motions per prompt. Sample i (prompt-major) uses seed `seed + i`.

        controls[p]: the joint constraints of prompt p (metres, HumanML3D axes, model frames), or None.
        steps: 1/2/4 LCM steps (or the DDIM step count for a checkpoint without LCM w-conditioning).
        guidance: the LCM w (default: the checkpoint's map for `steps`) or the DDIM CFG scale.
        tuning: iterations of consistency latent tuning (backend.generation.latent_tuning) that make the motion meet its
        controls closely, with the checkpoint's correlation penalty; 0 = off. It costs about one decode per
        iteration.
        fit: bend the decoded motion onto its controls (backend.generation.fitting: the pelvis exact, limbs by IK; a few
        milliseconds); False is the draft, the ControlNet (and any tuning) alone. Either way `fit_reports` holds
        each sample's control errors and warnings.
        progress(stage, fraction): called between stages (text, tuning, sampling, decoding, fitting, done); it may
        raise to cancel the generation there (the server's does).
        control_scale: the controls are for a body this many times the model's size (its leg length over the
        model's, backend.retarget.travel_scale): they are generated at 1/control_scale, the reports speak in the
        body's metres, and retargeting with root_scale=control_scale puts the root on them.
        """
        if not (np.isfinite(control_scale) and control_scale > 0):
            raise InvalidRequest(f"control_scale must be positive, got {control_scale!r}")
        controls = self._validate(prompts, lengths, controls, steps, guidance, variations)
        if control_scale != 1.0:
            controls = [scale_controls(c, 1.0 / control_scale) for c in controls]
        if tuning:
            TuningSettings(iterations=tuning, correlation_penalty=self.checkpoint.sampling.tuning_penalty).validate()
            if not self.is_lcm:
                raise InvalidRequest("latent tuning needs an LCM checkpoint (with w-conditioning)")
            if not any(controls):
                raise InvalidRequest("latent tuning needs joint controls: it fits the motion to them")
        if seed is None:
            seed = random.randrange(2**31)
        stage = progress or (lambda name, fraction: None)  # the server's raises to cancel between stages

        sample_prompts = [p for p in prompts for _ in range(variations)]
        sample_lengths = [int(n) for n in lengths for _ in range(variations)]
        sample_controls = [c for c in controls for _ in range(variations)]
        seeds = [seed + i for i in range(len(sample_prompts))]
        guidance = self.sampler.guidance(steps, guidance)
        timings: dict[str, float] = {}
        clock = _Clock(self.device, timings)

        with torch.inference_mode():
            stage("text", 0.0)
            with clock("text"), self._threads():
                text_emb = self.prompt_cache.encode(sample_prompts)
            stage("sampling", 0.2)
            with clock("hint"):
                hint = hint_mask = None
                if any(sample_controls):
                    hint, hint_mask = build_hint(sample_controls, sample_lengths, self.checkpoint.raw_mean,
                                                 self.checkpoint.raw_std)
                    hint, hint_mask = hint.to(self.device), hint_mask.to(self.device)
            z_T, noise = self._initial_noise(seeds, steps)
            if tuning:
                def tuned(i: int, errors: torch.Tensor) -> None:
                    stage("tuning", 0.2 + 0.5 * (i + 1) / tuning)

                with clock("tuning"):
                    z_T = self.sampler.tune(z_T, text_emb, hint, hint_mask, sample_lengths, steps, guidance, noise,
                                            tuning, callback=tuned)
            with clock("sampling"), self._threads():
                uncond = None if self.is_lcm else self.text_encoder.empty(1)
                z0 = self.sampler.sample(text_emb, z_T, steps, guidance, hint, hint_mask, noise=noise,
                                         uncond_emb=uncond)
            stage("decoding", 0.7)
            with clock("decode"), self._threads():
                feats = self.sampler.decode(z0, sample_lengths)[1]
            with clock("joints"):
                joints = self.sampler.joints(feats)
            joints, feats = joints.float().cpu().numpy(), feats.float().cpu().numpy()
            reports = []
            if any(sample_controls):
                stage("fitting", 0.9)
                with clock("fitting"):
                    reports = self._fit(joints, feats, sample_controls, sample_lengths, fit, control_scale)
            stage("done", 1.0)
        timings["total"] = sum(timings.values())
        settings = {"steps": steps, "guidance": guidance, "seed": seed, "variations": variations,
                    "checkpoint": self.checkpoint.checkpoint_id, "text_encoder": self.text_encoder.id,
                    "sampler": "lcm" if self.is_lcm else "ddim", "controlled": hint is not None, "tuning": tuning,
                    "tuning_penalty": self.checkpoint.sampling.tuning_penalty if tuning else None,
                    "fit": bool(fit and hint is not None), "device": str(self.device)}
        return GenerationResult(joints=joints, features=feats, lengths=sample_lengths, prompts=sample_prompts,
                                seeds=seeds, timings=timings, settings=settings, fit_reports=reports)

    def _threads(self) -> contextlib.AbstractContextManager:
        """The CPU thread policy for the network stages (not latent tuning, whose backward pass is all wide)."""
        return cpu_inference.thread_policy(self.optimise_cpu)

    @staticmethod
    def _fit(joints: np.ndarray, feats: np.ndarray, controls: list[list[JointControl]], lengths: list[int],
             fit: bool, scale: float) -> list[FitReport]:
        """Fit each sample in place (its own frames only) and return the reports."""
        from backend.generation.fitting import fit_motion

        reports = []
        for i, (sample, n) in enumerate(zip(controls, lengths)):
            fitted = fit_motion(joints[i, :n], feats[i, :n], sample, fit=fit, scale=scale)
            joints[i, :n], feats[i, :n] = fitted.joints, fitted.features
            reports.append(fitted.report)
        return reports

    def _initial_noise(self, seeds: list[int], steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """z_T and the LCM re-noising tensors, drawn on the CPU per sample so that results do not depend on
        the batch or the device."""
        shape = self.model.config.latent_shape
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        z_T = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(self.device)
        count = steps - 1 if self.is_lcm else 0
        noise = [torch.stack([torch.randn(shape, generator=g) for g in gens]).to(self.device) for _ in range(count)]
        return z_T, noise


class _Clock:
    """Times named stages in milliseconds, synchronising CUDA so the figures are real."""

    def __init__(self, device: torch.device, timings: dict[str, float]) -> None:
        self.device, self.timings = device, timings

    def __call__(self, name: str) -> "_Clock":
        self._name = name
        return self

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> None:
        self._sync()
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.timings[self._name] = (time.perf_counter() - self._start) * 1000.0
