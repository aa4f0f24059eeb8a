"""`motionlcm generate`: prompt (+ joint controls) -> .npz motion (or .bvh through the retargeting)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from backend.generation.controls import load_control_file, parse_control_arg
from backend.errors import InvalidRequest
from backend.limits import ENGINES
from backend.motion.skeleton import FPS, MAX_FRAMES


def seconds_to_frames(seconds: float) -> int:
    """A clip of S seconds has round(20 S) model frames (backend/motion/skeleton.py: 20 fps)."""
    return int(round(float(seconds) * FPS))


def _output_paths(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def report_fit(reports: list, seeds: list[int]) -> None:
    """Each sample's control error on stderr, and every warning: a control that was not met is never silent."""
    for report, seed in zip(reports, seeds):
        errors = ", ".join(f"{joint} {err.mean * 100:.1f} cm mean, {err.max * 100:.1f} cm max"
                           for joint, err in report.final.items())
        what = "fitted" if report.fitted else "draft (no fitting)"
        print(f"seed {seed}: controls {what}: {errors}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning (seed {seed}): {warning}", file=sys.stderr)


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """--draft and --tuning: the same default as the add-on and the server (fit the controls)."""
    p.add_argument("--draft", action="store_true",
                   help="no fitting: the ControlNet alone (paths followed loosely); default: the motion is fitted "
                        "to its controls, the pelvis exactly on its path (a few milliseconds)")
    p.add_argument("--tuning", type=int, default=0, metavar="N",
                   help="before fitting, N iterations of latent tuning (MotionLCM-V2) pull the sample itself "
                        "towards the controls (about 70 ms each on a 2-core CPU with the default model); default 0")


def run_generate(args: argparse.Namespace) -> int:
    from backend.generation.pipeline import MotionLCMPipeline

    out = Path(args.out)
    if out.suffix not in (".npz", ".bvh"):
        raise InvalidRequest(f"--out {out} must end in .npz (joints, features, fps, settings) or .bvh")
    if (args.prompt is None) == (args.timeline is None):
        raise InvalidRequest("give either --prompt or --timeline")
    frames = args.frames if args.frames is not None else seconds_to_frames(args.seconds)
    if args.engine == "ar":
        return run_ar(args, out, frames)
    if args.temperature is not None or args.top_k is not None:
        raise InvalidRequest("--temperature and --top-k belong to the AR engine (--engine ar)")
    if args.timeline is not None or args.continue_from is not None or frames > MAX_FRAMES:
        return run_timeline(args, out)
    controls = [load_control_file(*parse_control_arg(arg), frames) for arg in args.control]

    bar, progress = _progress_bar("generate", args.quiet)

    bar.set_postfix_str("loading")
    pipe = MotionLCMPipeline.from_checkpoint(args.checkpoint, device=args.device, text_encoder=args.text_encoder)
    # A BVH carries the default character, whose longer legs carry its root 7 % farther than the model's body:
    # its controls are generated at the model's size so that the character's root lands on them.
    scale = None
    if out.suffix == ".bvh" and controls:
        from backend.retarget import default_skeleton, travel_scale

        scale = travel_scale(default_skeleton())
    result = pipe.generate([args.prompt], [frames], controls=[controls], steps=args.steps, guidance=args.guidance,
                           seed=args.seed, variations=args.variations, tuning=0 if args.draft else args.tuning,
                           fit=not args.draft, control_scale=scale or 1.0, progress=progress)
    bar.close()
    report_fit(result.fit_reports, result.seeds)
    _write_results(result, out, args, scale)
    return 0


def _write_results(result: Any, out: Path, args: argparse.Namespace, root_scale: float | None) -> None:
    """Every motion of a GenerationResult to `out` (out_0, out_1, ... for several), then the JSON summary on
    stderr: outputs, seeds, timings, settings and, with controls, each sample's report."""
    paths = _output_paths(out, len(result.motions))
    out.parent.mkdir(parents=True, exist_ok=True)
    for motion, path in zip(result.motions, paths):
        _write(motion, path, args, root_scale)
    summary: dict[str, Any] = {"outputs": [str(p) for p in paths], "seeds": result.seeds,
                               "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
                               "settings": result.settings}
    if result.fit_reports:
        summary["controls"] = [r.to_dict() for r in result.fit_reports]
    print(json.dumps(summary), file=sys.stderr)


