"""The 272-dim representation (backend.motion.rep272) of prepared clips, for the MotionMillion engine.

Rotations are solved on the SMPL-X rest skeleton by the analytic IK (backend.retarget.ik) from a clip's joints,
and the positions stored are forward kinematics of them, so a frame's positions and rotations agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backend.motion import rep272
from backend.motion.rotations import quat_to_matrix
from backend.retarget import default_skeleton
from backend.retarget.ik import solve
from backend.retarget.kinematics import forward_kinematics

STD_FLOOR = 1e-3  # features that never vary (frame 0's identity rows) keep a finite normalisation


def rotated_clip(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions (T, 22, 3), rotations (T, 22, 3, 3): the root's global, the others local) of a clip's joints:
    rotations solved on the SMPL-X rest skeleton, positions by forward kinematics of them, so they agree."""
    skeleton = default_skeleton()
    root, quats = solve(joints, skeleton)
    return forward_kinematics(root, quats, skeleton.offsets)[0], quat_to_matrix(quats)


def joints_to_272(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 3) joints (metres, Y up, 20 fps) -> (T, 272) float32 features, canonicalised."""
    return rep272.to_272(*rep272.canonicalize_272(*rotated_clip(joints))).astype(np.float32)


def mean_std_272(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over every frame of `clips` (std floored at STD_FLOOR)."""
    frames = np.concatenate([np.asarray(c, dtype=np.float64) for c in clips])
    return frames.mean(axis=0).astype(np.float32), np.maximum(frames.std(axis=0), STD_FLOOR).astype(np.float32)


def split_272(root: Path, split: str) -> list[str]:
    """The clip names of a prepared dataset's split, after checking it was prepared in the 272-dim format."""
    if not (root / "vector_272").is_dir():
        raise ValueError(f"{root} has no vector_272/: prepare it with `motionlcm-data prepare --format both`")
    return (root / f"{split}.txt").read_text(encoding="utf-8").split()
