"""Rig presets, name auto-detection and the pure retargeting math (no bpy)."""

from __future__ import annotations

import numpy as np
import pytest

from motionlcm_blender.rig_mapping import RigMappingError, bone_key, resolve_mapping
from motionlcm_blender.rig_solver import Constraint, RigRest, quat_to_matrix, solve_rig_pose
from rig_fixtures import (AIM, HUMANML_TO_BLENDER, JOINTS, MIXAMO_BONES, PARENTS, UE5_BONES, a_pose_joints,
                          angle_degrees, bone_tails, leg_length_ratio, rest_matrices, synthetic_motion)

MIXAMO = ["Hips", "Spine", "Spine1", "Spine2", "Neck", "Head", "HeadTop_End"] + [
    f"{s}{b}" for s in ("Left", "Right") for b in ("Shoulder", "Arm", "ForeArm", "Hand", "HandIndex1",
                                                   "UpLeg", "Leg", "Foot", "ToeBase", "Toe_End")]
UE5 = ["root", "pelvis", "spine_01", "spine_02", "spine_03", "spine_04", "spine_05", "neck_01", "neck_02",
       "head"] + [f"{b}_{s}" for s in "lr" for b in ("clavicle", "upperarm", "upperarm_twist_01", "lowerarm",
                                                     "hand", "thigh", "thigh_twist_01", "calf", "foot", "ball")]
UE4 = [n for n in UE5 if n not in ("spine_04", "spine_05", "neck_02")]
RIGIFY = ["root", "torso", "hips", "chest", "spine_fk", "spine_fk.001", "spine_fk.002", "spine_fk.003", "neck",
          "head", "tweak_spine", "MCH-spine", "ORG-spine", "ORG-spine.001", "ORG-spine.002", "ORG-spine.003",
          "ORG-spine.004", "ORG-spine.005", "ORG-spine.006"] + [
    f"{p}{b}.{s}" for s in "LR" for p in ("", "ORG-", "DEF-") for b in ("shoulder", "upper_arm", "forearm", "hand",
                                                                         "thigh", "shin", "foot", "toe")] + [
    f"{b}.{s}" for s in "LR" for b in ("upper_arm_fk", "forearm_fk", "hand_fk", "upper_arm_ik", "hand_ik",
                                       "upper_arm_parent", "thigh_fk", "shin_fk", "foot_fk", "toe_fk", "foot_ik",
                                       "thigh_parent")] + [f"DEF-spine{n}" for n in ("", ".001", ".002", ".003",
                                                                                     ".004", ".005", ".006")]
SMPL_ADDON = ["Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle", "R_Ankle", "Spine3",
              "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
              "R_Elbow", "L_Wrist", "R_Wrist"]


@pytest.mark.parametrize("name, key", [
    ("mixamorig:LeftUpLeg", "upleg.l"), ("mixamorig7:RightForeArm", "forearm.r"), ("LeftToeBase", "toebase.l"),
    ("thigh_l", "thigh.l"), ("upperarm_R", "upperarm.r"), ("DEF-thigh.L", "defthigh.l"),
    ("upper_arm_fk.R", "upperarmfk.r"), ("spine_fk.001", "spinefk001"), ("L_Collar", "collar.l"),
    ("left_knee", "knee.l"), ("Spine1", "spine1"), ("spine_05", "spine05"), ("Armature|Hips", "hips"),
])
def test_bone_key_normalises_case_separators_and_sides(name: str, key: str) -> None:
    assert bone_key(name) == key


@pytest.mark.parametrize("names, preset", [
    (MIXAMO, "mixamo"), ([f"mixamorig:{n}" for n in MIXAMO], "mixamo"),
    ([f"mixamorig12:{n}" for n in MIXAMO], "mixamo"),
    ([f"CC_Base_{n}" for n in MIXAMO], "mixamo"), (UE5, "ue_mannequin"), (UE4, "ue_mannequin"),
    (RIGIFY, "rigify"), ([n[4:] for n in RIGIFY if n.startswith("DEF-")], "rigify_deform"),
    (SMPL_ADDON, "smpl"), (list(JOINTS), "smpl"),
])
def test_auto_detection_picks_the_rig_type(names: list[str], preset: str) -> None:
    mapping = resolve_mapping(names)
    assert mapping.preset == preset
    assert mapping.score > 0.7
    assert all(b in names for b in mapping.bones.values())


