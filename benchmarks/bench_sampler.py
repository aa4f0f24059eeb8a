"""Latency of the sampling core on CPU: one controlled LCM sample + VAE decode at the default model size.

Random weights (timing does not depend on values). Usage:
    python benchmarks/bench_sampler.py [--batch 1] [--frames 196] [--steps 1] [--threads N] [--repeats 5]
                                       [--keyframes N]
Prints one JSON object: the median wall time (ms) of each stage and of the whole call over --repeats runs after
one warm-up, with the machine and versions.
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

import backend  # noqa: E402,F401  (before torch: it sets the OpenMP wait policy, see backend/__init__.py)
import torch  # noqa: E402

from backend.models import MotionLCM, ModelConfig  # noqa: E402
from backend.generation.sampler import decode_latents, sample_lcm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--steps", type=int, default=1, choices=(1, 2, 4))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keyframes", type=int, help="control the pelvis on N evenly spaced frames (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig()).eval()
    b, t = args.batch, args.frames
    text = torch.randn(b, 1, model.config.text_dim)
    z_T = torch.randn(b, *model.config.latent_shape)
    hint_mask = torch.zeros(b, t, 22, 3)
    frames = torch.linspace(0, t - 1, args.keyframes).long() if args.keyframes else torch.arange(t)
    hint_mask[:, frames, 0] = 1.0  # pelvis; every frame by default (the densest, slowest case)
    hint = torch.randn(b, t, 22, 3) * hint_mask
    times: dict[str, list[float]] = {"sample": [], "decode": [], "total": []}
    for i in range(args.repeats + 1):  # first run is warm-up
        start = time.perf_counter()
        z0 = sample_lcm(model, text, z_T, hint=hint, hint_mask=hint_mask, steps=args.steps)
        mid = time.perf_counter()
        decode_latents(model, z0, [t] * b)
        end = time.perf_counter()
        if i:
            times["sample"].append(mid - start)
            times["decode"].append(end - mid)
            times["total"].append(end - start)
    print(json.dumps({
        **{f"{name}_ms": 1000 * statistics.median(values) for name, values in times.items()},
        "setup": {"batch": b, "frames": t, "steps": args.steps, "controlled_frames": len(frames),
                  "repeats": args.repeats, "warmup": 1, "statistic": "median", "weights": "random, default size",
                  "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                  "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
                  "python": platform.python_version(), "torch": torch.__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
