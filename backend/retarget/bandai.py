"""Bandai-Namco motion dataset BVH (22-node skeleton, cm, Y up) to SMPL's 22 joints in metres.

A small reusable mapping for tests and data preparation. Bandai has Spine and Chest where SMPL has spine1/2/3: those
three are placed on the Hips-Spine-Chest-Neck polyline at the arc-length fractions SMPL-X's rest spine has between
pelvis and neck. The other joints map one to one.
"""

from __future__ import annotations

import numpy as np

from ..bvh import Bvh
from ..skeleton import JOINT_NAMES
from .rest_pose import default_skeleton

BANDAI_TO_SMPL = {
    "pelvis": "Hips", "left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R", "left_knee": "LowerLeg_L",
    "right_knee": "LowerLeg_R", "left_ankle": "Foot_L", "right_ankle": "Foot_R", "left_foot": "Toes_L",
    "right_foot": "Toes_R", "neck": "Neck", "head": "Head", "left_collar": "Shoulder_L",
    "right_collar": "Shoulder_R", "left_shoulder": "UpperArm_L", "right_shoulder": "UpperArm_R",
    "left_elbow": "LowerArm_L", "right_elbow": "LowerArm_R", "left_wrist": "Hand_L", "right_wrist": "Hand_R",
}
_SPINE = ("Hips", "Spine", "Chest", "Neck")


def _smpl_spine_fractions() -> np.ndarray:
    rest = default_skeleton().joints
    steps = np.linalg.norm(np.diff(rest[[0, 3, 6, 9, 12]], axis=0), axis=-1)
    return np.cumsum(steps)[:3] / steps.sum()


def bandai_to_smpl(clip: Bvh, scale: float = 0.01) -> np.ndarray:
    """(F, 22, 3) SMPL-order joint positions (metres for the dataset's centimetres) of a Bandai BVH clip."""
    pos = clip.global_positions(scale)
    out = np.empty((clip.num_frames, len(JOINT_NAMES), 3))
    for j, name in enumerate(JOINT_NAMES):
        if name in BANDAI_TO_SMPL:
            out[:, j] = pos[:, clip.index(BANDAI_TO_SMPL[name])]
    chain = pos[:, [clip.index(n) for n in _SPINE]]  # (F, 4, 3)
    seg = np.linalg.norm(np.diff(chain, axis=1), axis=-1)  # (F, 3)
    cum = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg, axis=1)], axis=1)
    for j, frac in zip((3, 6, 9), _smpl_spine_fractions()):
        s = frac * cum[:, -1]
        k = np.clip((cum[:, 1:] < s[:, None]).sum(1), 0, 2)  # segment holding arc length s
        t = (s - cum[np.arange(len(s)), k]) / np.maximum(seg[np.arange(len(s)), k], 1e-9)
        out[:, j] = chain[np.arange(len(s)), k] + t[:, None] * (chain[np.arange(len(s)), k + 1]
                                                               - chain[np.arange(len(s)), k])
    return out
