"""The Generate operator's validation and the application of a result: success, or the scene left unchanged."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import motionlcm_blender  # noqa: E402
from addon_synthetic import Event, generate_result, operator_shell, skeleton_reply  # noqa: E402
from backend import limits as backend_limits  # noqa: E402
from motionlcm_blender import bake, character, scene_io, session  # noqa: E402


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
    ({"seconds": 1.9}, "Duration 1.9 s gives 38 model frames"),
    ({"seconds": 1.0}, "MotionLCM makes 2 to 120 s"),
    ({"target": "ARMATURE"}, "Pick the armature to animate")])
def test_invalid_settings_are_reported_and_change_nothing(scene, setup, message):
    for key, value in setup.items():
        setattr(scene.motionlcm, key, value)
    before = _state(scene)
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.motionlcm.generate()
    assert _state(scene) == before and session.run is None
    assert message in session.last_error


def test_bad_control_is_reported_before_anything_is_sent(scene):
    scene.motionlcm.controls.add()  # pelvis control without a source
    with pytest.raises(RuntimeError, match="pelvis control has no source object"):
        bpy.ops.motionlcm.generate()


def test_guidance_slider_starts_at_one_and_unticked_sends_the_default(scene):
    settings = scene.motionlcm
    settings.guidance = 0.0
    assert settings.guidance == 1.0  # the backend accepts 1..50
    assert scene_io.plan_generation(bpy.context).requests["generate"]["guidance"] is None
    settings.use_guidance, settings.guidance = True, 3.5
    assert scene_io.plan_generation(bpy.context).requests["generate"]["guidance"] == 3.5


def test_path_density_sets_the_fraction_of_pinned_frames(scene):
    bpy.ops.curve.primitive_bezier_curve_add()
    control = scene.motionlcm.controls.add()
    control.joint, control.source, control.mode, control.density = "pelvis", bpy.context.active_object, "PATH", 0.25
    scene.motionlcm.seconds = 4.0  # 80 model frames
    (sent,) = scene_io.plan_generation(bpy.context).requests["generate"]["controls"]
    assert len(sent["frames"]) == 20 and sent["frames"][0] == 0 and sent["frames"][-1] == 79
    assert "strength" not in sent and "strength" not in control.bl_rna.properties


def test_feet_are_locked_by_default_and_unticking_sends_it_off(scene):
    assert scene_io.plan_generation(bpy.context).requests["generate"]["foot_lock"] is True
    scene.motionlcm.foot_lock = False
    assert scene_io.plan_generation(bpy.context).requests["generate"]["foot_lock"] is False


def test_paths_are_fitted_by_default_and_unticking_sends_the_controlnet_alone(scene):
    bpy.ops.curve.primitive_bezier_curve_add()
    control = scene.motionlcm.controls.add()
    control.joint, control.source, control.mode = "pelvis", bpy.context.active_object, "PATH"
    sent = scene_io.plan_generation(bpy.context).requests["generate"]
    assert sent["fit"] is True and sent["tuning"] == 0  # fitting alone: milliseconds, as the CLI's default
    scene.motionlcm.tuning_iterations = 20
    assert scene_io.plan_generation(bpy.context).requests["generate"]["tuning"] == 20
    scene.motionlcm.fit_controls = False
    sent = scene_io.plan_generation(bpy.context).requests["generate"]
    assert sent["fit"] is False and sent["tuning"] == 0


def _plan(scene, **settings):
    for key, value in settings.items():
        setattr(scene.motionlcm, key, value)
    return scene_io.plan_generation(bpy.context)


def test_new_character_plan_asks_for_the_skeleton_then_generates(scene):
    scene.cursor.location = (2.0, 0.0, 0.0)
    plan = _plan(scene, prompt="a person jumps", seconds=2.0, seed=11)
    assert list(plan.requests) == ["skeleton", "generate"]
    assert plan.requests["generate"]["frames"] == 40 and plan.requests["generate"]["target_fps"] == 24.0
    obj = scene_io.apply_generation(bpy.context, plan, {"skeleton": skeleton_reply(),
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
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=1)})
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=2)})
    first = scene.motionlcm.history[0].action
    bpy.ops.motionlcm.history_apply(index=0)
    assert obj.animation_data.action == first and len(obj.animation_data.nla_tracks) == 2


def test_failed_bake_restores_the_previous_action(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=1)})
    before = _state(scene)
    broken = generate_result(frames=40, variations=3)
    broken["variations"][0]["local_quats"] = broken["variations"][0]["local_quats"][:, :5]  # baked last
    with pytest.raises(Exception):
        scene_io.apply_generation(bpy.context, plan, {"generate": broken})
    assert _state(scene) == before


def test_failed_generation_onto_a_new_character_leaves_no_character(scene):
    plan = _plan(scene)
    broken = generate_result(frames=40)
    del broken["variations"][0]["root_translation"]
    before = _state(scene)
    with pytest.raises(KeyError):
        scene_io.apply_generation(bpy.context, plan, {"skeleton": skeleton_reply(), "generate": broken})
    assert _state(scene) == before


def test_deleted_target_is_reported(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    character.remove_character(obj)
    with pytest.raises(ValueError, match="was deleted"):
        scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})


def test_bake_restore_helper_removes_only_new_actions(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    snapshot = bake.snapshot_animation(obj)
    scene_io.apply_generation(bpy.context, _plan(scene, target="ARMATURE", armature=obj),
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
    assert plan.target == scene_io.RIG and plan.requests["generate"]["rest_joints"] is None
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    action = rig.animation_data.action
    assert action["motionlcm_seed"] == 7 and scene.motionlcm.history[0].target == rig
    assert action.frame_range[:] == pytest.approx((1.0, 40.0))


def test_rig_with_unknown_names_is_mapped_by_shape(scene):
    rig = _user_rig([f"bone{i}" for i in range(22)])
    plan = _plan(scene, target="ARMATURE", armature=rig, mapping="auto")
    assert plan.target == scene_io.RIG
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40)})
    assert rig.animation_data.action["motionlcm_seed"] == 7


def test_unmappable_rig_is_refused_before_anything_is_sent(scene, fake_client):
    rig = _user_rig([f"bone{i}" for i in range(22)])
    # A named preset is never overruled by the shape: this rig has no Mixamo names.
    scene.motionlcm.target, scene.motionlcm.armature, scene.motionlcm.mapping = "ARMATURE", rig, "mixamo"
    before = _state(scene)
    with pytest.raises(RuntimeError, match="Cannot map the motion onto 'user rig'"):
        bpy.ops.motionlcm.generate()
    assert _state(scene) == before and fake_client.submitted == [] and session.run is None
    assert "Rename those bones or pick another preset" in session.last_error


class _FakeClient:
    """Answers pings at once with `limits` (the backend's own unless a test changes them), as the server does."""

    def __init__(self):
        self.replies, self.cancelled, self.submitted, self._pings = [], [], [], []
        self.limits = backend_limits.as_dict()

    def submit(self, request):
        if request["type"] == "ping":
            self._pings.append({"id": "ping", "type": "result", "limits": dict(self.limits)})
            return "ping"
        self.submitted.append(request)
        return request["type"]

    def poll(self):
        replies, self.replies, self._pings = self._pings + self.replies, [], []
        return replies

    def cancel(self, job_id):
        self.cancelled.append(job_id)


@pytest.fixture()
def fake_client(scene, monkeypatch):
    client = _FakeClient()
    monkeypatch.setattr(session, "client_for", lambda config: client)
    return client


def _start(scene, **settings):
    """The Generate button: the real operator validates, submits and goes modal; the shell gets its events."""
    for key, value in settings.items():
        setattr(scene.motionlcm, key, value)
    assert bpy.ops.motionlcm.generate() == {"RUNNING_MODAL"}
    return operator_shell(session.run)


def test_modal_operator_shows_progress_then_bakes_once(scene, fake_client):
    shell = _start(scene, prompt="a person waves")
    assert [r["type"] for r in fake_client.submitted] == ["skeleton", "generate"]
    assert not bpy.ops.motionlcm.generate.poll()  # one generation at a time
    fake_client.replies = [{"id": "skeleton", "type": "result", **skeleton_reply()},
                           {"id": "generate", "type": "progress", "stage": "sampling", "fraction": 0.5}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"PASS_THROUGH"}
    assert (session.run.stage, session.run.fraction) == ("sampling", 0.5) and len(bpy.data.objects) == 0
    assert shell.modal(bpy.context, Event("MOUSEMOVE")) == {"PASS_THROUGH"}
    fake_client.replies = [{"id": "generate", **generate_result(frames=40)}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"FINISHED"}
    assert session.run is None and shell._run.timer is None and shell.reports[-1][0] == "INFO"
    assert "baked 'a person waves s7'" in session.last_info
    assert len(bpy.data.actions) == 1 and len(scene.motionlcm.history) == 1


@pytest.mark.parametrize("how", ["esc", "cancel button"])
def test_escape_or_cancel_button_stops_the_run_and_changes_nothing(scene, fake_client, how):
    shell = _start(scene)
    before = _state(scene)
    if how == "esc":
        assert shell.modal(bpy.context, Event("ESC", "PRESS")) == {"CANCELLED"}
    else:
        assert bpy.ops.motionlcm.cancel() == {"FINISHED"}
        assert session.run is None  # the panel shows Generate again at once
        assert shell.modal(bpy.context, Event("TIMER")) == {"CANCELLED"}
    assert set(fake_client.cancelled) - {"ping"} == {"skeleton", "generate"} and _state(scene) == before
    assert shell.reports[-1][0] == "WARNING" and shell._run.timer is None
    fake_client.replies = [{"id": "generate", **generate_result(frames=40)}]  # a late reply is ignored
    assert shell._run.tick(bpy.context) == "CANCELLED" and _state(scene) == before


def test_backend_error_is_shown_and_changes_nothing(scene, fake_client):
    shell = _start(scene)
    before = _state(scene)
    fake_client.replies = [{"id": "skeleton", "type": "error", "code": "backend_crashed",
                            "message": "The MotionLCM backend stopped unexpectedly."}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"CANCELLED"}
    assert session.last_error == "The MotionLCM backend stopped unexpectedly." and _state(scene) == before
    assert shell.reports[-1] == ("ERROR", session.last_error) and "generate" in fake_client.cancelled


def _undo_state():
    """Python references die with an undo; compare by name."""
    anim = {o.name: (o.animation_data.action.name if o.animation_data and o.animation_data.action else None,
                     [t.name for t in o.animation_data.nla_tracks] if o.animation_data else [])
            for o in bpy.data.objects}
    return (sorted(bpy.data.objects.keys()), sorted(bpy.data.actions.keys()), anim,
            len(bpy.context.scene.motionlcm.history))


def _generate_with_fake_backend(scene, fake_client, seed, with_skeleton):
    shell = _start(scene, seed=seed)
    fake_client.replies = ([{"id": "skeleton", "type": "result", **skeleton_reply()}] if with_skeleton else []) + [
        {"id": "generate", **generate_result(frames=40, seed=seed)}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"FINISHED"}


def test_one_undo_removes_a_generation_with_its_new_character(scene, fake_client):
    bpy.ops.ed.undo_push(message="before")  # background Blender starts without an undo stack
    before = _undo_state()
    _generate_with_fake_backend(scene, fake_client, seed=1, with_skeleton=True)
    after = _undo_state()
    assert len(after[0]) == 2 and after != before  # the armature and its mesh
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert _undo_state() == before
    bpy.ops.ed.redo()
    assert _undo_state() == after


def test_create_character_operator_asks_only_for_the_skeleton(scene, fake_client):
    bpy.ops.ed.undo_push(message="before")
    assert bpy.ops.motionlcm.create_character() == {"RUNNING_MODAL"}
    shell = operator_shell(session.run, "MOTIONLCM_OT_create_character")
    assert [r["type"] for r in fake_client.submitted] == ["skeleton"]
    fake_client.replies = [{"id": "skeleton", "type": "result", **skeleton_reply()}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"FINISHED"}
    (armature,) = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert character.is_motionlcm_character(armature) and armature.animation_data is None
    assert shell.reports[-1] == ("INFO", f"MotionLCM: created {armature.name}.")
    bpy.ops.ed.undo()
    assert len(bpy.data.objects) == 0


def test_one_undo_reassigns_the_previous_action(scene, fake_client):
    character.create_character(bpy.context, skeleton_reply(), name="hero")
    scene.motionlcm.target, scene.motionlcm.armature = "ARMATURE", bpy.data.objects["hero"]
    _generate_with_fake_backend(scene, fake_client, seed=1, with_skeleton=False)
    first = _undo_state()
    assert first[2]["hero"] == ("a person walks forward and waves s1", [])
    _generate_with_fake_backend(scene, fake_client, seed=2, with_skeleton=False)
    assert _undo_state()[2]["hero"] == ("a person walks forward and waves s2", ["a person walks forward and waves s1"])
    assert bpy.ops.ed.undo() == {"FINISHED"}
    assert _undo_state() == first


def test_history_keeps_the_newest_entries(scene, monkeypatch):
    monkeypatch.setattr(scene_io, "HISTORY_LIMIT", 2)
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj)
    for seed in (1, 2, 3):
        scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=seed)})
    assert [h.seed for h in scene.motionlcm.history] == [2, 3] and scene.motionlcm.active_history == 1
    assert len(bpy.data.actions) == 3


