"""The MotionMillion engine's pipeline: prompt -> motion tokens -> 272-dim features -> rotations and joints.

The data path: text encoder -> autoregressive generator (backend.models.ar_transformer; temperature, top-k,
classifier-free guidance, a context window that slides over long motions) -> tokenizer decoder -> 272 features ->
rotations (6D -> quaternions) and the root path -> joints by forward kinematics on the default skeleton, which
the training data's rotations were solved on (training/data/rep272_data.py). So `Motion.rotations` drive a rig
without IK and `Motion.joints` are their rigid forward kinematics; retargeting, BVH, Foot Lock and baking take the
motion as they take the MotionLCM engine's. The requested length is exact (the end token is held back until it).
Joint controls are not part of this engine. Each sample has its own seed, as in the MotionLCM pipeline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from backend.ar_checkpoint import LoadedAR, load_ar
from backend.errors import InvalidRequest
from backend.generation.pipeline import GenerationResult, ProgressFn, resolve_device, validate_batch
from backend.generation.text_encoders import PromptCache, check_text_encoder, load_text_encoder
from backend.limits import MAX_AR_FRAMES
from backend.models import cpu_inference
from backend.motion import rep272
from backend.motion.rotations import matrix_to_quat, quat_continuous
from backend.retarget import default_skeleton
from backend.retarget.kinematics import forward_kinematics

PROGRESS_STEPS = 40  # progress reports per sample while its tokens are sampled (each may cancel)


def features_to_motion(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 272) raw features -> (joints (T, 22, 3) by forward kinematics on the default skeleton, local
    rotations (T, 22, 4) w, x, y, z; the root's global)."""
    positions, matrices = rep272.from_272(features)
    quats = quat_continuous(matrix_to_quat(matrices))
    joints, _ = forward_kinematics(positions[:, 0], quats, default_skeleton().offsets)
    return joints.astype(np.float32), quats.astype(np.float32)


class ARPipeline:
    def __init__(self, checkpoint: LoadedAR, text_encoder, device: torch.device) -> None:
        self.checkpoint, self.device = checkpoint, device
        self.tokenizer, self.generator = checkpoint.tokenizer, checkpoint.generator
        self.text_encoder = text_encoder
        self.prompt_cache = PromptCache(text_encoder)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        text_encoder: str | Path | None = None) -> "ARPipeline":
        """An engine folder (`motionlcm-train ar`; None: the shipped default) and its text encoder."""
        device = resolve_device(device)
        checkpoint = load_ar(path, device)
        encoder = load_text_encoder(text_encoder, device)
        check_text_encoder(encoder, checkpoint.text_encoder_id, checkpoint.text_dim, checkpoint.checkpoint_id)
        return cls(checkpoint, encoder, device)

    def _validate(self, prompts: Sequence[str], lengths: Sequence[int], variations: int, temperature: float,
                  top_k: int | None, guidance: float) -> None:
        validate_batch(prompts, lengths, variations, MAX_AR_FRAMES)
        if not (np.isfinite(temperature) and temperature > 0):
            raise InvalidRequest(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.generator.config.vocab:
            raise InvalidRequest(f"top_k must be 1..{self.generator.config.vocab}, got {top_k}")
        if not (np.isfinite(guidance) and guidance > 0):
            raise InvalidRequest(f"guidance must be positive, got {guidance}")

    def generate(self, prompts: Sequence[str], lengths: Sequence[int], seed: int | None = None,
                 variations: int = 1, temperature: float | None = None, top_k: int | None = None,
                 guidance: float | None = None, progress: ProgressFn | None = None) -> GenerationResult:
        """`variations` motions per prompt, of exactly lengths[p] model frames (20 fps). Sample i (prompt-major)
        uses seed `seed + i`. temperature, top_k, guidance: None takes the checkpoint's recommendation.
        progress(stage, fraction) may raise to cancel (between tokens)."""
        sampling = self.checkpoint.sampling
        temperature = sampling.temperature if temperature is None else float(temperature)
        top_k = sampling.top_k if top_k is None else int(top_k)
        guidance = sampling.guidance if guidance is None else float(guidance)
        self._validate(prompts, lengths, variations, temperature, top_k, guidance)
        if seed is None:
            seed = random.randrange(2**31)
        stage = progress or (lambda name, fraction: None)
        sample_prompts = [p for p in prompts for _ in range(variations)]
        sample_lengths = [int(n) for n in lengths for _ in range(variations)]
        seeds = [seed + i for i in range(len(sample_prompts))]
        step = self.tokenizer.config.frames_per_token
        timings = {"text": 0.0, "tokens": 0.0, "decode": 0.0, "joints": 0.0}
        joints = np.zeros((len(seeds), max(sample_lengths), 22, 3), np.float32)
        rotations = np.zeros((len(seeds), max(sample_lengths), 22, 4), np.float32)
        rotations[..., 0] = 1.0
        with torch.inference_mode():
            started = time.perf_counter()
            stage("text", 0.0)
            text = self.prompt_cache.encode(sample_prompts).flatten(1).to(self.device)
            empty = self.prompt_cache.encode([""]).flatten(1).to(self.device) if guidance != 1.0 else None
            timings["text"] = 1000 * (time.perf_counter() - started)
            for i, (frames, sample_seed) in enumerate(zip(sample_lengths, seeds)):
                count = -(-frames // step)  # tokens covering the frames

                reported = [-1]

                def tokens_done(fraction: float, i: int = i, reported: list = reported) -> None:
                    if int(fraction * PROGRESS_STEPS) > reported[0]:  # a message per 1/40, not per token
                        reported[0] = int(fraction * PROGRESS_STEPS)
                        stage("sampling", 0.05 + 0.85 * (i + fraction) / len(seeds))

                started = time.perf_counter()
                generator = torch.Generator(device=self.device).manual_seed(sample_seed)
                # A token is one position's work: a second thread costs more than it gives.
                with cpu_inference.thread_policy(self.device.type == "cpu"):
                    tokens = self.generator.generate(text[i:i + 1], empty, max_tokens=count, min_tokens=count,
                                                     temperature=temperature, top_k=top_k, guidance=guidance,
                                                     generator=generator, progress=tokens_done)[0]
                timings["tokens"] += 1000 * (time.perf_counter() - started)
                started = time.perf_counter()
                normalised = self.tokenizer.decode(torch.tensor([tokens], device=self.device))[0]
                features = (normalised * self.checkpoint.std + self.checkpoint.mean).float().cpu().numpy()
                timings["decode"] += 1000 * (time.perf_counter() - started)
                started = time.perf_counter()
                joints[i, :frames], rotations[i, :frames] = (a[:frames] for a in features_to_motion(features))
                timings["joints"] += 1000 * (time.perf_counter() - started)
        stage("done", 1.0)
        timings["total"] = sum(timings.values())
        settings = {"engine": "ar", "temperature": temperature, "top_k": top_k, "guidance": guidance, "seed": seed,
                    "variations": variations, "checkpoint": self.checkpoint.checkpoint_id,
                    "text_encoder": self.text_encoder.id, "controlled": False, "device": str(self.device)}
        return GenerationResult(joints=joints, features=None, rotations=rotations, lengths=sample_lengths,
                                prompts=sample_prompts, seeds=seeds, timings=timings, settings=settings)
