"""HumanML3D motion representation: 22 joint positions <-> 263 features per frame.

Per-frame layout (HumanML3D "new_joint_vecs"), everything in the frame's own root-facing space:
  [0]        root rotation velocity: minus half the facing's yaw change to the next frame (radians;
             a left turn, counter-clockwise seen from above, is negative),
  [1:3]      root linear velocity (x, z): displacement to the next frame, rotated into the next frame's facing,
  [3]        root height (metres),
  [4:67]     "ric": joints 1..21 relative to the root's xz, rotated so the character faces +Z,
  [67:193]   continuous 6D local rotations of joints 1..21 (see `local_rotations`),
  [193:259]  velocities of all 22 joints to the next frame, in the frame's facing,
  [259:263]  foot contacts: left ankle, left foot, right ankle, right foot (1 = still).

`features_to_joints` works on numpy arrays and torch tensors (batched, differentiable);
`joints_to_features` is the numpy data-preparation path. The skeleton steps (uniform bone lengths,
floor/origin/facing normalisation, contacts) live in `backend.motion.humanml3d_skeleton`.
Facts (formulas, thresholds, order of operations) follow HumanML3D's motion_representation and
MotionLCM's recover_from_ric; the code is our own.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.motion.humanml3d_skeleton import (
    FOOT_CONTACT_THRESHOLD, TARGET_OFFSETS, canonicalize, check_joints, contact_labels, local_rotations,
    root_rotation, uniform_skeleton,
)
from backend.motion.rotations import Array, quat_about_y, quat_inv, quat_mul, quat_rotate, quat_to_6d
from backend.motion.skeleton import FEATURE_DIM, NUM_JOINTS

ROOT_SLICE = slice(0, 4)
RIC_SLICE = slice(4, 4 + (NUM_JOINTS - 1) * 3)
ROT6D_SLICE = slice(RIC_SLICE.stop, RIC_SLICE.stop + (NUM_JOINTS - 1) * 6)
VELOCITY_SLICE = slice(ROT6D_SLICE.stop, ROT6D_SLICE.stop + NUM_JOINTS * 3)
CONTACT_SLICE = slice(VELOCITY_SLICE.stop, VELOCITY_SLICE.stop + 4)
FEATURE_BLOCKS: dict[str, slice] = {
    "root": ROOT_SLICE, "ric": RIC_SLICE, "rot6d": ROT6D_SLICE, "velocity": VELOCITY_SLICE, "contacts": CONTACT_SLICE,
}
assert CONTACT_SLICE.stop == FEATURE_DIM

__all__ = [  # the skeleton steps are re-exported so the data-preparation code needs one import
    "ROOT_SLICE", "RIC_SLICE", "ROT6D_SLICE", "VELOCITY_SLICE", "CONTACT_SLICE", "FEATURE_BLOCKS",
    "normalize", "denormalize", "recover_root", "features_to_joints", "joints_to_features",
    "TARGET_OFFSETS", "FOOT_CONTACT_THRESHOLD", "uniform_skeleton", "canonicalize", "contact_labels",
]


def _like(value: np.ndarray | torch.Tensor | float, ref: Array) -> Array:
    """`value` as the same array type, dtype and device as `ref` (so numpy statistics work on tensors)."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    return np.asarray(value, dtype=ref.dtype)