def test_regenerate_loads_the_entry_settings_into_the_panel(scene):
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj, prompt="a person kicks", seconds=3.0, steps="4")
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=40, seed=42)})
    settings = scene.motionlcm
    settings.prompt, settings.seconds, settings.steps, settings.seed = "something else", 5.0, "1", 0
    bpy.ops.motionlcm.history_regenerate(index=0, load_only=True)
    assert (settings.prompt, settings.seconds, settings.steps, settings.seed) == ("a person kicks", 3.0, "4", 42)
    with pytest.raises(RuntimeError, match="No such generation"):
        bpy.ops.motionlcm.history_regenerate(index=5)


def test_validation_follows_the_limits_the_backend_sends(scene, fake_client):
    """The backend's ping reply (backend/limits.py) replaces the add-on's fallback copy: a backend that allows
    fewer variations, or longer clips, is what the panel is validated against from then on."""
    fake_client.limits = {**backend_limits.as_dict(), "max_variations": 3, "max_frames": 240}
    shell = _start(scene, prompt="a person waves")
    fake_client.replies += [{"id": "skeleton", "type": "result", **skeleton_reply()},
                            {"id": "generate", **generate_result(frames=40)}]
    assert shell.modal(bpy.context, Event("TIMER")) == {"FINISHED"}
    assert session.limits["max_variations"] == 3
    scene.motionlcm.variations = 4
    with pytest.raises(RuntimeError, match="Variations must be between 1 and 3"):
        bpy.ops.motionlcm.generate()
    scene.motionlcm.variations, scene.motionlcm.seconds = 1, 12.0  # 240 frames: this backend takes them
    assert scene_io.plan_generation(bpy.context).requests["generate"]["frames"] == 240


