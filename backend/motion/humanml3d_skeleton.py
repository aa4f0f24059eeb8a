"""Skeleton-level steps of HumanML3D's data processing, on numpy joint positions (T, 22, 3).

- `uniform_skeleton`: keep every bone's direction, give it the target length (`TARGET_OFFSETS`), scale the
  root trajectory by the leg-length ratio.
- `canonicalize`: lowest joint of the clip on the floor, frame 0's root at the xz origin, frame 0 facing +Z.
- `contact_labels`: per-frame "foot is still" labels.
- `root_rotation` / `local_rotations`: the facing and per-joint rotations behind the feature vector.
- `check_joints`: the shared input validation (shape, frame count, finiteness -> InvalidRequest).
All are vectorised over frames (Python loops run over the 21 bones only).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from backend.errors import InvalidRequest
from backend.motion.rotations import quat_about_y, quat_between, quat_inv, quat_mul, quat_rotate
from backend.motion.skeleton import (
    FACE_JOINTS, KINEMATIC_CHAIN, LEFT_FOOT_JOINTS, NUM_JOINTS, PARENTS, RAW_OFFSETS, RIGHT_FOOT_JOINTS,
)

# Bone lengths (metres) of HumanML3D's uniform skeleton, indexed by child joint (0 for the root).
# Derived from the reference data: the median over all 286 frames of HumanML3D new_joints/012314.npy and
# EricGuoICT new_joints/000000.npy (both clips agree to 1.2e-6 m; tests/test_features.py re-derives them).
# HumanML3D itself took them from frame 0 of its clip 000021 (not available here).
TARGET_BONE_LENGTHS = np.array([
    0.0, 0.103074, 0.1098834, 0.1315682, 0.3936232, 0.3901882, 0.1431902, 0.432433, 0.4256434, 0.0573647,
    0.1433818, 0.1494191, 0.21936, 0.1374868, 0.1433828, 0.1030392, 0.131614, 0.1229844, 0.2568399,
    0.2630919, 0.2660118, 0.2698763,
])
# (22, 3) rest offsets from parent to child: HumanML3D's unit bone directions times the target lengths.
TARGET_OFFSETS = RAW_OFFSETS * TARGET_BONE_LENGTHS[:, None]

# Contact: squared per-frame displacement below this (m^2, so tied to 20 fps); HumanML3D's value.
FOOT_CONTACT_THRESHOLD = 0.002
# Gaussian smoothing (in frames) of the facing direction used for the root rotation; HumanML3D's value.
FACING_SMOOTHING_SIGMA = 20.0
# The leg whose length sets the root scale in `uniform_skeleton`: right hip->knee and knee->ankle bones.
_SCALE_BONES = (5, 8)
_MIN_LENGTH = 1e-6  # metres; shorter bones or facing vectors have no usable direction

_PARENTS = np.array(PARENTS)
_RIGHT_HIP, _LEFT_HIP, _RIGHT_SHOULDER, _LEFT_SHOULDER = FACE_JOINTS


def check_joints(joints: np.ndarray, min_frames: int = 2) -> np.ndarray:
    """Validate (T, 22, 3) finite joint positions with T >= min_frames; return them as float64."""
    try:
        arr = np.asarray(joints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"joints must be a numeric array of shape (T, {NUM_JOINTS}, 3): {exc}") from exc
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise InvalidRequest(f"joints must have shape (T, {NUM_JOINTS}, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise InvalidRequest("the motion has no frames (T = 0)")
    if arr.shape[0] < min_frames:
        raise InvalidRequest(f"joints need at least {min_frames} frames, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr).all(axis=(1, 2)))[:, 0]
        raise InvalidRequest(f"joints contain NaN or infinite values in {bad.size} frame(s), first at frame "
                             f"{bad[0]} (frames {bad[:10].tolist()})")
    return arr


def _bone_vectors(joints: np.ndarray) -> np.ndarray:
    """(T, 21, 3): child minus parent for joints 1..21."""
    return joints[:, 1:] - joints[:, _PARENTS[1:]]


def uniform_skeleton(joints: np.ndarray, target_offsets: np.ndarray = TARGET_OFFSETS,
                     root_scale: float | None = None) -> np.ndarray:
    """Retarget bone lengths onto the target skeleton, keeping every bone's direction in every frame.

    The root trajectory is scaled by `root_scale`, by default target / source length of the right leg (thigh +
    shin at frame 0), as HumanML3D does, so strides stay consistent with the new leg length.
    """
    joints = check_joints(joints, min_frames=1)
    target_offsets = np.asarray(target_offsets, dtype=np.float64)
    target_lengths = np.linalg.norm(target_offsets, axis=-1)
    if target_offsets.shape != (NUM_JOINTS, 3) or (target_lengths[1:] < _MIN_LENGTH).any():
        raise ValueError(
            f"target_offsets must be ({NUM_JOINTS}, 3) with non-zero bones, got shape {target_offsets.shape}")
    bones = _bone_vectors(joints)
    lengths = np.linalg.norm(bones, axis=-1)
    if (lengths < _MIN_LENGTH).any():
        frame, bone = np.argwhere(lengths < _MIN_LENGTH)[0]
        raise ValueError(f"joint {bone + 1} coincides with its parent at frame {frame}: bone has no direction")
    scale = root_scale if root_scale is not None else \
        target_lengths[list(_SCALE_BONES)].sum() / lengths[0, [b - 1 for b in _SCALE_BONES]].sum()
    directions = bones / lengths[..., None]
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0] * scale
    for child in range(1, NUM_JOINTS):  # parents precede children in this joint order
        out[:, child] = out[:, _PARENTS[child]] + directions[:, child - 1] * target_lengths[child]
    return out


def forward_from_across(across: np.ndarray) -> np.ndarray:
    """Up x normalised(across): the horizontal forward direction (not unit) for a left-right vector."""
    norm = np.linalg.norm(across, axis=-1, keepdims=True)
    if (norm < _MIN_LENGTH).any():
        raise ValueError("cannot tell which way the body faces: hips and shoulders coincide")
    unit = across / norm
    return np.stack([unit[..., 2], np.zeros_like(unit[..., 0]), -unit[..., 0]], axis=-1)


def _turn_to_plus_z(forward: np.ndarray) -> np.ndarray:
    """Yaw quaternions that turn horizontal `forward` directions onto +Z."""
    if (np.linalg.norm(forward, axis=-1) < _MIN_LENGTH).any():
        raise ValueError("cannot tell which way the body faces: the hip/shoulder line is vertical")
    return quat_about_y(-np.arctan2(forward[..., 0], forward[..., 2]))


def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Put the clip on the floor (its lowest joint at y = 0), frame 0's root at the xz origin, and turn
    the whole clip about Y so frame 0 faces +Z (forward = up x (hip line + shoulder line, right to left))."""
    joints = check_joints(joints, min_frames=1)
    placed = joints - np.array([0.0, joints[..., 1].min(), 0.0])
    placed = placed - placed[0, 0] * np.array([1.0, 0.0, 1.0])
    return quat_rotate(_turn_to_plus_z(facing_forward(placed[0])), placed)


