"""Pure validation of the panel's settings and construction of the backend `generate` request.

No `bpy` here: the operator copies the scene settings into plain values and calls these functions,
so every rule is testable without Blender. The request format is docs/protocol.md (`generate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import curves

# The backend's limits (backend/limits.py) arrive in its ping reply and are what the panel is validated with
# (session.limits); this copy is only for drawing the panel before the backend has answered (a test keeps it equal).
FALLBACK_LIMITS: dict[str, Any] = {
    "min_frames": 40, "max_frames": 196, "max_prompt_chars": 1000, "steps": [1, 2, 4], "max_variations": 8,
    "max_tuning": 1000, "guidance": [1.0, 50.0], "max_target_fps": 240.0, "min_segment_seconds": 1.0,
    "max_timeline_seconds": 120.0, "max_ar_seconds": 30.0, "engines": ["motionlcm", "ar"]}
AR_ENGINE = "ar"  # the MotionMillion engine: prompt and duration (up to max_ar_seconds in one piece), no controls
# Joints ControlNet can follow (the OmniControl set), as the panel lists them.
CONTROL_JOINTS = ("pelvis", "head", "left_wrist", "right_wrist", "left_foot", "right_foot")


class RequestError(ValueError):
    """A setting the user must fix before generating; the message names it and the accepted range."""


@dataclass
class GenerationSettings:
    prompt: str
    seconds: float
    steps: int = 1
    guidance: float | None = None
    seed: int | None = None
    variations: int = 1
    target_fps: float = 24.0
    in_place: bool = False
    foot_lock: bool = True  # as the panel's default
    fit: bool = True  # bend the motion onto its controls (the backend's fitting); False = the draft
    tuning: int = 0  # latent tuning iterations before fitting; 0 = none
    engine: str = "motionlcm"  # or AR_ENGINE


def usable_limits(limits: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's limits when it sent a complete set, else the fallback."""
    if isinstance(limits, dict) and set(FALLBACK_LIMITS) <= set(limits):
        return limits
    return FALLBACK_LIMITS


def validate_prompt(prompt: str, limits: dict[str, Any] | None = None) -> str:
    most = usable_limits(limits)["max_prompt_chars"]
    text = " ".join(prompt.split())
    if not text:
        raise RequestError("The prompt is empty; describe the motion, e.g. 'a person walks forward and waves'.")
    if len(text) > most:
        raise RequestError(f"The prompt has {len(text)} characters; the limit is {most}.")
    return text


def model_frames(seconds: float, limits: dict[str, Any] | None = None, engine: str = "motionlcm") -> int:
    """Duration in seconds -> model frames at 20 fps: 40 (2 s) up to the longest timeline (above one clip, 196
    frames or 9.8 s, the backend generates it in segments), or for the AR engine up to `max_ar_seconds`, in one
    piece."""
    lim = usable_limits(limits)
    ar = engine == AR_ENGINE
    longest = lim["max_ar_seconds"] if ar else lim["max_timeline_seconds"]
    low, high = lim["min_frames"], int(round(longest * curves.MODEL_FPS))
    frames = int(round(seconds * curves.MODEL_FPS))
    if not low <= frames <= high:
        span = f"{low / curves.MODEL_FPS:g} to {longest:g} s ({low} to {high} frames"
        how = f"the AR engine makes {span})" if ar else \
            f"MotionLCM makes {span} at 20 fps; above {lim['max_frames'] / curves.MODEL_FPS:g} s in segments)"
        raise RequestError(f"Duration {seconds:g} s gives {frames} model frames; {how}.")
    return frames


def check_engine_inputs(engine: str, has_controls: bool, one_motion: bool,
                        limits: dict[str, Any] | None = None) -> None:
    """RequestError when the AR engine is asked for what belongs to the MotionLCM engine only (controls, a
    timeline, Continue: `one_motion`); the panel calls it before it reads any curve."""
    if engine != AR_ENGINE:
        return
    lim = usable_limits(limits)
    if AR_ENGINE not in lim["engines"]:
        raise RequestError("This backend has no AR engine; choose the MotionLCM engine or update the backend.")
    if has_controls:
        raise RequestError("Trajectory controls are not part of the AR engine: remove them from the Trajectory "
                           "Controls list, or choose the MotionLCM engine to follow them.")
    if one_motion:
        raise RequestError("Timelines and Continue use the MotionLCM engine; the AR engine makes one prompt of up "
                           f"to {lim['max_ar_seconds']:g} s in one piece.")


