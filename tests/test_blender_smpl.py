"""End to end in headless Blender: Create SMPL Character through the real operator and child backend, with the
default wooden mannequin and with a user's SMPL model folder (a synthetic one, see test_smpl_model.py), then a
motion retargeted onto the character's rest skeleton is baked and the evaluated (deformed) mesh must follow the
bones: every vertex is the skin-weighted blend of its bones' world transforms, to within a millimetre."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_synthetic import addon, drive, operator_shell  # noqa: E402,F401 (addon: a fixture)
from backend.motion import Motion  # noqa: E402
from backend.retarget import Retargeted, RestSkeleton, default_skeleton, retarget  # noqa: E402
from backend.motion.skeleton import JOINT_NAMES, PARENTS  # noqa: E402
from conftest import REPO  # noqa: E402
from motionlcm_blender import bake, character, client, curves, preferences, session  # noqa: E402
from test_smpl_model import on_floor, write_synthetic_model  # noqa: E402

SCENE_FPS = 24
CURSOR = (1.0, 2.0, 0.0)


@pytest.fixture
def create(addon, monkeypatch):
    """Click Create SMPL Character with this backend configuration; returns (armature, the skeleton reply)."""
    def run(**config):
        monkeypatch.setattr(client, "read_backend_config", lambda: {
            "python": sys.executable, "backend_root": str(REPO), "device": "cpu", **config})
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base, scene.cursor.location = SCENE_FPS, 1.0, CURSOR
        assert bpy.ops.motionlcm.create_character() == {"RUNNING_MODAL"}
        shell = operator_shell(session.run, "MOTIONLCM_OT_create_character")
        assert drive(shell, bpy.context) == {"FINISHED"}, session.last_error
        (arm,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
        return arm, shell._run.job.results["skeleton"]
    return run


def swaying_motion(frames: int = 40) -> Motion:
    """Joints of every bone swinging about its own axis (up to ~0.5 rad) while the body walks along +Z."""
    rng = np.random.default_rng(1)
    axes = rng.standard_normal((22, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    t = np.arange(frames)[:, None] / 20.0
    angle = 0.5 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 2 * np.pi, 22))  # (T, 22)
    quats = np.concatenate([np.cos(angle / 2)[..., None], np.sin(angle / 2)[..., None] * axes], axis=-1)
    rest = default_skeleton().joints
    root = rest[0] + np.stack([np.zeros(frames), np.zeros(frames), 1.2 * t[:, 0]], axis=1)
    return Motion(Retargeted(root, quats, 20.0, rest, JOINT_NAMES, PARENTS).fk().astype(np.float32))


def skin_transforms(arm, weights: np.ndarray) -> np.ndarray:
    """(V, 4, 4) per-vertex blend of the bones' transforms from rest to the current pose, in world space."""
    world = np.array(arm.matrix_world)
    bones = [(np.array(arm.pose.bones[name].matrix), np.array(arm.data.bones[name].matrix_local))
             for name in JOINT_NAMES]
    moves = np.stack([world @ pose @ np.linalg.inv(world @ rest) for pose, rest in bones])  # (22, 4, 4)
    return np.einsum("vj,jab->vab", weights, moves)


def world_points(matrix, points: np.ndarray) -> np.ndarray:
    return curves.transform_points(points, np.array(matrix))


