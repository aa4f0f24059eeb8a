"""The target skeleton: SMPL's 22 body joints with rest positions (metres, Y up, facing +Z, left = +X).

Local rotations are relative to this rest pose: a joint's global rotation G maps its rest offsets onto the posed ones.
The default rest pose is SMPL-X neutral's, from the calibration data shipped with `mannequin-x` (no licensed model
file needed). SMPL-X's native frame is already Y up, metres, facing +Z with the left side at +X (checked in the
tests: head above pelvis, toes in front of ankles, left hip at +X), so the conversion is a translation only: the
pelvis goes above the origin and the lowest joint onto the floor (y = 0), as HumanML3D places its floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from backend.errors import InvalidRequest
from backend.motion.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS

NUM_BETAS = 10


@dataclass(frozen=True)
class RestSkeleton:
    """Rest joint positions (22, 3) in HumanML3D space, SMPL order; names and parents from `backend.motion.skeleton`."""

    joints: np.ndarray
    names: tuple[str, ...] = JOINT_NAMES
    parents: tuple[int, ...] = PARENTS

    def __post_init__(self) -> None:
        joints = np.asarray(self.joints, dtype=np.float64)
        if tuple(self.parents) != PARENTS or len(self.names) != NUM_JOINTS:
            raise InvalidRequest(
                "a rest skeleton must have SMPL's 22-joint hierarchy (backend.motion.skeleton.PARENTS)")
        if joints.shape != (NUM_JOINTS, 3) or not np.isfinite(joints).all():
            raise InvalidRequest(f"rest joints must be finite with shape ({NUM_JOINTS}, 3), got {joints.shape}")
        lengths = np.linalg.norm(joints[1:] - joints[list(self.parents[1:])], axis=-1)
        if (lengths < 1e-6).any():
            short = [self.names[j + 1] for j in np.flatnonzero(lengths < 1e-6)]
            raise InvalidRequest(f"rest skeleton has zero-length bones ending at: {', '.join(short)}")
        object.__setattr__(self, "joints", joints)

    @property
    def offsets(self) -> np.ndarray:
        """(22, 3) offset of each joint from its parent; the pelvis's is its rest position."""
        off = self.joints.copy()
        off[1:] -= self.joints[list(self.parents[1:])]
        return off

    @property
    def bone_lengths(self) -> np.ndarray:
        """(22,) length of the bone ending at each joint (0 for the pelvis)."""
        return np.linalg.norm(self.offsets, axis=-1) * (np.arange(NUM_JOINTS) > 0)

    @property
    def leg_length(self) -> float:
        """Hip-to-ankle length plus the pelvis-to-hip drop, averaged over sides: scales root motion."""
        return float(leg_length(self.joints[None])[0])

    def end_sites(self) -> dict[int, np.ndarray]:
        """End-site offsets for the leaves (head, wrists, feet): half their bone, continuing its direction, so
        bones imported from a BVH get a sensible length and orientation."""
        leaves = [j for j in range(NUM_JOINTS) if j not in self.parents]
        return {j: 0.5 * self.offsets[j] for j in leaves}


def leg_length(joints: np.ndarray) -> np.ndarray:
    """(T,) leg length per frame of (T, 22, 3) joints: mean over sides of |pelvis-hip|_y + |hip-knee| + |knee-ankle|."""
    total = 0.0
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
        total = total + (np.abs(joints[:, 0, 1] - joints[:, hip, 1])
                         + np.linalg.norm(joints[:, knee] - joints[:, hip], axis=-1)
                         + np.linalg.norm(joints[:, ankle] - joints[:, knee], axis=-1))
    return total / 2


def floor_offset(joints: np.ndarray) -> np.ndarray:
    """What `place_on_floor` subtracts from (22, 3) joints (and from a mesh bound to them)."""
    return np.array([joints[0, 0], joints[:, 1].min(), joints[0, 2]])


def place_on_floor(joints: np.ndarray) -> np.ndarray:
    """Pelvis above the origin, lowest joint at y = 0."""
    return joints - floor_offset(joints)


def default_skeleton(betas: np.ndarray | None = None) -> RestSkeleton:
    """SMPL-X neutral rest joints from `mannequin-x`, optionally shaped by up to 10 betas (its `joint_dirs`)."""
    path = resources.files("mannequin") / "assets" / "smplx_calibration.npz"
    with resources.as_file(path) as p, np.load(p) as data:
        rest = data["joint_rest"][:NUM_JOINTS].astype(np.float64)
        dirs = data["joint_dirs"][:NUM_JOINTS].astype(np.float64)
    if betas is not None:
        betas = np.asarray(betas, dtype=np.float64).reshape(-1)
        if betas.size > dirs.shape[-1] or not np.isfinite(betas).all():
            raise InvalidRequest(f"betas must be at most {dirs.shape[-1]} finite values, got {betas.size}")
        rest = rest + dirs[..., :betas.size] @ betas
    return RestSkeleton(place_on_floor(rest))