def run_ar(args: argparse.Namespace, out: Path, frames: int) -> int:
    """The MotionMillion engine: one motion of up to 30 s from the prompt, no controls (docs/motionmillion.md)."""
    from backend.generation.ar_pipeline import ARPipeline

    unsupported = [flag for flag, given in (("--control", args.control), ("--timeline", args.timeline),
                                            ("--continue-from", args.continue_from), ("--tuning", args.tuning),
                                            ("--steps", args.steps != 1), ("--draft", args.draft)) if given]
    if unsupported:
        raise InvalidRequest(f"{', '.join(unsupported)} belong to the MotionLCM engine; the AR engine takes a prompt "
                             "and a duration only (trajectory controls are not part of it)")
    bar, progress = _progress_bar("generate (ar)", args.quiet)
    bar.set_postfix_str("loading")
    pipe = ARPipeline.from_checkpoint(args.checkpoint, device=args.device, text_encoder=args.text_encoder)
    result = pipe.generate([args.prompt], [frames], seed=args.seed, variations=args.variations,
                           temperature=args.temperature, top_k=args.top_k, guidance=args.guidance,
                           progress=progress)
    bar.close()
    _write_results(result, out, args, None)
    return 0


def _write(motion: Any, path: Path, args: argparse.Namespace, root_scale: float | None) -> None:
    """The motion as .npz, or as .bvh of the default character (root_scale: controls generated at the model's
    size, so that the character's root lands on them)."""
    if path.suffix == ".bvh":
        from backend.commands.retarget import write_motion_bvh

        write_motion_bvh(motion, path, fps=args.fps, in_place=args.in_place, foot_lock=args.foot_lock,
                         scale=args.scale, root_scale=root_scale)
    else:
        motion.save_npz(path)
    print(f"wrote {path}", file=sys.stderr)


