"""Synthetic rigs and motions for the retargeting tests (pure numpy; the bpy tests build armatures from them).

The user rig is Mixamo-named, in an A-pose (arms 45 degrees down), Z-up facing -Y, with other bone
lengths and a higher hips than the SMPL rest skeleton of addon_synthetic. The motion is the SMPL rest
pose rotated per frame: arm raise, elbow and knee bends, a spine bend, hip swing and turning while walking
forward.
"""

from __future__ import annotations

import numpy as np

from addon_synthetic import forward_kinematics, rest_joints

MIXAMO_BONES = {  # SMPL joint -> Mixamo bone (without the "mixamorig:" namespace)
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
    "left_collar": "LeftShoulder", "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand",
    "right_collar": "RightShoulder", "right_shoulder": "RightArm", "right_elbow": "RightForeArm",
    "right_wrist": "RightHand", "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_ankle": "LeftFoot",
    "left_foot": "LeftToeBase", "right_hip": "RightUpLeg", "right_knee": "RightLeg", "right_ankle": "RightFoot",
    "right_foot": "RightToeBase",
}
_UE_LIMBS = (("collar", "clavicle"), ("shoulder", "upperarm"), ("elbow", "lowerarm"), ("wrist", "hand"),
             ("hip", "thigh"), ("knee", "calf"), ("ankle", "foot"), ("foot", "ball"))
UE5_BONES = {"pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_03", "spine3": "spine_05", "neck": "neck_01",
             "head": "head"} | {f"{side}_{joint}": f"{bone}_{side[0]}" for side in ("left", "right")
                                for joint, bone in _UE_LIMBS}
JOINTS = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
          "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
          "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# Each joint's bone points at this child (leaves extend their parent's direction).
AIM = {0: 3, 3: 6, 6: 9, 9: 12, 12: 15, 1: 4, 4: 7, 7: 10, 2: 5, 5: 8, 8: 11, 13: 16, 16: 18, 18: 20,
       14: 17, 17: 19, 19: 21}
HUMANML_TO_BLENDER = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
RIG_HIP_HEIGHT = 1.1  # metres; addon_synthetic's pelvis is at 0.94
LEG_SCALE = 1.3
BODY_SCALE = 0.9


def a_pose_joints() -> np.ndarray:
    """(22, 3) Blender-space heads of the user rig: SMPL directions, other lengths, arms 45 degrees down."""
    rest = rest_joints()
    heads = np.zeros((22, 3))
    heads[0] = [0.0, 0.02, RIG_HIP_HEIGHT]
    down = np.sqrt(0.5)
    for j in range(1, 22):
        offset = HUMANML_TO_BLENDER @ (rest[j] - rest[PARENTS[j]])
        in_leg = JOINTS[j].split("_")[-1] in ("hip", "knee", "ankle", "foot")
        offset *= LEG_SCALE if in_leg else BODY_SCALE
        if JOINTS[j].endswith(("elbow", "wrist")):  # A-pose: the arm hangs 45 degrees below horizontal
            offset = np.linalg.norm(offset) * np.array([np.sign(offset[0]) * down, 0.0, -down])
        heads[j] = heads[PARENTS[j]] + offset
    # The ankle-to-ball bone of a real rig points forward and down, not level like SMPL's.
    for ankle, foot in ((7, 10), (8, 11)):
        heads[foot][2] = heads[ankle][2] - 0.07
    return heads


def bone_tails(heads: np.ndarray) -> np.ndarray:
    tails = np.empty_like(heads)
    for j in range(22):
        if j in AIM:
            tails[j] = heads[AIM[j]]
        else:
            tails[j] = heads[j] + 0.5 * (heads[j] - heads[PARENTS[j]])
    return tails


def rest_matrices(heads: np.ndarray, tails: np.ndarray, seed: int = 3) -> np.ndarray:
    """(22, 4, 4) bone matrices with Y along the bone and arbitrary rolls (as imported rigs have)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((22, 4, 4))
    for j in range(22):
        y = (tails[j] - heads[j]) / np.linalg.norm(tails[j] - heads[j])
        x = np.cross(y, rng.normal(size=3))
        x /= np.linalg.norm(x)
        out[j, :3, :3] = np.stack([x, y, np.cross(x, y)], axis=1)
        out[j, :3, 3], out[j, 3, 3] = heads[j], 1.0
    return out


def _axis_angle_quats(axis: tuple[float, float, float], degrees: np.ndarray) -> np.ndarray:
    half = np.radians(degrees) / 2
    return np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * np.asarray(axis)[None]], axis=1)


def synthetic_motion(frames: int = 12) -> dict[str, np.ndarray]:
    """A variation as the backend sends it (HumanML3D space), joints = forward kinematics of the rotations."""
    t = np.arange(frames, dtype=np.float64)
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (frames, 22, 1))
    quats[:, 0] = _axis_angle_quats((0, 1, 0), 4 * t)  # turning
    quats[:, 16] = _axis_angle_quats((0, 0, 1), 8 * t)  # left arm raise
    quats[:, 19] = _axis_angle_quats((0, 1, 0), -6 * t)  # right elbow bend
    quats[:, 4] = _axis_angle_quats((1, 0, 0), 9 * t)  # left knee bend
    quats[:, 2] = _axis_angle_quats((1, 0, 0), -5 * t)  # right hip swings forward
    quats[:, 6] = _axis_angle_quats((1, 0, 0), 2 * t)  # spine bend
    quats[:, 13] = _axis_angle_quats((0.6, 0.0, 0.8), 3 * t)  # collar shrug with twist
    root = rest_joints()[0] + np.stack([0.02 * t, 0.01 * np.sin(t), 0.08 * t], axis=1)  # walks along +Z
    return {"root_translation": root, "local_quats": quats, "joints": forward_kinematics(rest_joints(), root, quats),
            "rest_joints": rest_joints()}


def angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def leg_length_ratio() -> float:
    """The rig's thigh plus shin length over the SMPL rest skeleton's: how far its root travels per metre."""
    rest, heads = rest_joints(), a_pose_joints()

    def leg(points: np.ndarray) -> float:
        return sum(np.linalg.norm(points[k] - points[h]) + np.linalg.norm(points[a] - points[k])
                   for h, k, a in ((1, 4, 7), (2, 5, 8))) / 2

    return float(leg(heads) / leg(rest))
