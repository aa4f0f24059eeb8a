"""End to end in headless Blender: the add-on's Generate path through the real child-process backend
with a small randomly initialised checkpoint, and its failure paths (missing interpreter, killed
backend, invalid input), each of which must leave the scene unchanged.

Headless Blender has no window, so no modal operator runs; `run_generate` does exactly what the
Generate operator does, step by step: plan (validate) -> submit -> poll on each timer tick -> apply.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import motionlcm_blender  # noqa: E402
from backend_doubles import make_random_checkpoint  # noqa: E402
from conftest import REPO  # noqa: E402
from motionlcm_blender import generation, generation_request, session  # noqa: E402
from motionlcm_blender.backend_job import BackendJob  # noqa: E402
from motionlcm_blender.client import BackendError  # noqa: E402

SCENE_FPS = 24
TICK_SECONDS = 0.02


@pytest.fixture(scope="module")
def backend_config(tmp_path_factory):
    checkpoint = make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    return {"python": sys.executable, "backend_root": str(REPO), "checkpoint": str(checkpoint), "device": "cpu"}


@pytest.fixture(scope="module")
def addon():
    """Registered once for the module (registration survives a factory reset); unregistering stops the backend."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    yield
    motionlcm_blender.unregister()


@pytest.fixture
def scene(addon):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = SCENE_FPS, 1.0
    settings = scene.motionlcm
    settings.prompt, settings.seconds, settings.seed, settings.start_frame = "a person walks forward", 2.5, 3, 1
    settings.target = "NEW"
    return scene


def scene_state() -> dict[str, object]:
    """What a failed generation must not change."""
    return {"objects": sorted(o.name for o in bpy.data.objects), "actions": sorted(a.name for a in bpy.data.actions),
            "armatures": len(bpy.data.armatures), "meshes": len(bpy.data.meshes),
            "history": len(bpy.context.scene.motionlcm.history)}


def run_generate(config: dict, timeout: float = 180.0, on_progress=None):
    """The Generate operator's steps; returns (object or None, job)."""
    context = bpy.context
    plan = generation.plan_generation(context)
    job = BackendJob(session.client_for(config), plan.requests)
    deadline = time.monotonic() + timeout
    while not job.update():  # one timer tick
        if on_progress is not None and job.stage not in ("starting backend", "queued"):
            on_progress(job)
        assert time.monotonic() < deadline, f"no reply in {timeout} s; backend log:\n{session.client_for(config).stderr_tail()}"
        time.sleep(TICK_SECONDS)
    if job.error is not None:
        return None, job
    return generation.apply_generation(context, plan, job.results), job


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
    """DESIGN.md: Blender (x, y, z) = HumanML3D (x, -z, y); unit scale 1; the character stands at `location`."""
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


def test_generate_bakes_the_backend_joints_and_a_second_generation_keeps_the_first(scene, backend_config):
    obj, job = run_generate(backend_config)
    assert job.error is None and obj is not None and obj.type == "ARMATURE"
    result = job.results["generate"]
    variation = result["variations"][0]
    assert result["fps"] == SCENE_FPS and len(variation["joints"]) == result["frame_count"]
    first = obj.animation_data.action
    start = scene.motionlcm.start_frame
    heads = bone_heads_world(obj, list(result["joint_names"]), range(start, start + result["frame_count"]))
    expected = humanml_to_blender_world(variation["joints"], obj.location)
    error = np.linalg.norm(heads - expected, axis=-1)
    assert error.max() < 0.01, f"bone heads differ from the backend's joints by up to {error.max() * 100:.2f} cm"

    first_values = fcurve_values(first)
    scene.motionlcm.target, scene.motionlcm.armature, scene.motionlcm.seed = "ARMATURE", obj, 4
    again, job = run_generate(backend_config)
    assert job.error is None and again == obj
    second = obj.animation_data.action
    assert second != first and second.name != first.name
    in_nla = [strip.action for track in obj.animation_data.nla_tracks for strip in track.strips]
    assert first in in_nla
    np.testing.assert_array_equal(fcurve_values(first), first_values)


def test_missing_interpreter_leaves_the_scene_unchanged(scene, backend_config):
    before = scene_state()
    with pytest.raises(BackendError, match="was not found") as caught:
        run_generate({**backend_config, "python": "/nonexistent/bin/python3"})
    assert caught.value.code == "backend_unavailable" and scene_state() == before


def test_killed_backend_reports_a_crash_and_the_next_generate_restarts_it(scene, backend_config):
    client = session.client_for(backend_config)
    client.restart()  # a fresh backend spends seconds in "loading": a kill lands mid-request every time
    before = scene_state()
    killed = []

    def kill_once(job):
        if not killed:
            killed.append(client.pid)
            os.kill(client.pid, signal.SIGKILL)

    obj, job = run_generate(backend_config, on_progress=kill_once)
    assert killed and obj is None and job.error_code == "backend_crashed"
    assert "stopped unexpectedly" in job.error and scene_state() == before
    obj, job = run_generate(backend_config)
    assert job.error is None and obj is not None and client.pid != killed[0]


@pytest.mark.parametrize("field, value, words", [
    ("prompt", "   ", "prompt is empty"),
    ("seconds", 12.0, "gives 240 model frames"),
])
def test_invalid_prompt_or_duration_is_refused_before_anything_changes(scene, field, value, words):
    before = scene_state()
    setattr(scene.motionlcm, field, value)
    with pytest.raises(generation_request.RequestError, match=words):
        run_generate({})
    assert scene_state() == before


def test_invalid_request_that_reaches_the_backend_is_reported_and_changes_nothing(scene, backend_config):
    before = scene_state()
    job = BackendJob(session.client_for(backend_config),
                     {"generate": {"type": "generate", "prompt": "a person jumps", "frames": 500}})
    deadline = time.monotonic() + 60
    while not job.update():
        assert time.monotonic() < deadline
        time.sleep(TICK_SECONDS)
    assert job.error_code == "invalid_request" and "between 40 and 196" in job.error
    assert scene_state() == before
