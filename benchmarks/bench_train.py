"""Training throughput per stage: steps/s and samples/s at a batch size, fp32 vs bf16 autocast; prints JSON.

    python benchmarks/bench_train.py --model tiny --batch-size 8 --steps 5
    python benchmarks/bench_train.py --model official --batch-size 128 --device cuda   (official batch sizes:
        VAE 128, MLD 64, LCM 128, ControlNet 128, per GPU)

Weights are random (throughput does not depend on them); batches come from the synthetic dataset through the
real dataset/collate path, with control hints for the ControlNet stage. One optimiser step per timed step.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models import MotionLCM  # noqa: E402
from training.common import STAGES, TextEmbedder, control_spec, load_stage_config, model_config  # noqa: E402
from training.data.dataset import HumanML3D, collate  # noqa: E402
from training.data.synthetic import build_synthetic_dataset  # noqa: E402
from training.runtime import autocast  # noqa: E402

OFFICIAL_BATCH_SIZES = {"vae": 128, "mld": 64, "lcm": 128, "controlnet": 128}


def build_objective(stage: str, cfg: dict, data: HumanML3D, text: TextEmbedder):
    from training.stages.controlnet import ControlNetObjective
    from training.stages.lcm import LCMObjective
    from training.stages.mld import MLDObjective
    from training.stages.vae import VAEObjective

    if stage == "vae":
        return VAEObjective(MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=None, controlnet=False)),
                            data.mean, data.std, cfg["loss"])
    if stage == "mld":
        model = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=None, controlnet=False))
        return MLDObjective(model, text, cfg["diffusion"]["text_dropout"])
    if stage == "lcm":
        teacher = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=None, controlnet=False))
        proj = int(cfg["distill"]["time_cond_proj_dim"])
        student = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=proj, controlnet=False))
        return LCMObjective(teacher.vae, teacher.denoiser, student.denoiser, text, cfg["distill"])
    proj = 32 if cfg["model"] == "tiny" else 256
    model = MotionLCM(model_config(cfg, text.dim, time_cond_proj_dim=proj, controlnet=True))
    return ControlNetObjective(model, text, data.mean, data.std, data.raw_mean, data.raw_std, cfg["control"])


def time_stage(objective, batch: dict, precision: str, device: torch.device, steps: int, warmup: int) -> float:
    objective.to(device).train()
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(precision, device):
            loss = objective(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(objective, "after_optimizer_step"):
            objective.after_optimizer_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "official"), default="tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "humanml3d"
        build_synthetic_dataset(root, num_clips=max(24, args.batch_size + 4))
        text = TextEmbedder(None, device)
        for stage in args.stages.split(","):
            cfg = load_stage_config(stage, "tiny" if args.model == "tiny" else "official")
            data = HumanML3D(root, "all", seed=0, control=control_spec(cfg) if stage == "controlnet" else None)
            text.warm(data)
            batch = collate([data[i % len(data)] for i in range(args.batch_size)])
            results[stage] = {}
            for precision in args.precisions.split(","):
                seconds = time_stage(build_objective(stage, cfg, data, text), batch, precision, device,
                                     args.steps, args.warmup)
                results[stage][precision] = {"steps_per_s": round(1 / seconds, 3),
                                             "samples_per_s": round(args.batch_size / seconds, 2),
                                             "frames_in_batch": int(batch["length"].sum())}
    print(json.dumps({
        "benchmark": "train_step", "model": args.model, "batch_size": args.batch_size, "steps": args.steps,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__, "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
        "official_batch_sizes": OFFICIAL_BATCH_SIZES, "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
