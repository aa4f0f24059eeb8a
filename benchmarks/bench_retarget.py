"""Retargeting speed: analytic IK, Gauss-Newton refinement, the pipelines, and a naive per-frame loop.

Prints one JSON object: medians over repeated runs (warm-up excluded), frames per second, device and versions.
Usage: python benchmarks/bench_retarget.py [--repeats 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.motion import Motion  # noqa: E402
from backend.retarget import default_skeleton, retarget  # noqa: E402
from backend.retarget.ik import solve  # noqa: E402
from backend.retarget.kinematics import match_bone_lengths  # noqa: E402
from backend.retarget.refine import refine  # noqa: E402

CLIP = Path(__file__).resolve().parents[2] / "shared/data/humanml3d_reference/HumanML3D/new_joints/012314.npy"
FRAMES = 196  # the longest clip the model makes (9.8 s at 20 fps)


def _clip() -> tuple[np.ndarray, str]:
    if CLIP.exists():  # real HumanML3D motion, tiled to 196 frames
        joints = np.load(CLIP).astype(np.float64)
        return np.concatenate([joints, joints[::-1]])[:FRAMES], "humanml3d 012314 (tiled)"
    rng = np.random.default_rng(0)  # fallback: the rest pose with noise
    return default_skeleton().joints + rng.normal(scale=0.02, size=(FRAMES, 22, 3)), "synthetic"


def _median_s(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    joints, source = _clip()
    skeleton = default_skeleton()
    root, quats = solve(joints, skeleton)
    target = match_bone_lengths(joints, skeleton)
    batch = np.concatenate([joints] * 50)  # many clips at once: per-call overhead amortised
    r, w = args.repeats, args.warmup
    results: dict[str, object] = {}
    t = _median_s(lambda: solve(joints, skeleton), r, w)
    results["analytic_196_ms"] = t * 1e3
    results["analytic_196_frames_per_s"] = FRAMES / t
    t = _median_s(lambda: solve(batch, skeleton), max(r // 4, 3), 1)
    results["analytic_9800_frames_per_s"] = len(batch) / t
    t = _median_s(lambda: [solve(joints[i:i + 1], skeleton) for i in range(FRAMES)], max(r // 4, 3), 1)
    results["naive_per_frame_loop_196_ms"] = t * 1e3
    results["naive_per_frame_loop_frames_per_s"] = FRAMES / t
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        t = _median_s(lambda: refine(root, quats, skeleton, target, device=dev), max(r // 2, 3), w)
        results[f"refine_196_{dev}_ms"] = t * 1e3
        results[f"refine_{dev}_frames_per_s"] = FRAMES / t
    motion = Motion(joints, fps=20.0)  # what the server runs: analytic solve + refinement (one CPU thread)
    results["pipeline_default_196_ms"] = _median_s(lambda: retarget(motion, skeleton), max(r // 2, 3), w) * 1e3
    t = _median_s(lambda: retarget(motion, skeleton, target_fps=30.0, foot_lock=True), max(r // 2, 3), w)
    results["pipeline_foot_lock_to_30fps_196_ms"] = t * 1e3
    results["setup"] = {
        "clip": source, "frames": FRAMES, "repeats": r, "warmup": w, "statistic": "median",
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
