"""`motionlcm demo`: the product's main job on the shipped defaults, without opening Blender.

A prompt plus a built-in pelvis trajectory (a circle 3 m across) -> generated motion (.npz), a BVH of the
default character, a GIF preview, and the scene for a .blend (`demo_scene.json`: the skeleton and generate
replies as the add-on receives them), which `python demo_blend.py DIR` (beside install.py, run by
`install.py --demo`) turns into a .blend with the SMPL character and the baked Action through the add-on's code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from backend.generation.controls import JointControl
from backend.motion.skeleton import FPS, MAX_FRAMES

DEFAULT_PROMPT = "a person walks in a circle"
CIRCLE_DIAMETER = 3.0  # metres
BLEND_FPS = 30.0
SCENE_FILE = "demo_scene.json"  # read by demo_blend.py beside install.py


def pelvis_circle(frames: int, diameter: float = CIRCLE_DIAMETER, height: float = 0.95) -> np.ndarray:
    """(frames, 3) pelvis path: one counter-clockwise lap starting at the origin heading +Z (HumanML3D axes)."""
    radius = diameter / 2.0
    angle = np.linspace(0.0, 2.0 * np.pi, frames)
    return np.stack([radius * (1.0 - np.cos(angle)), np.full(frames, height), radius * np.sin(angle)], axis=1)


def run_demo(args: argparse.Namespace) -> int:
    from backend.commands.generate import report_fit
    from backend.serving.handlers import result_fields, skeleton_fields
    from backend.serving.protocol import encode_array
    from backend.generation.pipeline import MotionLCMPipeline
    from backend.commands.preview import render_gif
    from backend.retarget import GENERATED_REFINE, default_skeleton, travel_scale, write_bvh
    from backend.serving.server import BodyModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = int(round(args.seconds * FPS))
    pipe = MotionLCMPipeline.from_checkpoint(args.checkpoint, device=args.device, text_encoder=args.text_encoder)
    height = float(pipe.checkpoint.raw_mean[0, 1])  # the pelvis height the model's hints are centred on
    path = pelvis_circle(frames, height=height)
    control = JointControl.dense("pelvis", path.astype(np.float32))
    # The circle is for the default character (the BVH and the .blend share it): generated at the model's size,
    # so that the character's root, carried farther by its longer legs, walks the circle itself.
    scale = travel_scale(default_skeleton())
    generation = pipe.generate([args.prompt], [frames], controls=[[control]], steps=args.steps, seed=args.seed,
                               tuning=0 if args.draft else args.tuning, fit=not args.draft, control_scale=scale)
    report_fit(generation.fit_reports, generation.seeds)
    motion = generation.motions[0]
    motion.save_npz(out / "demo.npz")
    target = write_bvh(motion, out / "demo.bvh", fps=BLEND_FPS, foot_lock=True, root_scale=scale,
                       refine=GENERATED_REFINE)
    render_gif(target.fk(), out / "demo.gif", fps=BLEND_FPS, paths=[path], title=args.prompt)  # as delivered
    # What the .blend needs, in the protocol's own form: install.py's demo_blend.py builds the scene from it with
    # the add-on (the backend does not import the add-on).
    scene = {"prompt": args.prompt, "skeleton": skeleton_fields(BodyModel()), "control_path": encode_array(path),
             "result": result_fields(generation.seeds, [target], generation.settings, generation.timings,
                                     fit_reports=generation.fit_reports)}
    (out / SCENE_FILE).write_text(json.dumps(scene), encoding="utf-8")
    written = ["demo.npz", "demo.bvh", "demo.gif", SCENE_FILE]
    error = generation.fit_reports[0].final["pelvis"]  # the character's metres
    summary: dict[str, Any] = {
        "out": str(out), "files": written, "prompt": args.prompt, "seed": generation.seeds[0],
        "checkpoint": pipe.checkpoint.checkpoint_id, "frames": frames,
        "pelvis_error_m": {"mean": round(error.mean, 4), "max": round(error.max, 4)},
        "timings_ms": {k: round(v, 1) for k, v in generation.timings.items()}}
    print(json.dumps(summary, indent=2))
    return 0


def add_parser(subparsers: Any) -> None:
    from backend.commands.generate import add_fit_arguments

    p = subparsers.add_parser("demo", help="the main job on the shipped defaults: .npz, .bvh, .gif and .blend",
                              description=__doc__.splitlines()[0])
    p.add_argument("--out", default="motionlcm_demo", help="output folder (default ./motionlcm_demo)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--seconds", type=float, default=MAX_FRAMES / FPS, help="duration (default 9.8 s)")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    add_fit_arguments(p)
    p.add_argument("--checkpoint", default=None, help="default: the checkpoint shipped with the package")
    p.add_argument("--text-encoder", default=None,
                   help="local text-encoder folder (official checkpoints need sentence-t5-large)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run_demo)
