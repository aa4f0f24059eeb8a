"""Long motions: a sequence of prompts as one continuous motion, and continuing a motion that already exists.

A timeline is cut into chunks of at most MAX_FRAMES frames, each one generation of the pipeline. A chunk that
continues a motion is generated from its text alone, in the frame where the existing motion's last pose stands
at the origin facing +Z (every generated clip starts so), over OVERLAP frames of the existing motion's end plus
its new frames. Motion warping then joins it to the existing motion (`warp_seam`): every joint at the chunk's
seam frame becomes the existing last frame's, and its first new step continues the existing last step; the
differences fade out over BLEND frames (position) and VELOCITY_BLEND frames (velocity).

Measured alternatives (docs/timelines.md): giving the ControlNet the existing motion's pelvis (or all six control
joints) over a 10-frame overlap carries its momentum into the next prompt (after a walk, "bows" and "waves" kept
walking at 1.1-1.3 m/s; skating 0.52 against 0.41), so by default only the text drives a chunk and the warp
joins it (`hold_joints` gives the ControlNet the overlap again, for comparison). Controls that span the timeline
(a pelvis path over 30 s) are cut per chunk, overlap frames included, so the warp leaves the path where it is.

Coordinates are world HumanML3D axes (metres, Y up); `previous` and the controls are in the model's metres.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import InvalidRequest
from backend.generation.controls import JointControl
from backend.limits import MAX_PROMPT_CHARS, MAX_TIMELINE_SECONDS, MIN_SEGMENT_SECONDS
from backend.motion.humanml3d_skeleton import facing_forward
from backend.motion.rotations import quat_about_y, quat_rotate
from backend.motion.skeleton import CONTROL_JOINTS, FPS, MAX_FRAMES, MIN_FRAMES

if TYPE_CHECKING:
    from backend.generation.pipeline import MotionLCMPipeline

OVERLAP = 2  # frames of the existing motion a continuing chunk is generated over; its last one is the seam
BLEND = 20  # frames (1 s) over which the seam's position difference fades out
VELOCITY_BLEND = 6  # frames over which the seam's velocity difference fades out (longer ones drift)
ACCELERATION_BLEND = 4  # and its acceleration difference
JOIN_FRAMES = max(OVERLAP, 3)  # frames of the motion so far a join reads (its overlap; 3 for the acceleration)


@dataclass(frozen=True)
class Segment:
    prompt: str
    frames: int


@dataclass
class TimelineResult:
    joints: np.ndarray  # (T, 22, 3) world HumanML3D axes; the new frames only when continuing a motion
    starts: list[int]  # first frame of each segment in `joints`
    prompts: list[str]
    seeds: list[int]  # one per chunk
    chunks: list[tuple[int, int]]  # (first frame, frames) of each generation in `joints`
    seam_errors: list[float] = field(default_factory=list)  # per continuing chunk: worst joint, metres, before warping
    control_errors: dict[str, Any] = field(default_factory=dict)  # the timeline's own controls, as delivered
    warnings: list[str] = field(default_factory=list)  # the chunks' fitting warnings about those controls
    timings: dict[str, float] = field(default_factory=dict)

    def controls_report(self) -> dict[str, Any]:
        return {"error": {j: e.to_dict() for j, e in self.control_errors.items()}, "warnings": list(self.warnings)}


def parse_segments(items: Any) -> list[Segment]:
    """[{"prompt": str, "seconds": number}, ...] -> segments; InvalidRequest naming the segment at fault."""
    if not isinstance(items, list) or not items:
        raise InvalidRequest("timeline must be a non-empty list of {\"prompt\": ..., \"seconds\": ...} segments")
    segments, lengths = [], []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise InvalidRequest(f"timeline segment {i} must be an object {{\"prompt\", \"seconds\"}}, got {item!r}")
        prompt, seconds = item.get("prompt"), item.get("seconds")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest(f"timeline segment {i} has an empty prompt; describe its motion")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"timeline segment {i}: prompt is too long ({len(prompt)} characters; "
                                 f"at most {MAX_PROMPT_CHARS})")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < MIN_SEGMENT_SECONDS:
            raise InvalidRequest(f"timeline segment {i} ({prompt.strip()!r}) lasts {seconds!r} s; a segment "
                                 f"needs at least {MIN_SEGMENT_SECONDS:g} s")
        lengths.append(float(seconds))
        segments.append(Segment(prompt.strip(), int(round(float(seconds) * FPS))))
    ends = list(itertools.accumulate(lengths))
    if ends[-1] > MAX_TIMELINE_SECONDS + 1e-9:
        past = next(i for i, end in enumerate(ends, start=1) if end > MAX_TIMELINE_SECONDS + 1e-9)
        raise InvalidRequest(f"the timeline lasts {ends[-1]:g} s; at most {MAX_TIMELINE_SECONDS:g} s (segment "
                             f"{past} ends past it)")
    return segments


def facing_frame(pose: np.ndarray) -> tuple[np.ndarray, float]:
    """(xz origin as (x, 0, z), yaw) of a (22, 3) pose: its pelvis on the floor plane and the angle about +Y
    from +Z to the way it faces (HumanML3D's hips + shoulders rule)."""
    forward = facing_forward(np.asarray(pose, dtype=np.float64))
    return pose[0] * np.array([1.0, 0.0, 1.0]), float(np.arctan2(forward[0], forward[2]))


def to_local(points: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    """World points (..., 3) into the frame where `origin` is the xz origin and `yaw` faces +Z."""
    return quat_rotate(quat_about_y(np.asarray(-yaw)), np.asarray(points, dtype=np.float64) - origin)


def to_world(points: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    return quat_rotate(quat_about_y(np.asarray(yaw)), np.asarray(points, dtype=np.float64)) + origin


def _fade(steps: np.ndarray, frames: int, hold: int = 0) -> np.ndarray:
    """1 up to step `hold`, then falling to 0 at `frames` with zero slope at both ends (smoothstep)."""
    s = np.clip((steps - hold) / max(frames - hold, 1), 0.0, 1.0)
    return 1.0 - s * s * (3.0 - 2.0 * s)


def warp_seam(previous: np.ndarray, chunk: np.ndarray, seam: int, blend: int = BLEND,
              velocity_blend: int = VELOCITY_BLEND, acceleration_blend: int = ACCELERATION_BLEND) -> np.ndarray:
    """`chunk` (T, 22, 3) joined to `previous` at chunk[seam] (frames before it are dropped by the caller).

    Motion warping (Witkin and Popovic), per joint: an offset that makes chunk[seam] equal previous[-1] and the
    chunk's first two steps after the seam continue previous' position, velocity and acceleration exactly (the
    steps previous would take next at its last acceleration), so the join has no jump and no kink; the position, velocity and acceleration
    differences then fade out (smoothstep) by `blend`, `velocity_blend` and `acceleration_blend` frames. Longer
    velocity and acceleration fades would carry the differences on as drift (a foot through the floor)."""
    steps = np.arange(chunk.shape[0] - seam, dtype=np.float64)
    c = chunk[seam:].astype(np.float64)
    d_pos = previous[-1] - c[0]
    acceleration = previous[-1] - 2 * previous[-2] + previous[-3] if len(previous) >= 3 else np.zeros_like(d_pos)
    # The chunk's steps out of the seam, not into it (fitting holds its last control offset from the seam on, so
    # the chunk's velocity may change there), against the step previous would take next at its acceleration.
    d_vel = (previous[-1] - previous[-2] + acceleration) - (c[1] - c[0])
    d_acc = acceleration - (c[2] - 2 * c[1] + c[0]) if len(c) >= 3 else np.zeros_like(d_pos)
    # Newton's forward form: these terms give the first three frames exactly the wanted differences, and the
    # fades hold them at 1 there.
    offset = d_pos[None] * _fade(steps, blend, 2)[:, None, None] \
        + d_vel[None] * (steps * _fade(steps, velocity_blend, 2))[:, None, None] \
        + d_acc[None] * (steps * (steps - 1) / 2 * _fade(steps, acceleration_blend, 2))[:, None, None]
    out = chunk.astype(np.float64).copy()
    out[seam:] += offset
    return out


def plan_chunks(segments: Sequence[Segment], continuing: bool) -> list[tuple[int, int, int]]:
    """(segment index, first frame, new frames) per generation: a segment is split evenly into chunks that fit
    MAX_FRAMES with their overlap (the first chunk of a new timeline has none)."""
    plan, start = [], 0
    for index, segment in enumerate(segments):
        remaining = segment.frames
        while remaining > 0:
            overlap = OVERLAP if (continuing or start > 0) else 0
            capacity = MAX_FRAMES - overlap
            count = math.ceil(remaining / capacity)
            frames = math.ceil(remaining / count)
            plan.append((index, start, frames))
            start += frames
            remaining -= frames
    return plan


def _chunk_controls(overlap: np.ndarray | None, controls: Sequence[JointControl], first: int, frames: int,
                    origin: np.ndarray, yaw: float, hold_joints: Sequence[str]) -> list[JointControl]:
    """The chunk's controls in its local frame (chunk frame = timeline frame - first + K, K overlap frames): the
    timeline's controls on the chunk's frames, overlap included, and `hold_joints` of the existing motion over
    the overlap where the timeline has none."""
    k = 0 if overlap is None else len(overlap)
    per_joint: dict[str, dict[int, np.ndarray]] = {}
    for control in controls:
        keep = (control.frames >= first - k) & (control.frames < first + frames)
        local = to_local(control.positions[keep], origin, yaw)
        per_joint.setdefault(control.joint, {}).update(zip((control.frames[keep] - first + k).tolist(), local))
    if overlap is not None:
        local = to_local(overlap, origin, yaw)
        for name in hold_joints:
            held = per_joint.setdefault(name, {})
            for t in range(k):
                held.setdefault(t, local[t, CONTROL_JOINTS[name]])
    return [JointControl(name, list(points), np.array(list(points.values()), dtype=np.float32))
            for name, points in per_joint.items() if points]


def generate_timeline(pipe: MotionLCMPipeline, segments: Sequence[Segment],
                      controls: Sequence[JointControl] = (), previous: np.ndarray | None = None,
                      seed: int | None = None, steps: int = 1, fit: bool = True, hold_joints: Sequence[str] = (),
                      progress: Callable[[str, float], None] | None = None) -> TimelineResult:
    """One continuous motion for `segments`, each continuing the one before.

    controls: world positions (the model's metres) on the timeline's frames (0 = the first new frame).
    previous: (T >= 2, 22, 3) world joints to continue (the result then holds only the new frames, starting after
    previous[-1]). Chunk i uses seed + i (seed None: a random one, as the pipeline picks; `seeds` holds them). hold_joints: control joints of the existing motion given to the ControlNet over the overlap (the
    measured alternative; none by default). progress(stage, fraction) follows every chunk's stages (the fraction
    over the whole timeline) and may raise to cancel.
    """
    if previous is not None:
        previous = np.asarray(previous, dtype=np.float64)
        if previous.ndim != 3 or previous.shape[1:] != (22, 3) or len(previous) < 2 \
                or not np.isfinite(previous).all():
            raise InvalidRequest("the motion to continue must be finite joints of shape (T >= 2, 22, 3), got "
                                 f"{getattr(previous, 'shape', None)}")
    plan = plan_chunks(segments, previous is not None)
    total = plan[-1][1] + plan[-1][2]
    for control in controls:
        if control.frames.max() >= total:
            raise InvalidRequest(f"a {control.joint} control reaches frame {int(control.frames.max())}, past the "
                                 f"timeline's {total} frames")
    if seed is None:
        seed = random.randrange(2**31)
    history = previous  # the last frames so far, world axes: what the next chunk joins onto
    out: list[np.ndarray] = []
    result = TimelineResult(joints=np.zeros((0, 22, 3), np.float32), starts=[], prompts=[s.prompt for s in segments],
                            seeds=[], chunks=[])
    starts: dict[int, int] = {}
    for i, (index, first, frames) in enumerate(plan):
        def chunk_progress(stage: str, fraction: float, i: int = i, index: int = index) -> None:
            if progress is not None:
                progress(f"{stage} (segment {index + 1} of {len(segments)})", (i + fraction) / len(plan))

        starts.setdefault(index, first)
        overlap = None if history is None else history[-OVERLAP:]
        origin, yaw = (np.zeros(3), 0.0) if overlap is None else facing_frame(overlap[0])
        k = 0 if overlap is None else len(overlap)
        length = max(k + frames, MIN_FRAMES)  # generate at least the model's shortest clip, keep what is asked
        chunk_controls = _chunk_controls(overlap, controls, first, frames, origin, yaw, hold_joints)
        generation = pipe.generate([segments[index].prompt], [length], controls=[chunk_controls], steps=steps,
                                   seed=seed + i, fit=fit, progress=chunk_progress)
        local = generation.joints[0, :length].astype(np.float64)
        world = to_world(local, origin, yaw)
        if overlap is not None:
            result.seam_errors.append(float(np.linalg.norm(world[k - 1] - overlap[-1], axis=-1).max()))
            world = warp_seam(history, world, k - 1)
        new = world[k:k + frames]
        out.append(new)
        history = (new if history is None else np.concatenate([history, new]))[-JOIN_FRAMES:]
        result.seeds.append(seed + i)
        result.chunks.append((first, frames))
        user_joints = {c.joint for c in controls if ((c.frames >= first) & (c.frames < first + frames)).any()}
        for report in generation.fit_reports:  # warnings about the overlap's own controls are not the user's
            result.warnings += [f"segment {index + 1}: {w}" for w in report.warnings
                                if w.split(":", 1)[0] in user_joints]
        for name, ms in generation.timings.items():
            result.timings[name] = result.timings.get(name, 0.0) + ms
    result.joints = np.concatenate(out).astype(np.float32)
    if controls:
        from backend.generation.fitting import control_errors

        result.control_errors = control_errors(result.joints, controls)
    result.starts = [starts[i] for i in range(len(segments))]
    return result
