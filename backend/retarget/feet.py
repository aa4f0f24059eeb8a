"""Feet: contact detection, foot locking by two-bone leg IK, ground alignment, and the skating-ratio metric.

All functions take joint positions (T, 22, 3) in metres, Y up, SMPL order, and are vectorised over frames.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from backend.motion.features import CONTACT_SLICE
from backend.motion.skeleton import FEATURE_DIM, LEFT_FOOT_JOINTS, RIGHT_FOOT_JOINTS

FOOT_JOINTS = (LEFT_FOOT_JOINTS[1], RIGHT_FOOT_JOINTS[1])  # SMPL left_foot, right_foot (balls of the feet)
FEET_AND_ANKLES = (*LEFT_FOOT_JOINTS, *RIGHT_FOOT_JOINTS)
LEGS = ((1, 4, 7, 10), (2, 5, 8, 11))  # hip, knee, ankle, foot per side (left, right)
# HumanML3D's foot_detect: squared displacement below 0.002 m^2 per frame at 20 fps, i.e. about 0.89 m/s.
CONTACT_SPEED = float(np.sqrt(0.002) * 20.0)
CONTACT_HEIGHT = 0.05  # metres above the floor, as in the skating metric
MAX_LOCK_SHIFT = 0.2  # metres a locked foot may be moved: about what a walking leg's bend leaves in reach


def skating_ratio(joints: np.ndarray, fps: float = 20.0, height: float = 0.05, speed: float = 0.5,
                  window: int = 5) -> float:
    """Foot skating ratio as defined by OmniControl / MotionLCM (`calculate_skating_ratio` in the official
    mld/models/metrics/utils.py, checked line by line; HumanML3D at 20 fps):
    the fraction of the T-1 frame transitions in which either foot joint (10, 11) is below `height` metres in both
    frames and slides horizontally (XZ) faster than `speed` m/s, both instantaneously and averaged over `window`
    frames (uniform filter, zero padding). Heights are raw Y, so the floor must be at y = 0."""
    feet = np.asarray(joints, dtype=np.float64)[:, FOOT_JOINTS]
    if feet.shape[0] < 2:
        raise ValueError("the skating ratio needs at least 2 frames")
    vel = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * fps  # (T-1, 2)
    vel_avg = uniform_filter1d(vel, size=window, axis=0, mode="constant")
    low = feet[..., 1] < height
    skating = low[:-1] & low[1:] & (vel > speed) & (vel_avg > speed)
    return float(skating.any(axis=1).mean())


def floor_height(joints: np.ndarray) -> float:
    """Height of the lowest ankle or foot joint over the whole clip."""
    return float(np.asarray(joints)[:, FEET_AND_ANKLES, 1].min())


def detect_contacts(joints: np.ndarray, fps: float, height: float = CONTACT_HEIGHT,
                  speed: float = CONTACT_SPEED) -> np.ndarray:
    """(T, 2) contact flags of the left and right foot joints: below `height` above the floor (y = 0) and slower
    than `speed` m/s (HumanML3D's velocity threshold, as a speed so that it holds at any fps)."""
    feet = np.asarray(joints, dtype=np.float64)[:, FOOT_JOINTS]
    if feet.shape[0] < 2:
        return feet[..., 1] < height
    step = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * fps
    # A frame is planted if the foot is slow on either side of it, so a run covers both the landing frame (slow
    # out of it) and the take-off frame (slow into it): the low steps at a run's edges the skating metric counts.
    vel = np.minimum(np.concatenate([step[:1], step]), np.concatenate([step, step[-1:]]))
    return (feet[..., 1] < height) & (vel < speed)


def predicted_contacts(features: np.ndarray) -> np.ndarray:
    """(T, 2) left/right foot contacts from a motion's own (T, 263) HumanML3D features: the foot joints' contact
    channels above 0.5. A generated motion's channels are the model's prediction, made with the motion; they mark
    the stance phases even where the decoded feet glide too fast for `detect_contacts` to see them (the previous
    default model's walks: 8 % of frames by speed, about half by their channels; the current one's: 60 % by
    either)."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise ValueError(f"contacts need (T, {FEATURE_DIM}) features, got shape {features.shape}")
    return features[:, CONTACT_SLICE][:, [1, 3]] > 0.5  # columns: left ankle, left foot, right ankle, right foot


def trim_contacts(joints: np.ndarray, contacts: np.ndarray, max_shift: float = MAX_LOCK_SHIFT) -> np.ndarray:
    """`contacts` (T, 2) with each run shortened from its ends until its foot joint stays within `max_shift` metres
    (horizontally) of the run's mean position: the most `lock_feet` will then move it. A run whose foot travels far
    (contact channels that disagree with the positions, such as a latent tuned until the pelvis follows a path while
    the channels still say standing) keeps only its stillest middle instead of dragging the leg out of reach."""
    out = np.asarray(contacts, dtype=bool).copy()
    feet_xz = np.asarray(joints, dtype=np.float64)[:, FOOT_JOINTS][..., [0, 2]]  # (T, 2 feet, 2)
    for side in range(len(FOOT_JOINTS)):
        xz = feet_xz[:, side]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], out[:, side].astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            while stop > start:
                spread = np.linalg.norm(xz[start:stop] - xz[start:stop].mean(0), axis=-1)
                if spread.max() <= max_shift:
                    break
                if spread[0] >= spread[-1]:
                    out[start, side], start = False, start + 1
                else:
                    out[stop - 1, side], stop = False, stop - 1
    return out


def two_bone_ik(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray,
                pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New knee and ankle positions (T, 3) putting the ankle at `target` (or as near as the leg reaches) with the hip
    fixed, both bone lengths kept and the knee in its current bend plane (the plane of hip, knee and target); a
    straight leg bends its knee toward `pole` (T, 3)."""
    l1 = np.linalg.norm(knee - hip, axis=-1)
    l2 = np.linalg.norm(ankle - knee, axis=-1)
    to_target = target - hip
    dist = np.linalg.norm(to_target, axis=-1)
    reach = np.clip(dist, np.abs(l1 - l2) + 1e-6, l1 + l2 - 1e-6)
    u = to_target / np.maximum(dist, 1e-9)[:, None]
    side = (knee - hip) - ((knee - hip) * u).sum(-1, keepdims=True) * u  # knee's offset from the hip-target line
    side_norm = np.linalg.norm(side, axis=-1, keepdims=True)
    pole_side = pole - (pole * u).sum(-1, keepdims=True) * u
    side = np.where(side_norm > 1e-4, side, pole_side)
    side /= np.maximum(np.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
    cos_a = np.clip((l1 ** 2 + reach ** 2 - l2 ** 2) / (2 * l1 * reach), -1.0, 1.0)
    new_knee = hip + l1[:, None] * (cos_a[:, None] * u + np.sqrt(1 - cos_a ** 2)[:, None] * side)
    new_ankle = hip + reach[:, None] * u
    return new_knee, new_ankle


def _blend_weights(contact: np.ndarray, ramp: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: index of the nearest contact frame and a weight, 1 in contact, easing to 0 over `ramp` frames."""
    t = np.arange(contact.size)
    prev = np.maximum.accumulate(np.where(contact, t, -1))
    nxt = np.minimum.accumulate(np.where(contact, t, contact.size)[::-1])[::-1]
    d_prev = np.where(prev >= 0, t - prev, np.iinfo(np.int64).max // 2)
    d_next = np.where(nxt < contact.size, nxt - t, np.iinfo(np.int64).max // 2)
    nearest = np.where(d_prev <= d_next, prev, nxt)
    x = np.clip(1.0 - np.minimum(d_prev, d_next) / (ramp + 1.0), 0.0, 1.0)
    return np.clip(nearest, 0, contact.size - 1), x * x * (3 - 2 * x)


def lock_feet(joints: np.ndarray, contacts: np.ndarray, fps: float, blend_s: float = 0.15) -> np.ndarray:
    """Joints with each foot held still during its contact segments.

    In every run of contact frames the foot joint is pulled horizontally to the run's mean position (its height is
    kept); the shift is applied to ankle and foot and the knee re-placed by two-bone IK (hip fixed, bone lengths
    kept). The correction eases in and out over `blend_s` seconds before and after each run (smoothstep); frames
    farther from any contact and all joints outside the legs are unchanged.
    """
    out = np.asarray(joints, dtype=np.float64).copy()
    ramp = max(int(round(blend_s * fps)), 0)
    across = out[:, LEGS[0][0]] - out[:, LEGS[1][0]]
    forward = np.stack([-across[:, 2], np.zeros(len(out)), across[:, 0]], -1)  # across x up: where knees bend
    for side, (hip, knee, ankle, foot) in enumerate(LEGS):
        contact = np.asarray(contacts[:, side], dtype=bool)
        if not contact.any():
            continue
        run_id = np.cumsum(np.diff(contact.astype(np.int64), prepend=0) == 1) * contact  # 1.. per run, 0 elsewhere
        counts = np.bincount(run_id, minlength=run_id.max() + 1)
        means = np.stack([np.bincount(run_id, weights=out[:, foot, k]) for k in range(3)], -1)
        means /= np.maximum(counts, 1)[:, None]
        offset = np.where(contact[:, None], means[run_id] - out[:, foot], 0.0)
        offset[:, 1] = 0.0  # heights stay: the foot joint rises and sinks as the foot rolls heel to toe
        nearest, weight = _blend_weights(contact, ramp)
        shift = weight[:, None] * offset[nearest]
        moved = weight > 0
        new_knee, new_ankle = two_bone_ik(out[moved, hip], out[moved, knee], out[moved, ankle],
                                          out[moved, ankle] + shift[moved], forward[moved])
        out[moved, foot] += new_ankle - out[moved, ankle]
        out[moved, knee], out[moved, ankle] = new_knee, new_ankle
    return out