def test_mixamo_mapping_is_complete_and_keeps_prefixed_names() -> None:
    names = [f"mixamorig:{n}" for n in MIXAMO]
    mapping = resolve_mapping(names)
    assert mapping.bones == {j: f"mixamorig:{b}" for j, b in MIXAMO_BONES.items()}
    assert mapping.root_bone == "mixamorig:Hips"


@pytest.mark.parametrize("names, spines", [(UE5, ("spine_01", "spine_03", "spine_05")),
                                           (UE4, ("spine_01", "spine_02", "spine_03"))])
def test_unreal_spine_spreads_over_the_available_bones(names: list[str], spines: tuple[str, ...]) -> None:
    mapping = resolve_mapping(names)
    assert tuple(mapping.bones[j] for j in ("spine1", "spine2", "spine3")) == spines
    assert mapping.bones["left_foot"] == "ball_l" and mapping.bones["neck"] == "neck_01"


def test_rigify_keys_fk_controls_with_org_positions_and_fk_switch() -> None:
    mapping = resolve_mapping(RIGIFY)
    assert mapping.bones["left_shoulder"] == "upper_arm_fk.L" and mapping.bones["pelvis"] == "spine_fk"
    assert mapping.positions["pelvis"] == "ORG-spine" and mapping.positions["left_knee"] == "shin_fk.L"
    assert mapping.root_bone == "torso"
    assert ("thigh_parent.R", "IK_FK", 1.0) in mapping.properties


def test_two_spine_rig_maps_with_spine3_missing() -> None:
    mapping = resolve_mapping([n for n in MIXAMO if n != "Spine2"])
    assert "spine3" not in mapping.bones and mapping.bones["spine2"] == "Spine1"


def test_rig_without_legs_fails_naming_the_missing_joints() -> None:
    names = [n for n in MIXAMO if "Leg" not in n and "Foot" not in n and "Toe" not in n]
    with pytest.raises(RigMappingError) as error:
        resolve_mapping(names, armature_name="Torso")
    message = str(error.value)
    assert "'Torso'" in message and "Mixamo" in message
    for joint in ("left_hip (upleg.l)", "right_knee (leg.r)", "left_ankle (foot.l)"):
        assert joint in message
    assert "left_wrist" not in message


def test_named_preset_that_does_not_fit_and_unknown_preset_fail() -> None:
    with pytest.raises(RigMappingError, match="Unreal"):
        resolve_mapping(MIXAMO, "ue_mannequin")
    with pytest.raises(RigMappingError, match="Unknown rig preset 'maya'"):
        resolve_mapping(MIXAMO, "maya")


# ---- the solver on a pure rig description ----

def _mixamo_rig(drop: tuple[str, ...] = ()) -> tuple[RigRest, dict[str, str]]:
    heads = a_pose_joints()
    matrices = rest_matrices(heads, bone_tails(heads))
    keep = [j for j in range(22) if JOINTS[j] not in drop]
    names = [MIXAMO_BONES[JOINTS[j]] for j in keep]

    def parent(j: int) -> int:
        p = PARENTS[j]
        while p >= 0 and p not in keep:
            p = PARENTS[p]
        return keep.index(p) if p >= 0 else -1
    rig = RigRest(names, [parent(j) for j in keep], matrices[keep])
    return rig, {JOINTS[j]: MIXAMO_BONES[JOINTS[j]] for j in keep}


def _pose_heads(rig: RigRest, rotations: dict[str, np.ndarray], root_bone: str, location: np.ndarray) -> np.ndarray:
    """Armature-space heads (T, N, 3): P_b = P_parent Rest_parent^-1 Rest_b Basis_b (Blender's pose rule)."""
    frames = len(location)
    pose = np.zeros((frames, len(rig.names), 4, 4))

    def depth(b: int) -> int:
        return 0 if rig.parents[b] < 0 else 1 + depth(rig.parents[b])
    for b in sorted(range(len(rig.names)), key=depth):  # parents first
        name = rig.names[b]
        basis = np.tile(np.eye(4), (frames, 1, 1))
        if name in rotations:
            basis[:, :3, :3] = quat_to_matrix(rotations[name])
        if name == root_bone:
            basis[:, :3, 3] = location
        parent = rig.parents[b]
        local = rig.matrices[b] if parent < 0 else np.linalg.inv(rig.matrices[parent]) @ rig.matrices[b]
        pose[:, b] = (pose[:, parent] if parent >= 0 else np.eye(4)) @ local @ basis
    return pose[..., :3, 3]


