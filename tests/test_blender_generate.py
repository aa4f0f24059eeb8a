"""The Generate operator's validation and the application of a result: success, or the scene left unchanged."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import motionlcm_blender  # noqa: E402
from addon_synthetic import generate_result, skeleton_reply  # noqa: E402
from motionlcm_blender import bake, character, generation, operators, session  # noqa: E402
from motionlcm_blender.backend_job import BackendJob  # noqa: E402


@pytest.fixture()
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    scene = bpy.context.scene
    scene.render.fps = 24
    yield scene
    motionlcm_blender.unregister()


def _state(scene):
    anim = {o.name: (o.animation_data.action if o.animation_data else None,
                     len(o.animation_data.nla_tracks) if o.animation_data else 0) for o in bpy.data.objects}
    return (sorted(bpy.data.objects.keys()), sorted(bpy.data.actions.keys()), sorted(bpy.data.armatures.keys()),
            sorted(bpy.data.meshes.keys()), anim, len(scene.motionlcm.history))


@pytest.mark.parametrize("setup, message", [
    ({"prompt": "   "}, "The prompt is empty"),
    ({"seconds": 12.0}, "Duration 12 s gives 240 model frames"),
    ({"seconds": 1.0}, "trained on 2 to 9.8 s"),
    ({"target": "ARMATURE"}, "Pick the armature to animate")])
def test_invalid_settings_are_reported_and_change_nothing(scene, setup, message):
    for key, value in setup.items():
        setattr(scene.motionlcm, key, value)
    before = _state(scene)
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.motionlcm.generate()
    assert _state(scene) == before and session.job is None
    assert message in session.last_error


def test_bad_control_is_reported_before_anything_is_sent(scene):
    scene.motionlcm.controls.add()  # pelvis control without a source
    with pytest.raises(RuntimeError, match="pelvis control has no source object"):
        bpy.ops.motionlcm.generate()


def _plan(scene, **settings):
    for key, value in settings.items():
        setattr(scene.motionlcm, key, value)
    return generation.plan_generation(bpy.context)


def test_new_character_plan_asks_for_the_skeleton_then_generates(scene):
    scene.cursor.location = (2.0, 0.0, 0.0)
    plan = _plan(scene, prompt="a person jumps", seconds=2.0, seed=11)
    assert list(plan.requests) == ["skeleton", "generate"]
    assert plan.requests["generate"]["frames"] == 40 and plan.requests["generate"]["target_fps"] == 24.0
    obj = generation.apply_generation(bpy.context, plan, {"skeleton": skeleton_reply(),
                                                          "generate": generate_result(frames=48, variations=2)})
    assert character.is_motionlcm_character(obj) and tuple(obj.location) == (2.0, 0.0, 0.0)
    action = obj.animation_data.action
    assert action.name == "a person jumps s7" and action["motionlcm_seed"] == 7
    assert [s.action.name for t in obj.animation_data.nla_tracks for s in t.strips] == ["a person jumps s8"]
    assert [(h.prompt, h.seed) for h in scene.motionlcm.history] == [("a person jumps", 8), ("a person jumps", 7)]


def test_smpl_target_sends_its_rest_joints_and_reapply_restores_an_action(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    np.testing.assert_allclose(plan.requests["generate"]["rest_joints"], skeleton_reply()["rest_joints"], atol=1e-6)
    assert "skeleton" not in plan.requests
    generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=1)})
    generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=2)})
    first = scene.motionlcm.history[0].action
    bpy.ops.motionlcm.history_apply(index=0)
    assert obj.animation_data.action == first and len(obj.animation_data.nla_tracks) == 2


def test_failed_bake_restores_the_previous_action(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=1)})
    before = _state(scene)
    broken = generate_result(frames=40, variations=3)
    broken["variations"][0]["local_quats"] = broken["variations"][0]["local_quats"][:, :5]  # baked last
    with pytest.raises(Exception):
        generation.apply_generation(bpy.context, plan, {"generate": broken})
    assert _state(scene) == before


def test_failed_generation_onto_a_new_character_leaves_no_character(scene):
    plan = _plan(scene)
    broken = generate_result(frames=40)
    del broken["variations"][0]["root_translation"]
    before = _state(scene)
    with pytest.raises(KeyError):
        generation.apply_generation(bpy.context, plan, {"skeleton": skeleton_reply(), "generate": broken})
    assert _state(scene) == before


def test_deleted_target_is_reported(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    character.remove_character(obj)
    with pytest.raises(ValueError, match="was deleted"):
        generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})


def test_bake_restore_helper_removes_only_new_actions(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    snapshot = bake.snapshot_animation(obj)
    generation.apply_generation(bpy.context, _plan(scene, target="ARMATURE", armature=obj),
                                {"generate": generate_result(frames=40)})
    bake.restore_animation(obj, snapshot)
    assert obj.animation_data is None and len(bpy.data.actions) == 0


MIXAMO = ("Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg", "Spine1", "LeftFoot", "RightFoot",
          "Spine2", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm",
          "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand")


def _user_rig(names):
    reply = skeleton_reply()
    reply.update(joint_names=[f"mixamorig:{n}" for n in names], mesh=None)
    rig = character.create_character(bpy.context, reply, name="user rig")
    del rig[character.SKELETON_TAG]  # a plain user armature, not one of ours
    return rig


def test_user_rig_is_retargeted_into_a_new_action(scene):
    rig = _user_rig(MIXAMO)
    plan = _plan(scene, target="ARMATURE", armature=rig, mapping="auto")
    assert plan.target == generation.RIG and plan.requests["generate"]["rest_joints"] is None
    generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    action = rig.animation_data.action
    assert action["motionlcm_seed"] == 7 and scene.motionlcm.history[0].target == rig
    assert action.frame_range[:] == pytest.approx((1.0, 40.0))


def test_unmappable_rig_is_refused_and_the_scene_is_unchanged(scene):
    rig = _user_rig([f"bone{i}" for i in range(22)])
    plan = _plan(scene, target="ARMATURE", armature=rig)
    before = _state(scene)
    with pytest.raises(ValueError, match="Cannot map the motion onto 'user rig'"):
        generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    assert _state(scene) == before


class _Event:
    def __init__(self, kind, value="NOTHING"):
        self.type, self.value = kind, value


class _FakeClient:
    def __init__(self):
        self.replies, self.cancelled = [], []

    def submit(self, request):
        return request["type"]

    def poll(self):
        replies, self.replies = self.replies, []
        return replies

    def cancel(self, job_id):
        self.cancelled.append(job_id)


class _Harness(operators._BackendOperator):
    """The Generate operator's modal logic without Blender's event loop (timer ticks are called by hand)."""

    def __init__(self, plan, client):
        self._plan, self.reports = plan, []
        session.job = BackendJob(client, plan.requests)

    def report(self, kind, message):
        self.reports.append((kind.pop(), message))


def test_modal_loop_shows_progress_then_bakes_once_in_one_step(scene):
    client = _FakeClient()
    harness = _Harness(_plan(scene, prompt="a person waves"), client)
    client.replies = [{"id": "skeleton", "type": "result", **skeleton_reply()},
                      {"id": "generate", "type": "progress", "stage": "sampling", "fraction": 0.5}]
    assert harness.modal(bpy.context, _Event("TIMER")) == {"PASS_THROUGH"}
    assert (session.job.stage, session.job.fraction) == ("sampling", 0.5) and len(bpy.data.objects) == 0
    assert harness.modal(bpy.context, _Event("MOUSEMOVE")) == {"PASS_THROUGH"}
    client.replies = [{"id": "generate", **generate_result(frames=40)}]
    assert harness.modal(bpy.context, _Event("TIMER")) == {"FINISHED"}
    assert session.job is None and harness.reports[-1][0] == "INFO" and "baked 'a person waves s7'" in session.last_info
    assert len(bpy.data.actions) == 1 and len(scene.motionlcm.history) == 1


def test_modal_loop_escape_cancels_and_backend_errors_are_shown(scene):
    client = _FakeClient()
    harness = _Harness(_plan(scene), client)
    before = _state(scene)
    assert harness.modal(bpy.context, _Event("ESC", "PRESS")) == {"CANCELLED"}
    assert set(client.cancelled) == {"skeleton", "generate"} and session.job is None and _state(scene) == before
    harness = _Harness(_plan(scene), client)
    client.replies = [{"id": "skeleton", "type": "error", "code": "backend_crashed",
                       "message": "The MotionLCM backend stopped unexpectedly."}]
    assert harness.modal(bpy.context, _Event("TIMER")) == {"CANCELLED"}
    assert session.last_error == "The MotionLCM backend stopped unexpectedly." and _state(scene) == before
    assert harness.reports[-1] == ("ERROR", session.last_error)


def test_history_keeps_the_newest_entries(scene, monkeypatch):
    monkeypatch.setattr(generation, "HISTORY_LIMIT", 2)
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    for seed in (1, 2, 3):
        generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=seed)})
    assert [h.seed for h in scene.motionlcm.history] == [2, 3] and scene.motionlcm.active_history == 1
    assert len(bpy.data.actions) == 3


def test_regenerate_loads_the_entry_settings_into_the_panel(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj, prompt="a person kicks", seconds=3.0, steps="4")
    generation.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=42)})
    settings = scene.motionlcm
    settings.prompt, settings.seconds, settings.steps, settings.seed = "something else", 5.0, "1", 0
    bpy.ops.motionlcm.history_regenerate(index=0, load_only=True)
    assert (settings.prompt, settings.seconds, settings.steps, settings.seed) == ("a person kicks", 3.0, "4", 42)
    with pytest.raises(RuntimeError, match="No such generation"):
        bpy.ops.motionlcm.history_regenerate(index=5)