def _ar_request(settings: GenerationSettings, controls: list[dict[str, Any]], timeline: list[dict] | None,
                continue_from: np.ndarray | None, lim: dict[str, Any]) -> dict[str, Any]:
    """The `engine: "ar"` fields; RequestError for what belongs to the MotionLCM engine only."""
    check_engine_inputs(AR_ENGINE, bool(controls), timeline is not None or continue_from is not None, lim)
    return {"type": "generate", "engine": AR_ENGINE, "prompt": validate_prompt(settings.prompt, lim),
            "frames": model_frames(settings.seconds, lim, AR_ENGINE)}


def timeline_segments(segments: list[tuple[str, float]], limits: dict[str, Any] | None = None) -> list[dict]:
    """The panel's segment list -> the request's `timeline`; RequestError naming the segment at fault."""
    lim = usable_limits(limits)
    if not segments:
        raise RequestError("The timeline has no segments; add one with + or untick Timeline.")
    items, total = [], 0.0
    for number, (prompt, seconds) in enumerate(segments, start=1):
        text = " ".join(prompt.split())
        if not text:
            raise RequestError(f"Segment {number} has an empty prompt; describe its motion.")
        if len(text) > lim["max_prompt_chars"]:
            raise RequestError(f"Segment {number}'s prompt has {len(text)} characters; the limit is "
                               f"{lim['max_prompt_chars']}.")
        if seconds < lim["min_segment_seconds"]:
            raise RequestError(f"Segment {number} ('{text}') lasts {seconds:g} s; a segment needs at least "
                               f"{lim['min_segment_seconds']:g} s.")
        total += seconds
        items.append({"prompt": text, "seconds": round(float(seconds), 4)})
    if total > lim["max_timeline_seconds"] + 1e-6:
        raise RequestError(f"The timeline lasts {total:g} s; at most {lim['max_timeline_seconds']:g} s.")
    return items


def _control(joint: str, frames: np.ndarray, points_bu: np.ndarray, unit_scale: float,
             pelvis_height_m: float) -> dict[str, Any]:
    if joint not in CONTROL_JOINTS:
        raise RequestError(f"Joint '{joint}' cannot be controlled; choose one of {', '.join(CONTROL_JOINTS)}.")
    positions = curves.blender_to_humanml(points_bu, unit_scale)
    if joint == "pelvis" and curves.on_floor(positions):
        positions = curves.lift_to_height(positions, pelvis_height_m)
    return {"joint": joint, "frames": [int(f) for f in frames],
            "positions": np.round(positions, 5).tolist()}


def path_control(joint: str, path_bu: np.ndarray, frame_count: int, density: float, unit_scale: float,
                 pelvis_height_m: float = curves.DEFAULT_PELVIS_HEIGHT_M) -> dict[str, Any]:
    """A polyline in the target's space (Blender axes, scene units) walked at uniform speed over the clip.

    density: the fraction of the clip's frames pinned to the path (evenly spaced, both ends always kept).
    The model has no per-control weight, so this is how loosely a path is followed: between pinned frames
    the motion is free to deviate."""
    frames = curves.evenly_thinned(frame_count, density)
    points = curves.resample_uniform(path_bu, frame_count)[frames]
    return _control(joint, frames, points, unit_scale, pelvis_height_m)


def waypoint_control(joint: str, points_bu: np.ndarray, frames: np.ndarray, unit_scale: float,
                     pelvis_height_m: float = curves.DEFAULT_PELVIS_HEIGHT_M) -> dict[str, Any]:
    """Positions pinned at given model frames (from keyframes or from curve points timed by distance)."""
    if len(points_bu) == 0:
        raise RequestError(f"The {joint} control has no waypoints; add keyframes or curve points.")
    frames, points = curves.unique_frames(np.asarray(frames), np.asarray(points_bu, dtype=np.float64))
    return _control(joint, frames, points, unit_scale, pelvis_height_m)


def knot_frames(knots_bu: np.ndarray, frame_count: int) -> np.ndarray:
    """Model frames for curve points used as waypoints: timed by distance along them, first 0, last at the end."""
    if len(knots_bu) < 2:
        raise curves.CurveError("The curve has a single point; waypoints need at least two.")
    return np.round(curves.arc_length_fractions(knots_bu) * (frame_count - 1)).astype(int)


