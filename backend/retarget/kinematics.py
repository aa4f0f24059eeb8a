"""Forward kinematics and bone-length matching on the SMPL 22-joint tree (numpy or torch alike)."""

from __future__ import annotations

import numpy as np
import torch

from backend.motion.rotations import Array, quat_mul, quat_rotate
from backend.motion.skeleton import NUM_JOINTS, PARENTS
from backend.retarget.rest_pose import RestSkeleton, leg_length


def forward_kinematics(root_translation: Array, local_quats: Array, offsets: Array,
                       parents: tuple[int, ...] = PARENTS) -> tuple[Array, Array]:
    """Global joint positions (T, J, 3) and global rotations (T, J, 4) from the root's world position (T, 3),
    local rotations (T, J, 4) w,x,y,z and rest offsets (J, 3) (parents must precede children). The root joint sits
    at `root_translation`; its rest offset is ignored. Differentiable for torch inputs."""
    positions = [root_translation]
    rotations = [local_quats[:, 0]]
    for j in range(1, len(parents)):
        p = parents[j]
        rotations.append(quat_mul(rotations[p], local_quats[:, j]))
        positions.append(positions[p] + quat_rotate(rotations[p], offsets[j]))
    stack = torch.stack if isinstance(local_quats, torch.Tensor) else np.stack
    return stack(positions, 1), stack(rotations, 1)


def travel_scale(skeleton: RestSkeleton) -> float:
    """Ratio of `skeleton`'s leg length to the model's body (HumanML3D's target skeleton): how much farther the
    skeleton's root travels than a generated motion's, as `retarget` scales it. A control given in the skeleton's
    space is generated at 1/this and lands where it was asked once retargeted with `root_scale` = this."""
    from backend.motion.humanml3d_skeleton import TARGET_OFFSETS  # the model's body

    rest = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        rest[j] = rest[PARENTS[j]] + TARGET_OFFSETS[j]
    return skeleton.leg_length / float(leg_length(rest[None])[0])


def root_scale(joints: np.ndarray, skeleton: RestSkeleton) -> float:
    """Ratio of the target's leg length to the clip's (median over frames): root motion is scaled by it so
    strides fit the target's legs and feet that were planted stay planted."""
    source = float(np.median(leg_length(np.asarray(joints, dtype=np.float64))))
    return skeleton.leg_length / source if source > 1e-6 else 1.0


def match_bone_lengths(joints: np.ndarray, skeleton: RestSkeleton, scale_root: float = 1.0) -> np.ndarray:
    """The clip re-built on the target's bone lengths: the root at its position times `scale_root`, every other joint
    at its parent plus the target's bone length along the clip's bone direction (zero-length bones stay zero)."""
    joints = np.asarray(joints, dtype=np.float64)
    out = np.empty_like(joints)
    out[:, 0] = joints[:, 0] * scale_root
    lengths = skeleton.bone_lengths
    for j in range(1, NUM_JOINTS):
        d = joints[:, j] - joints[:, PARENTS[j]]
        n = np.linalg.norm(d, axis=-1, keepdims=True)
        out[:, j] = out[:, PARENTS[j]] + d / np.maximum(n, 1e-12) * lengths[j] * (n > 1e-12)
    return out
