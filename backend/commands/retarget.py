"""`motionlcm retarget in.npz --fps 30 --out clip.bvh [--in-place] [--foot-lock] [--refine MODE] [--scale 100]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.retarget.refine_modes import GENERATED_REFINE, REFINE_MODES


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `retarget` subcommand."""
    p = subparsers.add_parser(
        "retarget", help="joint positions (.npz from `generate`) to a skeleton animation (.bvh or .npz)",
        description="Solve rotations for a clip's joint positions on the SMPL-X neutral rest skeleton (or a user's "
                    "SMPL/SMPL-X model), clean root and feet, convert the frame rate, and write BVH (SMPL joint "
                    "names, Y up, metres times --scale) or NPZ (root_translation, local_quats w,x,y,z, rest_joints, "
                    "joint_names, parents, fps).")
    p.add_argument("input", type=Path, help="npz with joints (T, 22, 3) in metres, Y up, and fps")
    p.add_argument("--out", type=Path, required=True, help="output .bvh or .npz")
    p.add_argument("--fps", type=float, default=None, help="target frame rate (default: the input's)")
    p.add_argument("--in-place", action="store_true", help="remove horizontal root motion")
    p.add_argument("--foot-lock", action="store_true", help="hold feet still during ground contacts")
    p.add_argument("--refine", choices=REFINE_MODES, default="directions",
                   help="after the analytic solve: 'directions' (default) refines only the joints with several "
                        "children and the root, every other bone keeps the clip's direction; 'positions' also bends "
                        "bones to bring joints closer (for clips shaped like the SMPL/HumanML3D body); 'off'")
    p.add_argument("--no-refine", dest="refine", action="store_const", const="off", help="the same as --refine off")
    p.add_argument("--no-ground", action="store_true", help="keep heights (default: lowest foot on the floor)")
    p.add_argument("--scale", type=float, default=1.0, help="BVH length unit per metre (100 = centimetres)")
    p.add_argument("--rotation-order", default="ZXY", help="BVH Euler channel order (default ZXY)")
    p.add_argument("--betas", type=float, nargs="+", default=None, help="SMPL-X shape betas for the rest skeleton")
    p.add_argument("--smpl-model", type=Path, default=None,
                   help="a SMPL/SMPL-X model file for the rest skeleton (needs the optional smplx package)")
    p.add_argument("--model-type", default="smplx", choices=("smpl", "smplx"), help="kind of --smpl-model")
    p.add_argument("--device", default="cpu", help="torch device for --refine")
    p.set_defaults(func=run)
    return p


def write_motion_bvh(motion: Motion, path: Path | str, fps: float | None = None, in_place: bool = False,
                     foot_lock: bool = False, scale: float = 1.0, refine: str = GENERATED_REFINE,
                     root_scale: float | None = None) -> None:
    """Retarget a generated `motion` onto the default skeleton and write a BVH (for `motionlcm generate ... --out
    clip.bvh`); `refine` and `root_scale` as in `retarget` (a generated motion has the model's body)."""
    from backend.retarget import write_bvh

    write_bvh(motion, path, fps=fps, scale=scale, in_place=in_place, foot_lock=foot_lock, refine=refine,
              root_scale=root_scale)


def run(args: argparse.Namespace) -> int:
    from backend.retarget import default_skeleton, retarget, skeleton_from_model

    suffix = args.out.suffix.lower()
    if suffix not in (".bvh", ".npz"):
        raise InvalidRequest(f"--out must end in .bvh or .npz, got {args.out.name!r}")
    if not args.input.exists():
        raise InvalidRequest(f"input not found: {args.input}")
    try:
        motion = Motion.load_npz(args.input)
    except (ValueError, OSError) as exc:
        raise InvalidRequest(f"cannot read {args.input}: {exc}") from None
    betas = None if args.betas is None else np.array(args.betas)
    skeleton = (skeleton_from_model(args.smpl_model, args.model_type, betas=betas) if args.smpl_model
                else default_skeleton(betas))
    start = time.perf_counter()
    result = retarget(motion, skeleton, target_fps=args.fps, in_place=args.in_place, foot_lock=args.foot_lock,
                      refine=args.refine, ground=not args.no_ground, device=args.device)
    if suffix == ".bvh":
        args.out.write_text(result.bvh_text(scale=args.scale, rotation_order=args.rotation_order), encoding="utf-8")
    else:
        np.savez(args.out, root_translation=result.root_translation.astype(np.float32),
                 local_quats=result.local_quats.astype(np.float32), fps=np.float32(result.fps),
                 rest_joints=result.rest_joints.astype(np.float32), joint_names=np.array(result.joint_names),
                 parents=np.array(result.parents, dtype=np.int64))
    print(f"retarget: {motion.num_frames} frames at {motion.fps:g} fps -> {result.num_frames} at {result.fps:g} fps "
          f"in {time.perf_counter() - start:.3f} s -> {args.out}", file=sys.stderr)
    return 0
