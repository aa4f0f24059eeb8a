"""Character creation and baking in headless Blender: exact joints, new Action per bake, NLA kept."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_synthetic import generate_result, skeleton_reply  # noqa: E402
from motionlcm_blender import bake, character, curves  # noqa: E402


@pytest.fixture()
def smpl():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = 24
    return character.create_character(bpy.context, skeleton_reply(), location=(1.0, -2.0, 0.0))


def _bake(obj, result, start_frame=1, variation=0):
    seed = result["variations"][variation]["seed"]
    return bake.bake_variation(obj, result["joint_names"], result["variations"][variation], result["fps"],
                               start_frame, 24.0, bake.action_name("a person walks", seed),
                               {"motionlcm_seed": seed, "motionlcm_settings": result["settings"]})


def _posed_heads(obj, frame):
    scene = bpy.context.scene
    scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    world = np.array(evaluated.matrix_world)
    heads = np.array([evaluated.pose.bones[n].head for n in skeleton_reply()["joint_names"]])
    return heads @ world[:3, :3].T + world[:3, 3]


def test_character_matches_skeleton_reply(smpl):
    reply = skeleton_reply()
    assert sorted(b.name for b in smpl.data.bones) == sorted(reply["joint_names"])
    assert smpl.data.bones["left_hip"].parent.name == "pelvis"
    heads = np.array([smpl.data.bones[n].head_local for n in reply["joint_names"]])
    np.testing.assert_allclose(heads, curves.humanml_to_blender(reply["rest_joints"]), atol=1e-6)
    body = next(o for o in bpy.data.objects if o.type == "MESH")
    assert body.parent == smpl and body.modifiers["Armature"].object == smpl
    assert len(body.vertex_groups) == 22 and len(body.data.polygons) == 22
    np.testing.assert_allclose(character.rest_joints_of(smpl), reply["rest_joints"], atol=1e-6)


def test_bake_reproduces_result_joints(smpl):
    result = generate_result(frames=48)
    action = _bake(smpl, result)
    assert action.frame_range[:] == pytest.approx((1.0, 48.0))
    offset = np.array([1.0, -2.0, 0.0])
    errors = [np.abs(_posed_heads(smpl, 1 + i) - (curves.humanml_to_blender(joints) + offset)).max()
              for i, joints in enumerate(result["variations"][0]["joints"])]
    assert max(errors) < 1e-3, f"max joint error {max(errors) * 1000:.3f} mm"


def test_second_bake_keeps_first_action_in_nla(smpl):
    result = generate_result(frames=40, variations=2)
    first = _bake(smpl, result, variation=0)
    keys_before = {(fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
                   for fc in _fcurves(first)}
    second = _bake(smpl, result, variation=1)
    assert second != first and smpl.animation_data.action == second
    strips = [s for t in smpl.animation_data.nla_tracks for s in t.strips]
    assert [s.action for s in strips] == [first]
    assert {(fc.data_path, fc.array_index): [tuple(k.co) for k in fc.keyframe_points]
            for fc in _fcurves(first)} == keys_before
    assert first["motionlcm_seed"] == 7 and second["motionlcm_seed"] == 8
    assert len(_fcurves(second)) == 22 * 4 + 3


def _fcurves(action):
    if not hasattr(action, "slots"):  # Blender 4.2-4.3: legacy actions
        return action.fcurves
    from bpy_extras import anim_utils
    return anim_utils.action_get_channelbag_for_slot(action, action.slots[0]).fcurves


def test_bake_refuses_armature_without_smpl_bones(smpl):
    other = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    bpy.context.scene.collection.objects.link(other)
    with pytest.raises(ValueError, match="lacks the bones"):
        _bake(other, generate_result(frames=40))
    assert len(bpy.data.actions) == 0


def test_bake_in_centimetre_scene_units():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.unit_settings.scale_length = 0.01
    obj = character.create_character(bpy.context, skeleton_reply(), unit_scale=0.01)
    result = generate_result(frames=40, fps=20.0)
    variation = result["variations"][0]
    bake.bake_variation(obj, result["joint_names"], variation, 20.0, 1, 20.0, "cm", unit_scale=0.01)
    for frame in (1, 20, 40):
        expected = curves.humanml_to_blender(variation["joints"][frame - 1], 0.01)
        assert np.abs(_posed_heads(obj, frame) - expected).max() < 0.1  # 1 mm in centimetre units


def test_keys_are_linear_and_one_per_frame(smpl):
    action = _bake(smpl, generate_result(frames=40))
    fcurve = _fcurves(action)[0]
    assert [k.interpolation for k in fcurve.keyframe_points] == ["LINEAR"] * 40
    assert [k.co[0] for k in fcurve.keyframe_points] == list(range(1, 41))


def test_bake_reproduces_the_backends_retarget_of_a_real_clip(data_dir):
    """Cross-module: backend.retarget's root + local quaternions, baked, give back its own forward kinematics."""
    from backend.motion import Motion
    from backend.retarget import retarget

    joints = np.load(data_dir / "humanml3d_reference" / "HumanML3D" / "new_joints" / "012314.npy")[:60]
    retargeted = retarget(Motion(joints=joints), target_fps=24.0)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    reply = {**skeleton_reply(), "rest_joints": retargeted.rest_joints, "mesh": None}
    obj = character.create_character(bpy.context, reply)
    variation = {"root_translation": retargeted.root_translation, "local_quats": retargeted.local_quats}
    bake.bake_variation(obj, reply["joint_names"], variation, retargeted.fps, 1, 24.0, "real clip")
    expected = retargeted.fk()
    errors = [np.abs(_posed_heads(obj, 1 + i) - curves.humanml_to_blender(expected[i])).max()
              for i in range(0, retargeted.num_frames, 5)]
    assert max(errors) < 1e-3, f"max joint error {max(errors) * 1000:.3f} mm"