def test_the_ar_engine_sends_prompt_and_duration_up_to_30_s_and_says_what_it_cannot_do(scene):
    """Engine: AR (MotionMillion): 25 s in one piece (no segments), no steps or controls in the request; with a
    trajectory control, a timeline or over 30 s Generate is refused with the fix, before anything changes."""
    settings = scene.motionlcm
    settings.engine, settings.prompt, settings.seconds = "ar", "a person walks in a long line", 25.0
    request = scene_io.plan_generation(bpy.context).requests["generate"]
    assert request["engine"] == "ar" and request["frames"] == 500
    assert not {"steps", "controls", "tuning", "timeline", "fit"} & set(request)
    for setup, message in (({"seconds": 31.0}, "the AR engine makes 2 to 30 s"),
                           ({"use_timeline": True}, "Timelines and Continue use the MotionLCM engine")):
        for key, value in setup.items():
            setattr(settings, key, value)
        before = _state(scene)
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.motionlcm.generate()
        assert _state(scene) == before
        settings.seconds, settings.use_timeline = 25.0, False
    settings.controls.add()  # even without a source: the engine's limit is said first
    with pytest.raises(RuntimeError, match="Trajectory controls are not part of the AR engine"):
        bpy.ops.motionlcm.generate()
    settings.controls.remove(0)
    # The history remembers the engine, and Regenerate restores it.
    obj = character.create_character(bpy.context, skeleton_reply())
    plan = _plan(scene, target="ARMATURE", armature=obj, engine="ar", seconds=12.0)
    scene_io.apply_generation(bpy.context, plan, {"generate": generate_result(frames=240, seed=3)})
    settings.engine = "motionlcm"
    bpy.ops.motionlcm.history_regenerate(index=0, load_only=True)
    assert settings.engine == "ar" and settings.seconds == 12.0
