"""End to end in headless Blender: the Generate operator through the real child-process backend with a small
randomly initialised checkpoint, and its failure paths (missing interpreter, killed backend, invalid input,
unmappable rig), each of which must leave the scene unchanged with a clear message.

`bpy.ops.motionlcm.generate()` runs the real operator (validate, submit, timer, modal handler); headless
Blender delivers no events, so `addon_synthetic.drive` sends timer events to the operator class's modal().
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_synthetic import Event, addon, drive, fresh_scene, operator_shell, skeleton_reply  # noqa: E402,F401 (addon: a fixture)
from backend_doubles import make_random_checkpoint  # noqa: E402
from conftest import REPO  # noqa: E402
from motionlcm_blender import character, client, session  # noqa: E402
from motionlcm_blender.backend_job import BackendJob  # noqa: E402

SCENE_FPS = 24
TICK_SECONDS = 0.02


@pytest.fixture(scope="module")
def backend_config(tmp_path_factory):
    checkpoint = make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    return {"python": sys.executable, "backend_root": str(REPO), "checkpoint": str(checkpoint), "device": "cpu"}


@pytest.fixture
def use_config(monkeypatch):
    """What install.py's backend_config.json would hold (the add-on is registered, not enabled: no preferences)."""
    def use(config):
        monkeypatch.setattr(client, "read_backend_config", lambda: dict(config))
    return use


@pytest.fixture
def scene(addon, backend_config, use_config):
    scene = fresh_scene(2.5, SCENE_FPS)
    use_config(backend_config)
    return scene


def scene_state() -> dict[str, object]:
    """What a failed generation must not change."""
    return {"objects": sorted(o.name for o in bpy.data.objects), "actions": sorted(a.name for a in bpy.data.actions),
            "armatures": len(bpy.data.armatures), "meshes": len(bpy.data.meshes),
            "history": len(bpy.context.scene.motionlcm.history)}


def generate(on_tick=None):
    """Click Generate and wait; returns (the operator's outcome, its run, its reports)."""
    assert bpy.ops.motionlcm.generate() == {"RUNNING_MODAL"}
    shell = operator_shell(session.run)
    outcome = drive(shell, bpy.context, on_tick=on_tick)
    return outcome, shell._run, shell.reports


def bone_heads_world(obj, names: list[str], frames: range) -> np.ndarray:
    """(T, J, 3) evaluated world-space bone heads, frame by frame."""
    heads = np.zeros((len(frames), len(names), 3))
    for i, frame in enumerate(frames):
        bpy.context.scene.frame_set(frame)
        matrix = np.array(obj.matrix_world)
        for j, name in enumerate(names):
            heads[i, j] = (matrix @ np.append(np.array(obj.pose.bones[name].head), 1.0))[:3]
    return heads


def humanml_to_blender_world(joints: np.ndarray, location) -> np.ndarray:
    """The add-on's axes (curves.py): Blender (x, y, z) = HumanML3D (x, -z, y); unit scale 1; the character stands at `location`."""
    return np.stack([joints[..., 0], -joints[..., 2], joints[..., 1]], axis=-1) + np.asarray(location)


def fcurve_values(action) -> np.ndarray:
    values = []
    for layer in action.layers:
        for strip in layer.strips:
            for bag in strip.channelbags:
                for fcurve in bag.fcurves:
                    coords = np.zeros(2 * len(fcurve.keyframe_points))
                    fcurve.keyframe_points.foreach_get("co", coords)
                    values.append(coords)
    return np.concatenate(values)


def test_generate_bakes_the_backend_joints_and_a_second_generation_keeps_the_first(scene):
    bpy.ops.ed.undo_push(message="empty scene")  # background Blender starts without an undo stack
    outcome, run, reports = generate()
    assert outcome == {"FINISHED"}, session.last_error
    obj = bpy.data.objects[scene.motionlcm.history[0].target.name]
    assert obj.type == "ARMATURE" and reports[-1][0] == "INFO"
    result = run.job.results["generate"]
    variation = result["variations"][0]
    assert result["fps"] == SCENE_FPS and len(variation["joints"]) == result["frame_count"]
    first = obj.animation_data.action
    start = scene.motionlcm.start_frame
    heads = bone_heads_world(obj, list(result["joint_names"]), range(start, start + result["frame_count"]))
    expected = humanml_to_blender_world(variation["joints"], obj.location)
    error = np.linalg.norm(heads - expected, axis=-1)
    assert error.max() < 0.01, f"bone heads differ from the backend's joints by up to {error.max() * 100:.2f} cm"

    name, first_name, first_values = obj.name, first.name, fcurve_values(first)
    scene.motionlcm.target, scene.motionlcm.armature, scene.motionlcm.seed = "ARMATURE", obj, 4
    outcome, run, _reports = generate()
    assert outcome == {"FINISHED"} and scene.motionlcm.history[1].target == obj
    second = obj.animation_data.action
    assert second != first and second.name != first.name
    in_nla = [strip.action for track in obj.animation_data.nla_tracks for strip in track.strips]
    assert first in in_nla
    np.testing.assert_array_equal(fcurve_values(first), first_values)

    assert bpy.ops.ed.undo() == {"FINISHED"}  # one step: the second generation is gone, the first assigned
    obj = bpy.data.objects[name]  # an undo reloads every datablock: old references are dead
    assert obj.animation_data.action.name == first_name and len(obj.animation_data.nla_tracks) == 0
    assert sorted(bpy.data.actions.keys()) == [first_name] and len(bpy.context.scene.motionlcm.history) == 1
    assert bpy.ops.ed.undo() == {"FINISHED"}  # and one more: no character
    assert len(bpy.data.objects) == 0 and len(bpy.data.actions) == 0


