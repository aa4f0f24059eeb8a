"""Pure geometry for control curves: Bezier evaluation, arc-length resampling, axes, units and timing.

No `bpy` here (curve_sources.py reads Blender objects). Points are (N, 3) float arrays.
Blender space is Z-up in scene units; HumanML3D space is Y-up in metres:
HumanML3D (x, y, z) = Blender (x, z, -y) * unit_scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODEL_FPS = 20.0
# Standing pelvis height: the MotionLCM spatial Mean_raw pelvis y is 0.94 m (checked by a test).
DEFAULT_PELVIS_HEIGHT_M = 0.94
# A pelvis curve whose points all lie within this height of the floor was drawn on the ground.
FLOOR_TOLERANCE_M = 0.05
# Cubic Bezier segments are evaluated this finely: chord error < 0.2 mm on a 2 m, 4-point circle.
BEZIER_SAMPLES_PER_SEGMENT = 64
MIN_PATH_LENGTH_M = 1e-3

_BLENDER_TO_HUMANML = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class CurveError(ValueError):
    """A control source cannot become a trajectory; the message says why and what to do."""


def blender_to_humanml(points: np.ndarray, unit_scale: float = 1.0) -> np.ndarray:
    """Blender Z-up scene units -> HumanML3D Y-up metres."""
    return (np.asarray(points, dtype=np.float64) @ _BLENDER_TO_HUMANML.T) * unit_scale


def humanml_to_blender(points: np.ndarray, unit_scale: float = 1.0) -> np.ndarray:
    """HumanML3D Y-up metres -> Blender Z-up scene units."""
    return (np.asarray(points, dtype=np.float64) @ _BLENDER_TO_HUMANML) / unit_scale


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine matrix to (N, 3) points."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]


def evaluate_bezier(knots: np.ndarray, handles_left: np.ndarray, handles_right: np.ndarray,
                    cyclic: bool, samples_per_segment: int = BEZIER_SAMPLES_PER_SEGMENT) -> np.ndarray:
    """Points along a Bezier spline: segment i runs knot i -> knot i+1 via right handle i, left handle i+1."""
    knots = np.asarray(knots, dtype=np.float64)
    left = np.asarray(handles_left, dtype=np.float64)
    right = np.asarray(handles_right, dtype=np.float64)
    if len(knots) == 0:
        raise CurveError("The Bezier spline has no points.")
    if len(knots) == 1:
        return knots.copy()
    starts = np.arange(len(knots) if cyclic else len(knots) - 1)
    ends = (starts + 1) % len(knots)
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[None, :, None]
    p0, p1 = knots[starts][:, None], right[starts][:, None]
    p2, p3 = left[ends][:, None], knots[ends][:, None]
    u = 1.0 - t
    seg = u ** 3 * p0 + 3 * u ** 2 * t * p1 + 3 * u * t ** 2 * p2 + t ** 3 * p3
    return np.concatenate([seg.reshape(-1, 3), knots[ends[-1]][None]], axis=0)


def cumulative_length(points: np.ndarray) -> np.ndarray:
    """Arc length at each point of a polyline, starting at 0."""
    steps = np.linalg.norm(np.diff(np.asarray(points, dtype=np.float64), axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def resample_uniform(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points at equal arc-length spacing from the first to the last point of a polyline."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        raise CurveError("The path has a single point; draw a curve with at least two distinct points.")
    s = cumulative_length(points)
    if s[-1] < MIN_PATH_LENGTH_M:
        raise CurveError("The path has zero length; its points all coincide.")
    keep = np.concatenate([[True], np.diff(s) > 0])  # drop repeated points so s is strictly increasing
    s, points = s[keep], points[keep]
    targets = np.linspace(0.0, s[-1], count)
    return np.stack([np.interp(targets, s, points[:, k]) for k in range(3)], axis=1)


def arc_length_fractions(points: np.ndarray) -> np.ndarray:
    """Fraction of the total length travelled at each point (0 at the first, 1 at the last)."""
    s = cumulative_length(points)
    if s[-1] < MIN_PATH_LENGTH_M:
        raise CurveError("The waypoints all coincide; move them apart or key them at different frames.")
    return s / s[-1]


def evenly_thinned(count: int, density: float) -> np.ndarray:
    """Indices of round(density * count) evenly spaced frames (at least 2), always the first and last."""
    if not 0.0 < density <= 1.0:
        raise CurveError(f"Density must be in (0, 1], got {density}.")
    keep = max(2, min(count, int(round(density * count))))
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(int))


def on_floor(points_humanml: np.ndarray) -> bool:
    """True when every point lies within FLOOR_TOLERANCE_M of the ground plane."""
    return bool(np.all(np.abs(np.asarray(points_humanml)[:, 1]) <= FLOOR_TOLERANCE_M))


def lift_to_height(points_humanml: np.ndarray, height_m: float) -> np.ndarray:
    """Project a ground-drawn path to a constant height (e.g. a pelvis path to standing height)."""
    lifted = np.array(points_humanml, dtype=np.float64)
    lifted[:, 1] = height_m
    return lifted


def scene_to_model_frames(scene_frames: Sequence[float], start_frame: float, scene_fps: float,
                          model_frames: int) -> np.ndarray:
    """Scene timeline frames -> model frames (20 fps) counted from the start frame; out of range is an error."""
    frames = np.round((np.asarray(scene_frames, dtype=np.float64) - start_frame) * MODEL_FPS / scene_fps)
    frames = frames.astype(int)
    bad = [f for f, m in zip(scene_frames, frames) if not 0 <= m < model_frames]
    if bad:
        last = start_frame + (model_frames - 1) * scene_fps / MODEL_FPS
        raise CurveError(f"Keyframes at frame(s) {', '.join(f'{f:g}' for f in bad)} lie outside the clip "
                         f"(frames {start_frame:g} to {last:g}); move them or change the start frame or duration.")
    return frames


def unique_frames(frames: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by frame; where two waypoints round to the same model frame keep the later one."""
    order = np.argsort(frames, kind="stable")
    frames, positions = np.asarray(frames)[order], np.asarray(positions)[order]
    last = np.concatenate([frames[1:] != frames[:-1], [True]])
    return frames[last], positions[last]
