"""Engine speed: AITS (average inference time per sample) for 1/2/4 LCM steps, with and without ControlNet,
and batch-32 throughput. Prints one JSON object.

AITS follows the MotionLCM paper: text encoding + trajectory encoding + sampling + VAE decode, batch 1,
196 frames, warm-up excluded, CUDA synchronised; the median over --repeats runs is reported.
Without --checkpoint a randomly initialised default-size model (official architecture, 384-dim text input for
the embedded MiniLM encoder) is saved to a temporary folder and loaded through the normal checkpoint path.

    python benchmarks/bench_engine.py [--device cpu|cuda] [--checkpoint PATH] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.checkpoints import save_checkpoint  # noqa: E402
from backend.controls import JointControl  # noqa: E402
from backend.models import MotionLCM  # noqa: E402
from backend.models.config import ModelConfig  # noqa: E402
from backend.norm_stats import humanml3d_mean_std, spatial_mean_std  # noqa: E402
from backend.pipeline import MotionLCMPipeline  # noqa: E402
from backend.text_encoders import DEFAULT_ENCODER_DIM, DEFAULT_ENCODER_ID  # noqa: E402

FRAMES = 196
AITS_STAGES = ("text", "hint", "sampling", "decode")


def random_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig().with_text_dim(DEFAULT_ENCODER_DIM))
    mean, std = humanml3d_mean_std()
    raw_mean, raw_std = spatial_mean_std()
    return save_checkpoint(folder / "random_default_size", model, text_encoder_id=DEFAULT_ENCODER_ID,
                           text_dim=DEFAULT_ENCODER_DIM, mean=mean, std=std, raw_mean=raw_mean, raw_std=raw_std,
                           provenance={"note": "random weights for benchmarking"})


def pelvis_circle(frames: int = FRAMES, radius: float = 1.5) -> JointControl:
    angle = np.linspace(0.0, 2.0 * np.pi, frames)
    path = np.stack([radius * np.sin(angle), np.full(frames, 0.95), radius * (1.0 - np.cos(angle))], axis=1)
    return JointControl.dense("pelvis", path.astype(np.float32))


def median_ms(run, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(Path(tmp))
        pipe = MotionLCMPipeline.from_checkpoint(checkpoint, device=args.device)
    control = pelvis_circle()

    def aits(steps: int, controlled: bool, batch: int = 1) -> float:
        def run() -> float:
            result = pipe.generate(["a person walks in a circle"] * batch, [FRAMES] * batch,
                                   controls=[[control]] * batch if controlled else None, steps=steps, seed=0)
            return sum(result.timings[s] for s in AITS_STAGES) / batch
        return median_ms(run, args.repeats, args.warmup)

    report: dict = {"device": str(pipe.device), "frames": FRAMES, "repeats": args.repeats,
                    "checkpoint": str(args.checkpoint or "random default-size"),
                    "parameters_m": round(sum(p.numel() for p in pipe.model.parameters()) / 1e6, 2),
                    "aits_ms": {}}
    for steps in (1, 2, 4):
        report["aits_ms"][str(steps)] = {"control": round(aits(steps, pipe.has_controlnet), 2),
                                         "text": round(aits(steps, False), 2)}
    start_batch = time.perf_counter()
    per_sample_ms = aits(1, pipe.has_controlnet, batch=32)
    report["batch32_samples_per_s"] = round(1000.0 / per_sample_ms, 1)
    report["batch32_wall_s"] = round(time.perf_counter() - start_batch, 2)
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "numpy": np.__version__, "threads": torch.get_num_threads(),
                          "cpu": platform.processor() or platform.machine(),
                          "gpu": torch.cuda.get_device_name() if pipe.device.type == "cuda" else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
