"""Retargeting onto user armatures in real (headless) Blender: keys written by bake.write_action, the pose
evaluated through the depsgraph, bone directions compared with the SMPL motion's."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Matrix  # noqa: E402

from motionlcm_blender import bake, curves, rig_transfer  # noqa: E402
from motionlcm_blender.rig_mapping import RigMappingError  # noqa: E402
from rig_fixtures import (AIM, HUMANML_TO_BLENDER, JOINTS, MIXAMO_BONES, PARENTS, a_pose_joints,  # noqa: E402
                          angle_degrees, bone_tails, leg_length_ratio, synthetic_motion)

CHECK_FRAMES = (0, 4, 7, 11)
START = 1
# An FBX import: Y-up armature space in centimetres under a +90 degree X rotation and 0.01 scale.
FBX_WORLD = Matrix.Rotation(np.pi / 2, 4, "X") @ Matrix.Scale(0.01, 4)
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context.scene


def _build_armature(name: str, bones: dict[str, str], world: Matrix = Matrix.Identity(4),
                    to_armature: np.ndarray = np.eye(3), unit: float = 1.0) -> bpy.types.Object:
    """A Mixamo-style A-pose armature; heads in armature space = to_armature @ Blender metres / unit."""
    heads, tails = a_pose_joints(), bone_tails(a_pose_joints())
    obj = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    bpy.context.scene.collection.objects.link(obj)
    obj.matrix_world = world
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rolls = np.random.default_rng(5).uniform(-np.pi, np.pi, 22)  # imported rigs have arbitrary rolls
    for j, joint in enumerate(JOINTS):
        if joint in bones:
            bone = obj.data.edit_bones.new(bones[joint])
            bone.head = (to_armature @ heads[j]) / unit
            bone.tail = (to_armature @ tails[j]) / unit
            bone.roll = rolls[j]
    for j, joint in enumerate(JOINTS):
        parent = PARENTS[j]
        while parent >= 0 and JOINTS[parent] not in bones:
            parent = PARENTS[parent]
        if joint in bones and parent >= 0:
            obj.data.edit_bones[bones[joint]].parent = obj.data.edit_bones[bones[JOINTS[parent]]]
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def _world_heads(obj: bpy.types.Object, names: dict[str, str], frame: int) -> dict[str, np.ndarray]:
    """Posed bone heads in world space at a scene frame, as the depsgraph evaluates them."""
    bpy.context.scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return {joint: np.array(evaluated.matrix_world @ evaluated.pose.bones[bone].head) for joint, bone in names.items()}


def _max_direction_error(obj: bpy.types.Object, names: dict[str, str], joints: np.ndarray) -> float:
    worst = 0.0
    for f in CHECK_FRAMES:
        heads = _world_heads(obj, names, START + f)
        for j, child in AIM.items():
            if JOINTS[j] in names and JOINTS[child] in names:
                rig_dir = HUMANML_TO_BLENDER.T @ (heads[JOINTS[child]] - heads[JOINTS[j]])
                worst = max(worst, float(angle_degrees(rig_dir, joints[f, child] - joints[f, j])))
    return worst


def _retarget_and_bake(obj: bpy.types.Object, motion: dict, **options) -> bpy.types.Action:
    channels = rig_transfer.transfer_to_rig(obj, motion, **options)
    return bake.write_action(obj, "retargeted", channels, START)


@pytest.mark.parametrize("layout", ["z_up_metres", "fbx_y_up_centimetres"])
def test_a_pose_mixamo_rig_follows_smpl_directions_and_scaled_root(layout: str) -> None:
    prefix = "mixamorig:" if layout == "z_up_metres" else "mixamorig1:"
    bones = {j: prefix + b for j, b in MIXAMO_BONES.items()}
    if layout == "z_up_metres":
        obj = _build_armature("Mixamo", bones)
    else:
        obj = _build_armature("Mixamo", bones, FBX_WORLD, Z_UP_TO_Y_UP, unit=0.01)
    obj.pose.bones[bones["left_elbow"]].rotation_mode = "YXZ"  # an Euler bone keeps its mode
    motion = synthetic_motion()
    rest_hips = _world_heads(obj, {"pelvis": bones["pelvis"]}, START)["pelvis"]

    action = _retarget_and_bake(obj, motion)

    assert obj.animation_data.action == action
    assert obj.pose.bones[bones["left_elbow"]].rotation_mode == "YXZ"
    error = _max_direction_error(obj, bones, motion["joints"])
    print(f"\n[{layout}] max bone direction error: {error:.4f} degrees")
    assert error < 2.0
    travel = HUMANML_TO_BLENDER @ (motion["root_translation"] - motion["rest_joints"][0]).T
    for f in CHECK_FRAMES:
        hips = _world_heads(obj, {"pelvis": bones["pelvis"]}, START + f)["pelvis"]
        np.testing.assert_allclose(hips, rest_hips + leg_length_ratio() * travel[:, f], atol=1e-4)


def test_in_place_removes_horizontal_root_motion() -> None:
    bones = dict(MIXAMO_BONES)
    obj = _build_armature("Mixamo", bones)
    motion = synthetic_motion()
    rest_hips = _world_heads(obj, {"pelvis": "Hips"}, START)["pelvis"]
    action = rig_transfer.bake_to_rig(obj, motion, "in place", START, preset="mixamo", in_place=True,
                                      props={"prompt": "walk"})
    assert action["prompt"] == "walk"
    heights = []
    for f in CHECK_FRAMES:
        hips = _world_heads(obj, {"pelvis": "Hips"}, START + f)["pelvis"]
        np.testing.assert_allclose(hips[:2], rest_hips[:2], atol=1e-5)
        heights.append(hips[2])
    expected = rest_hips[2] + leg_length_ratio() * (motion["root_translation"][list(CHECK_FRAMES), 1]
                                                     - motion["rest_joints"][0, 1])
    np.testing.assert_allclose(heights, expected, atol=1e-5)
    assert _max_direction_error(obj, bones, motion["joints"]) < 2.0


def test_target_matrix_maps_the_baked_pelvis_back_to_the_model_root() -> None:
    """Control points for a moved, turned, scaled rig: world -> model space inverts the root retargeting."""
    world = Matrix.Translation((2.0, 1.0, 0.0)) @ Matrix.Rotation(np.pi / 2, 4, "Z") @ Matrix.Scale(1.5, 4)
    obj = _build_armature("Mixamo", dict(MIXAMO_BONES), world)
    motion = synthetic_motion()
    unit_scale = 0.5
    matrix = rig_transfer.rig_target_matrix(obj, motion["rest_joints"], unit_scale=unit_scale)
    _retarget_and_bake(obj, motion)
    for f in CHECK_FRAMES:
        hips = _world_heads(obj, {"pelvis": "Hips"}, START + f)["pelvis"]
        model = curves.blender_to_humanml(curves.transform_points(hips[None], matrix), unit_scale)[0]
        np.testing.assert_allclose(model, motion["root_translation"][f], atol=1e-4)


def test_rig_with_a_missing_spine_bone_still_matches_limb_directions() -> None:
    bones = {j: b for j, b in MIXAMO_BONES.items() if j != "spine3"}
    obj = _build_armature("TwoSpine", bones)
    motion = synthetic_motion()
    _retarget_and_bake(obj, motion)
    assert _max_direction_error(obj, bones, motion["joints"]) < 2.0


def _data_counts() -> tuple[int, ...]:
    return len(bpy.data.actions), len(bpy.data.objects), len(bpy.data.armatures), len(bpy.data.meshes)


def test_rig_without_legs_raises_and_changes_nothing() -> None:
    legless = {j: b for j, b in MIXAMO_BONES.items() if not j.endswith(("hip", "knee", "ankle", "foot"))}
    obj = _build_armature("Legless", legless)
    before = _data_counts()
    with pytest.raises(RigMappingError, match="left_hip"):
        rig_transfer.transfer_to_rig(obj, synthetic_motion())
    assert _data_counts() == before
    assert obj.animation_data is None


def test_constraint_driven_bone_and_non_armature_are_refused() -> None:
    obj = _build_armature("Mixamo", dict(MIXAMO_BONES))
    constraint = obj.pose.bones["LeftArm"].constraints.new("COPY_ROTATION")
    constraint.target, constraint.subtarget = obj, "Spine"
    before = _data_counts()
    with pytest.raises(RigMappingError, match=r"LeftArm \(Copy Rotation\)"):
        rig_transfer.transfer_to_rig(obj, synthetic_motion())
    mesh_obj = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    with pytest.raises(RigMappingError, match="'Cube' is not one"):
        rig_transfer.transfer_to_rig(mesh_obj, synthetic_motion())
    assert _data_counts()[0] == before[0]


def test_malformed_result_is_refused_before_anything_is_created() -> None:
    obj = _build_armature("Mixamo", dict(MIXAMO_BONES))
    motion = synthetic_motion()
    motion["local_quats"] = motion["local_quats"][:, :21]
    before = _data_counts()
    with pytest.raises(ValueError, match="wrong shapes"):
        rig_transfer.transfer_to_rig(obj, motion)
    assert _data_counts() == before


def _rigify_org_bones() -> dict[str, str]:
    """Where a generated Rigify rig's joints are: its ORG chain, which the deform bones follow."""
    bones = {"pelvis": "ORG-spine", "spine1": "ORG-spine.001", "spine2": "ORG-spine.002", "spine3": "ORG-spine.003",
             "neck": "ORG-spine.004", "head": "ORG-spine.006"}
    for side, s in (("left", "L"), ("right", "R")):
        for joint, bone in (("collar", "shoulder"), ("shoulder", "upper_arm"), ("elbow", "forearm"),
                            ("wrist", "hand"), ("hip", "thigh"), ("knee", "shin"), ("ankle", "foot"), ("foot", "toe")):
            bones[f"{side}_{joint}"] = f"ORG-{bone}.{s}"
    return bones