def test_missing_interpreter_leaves_the_scene_unchanged(scene, backend_config, use_config):
    use_config({**backend_config, "python": "/nonexistent/bin/python3"})
    before = scene_state()
    with pytest.raises(RuntimeError, match="was not found"):
        bpy.ops.motionlcm.generate()
    assert scene_state() == before and session.run is None and "/nonexistent/bin/python3" in session.last_error


def test_killed_backend_reports_a_crash_and_the_next_generate_restarts_it(scene, backend_config):
    backend = session.client_for(backend_config)
    backend.restart()  # a fresh backend spends seconds in "loading": a kill lands mid-request every time
    before = scene_state()
    killed = []

    def kill_once(run):
        if not killed and run.stage not in ("starting backend", "queued"):
            killed.append(backend.pid)
            os.kill(backend.pid, signal.SIGKILL)

    outcome, run, reports = generate(on_tick=kill_once)
    assert killed and outcome == {"CANCELLED"} and run.job.error_code == "backend_crashed"
    assert "stopped unexpectedly" in session.last_error and reports[-1] == ("ERROR", session.last_error)
    assert scene_state() == before
    outcome, _run, _reports = generate()
    assert outcome == {"FINISHED"} and backend.pid != killed[0]


def test_escape_aborts_a_real_generation_and_the_next_one_still_works(scene):
    before = scene_state()
    assert bpy.ops.motionlcm.generate() == {"RUNNING_MODAL"}
    shell = operator_shell(session.run)
    assert shell.modal(bpy.context, Event("ESC", "PRESS")) == {"CANCELLED"}
    assert shell.reports[-1][0] == "WARNING" and session.run is None and scene_state() == before
    time.sleep(2.0)  # whatever the backend still sends for the cancelled requests is dropped
    assert shell._run.tick(bpy.context) == "CANCELLED" and scene_state() == before
    outcome, run, _reports = generate()
    assert outcome == {"FINISHED"} and len(bpy.data.actions) == 1


@pytest.mark.parametrize("field, value, words", [
    ("prompt", "   ", "prompt is empty"),
    ("seconds", 1.5, "gives 30 model frames"),
])
def test_invalid_prompt_or_duration_is_refused_before_anything_changes(scene, field, value, words):
    before = scene_state()
    setattr(scene.motionlcm, field, value)
    with pytest.raises(RuntimeError, match=words):
        bpy.ops.motionlcm.generate()
    assert scene_state() == before and words in session.last_error


def test_armature_without_a_mapping_is_refused_before_anything_changes(scene):
    reply = skeleton_reply()
    reply.update(joint_names=[f"bone{i}" for i in range(22)], mesh=None)
    rig = character.create_character(bpy.context, reply, name="custom rig")
    del rig[character.SKELETON_TAG]  # a user's own armature
    scene.motionlcm.target, scene.motionlcm.armature, scene.motionlcm.mapping = "ARMATURE", rig, "mixamo"
    before = scene_state()
    with pytest.raises(RuntimeError, match="Cannot map the motion onto 'custom rig'"):
        bpy.ops.motionlcm.generate()
    assert scene_state() == before and rig.animation_data is None


def test_invalid_request_that_reaches_the_backend_is_reported_and_changes_nothing(scene, backend_config):
    before = scene_state()
    job = BackendJob(session.client_for(backend_config),
                     {"generate": {"type": "generate", "prompt": "a person jumps", "frames": 5000}})
    deadline = time.monotonic() + 60
    while not job.update():
        assert time.monotonic() < deadline
        time.sleep(TICK_SECONDS)
    assert job.error_code == "invalid_request" and "between 40 and 2400" in job.error
    assert scene_state() == before


def test_a_curve_is_fitted_and_what_cannot_be_met_is_shown(scene):
    """A pelvis curve through the real backend: fitted by default, the panel says how far the pelvis is from it;
    a curve 3 m up is kept at a body's height and the warning says so, in the panel and in Blender's report."""
    bpy.ops.curve.primitive_bezier_curve_add(location=(0.0, 1.0, 0.0))  # on the floor: lifted to standing height
    curve = bpy.context.active_object
    control = scene.motionlcm.controls.add()
    control.joint, control.source, control.mode = "pelvis", curve, "PATH"
    outcome, run, reports = generate()
    assert outcome == {"FINISHED"}, session.last_error
    assert run.job.results["generate"]["variations"][0]["controls"]["fitted"] is True
    assert "pelvis 0.0 cm from its control on average (0.0 cm at worst)" in session.last_info
    # (a random test model does not walk, so the panel may warn that the feet slide; never about the height)
    assert not any("above the floor" in w for w in session.last_warnings)

    curve.location.z = 3.0  # a path no pelvis reaches
    outcome, run, reports = generate()
    assert outcome == {"FINISHED"}, session.last_error
    warnings = [text for level, text in reports if level == "WARNING"]
    assert any("above the floor" in w for w in session.last_warnings) and len(warnings) >= 2
    assert all(w.startswith("MotionLCM: ") and w[len("MotionLCM: "):] in session.last_warnings for w in warnings)
