"""Click to keyframes: Generate through the real child-process backend, model already loaded, CPU.

    python benchmarks/bench_click.py [--checkpoint PATH | --tiny] [--seconds 4.9] [--repeats 5] [--device cpu]

Prints one JSON object. Headless Blender runs the Generate operator's steps (plan -> submit -> poll at
the operator's timer period -> bake a new Action onto an existing SMPL character); the clock runs from
the click (plan) to the keyframes baked. A first generation creates the character and loads the model and is excluded.
Without --checkpoint a randomly initialised checkpoint of the official architecture is made (the same
compute as a trained one; --tiny: the test-sized model). The backend's own `timings` are reported
next to the end-to-end time.
Goal: under 1.5 s on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import motionlcm_blender  # noqa: E402
from motionlcm_blender import scene_io, session  # noqa: E402
from motionlcm_blender.backend_job import BackendJob  # noqa: E402
from motionlcm_blender.operators import POLL_SECONDS  # noqa: E402  (the Generate operator's timer period)


def click(config: dict) -> tuple[float, dict]:
    """One Generate: milliseconds from the click to the baked keyframes, and the backend's result."""
    start = time.perf_counter()
    plan = scene_io.plan_generation(bpy.context)
    job = BackendJob(session.client_for(config), plan.requests)
    while not job.update():
        time.sleep(POLL_SECONDS)
    if job.error is not None:
        raise SystemExit(f"generation failed: {job.error}")
    scene_io.apply_generation(bpy.context, plan, job.results)
    return (time.perf_counter() - start) * 1000.0, job.results["generate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint folder or .ckpt (default: a random full-size one)")
    parser.add_argument("--tiny", action="store_true", help="with no --checkpoint: the tiny test architecture")
    parser.add_argument("--seconds", type=float, default=4.9, help="clip length (4.9 s = 98 model frames)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from backend_doubles import make_random_checkpoint

            checkpoint = str(make_random_checkpoint(Path(tmp) / "random", full_size=not args.tiny))
        config = {"python": sys.executable, "backend_root": str(ROOT), "checkpoint": checkpoint,
                  "device": args.device}
        bpy.ops.wm.read_factory_settings(use_empty=True)
        motionlcm_blender.register()
        try:
            scene = bpy.context.scene
            scene.render.fps = 24
            settings = scene.motionlcm
            settings.prompt, settings.seconds, settings.target = "a person walks forward", args.seconds, "NEW"
            warmup_ms, _ = click(config)  # starts the backend, loads the model, creates the character
            settings.target, settings.armature = "ARMATURE", bpy.context.scene.objects[0]
            runs = [click(config) for _ in range(args.repeats)]
        finally:
            motionlcm_blender.unregister()
    totals = [ms for ms, _ in runs]
    backend = [result["timings"] for _, result in runs]
    median = statistics.median(totals)
    print(json.dumps({
        "benchmark": "click_to_keyframes", "blender_version": bpy.app.version_string, "device": args.device,
        "checkpoint": args.checkpoint or ("random, tiny architecture" if args.tiny else "random, official architecture"),
        "model_frames": round(args.seconds * 20), "scene_fps": 24, "poll_seconds": POLL_SECONDS, "frames_baked": runs[0][1]["frame_count"],
        "repeats": len(totals), "warmup_excluded_ms": round(warmup_ms, 1),
        "click_to_keyframes_ms_median": round(median, 1), "click_to_keyframes_ms_all": [round(t, 1) for t in totals],
        "backend_ms_median": {stage: round(statistics.median(t[stage] for t in backend), 1) for stage in backend[0]},
        "backend_total_ms_all": [round(t["total"], 1) for t in backend],
        "goal_met": {"under_1500ms": median < 1500},
    }, indent=2))


if __name__ == "__main__":
    main()