def _direction_errors(heads_bl: np.ndarray, names: list[str], joints: np.ndarray,
                      bones: dict[str, str] = MIXAMO_BONES) -> np.ndarray:
    """Angles between the rig's posed bone directions and the SMPL ones, for every mapped joint and its child."""
    errors = []
    by_joint = {j: names.index(bones[JOINTS[j]]) for j in range(22) if bones.get(JOINTS[j]) in names}
    for j, child in AIM.items():
        if j in by_joint and child in by_joint:
            rig_dir = (heads_bl[:, by_joint[child]] - heads_bl[:, by_joint[j]]) @ HUMANML_TO_BLENDER
            errors.append(angle_degrees(rig_dir, joints[:, child] - joints[:, j]))
    return np.stack(errors)


def test_solver_matches_smpl_bone_directions_on_an_a_pose_rig() -> None:
    rig, bones = _mixamo_rig()
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "Hips", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"])
    np.testing.assert_allclose(pose.root.axes, HUMANML_TO_BLENDER, atol=1e-12)
    heads = _pose_heads(rig, pose.rotations, "Hips", pose.root_location)
    assert _direction_errors(heads, rig.names, motion["joints"]).max() < 1e-4
    assert pose.root.scale == pytest.approx(leg_length_ratio())
    travel = (motion["root_translation"] - motion["rest_joints"][0]) @ HUMANML_TO_BLENDER.T
    np.testing.assert_allclose(heads[:, 0], a_pose_joints()[0] + pose.root.scale * travel, atol=1e-9)


def test_solver_detects_a_rig_facing_plus_y() -> None:
    """A rig turned 180 degrees about Z (as some UE imports are): axes follow the rig, directions still match."""
    rig, bones = _mixamo_rig()
    turn = np.diag([-1.0, -1.0, 1.0, 1.0])
    rig.matrices = turn @ rig.matrices
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "Hips", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"])
    np.testing.assert_allclose(pose.root.axes, turn[:3, :3] @ HUMANML_TO_BLENDER, atol=1e-12)
    heads = _pose_heads(rig, pose.rotations, "Hips", pose.root_location) @ turn[:3, :3].T  # back to facing -Y
    assert _direction_errors(heads, rig.names, motion["joints"]).max() < 1e-4


def test_solver_in_place_keeps_the_hips_over_their_rest_spot() -> None:
    rig, bones = _mixamo_rig()
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "Hips", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"], in_place=True)
    heads = _pose_heads(rig, pose.rotations, "Hips", pose.root_location)
    np.testing.assert_allclose(heads[:, 0, :2], np.broadcast_to(a_pose_joints()[0, :2], heads[:, 0, :2].shape),
                               atol=1e-9)
    vertical = motion["root_translation"][:, 1] - motion["rest_joints"][0, 1]
    np.testing.assert_allclose(heads[:, 0, 2], a_pose_joints()[0, 2] + pose.root.scale * vertical, atol=1e-9)


def test_solver_aims_a_spine_bone_across_a_missing_joint() -> None:
    rig, bones = _mixamo_rig(drop=("spine3",))
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "Hips", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"])
    heads = _pose_heads(rig, pose.rotations, "Hips", pose.root_location)
    spine2, neck = rig.names.index("Spine1"), rig.names.index("Neck")
    rig_dir = (heads[:, neck] - heads[:, spine2]) @ HUMANML_TO_BLENDER
    assert angle_degrees(rig_dir, motion["joints"][:, 12] - motion["joints"][:, 6]).max() < 1e-4
    assert _direction_errors(heads, rig.names, motion["joints"]).max() < 1e-4


def test_solver_follows_a_helper_bone_that_copies_a_mapped_bone() -> None:
    """Rigify-style: the upper arm hangs from an unmapped ORG bone that copies the collar's transforms."""
    rig, bones = _mixamo_rig()
    collar, arm = rig.names.index("LeftShoulder"), rig.names.index("LeftArm")
    helper = len(rig.names)
    rig.names.append("ORG-LeftShoulder")
    rig.parents.append(rig.parents[collar])
    rig.matrices = np.concatenate([rig.matrices, rig.matrices[collar][None]])
    rig.constraints.append([Constraint("COPY_TRANSFORMS", collar, 1.0)])
    rig.parents[arm] = helper
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "Hips", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"])
    # The helper follows the collar exactly, so Blender's pose rule applies with the helper as a copy.
    rotations = dict(pose.rotations, **{"ORG-LeftShoulder": pose.rotations["LeftShoulder"]})
    heads = _pose_heads(rig, rotations, "Hips", pose.root_location)
    assert _direction_errors(heads, rig.names, motion["joints"]).max() < 1e-4


