"""Where one-step controlled generation spends its time: torch.profiler's top operators, as JSON.

Official-size random weights (as bench_engine), batch 1, 196 frames, a dense pelvis path, text encoded cold;
the optimised CPU path and the plain one (no backend.models.cpu_inference measures, text through
sentence-transformers) are profiled over the same runs. Per operator: self CPU milliseconds per generation and
calls per generation.

    python benchmarks/profile_engine.py [--runs 10] [--top 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import backend  # noqa: E402,F401  (before torch: the OpenMP wait policy)
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_engine import (FRAMES, MotionLCMPipeline, pelvis_circle, random_checkpoint,  # noqa: E402
                          unoptimised_pipeline)


def top_operators(pipe: MotionLCMPipeline, control, runs: int, top: int) -> dict:
    def generate():
        pipe.prompt_cache.clear()
        return pipe.generate(["a person walks in a circle"], [FRAMES], controls=[[control]], steps=1, seed=0)

    for _ in range(3):
        generate()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            generate()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / 1000.0 / runs
    return {"self_cpu_ms_per_generation": round(total, 1),
            "top": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000.0 / runs, 2),
                     "calls": round(e.count / runs, 1)} for e in events[:top]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_checkpoint(Path(tmp))
        optimised = MotionLCMPipeline.from_checkpoint(checkpoint)
        plain = unoptimised_pipeline(checkpoint, optimised)
    control = pelvis_circle()
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "optimised": top_operators(optimised, control, args.runs, args.top),
              "plain": top_operators(plain, control, args.runs, args.top)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