def _progress_bar(desc: str, quiet: bool):
    """A tqdm bar on stderr and the pipeline's progress(stage, fraction) callback that drives it."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%", file=sys.stderr, disable=quiet)

    def progress(stage: str, fraction: float) -> None:
        bar.set_postfix_str(stage)
        bar.update(round(fraction * 100) - bar.n)

    return bar, progress


def _timeline_segments(args: argparse.Namespace) -> list:
    from backend.generation.timeline import parse_segments

    if args.timeline is None:  # one prompt, longer than a clip: generated in segments
        return parse_segments([{"prompt": args.prompt, "seconds": (args.frames / FPS if args.frames is not None
                                                                    else args.seconds)}])
    try:
        items = json.loads(Path(args.timeline).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"--timeline {args.timeline}: cannot read a JSON list of segments ({exc})") from exc
    return parse_segments(items)


def run_timeline(args: argparse.Namespace, out: Path) -> int:
    """A timeline, a prompt longer than one clip, or a continuation (--continue-from): one motion, written whole."""
    from backend.generation.controls import scale_controls
    from backend.generation.pipeline import MotionLCMPipeline
    from backend.generation.timeline import generate_timeline
    from backend.motion import Motion

    if args.variations != 1 or args.tuning:
        raise InvalidRequest("--variations and --tuning apply to single clips, not to timelines or continuations")
    segments = _timeline_segments(args)
    total = sum(s.frames for s in segments)
    controls = [load_control_file(*parse_control_arg(arg), total) for arg in args.control]
    previous = None
    if args.continue_from is not None:
        previous_motion = Motion.load_npz(args.continue_from)
        if abs(previous_motion.fps - FPS) > 1e-6:
            raise InvalidRequest(f"--continue-from {args.continue_from} is at {previous_motion.fps:g} fps; "
                                 f"continue a motion of the model's {FPS:g} fps")
        previous = previous_motion.joints
    scale = None
    if out.suffix == ".bvh" and controls:  # as for single clips: the default character's root lands on them
        from backend.retarget import default_skeleton, travel_scale

        scale = travel_scale(default_skeleton())
        controls = scale_controls(controls, 1.0 / scale)
    bar, progress = _progress_bar("timeline", args.quiet)

    pipe = MotionLCMPipeline.from_checkpoint(args.checkpoint, device=args.device, text_encoder=args.text_encoder)
    result = generate_timeline(pipe, segments, controls=controls, previous=previous, seed=args.seed,
                               steps=args.steps, fit=not args.draft, progress=progress)
    bar.close()
    for joint, err in result.control_errors.items():
        print(f"timeline controls: {joint} {err.mean * 100:.1f} cm mean, {err.max * 100:.1f} cm max", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    offset = 0 if previous is None else len(previous)
    joints = result.joints if previous is None else np.concatenate([previous, result.joints])
    timeline = [{"prompt": s.prompt, "start_frame": offset + start, "frames": s.frames}
                for s, start in zip(segments, result.starts)]
    motion = Motion(joints=joints, meta={"timeline": timeline, "seeds": result.seeds, "steps": args.steps,
                                         "fit": not args.draft, "continued_frames": offset,
                                         "checkpoint": pipe.checkpoint.checkpoint_id})
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(motion, out, args, scale)
    print(json.dumps({"outputs": [str(out)], "seeds": result.seeds, "timeline": timeline,
                      **({"controls": result.controls_report()} if controls else {}),
                      "seam_errors_m": [round(e, 4) for e in result.seam_errors],
                      "timings_ms": {k: round(v, 2) for k, v in result.timings.items()}}), file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("generate", help="generate motion from a prompt and optional joint controls",
                              description="Generate motion from a prompt (and optional joint trajectories).")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="motionlcm (default): MotionLCM with trajectory controls, timelines and Continue; ar: the "
                        "MotionMillion engine, motions of up to 30 s in one piece from a prompt, with rotations")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder or official .ckpt (default: the engine's model shipped with the package)")
    p.add_argument("--prompt", help='what the person does, e.g. "a person jogs in a circle"')
    p.add_argument("--timeline", metavar="FILE.json",
                   help='instead of --prompt: [{"prompt": "...", "seconds": 4}, ...], one continuous motion '
                        "(segments of at least 1 s, at most 120 s in all)")
    p.add_argument("--continue-from", metavar="MOTION.npz",
                   help="continue this motion (a .npz written by generate): the new motion starts from its last "
                        "frame, pose and velocity; the output holds both")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=6.0,
                        help="duration in seconds (2.0..120; above 9.8 s generated in segments; default 6); "
                             "the AR engine: 2.0..30 in one piece")
    length.add_argument("--frames", type=int, default=None, help="duration in model frames at 20 fps (40..2400)")
    p.add_argument("--control", action="append", default=[], metavar="JOINT=FILE",
                   help="joint trajectory, e.g. pelvis=path.json or left_wrist=points.npy (metres, Y up); repeatable; "
                        "with a timeline it spans the whole timeline")
    p.add_argument("--steps", type=int, default=1, help="LCM steps: 1, 2 or 4 (default 1)")
    p.add_argument("--guidance", type=float, default=None,
                   help="guidance scale: MotionLCM's w, or the AR engine's classifier-free guidance "
                        "(default: the checkpoint's)")
    p.add_argument("--temperature", type=float, default=None,
                   help="AR engine: sampling temperature (default: the checkpoint's)")
    p.add_argument("--top-k", type=int, default=None, help="AR engine: sample among the k likeliest tokens")
    add_fit_arguments(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--variations", type=int, default=1, help="number of motions to generate (out_0, out_1, ...)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--text-encoder", default=None,
                   help="local text-encoder folder (official checkpoints need sentence-t5-large)")
    p.add_argument("--out", required=True, help="output .npz (joints, features, fps, meta) or .bvh")
    bvh = p.add_argument_group("BVH output (--out *.bvh)")
    bvh.add_argument("--fps", type=float, default=None, help="BVH frame rate (default: the model's 20 fps)")
    bvh.add_argument("--in-place", action="store_true", help="remove horizontal root motion")
    bvh.add_argument("--foot-lock", action=argparse.BooleanOptionalAction, default=True,
                     help="pin each foot during the contacts the model predicts (default: on, as in the demo)")
    bvh.add_argument("--scale", type=float, default=1.0, help="BVH unit scale (100 for centimetres)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)