def test_generated_rigify_rig_is_driven_through_its_fk_controls() -> None:
    addon_utils = pytest.importorskip("addon_utils")
    addon_utils.enable("rigify", default_set=True)
    try:
        bpy.ops.object.armature_human_metarig_add()
        bpy.ops.pose.rigify_generate()  # about 10 s: the real rig, MCH constraints and drivers included
    finally:
        addon_utils.disable("rigify", default_set=True)
    rig = bpy.data.objects["rig"]
    motion = synthetic_motion()
    org = _rigify_org_bones()
    legs = [f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    rest = _world_heads(rig, {j: org[j] for j in ["pelvis", *legs]}, START)

    def leg(p):  # thigh plus shin, averaged over both legs: the ratio scales the travel
        return sum(np.linalg.norm(p[f"{s}_knee"] - p[f"{s}_hip"]) + np.linalg.norm(p[f"{s}_ankle"] - p[f"{s}_knee"])
                   for s in ("left", "right")) / 2

    smpl = {j: motion["rest_joints"][JOINTS.index(j)] for j in legs}
    scale = leg(rest) / leg(smpl)

    channels = rig_transfer.transfer_to_rig(rig, motion)
    bake.write_action(rig, "retargeted", channels, START)

    assert ("upper_arm_fk.L", "rotation_quaternion") in channels and ("torso", "location") in channels
    assert ("shoulder.L", "rotation_euler") in channels  # Rigify's YXZ shoulder keeps its rotation mode
    error = _max_direction_error(rig, org, motion["joints"])
    print(f"\n[rigify] max bone direction error on the ORG chain: {error:.4f} degrees")
    assert error < 2.0
    pelvis = _world_heads(rig, {"pelvis": org["pelvis"]}, START + 11)["pelvis"]
    travel = HUMANML_TO_BLENDER @ (motion["root_translation"][11] - motion["rest_joints"][0])
    np.testing.assert_allclose(pelvis, rest["pelvis"] + scale * travel, atol=1e-4)


def _follows_travel(obj: bpy.types.Object, hips_bone: str, motion: dict, rest_hips: np.ndarray) -> None:
    travel = HUMANML_TO_BLENDER @ (motion["root_translation"] - motion["rest_joints"][0]).T
    assert np.linalg.norm(travel[:, CHECK_FRAMES[-1]]) > 0.1  # the motion does travel
    for f in CHECK_FRAMES:
        hips = _world_heads(obj, {"pelvis": hips_bone}, START + f)["pelvis"]
        np.testing.assert_allclose(hips, rest_hips + leg_length_ratio() * travel[:, f], atol=1e-4)


def test_travel_of_a_connected_hip_goes_to_the_root_bone_above_it() -> None:
    """A hip bone connected to a root bone ignores its location channel: the travel is keyed on the root bone
    instead, and the note says so."""
    obj = _build_armature("Rig", dict(MIXAMO_BONES))
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    hips = obj.data.edit_bones["Hips"]
    root = obj.data.edit_bones.new("root")
    root.head, root.tail = (0.0, 0.0, 0.0), tuple(hips.head)
    hips.parent, hips.use_connect = root, True
    bpy.ops.object.mode_set(mode="OBJECT")
    motion = synthetic_motion()
    rest_hips = _world_heads(obj, {"pelvis": "Hips"}, START)["pelvis"]
    channels = rig_transfer.transfer_to_rig(obj, motion)
    assert ("root", "location") in channels and ("Hips", "location") not in channels
    bake.write_action(obj, "walk", channels, START)
    _follows_travel(obj, "Hips", motion, rest_hips)
    assert rig_transfer.travel_note_for(obj) == ("The root bone 'Hips' is connected to its parent, so the travel "
                                                 "is keyed on its ancestor bone 'root'.")


def test_travel_of_a_locked_hip_with_nothing_above_moves_the_armature_object() -> None:
    world = Matrix.Translation((1.0, -2.0, 0.0)) @ Matrix.Rotation(np.pi / 3, 4, "Z")
    obj = _build_armature("Rig", dict(MIXAMO_BONES), world)
    obj.pose.bones["Hips"].lock_location = (True, True, True)
    motion = synthetic_motion()
    rest_hips = _world_heads(obj, {"pelvis": "Hips"}, START)["pelvis"]
    channels = rig_transfer.transfer_to_rig(obj, motion)
    assert ("", "location") in channels and ("Hips", "location") not in channels
    bake.write_action(obj, "walk", channels, START)
    turn = np.array(world.to_3x3())
    travel = HUMANML_TO_BLENDER @ (motion["root_translation"] - motion["rest_joints"][0]).T
    for f in CHECK_FRAMES:
        hips = _world_heads(obj, {"pelvis": "Hips"}, START + f)["pelvis"]
        np.testing.assert_allclose(hips, rest_hips + turn @ (leg_length_ratio() * travel[:, f]), atol=1e-4)
    assert "the armature object 'Rig'" in rig_transfer.travel_note_for(obj)
    assert rig_transfer.travel_note_for(_build_armature("Free", dict(MIXAMO_BONES))) == ""


@pytest.mark.parametrize("layout", ["z_up_metres", "fbx_y_up_centimetres"])
def test_a_rig_with_meaningless_bone_names_is_mapped_by_shape(layout: str) -> None:
    """No preset knows `Bone`, `Bone.001`...: auto-detection falls back to the shape, and the bake follows the SMPL
    motion as the Mixamo-named rig does."""
    bones = {joint: f"Bone.{i:03d}" if i else "Bone" for i, joint in enumerate(MIXAMO_BONES)}
    if layout == "z_up_metres":
        obj = _build_armature("Bones", bones)
    else:
        obj = _build_armature("Bones", bones, FBX_WORLD, Z_UP_TO_Y_UP, unit=0.01)
    assert rig_transfer.mapping_of(obj).preset == "shape"
    assert rig_transfer.mapping_of(obj).bones == bones
    motion = synthetic_motion()
    rest_hips = _world_heads(obj, {"pelvis": bones["pelvis"]}, START)["pelvis"]
    _retarget_and_bake(obj, motion)
    assert _max_direction_error(obj, bones, motion["joints"]) < 2.0
    _follows_travel(obj, bones["pelvis"], motion, rest_hips)
    with pytest.raises(RigMappingError, match="Mixamo"):  # a named preset that does not fit is not overruled
        rig_transfer.mapping_of(obj, "mixamo")
