"""MotionMillion's 272-dim motion representation: joint positions plus rotations, for 22 SMPL joints.

The layout of the public processing code (Li-xingXiao/272-dim-Motion-Representation, used by MotionStreamer and
MotionMillion), per frame t:

    [0:2]      root xz velocity from t-1 to t, in frame t-1's heading frame (heading removed); 0 at frame 0
    [2:8]      heading change from t-1 to t as a 6D rotation; the identity at frame 0
    [8:74]     joint positions with the root's xz at the origin and the heading removed (y: height above floor)
    [74:140]   their velocities from t-1 to t; 0 at frame 0
    [140:272]  joint rotations, 6D: the root's global orientation with the heading removed, every other joint's
               rotation relative to its parent (SMPL local rotations; identity = the rest pose)

6D rotations are the first two rows of the matrix (pytorch3d's convention, unlike the 263-dim features'
columns). Heading is the root orientation's yaw: the angle about +Y of its z axis from +Z. A clip is first
canonicalised (`canonicalize_272`: floor at y = 0, frame 0's root at the xz origin and its heading 0), which the
recovery assumes, so features -> motion -> features is exact to float precision.
Units and axes as everywhere (backend/motion/skeleton.py): metres, Y up, 20 fps.
"""

from __future__ import annotations

import numpy as np

from backend.motion.rotations import matrix_to_6d, quat_about_y, quat_to_matrix, sixd_to_matrix
from backend.motion.skeleton import NUM_JOINTS

FEATURE_DIM_272 = 8 + 12 * NUM_JOINTS  # 272
POSITIONS = slice(8, 8 + 3 * NUM_JOINTS)
VELOCITIES = slice(8 + 3 * NUM_JOINTS, 8 + 6 * NUM_JOINTS)
ROTATIONS = slice(8 + 6 * NUM_JOINTS, 8 + 12 * NUM_JOINTS)


def rot_y(angle: np.ndarray) -> np.ndarray:
    """(...,) angles -> (..., 3, 3) rotations about +Y (+Z turns towards +X for a positive angle)."""
    return quat_to_matrix(quat_about_y(np.asarray(angle, dtype=np.float64)))


def heading(root_rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) root orientations -> (...,) yaw of their z axis about +Y, from +Z."""
    return np.arctan2(root_rotation[..., 0, 2], root_rotation[..., 2, 2])


def rows_to_6d(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two rows."""
    return matrix_to_6d(np.swapaxes(m, -1, -2))


def rows_from_6d(d6: np.ndarray) -> np.ndarray:
    """(..., 6) first two rows -> (..., 3, 3), orthonormalised (Gram-Schmidt on the rows)."""
    return np.swapaxes(sixd_to_matrix(d6), -1, -2)


def canonicalize_272(positions: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clip on the floor (lowest joint at y = 0), frame 0's root at the xz origin, turned about +Y so that
    frame 0's root heading is 0. positions (T, 22, 3) world; rotations (T, 22, 3, 3), joint 0 global."""
    positions = np.asarray(positions, dtype=np.float64)
    rotations = np.array(rotations, dtype=np.float64)
    origin = np.array([positions[0, 0, 0], positions[..., 1].min(), positions[0, 0, 2]])
    turn = rot_y(-heading(rotations[0, 0]))
    positions = (positions - origin) @ turn.T
    rotations[:, 0] = turn @ rotations[:, 0]
    return positions, rotations


def to_272(positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(T, 272) features of a canonicalised clip: positions (T, 22, 3) world, rotations (T, 22, 3, 3) with the
    root's global and the other joints' local to their parent (canonicalize_272 first)."""
    positions = np.asarray(positions, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    frames = len(positions)
    if positions.shape != (frames, NUM_JOINTS, 3) or rotations.shape != (frames, NUM_JOINTS, 3, 3) or frames < 1:
        raise ValueError(f"to_272 needs positions (T, {NUM_JOINTS}, 3) and rotations (T, {NUM_JOINTS}, 3, 3), got "
                         f"{positions.shape} and {rotations.shape}")
    yaw = heading(rotations[:, 0])
    unturn = rot_y(-yaw)  # removes each frame's heading
    local = positions - positions[:, :1] * np.array([1.0, 0.0, 1.0])
    local = np.einsum("tij,tkj->tki", unturn, local)
    rotations = rotations.copy()
    rotations[:, 0] = unturn @ rotations[:, 0]
    out = np.zeros((frames, FEATURE_DIM_272))
    out[:, 2:8] = rows_to_6d(np.eye(3))
    if frames > 1:
        root_step = positions[1:, 0] - positions[:-1, 0]
        out[1:, 0:2] = np.einsum("tij,tj->ti", unturn[:-1], root_step)[:, [0, 2]]
        out[1:, 2:8] = rows_to_6d(rot_y(-(yaw[1:] - yaw[:-1])))
        out[1:, VELOCITIES] = (local[1:] - local[:-1]).reshape(frames - 1, -1)
    out[:, POSITIONS] = local.reshape(frames, -1)
    out[:, ROTATIONS] = rows_to_6d(rotations).reshape(frames, -1)
    return out


def from_272(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 272) -> (positions (T, 22, 3) world, rotations (T, 22, 3, 3): the root's global, the others local).
    Heading and root xz are integrated from frame 0 (at the origin, heading 0)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM_272:
        raise ValueError(f"from_272 needs (T, {FEATURE_DIM_272}) features, got {features.shape}")
    frames = len(features)
    # Each step is rot_y(-(yaw(t) - yaw(t-1))): the headings are the running sum of the steps' angles (a decoded
    # step that is not a pure turn about +Y is read as its turn about +Y).
    yaw = np.concatenate([[0.0], -np.cumsum(heading(rows_from_6d(features[1:, 2:8])))])
    turn = rot_y(yaw)
    root_xz = np.zeros((frames, 3))
    if frames > 1:
        step = np.zeros((frames - 1, 3))
        step[:, [0, 2]] = features[1:, 0:2]
        root_xz[1:] = np.cumsum(np.einsum("tij,tj->ti", turn[:-1], step), axis=0)
    local = features[:, POSITIONS].reshape(frames, NUM_JOINTS, 3)
    positions = np.einsum("tij,tkj->tki", turn, local) + root_xz[:, None]
    rotations = rows_from_6d(features[:, ROTATIONS].reshape(frames, NUM_JOINTS, 6))
    rotations[:, 0] = turn @ rotations[:, 0]
    return positions, rotations
