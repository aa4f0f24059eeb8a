"""The SMPL 22-joint body in HumanML3D order, and the constants of the HumanML3D representation.

Space: metres, Y up, the character faces +Z at frame 0; 20 frames per second. "left" is the
character's left (+X when facing +Z). These constants are written down once, here.
"""

from __future__ import annotations

import numpy as np

# Each joint with its parent, in HumanML3D order (the order of every joint array).
_JOINTS: tuple[tuple[str, str | None], ...] = (
    ("pelvis", None), ("left_hip", "pelvis"), ("right_hip", "pelvis"), ("spine1", "pelvis"),
    ("left_knee", "left_hip"), ("right_knee", "right_hip"), ("spine2", "spine1"), ("left_ankle", "left_knee"),
    ("right_ankle", "right_knee"), ("spine3", "spine2"), ("left_foot", "left_ankle"),
    ("right_foot", "right_ankle"), ("neck", "spine3"), ("left_collar", "spine3"), ("right_collar", "spine3"),
    ("head", "neck"), ("left_shoulder", "left_collar"), ("right_shoulder", "right_collar"),
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"), ("left_wrist", "left_elbow"),
    ("right_wrist", "right_elbow"),
)
JOINT_NAMES: tuple[str, ...] = tuple(name for name, _ in _JOINTS)
PARENTS: tuple[int, ...] = tuple(-1 if parent is None else JOINT_NAMES.index(parent) for _, parent in _JOINTS)
NUM_JOINTS = 22
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}


def subtree(joint: int) -> list[int]:
    """`joint` and every joint below it, in joint order (a parent precedes its children)."""
    out = [joint]
    for j in range(joint + 1, NUM_JOINTS):
        if PARENTS[j] in out:
            out.append(j)
    return out


# Joints that ControlNet can constrain (the OmniControl set).
CONTROL_JOINTS: dict[str, int] = {
    "pelvis": 0, "left_foot": 10, "right_foot": 11, "head": 15, "left_wrist": 20, "right_wrist": 21,
}

# HumanML3D representation.
FPS = 20.0
FEATURE_DIM = 263
MIN_FRAMES = 40
MAX_FRAMES = 196

# HumanML3D's kinematic chains (t2m_kinematic_chain): right leg, left leg, spine, right arm, left arm.
KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20),
)
# Unit bone directions of HumanML3D's uniform skeleton (t2m_raw_offsets); lengths come from a target.
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
], dtype=np.float64)
# Feet used for contact labels: (ankle, foot) per side.
LEFT_FOOT_JOINTS = (7, 10)
RIGHT_FOOT_JOINTS = (8, 11)
# Joints that define the facing direction: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS = (2, 1, 17, 16)