def normalize(feats: Array, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> Array:
    """(feats - mean) / std, broadcasting over leading axes; the result has feats' type, dtype and device."""
    return (feats - _like(mean, feats)) / _like(std, feats)


def denormalize(feats: Array, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> Array:
    """feats * std + mean, the inverse of `normalize`."""
    return feats * _like(std, feats) + _like(mean, feats)


def _check_features(feats: Array, check_finite: bool) -> None:
    if not isinstance(feats, (np.ndarray, torch.Tensor)):
        raise ValueError(f"features must be a numpy array or torch tensor, got {type(feats).__name__}")
    if feats.ndim < 2 or feats.shape[-1] != FEATURE_DIM or feats.shape[-2] < 1:
        raise ValueError(f"features must have shape (..., T >= 1, {FEATURE_DIM}), got {tuple(feats.shape)}")
    if isinstance(feats, torch.Tensor):
        floating = feats.dtype.is_floating_point
    else:
        floating = np.issubdtype(feats.dtype, np.floating)
    if not floating:
        raise ValueError(f"features must be floating point, got dtype {feats.dtype}")
    # A finite sum proves every element finite (NaN/inf propagate) and is far cheaper than an elementwise test;
    # only when it is not (possibly overflow) is the elementwise test needed.
    if check_finite and not _all_finite(feats):
        raise ValueError("features contain NaN or infinite values")


def _all_finite(a: Array) -> bool:
    if isinstance(a, torch.Tensor):
        a = a.detach()
        return bool(torch.isfinite(a.sum())) or bool(torch.isfinite(a).all())
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def _recover_root(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Yaw at frame t integrates the half-angle velocities of frames 0..t-1 (frame 0 faces +Z).
    half_yaw = torch.cumsum(torch.cat([torch.zeros_like(feats[..., :1, 0]), feats[..., :-1, 0]], -1), -1)
    root_quat = quat_about_y(2.0 * half_yaw)
    # Each stored velocity is in the next frame's facing: rotate it back with that frame's inverse yaw.
    zero = torch.zeros_like(feats[..., 1])
    step = torch.stack([feats[..., 1], zero, feats[..., 2]], -1)
    step = torch.cat([torch.zeros_like(step[..., :1, :]), step[..., :-1, :]], -2)
    xz = torch.cumsum(quat_rotate(quat_inv(root_quat), step), -2)
    root_pos = torch.stack([xz[..., 0], feats[..., 3], xz[..., 2]], -1)
    return root_quat, root_pos


def recover_root(feats: Array, check_finite: bool = True) -> tuple[Array, Array]:
    """Root facing quaternions (..., T, 4) and root positions (..., T, 3) integrated from the features.

    The quaternion turns world directions into the root's +Z-facing frame (HumanML3D's r_rot), so
    world joints = quat_rotate(quat_inv(quat), ric) + root xz.
    """
    _check_features(feats, check_finite)
    if isinstance(feats, np.ndarray):
        quat, pos = _recover_root(torch.from_numpy(np.ascontiguousarray(feats)))
        return quat.numpy(), pos.numpy()
    return _recover_root(feats)


def _features_to_joints(feats: torch.Tensor) -> torch.Tensor:
    root_quat, root_pos = _recover_root(feats)
    ric = feats[..., RIC_SLICE].reshape(*feats.shape[:-1], NUM_JOINTS - 1, 3)
    body = quat_rotate(quat_inv(root_quat)[..., None, :], ric)
    root_xz = torch.stack([root_pos[..., 0], torch.zeros_like(root_pos[..., 0]), root_pos[..., 2]], -1)
    return torch.cat([root_pos[..., None, :], body + root_xz[..., None, :]], -2)


def features_to_joints(feats: Array, check_finite: bool = True) -> Array:
    """(..., T, 263) un-normalised features -> (..., T, 22, 3) joint positions (MotionLCM's recover_from_ric).

    Uses the root block and the ric block only. Torch in, torch out (same dtype/device, differentiable);
    numpy in, numpy out. `check_finite=False` skips the NaN check (a device sync) inside training loops.
    Frames are independent of later frames, so zero-padding past a clip's length leaves it unchanged.
    """
    _check_features(feats, check_finite)
    if isinstance(feats, np.ndarray):
        return _features_to_joints(torch.from_numpy(np.ascontiguousarray(feats))).numpy()
    return _features_to_joints(feats)


def joints_to_features(joints: np.ndarray, feet_threshold: float | np.ndarray = FOOT_CONTACT_THRESHOLD,
                       target_offsets: np.ndarray = TARGET_OFFSETS) -> np.ndarray:
    """(T, 22, 3) joint positions (metres, Y up, 20 fps, any placement) -> (T - 1, 263) float32 features.

    HumanML3D's processing: bone lengths set to the target skeleton, clip put on the floor, frame 0's
    root moved to the xz origin and turned to face +Z, then the features above. The last frame only
    serves the velocities of the one before it, hence T - 1 rows.
    """
    positions = canonicalize(uniform_skeleton(check_joints(joints), target_offsets))
    contacts = contact_labels(positions, feet_threshold)
    facing = root_rotation(positions)
    rot6d = quat_to_6d(local_rotations(positions, facing)[:, 1:]).reshape(len(positions), -1)

    root_step = quat_rotate(facing[1:], positions[1:, 0] - positions[:-1, 0])[:, [0, 2]]
    # Yaw change as a quaternion; the w >= 0 representative keeps arcsin(y) the true half-angle even when
    # the facing crosses -Z between two frames (HumanML3D then stores the wrong sign; identical otherwise).
    turn = quat_mul(facing[1:], quat_inv(facing[:-1]))
    turn = np.where(turn[:, :1] < 0, -turn, turn)
    rot_velocity = np.arcsin(np.clip(turn[:, 2], -1.0, 1.0))

    centred = positions - positions[:, :1] * np.array([1.0, 0.0, 1.0])
    ric = quat_rotate(facing[:, None], centred)[:, 1:].reshape(len(positions), -1)
    velocity = quat_rotate(facing[:-1, None], positions[1:] - positions[:-1]).reshape(len(positions) - 1, -1)

    feats = np.concatenate([
        rot_velocity[:, None], root_step, positions[:-1, 0, 1:2], ric[:-1], rot6d[:-1], velocity, contacts,
    ], axis=-1)
    return feats.astype(np.float32)
