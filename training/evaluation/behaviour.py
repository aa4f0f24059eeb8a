"""What a user sees of a checkpoint, measured through the same pipeline the CLI, server and add-on use:
speed (AITS at batch 1), whether prompts from the training vocabulary produce the motions they name, and a
page of preview frames.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from backend.generation.controls import JointControl
from backend.commands.demo import pelvis_circle
from backend.generation.pipeline import MotionLCMPipeline
from backend.motion.skeleton import CONTROL_JOINTS, FPS

from . import metrics

# Prompts whose labels say how they differ: travel speed (walk < run) and which hand is raised.
VOCABULARY_PROMPTS = ("a person walks forward", "a person runs forward", "a person waves with the left hand",
                      "a person raises both hands")
PREVIEW_PROMPTS = ("a person walks forward", "a person runs forward", "a person waves with the left hand",
                   "a person raises both hands", "a person kicks with the right leg")


def aits(pipe: MotionLCMPipeline, frames: int = 196, repeats: int = 5, tuning: int = 0) -> list[dict]:
    """Average inference time per sample (text encoding to joints, batch 1, warm-up excluded): median of
    `repeats` runs per row, for 1/2/4 steps with and without a dense pelvis control (and with tuning)."""
    control = [JointControl.dense("pelvis", pelvis_circle(frames).astype(np.float32))]
    cases = [(steps, False, 0) for steps in (1, 2, 4)] + [(steps, True, 0) for steps in (1, 2, 4)]
    if tuning:
        cases.append((1, True, tuning))
    rows = []
    for steps, controlled, iterations in cases:
        def run(seed: int) -> None:
            pipe.generate([f"a person walks forward {seed}"], [frames], controls=[control] if controlled else None,
                          steps=steps, seed=seed, tuning=iterations)
        run(0)  # warm-up (the prompt differs per run: no prompt-cache hits)
        times = []
        for seed in range(1, repeats + 1):
            start = time.perf_counter()
            run(seed)
            times.append(time.perf_counter() - start)
        rows.append({"steps": steps, "control": "pelvis, dense" if controlled else "none",
                     "tuning iterations": iterations, "AITS (ms)": 1000.0 * statistics.median(times)})
    return rows


def vocabulary_check(pipe: MotionLCMPipeline, prompts: tuple[str, ...] = VOCABULARY_PROMPTS, samples: int = 8,
                     frames: int = 120, seed: int = 0) -> list[dict]:
    """Per prompt, over `samples` seeds without control: mean pelvis speed and how high each wrist rises over
    the pelvis. Labels should show: runs faster than walks; the waving hand higher than the other."""
    rows = []
    for index, prompt in enumerate(prompts):
        result = pipe.generate([prompt], [frames], seed=seed + 1000 * index, variations=samples)
        clips = [m.joints for m in result.motions]
        rows.append({"prompt": prompt,
                     "pelvis speed (m/s)": float(np.mean([metrics.horizontal_speed(c, FPS) for c in clips])),
                     "left wrist above pelvis (m)": float(np.mean(
                         [metrics.height_above_pelvis(c, CONTROL_JOINTS["left_wrist"]) for c in clips])),
                     "right wrist above pelvis (m)": float(np.mean(
                         [metrics.height_above_pelvis(c, CONTROL_JOINTS["right_wrist"]) for c in clips]))})
    return rows


def preview_sheet(pipe: MotionLCMPipeline, path: str | Path, prompts: tuple[str, ...] = PREVIEW_PROMPTS,
                  seed: int = 0, tuning: int = 0) -> Path:
    """A PNG page: one row per prompt (text only, 6 s), then the demo's pelvis circle (9.8 s)."""
    from backend.commands.preview import render_contact_sheet

    rows = []
    for prompt in prompts:
        motion = pipe.generate([prompt], [120], seed=seed).motions[0]
        rows.append((f'"{prompt}" (seed {seed})', motion.joints))
    circle = pelvis_circle(196, height=float(pipe.checkpoint.raw_mean[0, 1])).astype(np.float32)
    motion = pipe.generate(["a person walks forward"], [196], controls=[[JointControl.dense("pelvis", circle)]],
                           seed=seed, tuning=tuning).motions[0]
    rows.append((f'"a person walks forward" + pelvis on a 3 m circle (seed {seed}, tuning {tuning})', motion.joints))
    return render_contact_sheet(rows, path)