def facing_forward(pose: np.ndarray) -> np.ndarray:
    """The way a (..., 22, 3) pose faces: up x (hip line + shoulder line, right to left), horizontal, not unit."""
    across = (pose[..., _RIGHT_HIP, :] - pose[..., _LEFT_HIP, :]) \
        + (pose[..., _RIGHT_SHOULDER, :] - pose[..., _LEFT_SHOULDER, :])
    return forward_from_across(across)


def contact_labels(joints: np.ndarray, threshold: float | np.ndarray = FOOT_CONTACT_THRESHOLD) -> np.ndarray:
    """(T, 22, 3) -> (T - 1, 4) float32: 1 where a foot joint's squared displacement to the next frame is
    below `threshold` (scalar, or one value per joint of a foot: (ankle, foot)).
    Columns: left ankle, left foot, right ankle, right foot."""
    joints = check_joints(joints)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (2,))
    moved = ((joints[1:] - joints[:-1]) ** 2).sum(-1)
    left = moved[:, list(LEFT_FOOT_JOINTS)] < threshold
    right = moved[:, list(RIGHT_FOOT_JOINTS)] < threshold
    return np.concatenate([left, right], axis=-1).astype(np.float32)


def root_rotation(joints: np.ndarray, sigma: float = FACING_SMOOTHING_SIGMA) -> np.ndarray:
    """(T, 4) yaw quaternions turning each frame's smoothed facing onto +Z; frame 0 is the identity.

    Reproduces HumanML3D's inverse kinematics, quirks included, because the features depend on it:
    its facing line there is (left hip - right hip) + (right shoulder - left shoulder), the hips'
    sign reversed against `canonicalize` (forward stays +Z while shoulders are wider than hips);
    the facing is Gaussian-smoothed over time (edges: nearest); frame 0 is forced to the identity.
    """
    across = (joints[:, _LEFT_HIP] - joints[:, _RIGHT_HIP]) + (joints[:, _RIGHT_SHOULDER] - joints[:, _LEFT_SHOULDER])
    forward = gaussian_filter1d(forward_from_across(across), sigma, axis=0, mode="nearest")
    facing = _turn_to_plus_z(forward)
    facing[0] = (1.0, 0.0, 0.0, 0.0)
    return facing


def local_rotations(joints: np.ndarray, root: np.ndarray) -> np.ndarray:
    """(T, 22, 4) joint rotations in HumanML3D's convention; index 0 holds `root`.

    A bone's world rotation is the shortest arc from its rest direction (RAW_OFFSETS) to its direction
    in the frame (no twist). A joint's local rotation is its bone's world rotation relative to the
    previous bone along its kinematic chain; the first bone of every chain (the legs, the spine, and
    the collars off spine3) is taken relative to the root rotation, as HumanML3D does.
    """
    local = np.empty(joints.shape[:2] + (4,), dtype=joints.dtype)
    local[:, 0] = root
    for chain in KINEMATIC_CHAIN:
        parent_world = root
        for parent, child in zip(chain[:-1], chain[1:]):
            world = quat_between(np.broadcast_to(RAW_OFFSETS[child], joints[:, child].shape),
                                 joints[:, child] - joints[:, parent])
            local[:, child] = quat_mul(quat_inv(parent_world), world)
            parent_world = world
    return local
