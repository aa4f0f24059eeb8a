"""Long motions: a 30 s timeline of five prompts against its segments generated alone, and continuations.

Prints one JSON object (medians over seeds/repeats; device and versions recorded):
- `pops`: per seed, the largest per-frame joint jump within one frame of any segment or chunk boundary over the
  largest inside them (goal <= 1.5);
- `skating`: foot-skating ratio (backend.retarget.feet.skating_ratio) of each segment inside the timeline and of
  the same segment generated alone (capped at one clip), frame-weighted over seeds;
- `path`: with a pelvis path over the whole timeline (an S-curve, 30 s), its mean/max error;
- `seam`: velocity kink at each continuation seam (velocity from the two frames before minus from the two after,
  m/s; pelvis, worst and mean joint), next to the same statistic at every frame inside single clips;
- `time`: wall time of the timeline and of its segments generated alone (text only), median of repeats.

    python benchmarks/bench_timeline.py [--seeds 10] [--repeats 5]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backend  # noqa: E402,F401  (before torch: the OpenMP wait policy)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.generation.controls import JointControl  # noqa: E402
from backend.generation.pipeline import MotionLCMPipeline  # noqa: E402
from backend.generation.timeline import Segment, generate_timeline  # noqa: E402
from backend.motion.skeleton import FPS, MAX_FRAMES  # noqa: E402
from backend.retarget.feet import skating_ratio  # noqa: E402
from training.evaluation.metrics import frame_jumps  # noqa: E402

# Five everyday shots, 30 s in all (none of these phrasings is a training caption).
TIMELINE = [Segment("a man strolls forward", 140), Segment("someone stops and bows politely", 100),
            Segment("the person waves goodbye with the right hand", 100), Segment("a person jogs ahead", 160),
            Segment("a man walks forward slowly", 100)]


def jump_ratio(joints: np.ndarray, boundaries: list[int]) -> float:
    """Largest per-frame joint jump at the boundaries (the steps into, across and out of each) over the largest
    jump anywhere else."""
    jumps = frame_jumps(joints)
    near = sorted({b + d for b in boundaries for d in (-2, -1, 0) if 0 <= b + d < len(jumps)})
    inside = np.delete(jumps, near)
    return float(jumps[near].max() / inside.max())


def velocity_change(seq: np.ndarray, t: int) -> np.ndarray:
    """Per joint, m/s: the velocity at frame t estimated from the two frames before it minus the estimate from
    the two after it (second-order one-sided differences; ~0 where the motion is smooth)."""
    before = (3 * seq[t] - 4 * seq[t - 1] + seq[t - 2]) * FPS / 2
    after = (-3 * seq[t] + 4 * seq[t + 1] - seq[t + 2]) * FPS / 2
    return np.linalg.norm(after - before, axis=-1)


def s_curve(frames: int, height: float) -> np.ndarray:
    t = np.linspace(0.0, 1.0, frames)
    return np.stack([1.5 * np.sin(2 * np.pi * t), np.full(frames, height), 30.0 * t], axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)  # skating differs by a few per cent between 4 seeds
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pipe = MotionLCMPipeline.from_checkpoint()
    total = sum(s.frames for s in TIMELINE)
    report: dict = {"seconds": total / FPS, "segments": [s.prompt for s in TIMELINE], "pops": [], "skating": {},
                    "path": {}, "seam": {}, "time": {}}
    # Skating per segment, frame-weighted over segments and seeds: inside the timeline and generated alone.
    skate = {"timeline": np.zeros((len(TIMELINE), 2)), "segments_alone": np.zeros((len(TIMELINE), 2))}
    for seed in range(args.seeds):
        result = generate_timeline(pipe, TIMELINE, seed=seed)
        boundaries = sorted(set(result.starts[1:]) | {first for first, _ in result.chunks[1:]})
        report["pops"].append(round(jump_ratio(result.joints, boundaries), 3))
        for i, (segment, start) in enumerate(zip(TIMELINE, result.starts)):
            frames = min(segment.frames, MAX_FRAMES)
            alone = pipe.generate([segment.prompt], [frames], seed=seed * 10 + i).joints[0]
            inside = result.joints[start:start + segment.frames]
            skate["timeline"][i] += (skating_ratio(inside, FPS) * len(inside), len(inside))
            skate["segments_alone"][i] += (skating_ratio(alone, FPS) * frames, frames)
    report["skating"] = {name: {"all": round(float(v[:, 0].sum() / v[:, 1].sum()), 3),
                                "per_segment": [round(float(a / n), 3) for a, n in v]} for name, v in skate.items()}

    height = float(pipe.checkpoint.raw_mean[0, 1])
    path = s_curve(total, height)
    errors = []
    for seed in range(args.seeds):
        result = generate_timeline(pipe, TIMELINE, controls=[JointControl.dense("pelvis", path)], seed=seed)
        errors.append(np.linalg.norm(result.joints[:, 0] - path, axis=-1))
    errors = np.concatenate(errors)
    report["path"] = {"mean_m": round(float(errors.mean()), 4), "max_m": round(float(errors.max()), 4)}

    seam, inside = [], []
    prompts = [s.prompt for s in TIMELINE]
    for i, (a, b) in enumerate(zip(prompts, prompts[1:] + prompts[:1])):
        first = pipe.generate([a], [120], seed=i).joints[0].astype(np.float64)
        cont = generate_timeline(pipe, [Segment(b, 80)], previous=first, seed=100 + i)
        seq = np.concatenate([first, cont.joints])
        seam.append(velocity_change(seq, len(first) - 1))
        inside += [velocity_change(first, t) for t in range(2, len(first) - 2)]
    seam, inside = np.array(seam), np.array(inside)
    for name, pick in (("pelvis", lambda v: v[:, 0]), ("worst_joint", lambda v: v.max(axis=1)),
                       ("mean_joint", lambda v: v.mean(axis=1))):
        report["seam"][name] = {"seam_median": round(float(np.median(pick(seam))), 3),
                                "seam_max": round(float(pick(seam).max()), 3),
                                "inside_clips_median": round(float(np.median(pick(inside))), 3),
                                "inside_clips_p95": round(float(np.percentile(pick(inside), 95)), 3)}

    def timed(fn) -> float:
        fn()
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    t_timeline = timed(lambda: generate_timeline(pipe, TIMELINE, seed=0))
    t_alone = timed(lambda: [pipe.generate([s.prompt], [min(s.frames, MAX_FRAMES)], seed=i)
                             for i, s in enumerate(TIMELINE)])
    report["time"] = {"timeline_s": round(t_timeline, 3), "segments_alone_s": round(t_alone, 3),
                      "ratio": round(t_timeline / t_alone, 2)}
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                          "checkpoint": pipe.checkpoint.checkpoint_id,
                          "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