def test_solver_keeps_unmapped_intermediate_bones_rigid_on_a_ue5_rig() -> None:
    """UE5: a floor-level root bone above the pelvis, spine_02/04 between the mapped spine bones."""
    mixamo, _ = _mixamo_rig()
    ue_names = {MIXAMO_BONES[j]: ue for j, ue in UE5_BONES.items()}
    names = [ue_names[n] for n in mixamo.names]
    parents, matrices = list(mixamo.parents), list(mixamo.matrices)
    root = np.eye(4)
    for name, below, above in (("spine_02", "spine_01", "spine_03"), ("spine_04", "spine_03", "spine_05")):
        middle = matrices[names.index(below)].copy()
        middle[:3, 3] = (middle[:3, 3] + matrices[names.index(above)][:3, 3]) / 2
        names.append(name)
        parents.append(names.index(below))
        matrices.append(middle)
        parents[names.index(above)] = len(names) - 1
    names.append("root")
    parents.append(-1)
    matrices.append(root)
    parents[names.index("pelvis")] = len(names) - 1
    rig = RigRest(names, parents, np.array(matrices))
    mapping = resolve_mapping(names)
    assert mapping.preset == "ue_mannequin" and mapping.bones == UE5_BONES
    bones = mapping.bones
    motion = synthetic_motion()
    pose = solve_rig_pose(rig, bones, bones, "pelvis", motion["rest_joints"], motion["root_translation"],
                          motion["local_quats"])
    assert "spine_02" not in pose.rotations and "root" not in pose.rotations
    heads = _pose_heads(rig, pose.rotations, "pelvis", pose.root_location)
    assert _direction_errors(heads, names, motion["joints"], bones).max() < 1e-4


def test_the_add_on_joint_order_is_the_backend_one():
    from backend.motion.skeleton import JOINT_NAMES as BACKEND_JOINT_NAMES
    from motionlcm_blender.rig_mapping import JOINT_NAMES

    assert JOINT_NAMES == BACKEND_JOINT_NAMES


# Bone names of the rig families animators bring (as their exporters or importers name them).
CC3 = ["RL_BoneRoot", "CC_Base_BoneRoot", "CC_Base_Hip", "CC_Base_Pelvis", "CC_Base_Waist", "CC_Base_Spine01",
       "CC_Base_Spine02", "CC_Base_NeckTwist01", "CC_Base_NeckTwist02", "CC_Base_Head"] + [
    f"CC_Base_{s}_{b}" for s in "LR" for b in ("Clavicle", "Upperarm", "UpperarmTwist01", "Forearm",
                                               "ForearmTwist01", "Hand", "Thigh", "ThighTwist01", "Calf", "Foot",
                                               "ToeBase")]
DAZ_G8 = ["hip", "pelvis", "abdomenLower", "abdomenUpper", "chestLower", "chestUpper", "neckLower", "neckUpper",
          "head"] + [f"{s}{b}" for s in "lr" for b in ("Collar", "ShldrBend", "ShldrTwist", "ForearmBend",
                                                       "ForearmTwist", "Hand", "ThighBend", "ThighTwist", "Shin",
                                                       "Foot", "Metatarsals", "Toe")]
DAZ_G9 = ["hip", "pelvis", "spine1", "spine2", "spine3", "spine4", "neck1", "neck2", "head"] + [
    f"{s}_{b}" for s in "lr" for b in ("shoulder", "upperarm", "forearm", "hand", "thigh", "shin", "foot", "toes")]
VROID = ["Root", "J_Bip_C_Hips", "J_Bip_C_Spine", "J_Bip_C_Chest", "J_Bip_C_UpperChest", "J_Bip_C_Neck",
         "J_Bip_C_Head", "J_Sec_Hair1_01"] + [f"J_Bip_{s}_{b}" for s in "LR" for b in (
             "Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg", "LowerLeg", "Foot", "ToeBase")]
VRM_HUMANOID = ["hips", "spine", "chest", "upperChest", "neck", "head"] + [
    f"{s}{b}" for s in ("left", "right") for b in ("Shoulder", "UpperArm", "LowerArm", "Hand", "UpperLeg",
                                                    "LowerLeg", "Foot", "Toes")]
