"""Cold start: wall time of a fresh `motionlcm generate` process, from launch to its output file, with the shipped
model. Prints one JSON object.

Every run is a new Python process (imports, model and text encoder loaded from disk, one motion generated and
written), so this is what a command-line user and each new add-on session pay before their first motion. Cases:
text only (.npz), text only written as BVH (retargeting included), and a dense pelvis path (fitting included).
The first run of each case is a warm-up (it fills the operating system's file cache) and is excluded.

`--backend-root DIR` runs the command from another tree (e.g. an export of an earlier commit) for A/B figures.

    python benchmarks/bench_cold_start.py [--repeats 5] [--seconds 5] [--backend-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

def run_once(root: Path, args: list[str], out: Path) -> float:
    out.unlink(missing_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "generate", *args, "--out", str(out), "--quiet",
                           "--seed", "0"], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"motionlcm generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend-root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    root = args.backend_root.resolve()
    frames = int(round(args.seconds * 20))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        angle = np.linspace(0.0, np.pi, frames)
        path = np.stack([1.5 * np.sin(angle), np.full(frames, 0.95), 1.5 * (1 - np.cos(angle))], axis=1)
        np.save(tmp / "path.npy", path.astype(np.float32))
        prompt = ["--prompt", "a person walks forward", "--seconds", str(args.seconds)]
        cases = {"text_npz": (prompt, tmp / "a.npz"), "text_bvh": (prompt, tmp / "a.bvh"),
                 "pelvis_path_npz": (prompt + ["--control", f"pelvis={tmp / 'path.npy'}"], tmp / "b.npz")}
        report: dict = {"backend_root": str(root), "seconds": args.seconds, "repeats": args.repeats, "cold_start_s": {}, "runs_s": {}}
        for name, (case_args, out) in cases.items():
            run_once(root, case_args, out)  # warm-up: file cache
            runs = [run_once(root, case_args, out) for _ in range(args.repeats)]
            report["cold_start_s"][name] = round(statistics.median(runs), 3)
            report["runs_s"][name] = [round(r, 3) for r in runs]
    import torch

    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