def _motionlcm_request(settings: GenerationSettings, controls: list[dict[str, Any]], timeline: list[dict] | None,
                       continue_from: np.ndarray | None, lim: dict[str, Any]) -> dict[str, Any]:
    """The MotionLCM engine's fields: prompt and frames or a timeline, controls, steps, fitting and tuning."""
    one_motion = timeline is not None or continue_from is not None or \
        model_frames(settings.seconds, lim) > lim["max_frames"]
    if one_motion and settings.variations != 1:
        raise RequestError("Timelines, durations over one clip and Continue make one motion; set Variations to 1.")
    if one_motion and settings.tuning:
        raise RequestError("Latent Tuning works on single clips; set it to 0 for timelines, durations over one "
                           "clip and Continue (the path is still fitted).")
    if settings.steps not in lim["steps"]:
        raise RequestError(f"Steps must be one of {tuple(lim['steps'])}, got {settings.steps}.")
    if not 0 <= settings.tuning <= lim["max_tuning"]:
        raise RequestError(f"Latent tuning takes 0 to {lim['max_tuning']} iterations, got {settings.tuning}.")
    joints = [c["joint"] for c in controls]
    repeated = sorted({j for j in joints if joints.count(j) > 1})
    if repeated:
        raise RequestError(f"Several controls drive {', '.join(repeated)}; keep one control per joint.")
    body: dict[str, Any] = {"type": "generate"}
    if timeline is not None:
        body["timeline"] = timeline
    else:
        body.update(prompt=validate_prompt(settings.prompt, lim), frames=model_frames(settings.seconds, lim))
    if continue_from is not None:
        body["continue_from"] = np.round(np.asarray(continue_from, dtype=float), 5).tolist()
    return {**body, "controls": controls, "steps": settings.steps, "fit": settings.fit,
            "tuning": settings.tuning if controls else 0}  # tuning fits controls: nothing to fit without them


def build_generate_request(settings: GenerationSettings, controls: list[dict[str, Any]],
                           rest_joints: np.ndarray | None = None,
                           limits: dict[str, Any] | None = None, timeline: list[dict] | None = None,
                           continue_from: np.ndarray | None = None) -> dict[str, Any]:
    """The `generate` request body (without `id`); raises RequestError on any bad setting. `limits`: the
    backend's (its ping reply), else the fallback copy. `timeline`: timeline_segments' list instead of the prompt
    and duration; `continue_from`: (T, 22, 3) joints (target space, HumanML3D axes) the motion continues.
    `settings.engine` AR_ENGINE: the AR engine's request, which refuses controls, timelines and Continue."""
    lim = usable_limits(limits)
    if not 1 <= settings.variations <= lim["max_variations"]:
        raise RequestError(f"Variations must be between 1 and {lim['max_variations']}, got {settings.variations}.")
    low, high = lim["guidance"]
    if settings.guidance is not None and not low <= settings.guidance <= high:
        raise RequestError(f"Guidance must be between {low:g} and {high:g}, got "
                           f"{settings.guidance:g}; or untick Custom Guidance for the checkpoint's default.")
    if settings.seed is not None and settings.seed < 0:
        raise RequestError(f"The seed must be 0 or more, got {settings.seed}.")
    if not 0 < settings.target_fps <= lim["max_target_fps"]:
        raise RequestError(f"The scene frame rate must be between 0 and {lim['max_target_fps']:g} fps, got "
                           f"{settings.target_fps:g}.")
    if settings.engine == AR_ENGINE:
        body = _ar_request(settings, controls, timeline, continue_from, lim)
    else:
        body = _motionlcm_request(settings, controls, timeline, continue_from, lim)
    return {**body, "guidance": settings.guidance, "seed": settings.seed, "variations": settings.variations,
            "target_fps": float(settings.target_fps), "in_place": settings.in_place,
            "foot_lock": settings.foot_lock,
            "rest_joints": None if rest_joints is None else np.asarray(rest_joints, dtype=float).round(6).tolist()}


def control_summary(result: dict[str, Any]) -> tuple[str, list[str]]:
    """From a `generate` result: how far the first variation's controlled joints are from their controls (one
    line, empty without controls) and every variation's warnings (seed-tagged when there are several)."""
    variations = [v for v in result.get("variations", []) if v.get("controls")]
    if not variations:
        return "", []
    errors = variations[0]["controls"].get("error", {})
    line = "; ".join(f"{joint.replace('_', ' ')} {e['mean_m'] * 100:.1f} cm from its control on average "
                     f"({e['max_m'] * 100:.1f} cm at worst)" for joint, e in errors.items())
    warnings = []
    for v in variations:
        tag = f"seed {v.get('seed')}: " if len(variations) > 1 else ""
        warnings += [tag + w for w in v["controls"].get("warnings", [])]
    return line, warnings
