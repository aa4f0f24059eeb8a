"""The AR engine (MotionMillion): generation time for 10 s and 30 s motions, and pops in a 20 s motion.

Prints one JSON object (device and versions recorded):
- `time`: per duration, the median wall time of `ARPipeline.generate` (text to joints, batch 1; warm-up excluded,
  the prompt differs per run so that no text cache hits), with its split into tokens / decode / joints, and the
  ratio of 30 s to 10 s (linear growth is 3);
- `pops`: over seeds, the largest per-frame joint jump of a 20 s motion against the 99th percentile of per-frame
  joint jumps in real clips (`--data`, a prepared dataset's split; goal <= 1.5).

    python benchmarks/bench_ar.py [--checkpoint DIR] [--device cpu] [--repeats 5] [--seeds 5]
                                  [--data data/bandai_ds12 --split test]
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

from backend.generation.ar_pipeline import ARPipeline  # noqa: E402
from backend.motion.skeleton import FPS  # noqa: E402
from training.evaluation.metrics import frame_jumps  # noqa: E402

PROMPT = "a person strolls forward and looks around"  # not a training caption


def data_jump_p99(data: Path, split: str) -> float:
    names = (data / f"{split}.txt").read_text(encoding="utf-8").split()
    return float(np.percentile(np.concatenate([frame_jumps(np.load(data / "new_joints" / f"{n}.npy"))
                                               for n in names]), 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="AR engine folder (default: the shipped one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", type=Path, help="prepared dataset for the real jump percentile")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    pipe = ARPipeline.from_checkpoint(args.checkpoint, device=args.device)
    report: dict = {"device": str(pipe.device), "checkpoint": pipe.checkpoint.checkpoint_id, "time": {}}
    for seconds in (10, 30):
        frames = int(seconds * FPS)
        pipe.generate([f"{PROMPT} {seconds} 0"], [frames], seed=0)  # warm-up
        runs, parts = [], []
        for repeat in range(1, args.repeats + 1):
            start = time.perf_counter()
            result = pipe.generate([f"{PROMPT} {seconds} {repeat}"], [frames], seed=repeat)
            runs.append(time.perf_counter() - start)
            parts.append(result.timings)
        report["time"][f"{seconds}s"] = {
            "median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs],
            "median_parts_ms": {k: round(statistics.median(p[k] for p in parts), 1)
                                for k in ("text", "tokens", "decode", "joints")}}
    report["time"]["ratio_30s_to_10s"] = round(report["time"]["30s"]["median_s"] / report["time"]["10s"]["median_s"],
                                               2)
    largest = [float(frame_jumps(pipe.generate([PROMPT], [int(20 * FPS)], seed=seed).motions[0].joints).max())
               for seed in range(args.seeds)]
    report["pops"] = {"seconds": 20, "largest_jump_m": [round(x, 4) for x in largest]}
    if args.data is not None:
        p99 = data_jump_p99(args.data, args.split)
        report["pops"].update(data_p99_m=round(p99, 4), data_split=args.split,
                              ratio=[round(x / p99, 2) for x in largest], goal="<= 1.5")
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                          "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