BIPED = ["Bip01", "Bip01 Pelvis", "Bip01 Spine", "Bip01 Spine1", "Bip01 Spine2", "Bip01 Neck", "Bip01 Head"] + [
    f"Bip01 {s} {b}" for s in "LR" for b in ("Clavicle", "UpperArm", "Forearm", "Hand", "Thigh", "Calf", "Foot",
                                             "Toe0")]
CMU = ["Hips", "LowerBack", "Spine", "Spine1", "Neck", "Neck1", "Head", "LHipJoint", "RHipJoint"] + [
    f"{s}{b}" for s in ("Left", "Right") for b in ("Shoulder", "Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot",
                                                    "ToeBase")]
HUMANIK = ["Hips", "Spine", "Spine1", "Spine2", "Spine3", "Spine4", "Neck", "Head"] + [
    f"{s}{b}" for s in ("Left", "Right") for b in ("Shoulder", "Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot",
                                                    "ToeBase")]
FAMILIES = {
    "cc_iclone": [CC3, [n for n in CC3 if not n.startswith("RL_")]],
    "daz_genesis": [DAZ_G8, DAZ_G9],
    "vrm": [VROID, VRM_HUMANOID],
    "biped": [BIPED, [n.replace("Bip01", "Bip001") for n in BIPED]],
    "cmu": [CMU],
    "mixamo": [HUMANIK, [f"Character1_{n}" for n in HUMANIK], [f"mocap:{n}" for n in HUMANIK]],  # Maya HumanIK
}
EXPECTED = {  # joint -> bone, for one rig of each family
    "cc_iclone": {"pelvis": "CC_Base_Hip", "spine1": "CC_Base_Waist", "neck": "CC_Base_NeckTwist01",
                  "left_hip": "CC_Base_L_Thigh", "left_knee": "CC_Base_L_Calf", "right_elbow": "CC_Base_R_Forearm",
                  "left_foot": "CC_Base_L_ToeBase", "root": "CC_Base_Hip"},
    "daz_genesis": {"pelvis": "hip", "spine1": "abdomenLower", "spine3": "chestUpper", "left_hip": "lThighBend",
                    "left_shoulder": "lShldrBend", "right_elbow": "rForearmBend", "left_foot": "lToe",
                    "root": "hip"},
    "vrm": {"pelvis": "J_Bip_C_Hips", "spine3": "J_Bip_C_UpperChest", "left_hip": "J_Bip_L_UpperLeg",
            "right_wrist": "J_Bip_R_Hand", "left_collar": "J_Bip_L_Shoulder", "root": "J_Bip_C_Hips"},
    "biped": {"pelvis": "Bip01 Pelvis", "spine3": "Bip01 Spine2", "left_hip": "Bip01 L Thigh",
              "right_ankle": "Bip01 R Foot", "left_foot": "Bip01 L Toe0", "root": "Bip01"},
    "cmu": {"pelvis": "Hips", "spine1": "LowerBack", "spine2": "Spine", "spine3": "Spine1", "left_hip": "LeftUpLeg",
            "left_knee": "LeftLeg", "left_collar": "LeftShoulder", "left_shoulder": "LeftArm", "root": "Hips"},
    "mixamo": {"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine2", "spine3": "Spine4", "left_hip": "LeftUpLeg",
                "root": "Hips"},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_rig_family_is_detected_and_mapped_completely(family: str) -> None:
    for names in FAMILIES[family]:
        mapping = resolve_mapping(names)
        assert mapping.preset == family, (names[:3], mapping.preset)
        assert not mapping.missing_required and all(b in names for b in mapping.bones.values())
        assert len(mapping.bones) >= 21, sorted(set(JOINTS) - set(mapping.bones))
    mapping = resolve_mapping(FAMILIES[family][0])
    for joint, bone in EXPECTED[family].items():
        assert (mapping.root_bone if joint == "root" else mapping.bones[joint]) == bone, joint


def test_older_presets_keep_their_rigs():
    """Names close to the new families' (Mixamo's, CC-prefixed Mixamo, Unreal) still go to their own preset."""
    assert resolve_mapping(MIXAMO).preset == "mixamo"
    assert resolve_mapping([f"CC_Base_{n}" for n in MIXAMO]).preset == "mixamo"
    assert resolve_mapping(UE5).preset == "ue_mannequin"