@pytest.mark.parametrize("body", ["mannequin", "smpl"])
def test_the_baked_character_deforms_with_its_bones(create, tmp_path, body):
    config = {}
    if body == "smpl":
        pytest.importorskip("smplx")
        model = write_synthetic_model(tmp_path, gender="male")
        config = {"smpl_dir": str(tmp_path), "smpl_gender": "male"}
    arm, reply = create(**config)
    rest = character.rest_joints_of(arm)
    np.testing.assert_allclose(rest, reply["rest_joints"], atol=1e-6)
    if body == "smpl":  # the model's own joints and body, not the mannequin's
        np.testing.assert_allclose(rest, on_floor(model["J_regressor"] @ model["v_template"])[:22], atol=1e-5)
        assert len(reply["mesh"]["vertices"]) == len(model["v_template"])
    (mesh_obj,) = arm.children
    rest_vertices = np.array([v.co for v in mesh_obj.data.vertices])
    np.testing.assert_allclose(rest_vertices, curves.humanml_to_blender(reply["mesh"]["vertices"]), atol=1e-5)
    weights = np.zeros((len(rest_vertices), 22))
    np.put_along_axis(weights, reply["mesh"]["skin_joints"].astype(np.int64), reply["mesh"]["skin_weights"], axis=1)
    rest_world = world_points(mesh_obj.matrix_world, rest_vertices)

    target = retarget(swaying_motion(), RestSkeleton(rest), target_fps=SCENE_FPS)
    variation = {"root_translation": target.root_translation, "local_quats": target.local_quats,
                 "joints": target.fk()}
    bake.bake_variation(arm, list(JOINT_NAMES), variation, target.fps, 1, SCENE_FPS, "sway")
    rigid = (weights > 0.9999).any(axis=1)
    assert rigid.sum() > 0.1 * len(weights)
    for frame in (1, target.num_frames // 2, target.num_frames):
        bpy.context.scene.frame_set(frame)
        evaluated = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        deformed = evaluated.to_mesh()
        coords = np.zeros(3 * len(deformed.vertices))
        deformed.vertices.foreach_get("co", coords)
        evaluated.to_mesh_clear()
        actual = world_points(mesh_obj.matrix_world, coords.reshape(-1, 3))
        moves = skin_transforms(arm, weights)
        expected = np.einsum("vab,vb->va", moves[:, :3], np.append(rest_world, np.ones((len(rest_world), 1)), 1))
        error = np.linalg.norm(actual - expected, axis=1)
        assert error[rigid].max() < 1e-3, f"frame {frame}: rigidly bound vertices off by {error[rigid].max():.4f} m"
        assert error.max() < 1e-3, f"frame {frame}: blended vertices off by {error.max():.4f} m"
        heads = world_points(arm.matrix_world, np.array([arm.pose.bones[n].head for n in JOINT_NAMES]))
        joints = curves.humanml_to_blender(variation["joints"][frame - 1]) + CURSOR
        assert np.abs(heads - joints).max() < 0.01  # the bake itself reproduces the retargeted joints
    assert np.linalg.norm(actual - rest_world, axis=1).max() > 0.3  # it did move: walked and swayed


def test_changing_the_smpl_folder_restarts_the_backend_with_the_new_body(create, tmp_path):
    pytest.importorskip("smplx")

    def backend():  # what the operators use: the client for the current preferences / backend_config.json
        return session.client_for(preferences.backend_config(None))

    _arm, mannequin = create()
    first = backend().pid
    model = write_synthetic_model(tmp_path)
    _arm, smpl = create(smpl_dir=str(tmp_path))
    assert backend().pid not in (None, first) and "--smpl-dir" in backend().server_args
    assert len(smpl["mesh"]["vertices"]) == len(model["v_template"]) != len(mannequin["mesh"]["vertices"])


def test_preferences_pass_the_folder_and_body_only_when_a_folder_is_set(monkeypatch):
    monkeypatch.setattr(client, "read_backend_config", lambda: {"python": sys.executable})
    prefs = SimpleNamespace(backend_python="", server_url="", server_token="", checkpoint_path="",
                            text_encoder_path="", device="cpu", smpl_model_dir="/models/smplx", smpl_gender="female")
    config = preferences.backend_config(prefs)
    assert (config["smpl_dir"], config["smpl_gender"]) == ("/models/smplx", "female")
    prefs.smpl_model_dir = ""
    assert "smpl_dir" not in preferences.backend_config(prefs)
    assert "smpl_gender" not in preferences.backend_config(prefs)  # the mannequin's backend need not restart
