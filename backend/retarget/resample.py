"""Frame-rate conversion of root translation and local rotations, preserving the clip's duration.

Duration convention (both directions): N frames at f fps last N / f seconds; frame i is the pose at time i / f
(so the last one starts at (N - 1) / f and is held for 1 / f). Converting to g fps gives M = round(N * g / f)
frames (at least 1), frame k sampling the source at time k / g, i.e. at fractional source frame k * f / g, held at
the last source frame beyond it. So M / g equals N / f up to half a target frame, and 20 -> 30 -> 20 fps returns the
original N. Rotations are interpolated by squad (Shoemake's spherical cubic: a slerp between two slerps, with
Catmull-Rom-like inner control quaternions, C1 and exact at the source frames; plain slerp on the first and last
interval), since plain slerp is only first-order accurate on fast limbs; translations by a cubic spline through the
frames (C2, exact at the source frames; linear for two frames).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

from backend.motion.rotations import quat_inv, quat_mul
from backend.retarget.ik import continuous


def resampled_length(num_frames: int, fps: float, target_fps: float) -> int:
    """Number of frames at `target_fps` with the same duration as `num_frames` at `fps`."""
    if not (np.isfinite(fps) and np.isfinite(target_fps) and fps > 0 and target_fps > 0):
        raise ValueError(f"frame rates must be positive and finite, got {fps} and {target_fps}")
    return max(1, int(round(num_frames * target_fps / fps)))


def source_positions(num_frames: int, fps: float, target_fps: float) -> np.ndarray:
    """Fractional source frame index sampled by each target frame."""
    m = resampled_length(num_frames, fps, target_fps)
    return np.minimum(np.arange(m) * (fps / target_fps), num_frames - 1)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Shortest-arc spherical interpolation between unit quaternions q0, q1 (..., 4) at fractions t (...)."""
    dot = (q0 * q1).sum(-1)
    q1 = np.where(dot[..., None] < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6  # nearly equal: linear interpolation is exact to first order
    safe = np.where(near, 1.0, sin_theta)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    q = w0[..., None] * q0 + w1[..., None] * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _quat_log(q: np.ndarray) -> np.ndarray:
    """Rotation vectors / 2 (the quaternion logarithm's vector part) of unit quaternions with w >= 0."""
    v = q[..., 1:]
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = np.arctan2(norm, q[..., :1])
    return v * np.where(norm > 1e-12, angle / np.maximum(norm, 1e-12), 1.0)


def _quat_exp(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    scale = np.where(norm > 1e-12, np.sin(norm) / np.maximum(norm, 1e-12), 1.0)
    return np.concatenate([np.cos(norm), v * scale], axis=-1)


def _squad_controls(q: np.ndarray) -> np.ndarray:
    """Inner control quaternions s_i = q_i exp(-(log(q_i^-1 q_i+1) + log(q_i^-1 q_i-1)) / 4); s_i = q_i at the ends."""
    s = q.copy()
    if len(q) > 2:
        inv = quat_inv(q[1:-1])
        fwd, back = quat_mul(inv, q[2:]), quat_mul(inv, q[:-2])
        fwd *= np.where(fwd[..., :1] < 0, -1.0, 1.0)
        back *= np.where(back[..., :1] < 0, -1.0, 1.0)
        s[1:-1] = quat_mul(q[1:-1], _quat_exp(-(_quat_log(fwd) + _quat_log(back)) / 4))
    return s


def resample(root_translation: np.ndarray, local_quats: np.ndarray, fps: float,
             target_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Root translation (M, 3) and local rotations (M, J, 4) at `target_fps` (see the module's duration rule)."""
    root = np.asarray(root_translation, dtype=np.float64)
    quats = np.asarray(local_quats, dtype=np.float64)
    n = quats.shape[0]
    if n == 0 or root.shape != (n, 3):
        raise ValueError(f"resample needs matching (T, 3) and (T, J, 4) arrays with T >= 1, got {root.shape} "
                         f"and {quats.shape}")
    s = source_positions(n, fps, target_fps)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = s - i0
    quats = continuous(quats / np.linalg.norm(quats, axis=-1, keepdims=True))
    ctrl = _squad_controls(quats)
    t = np.broadcast_to(frac[:, None], (s.size, quats.shape[1]))
    new_quats = slerp(slerp(quats[i0], quats[i1], t), slerp(ctrl[i0], ctrl[i1], t), 2 * t * (1 - t))
    new_root = CubicSpline(np.arange(n), root, axis=0)(s) if n > 1 else root[np.zeros(s.size, dtype=np.int64)]
    return new_root, new_quats
