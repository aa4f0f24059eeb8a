"""Synthetic backend replies for the add-on tests: an SMPL-like rest skeleton, a tiny skinned mesh and
a generate result whose `joints` are the forward kinematics of its rotations (docs/protocol.md)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.motion.skeleton import JOINT_NAMES, PARENTS, RAW_OFFSETS

BONE_LENGTHS = np.array([0, .1, .1, .12, .38, .38, .14, .4, .4, .06, .13, .13,
                         .2, .08, .08, .12, .12, .12, .26, .26, .25, .25])
PELVIS_HEIGHT = 0.94


def rest_joints() -> np.ndarray:
    """(22, 3) HumanML3D rest positions built from the uniform skeleton's directions."""
    rest = np.zeros((22, 3))
    rest[0] = [0.0, PELVIS_HEIGHT, 0.0]
    for j in range(1, 22):
        rest[j] = rest[PARENTS[j]] + RAW_OFFSETS[j] * BONE_LENGTHS[j]
    return rest


def skeleton_reply() -> dict:
    """A `skeleton` reply with one skinned triangle per joint (weights 0.7 joint / 0.3 parent)."""
    rest = rest_joints()
    corners = np.array([[0.02, 0, 0], [-0.02, 0, 0], [0, 0.03, 0.02]])
    vertices = (rest[:, None, :] + corners[None]).reshape(-1, 3)
    faces = np.arange(66, dtype=np.int32).reshape(22, 3)
    skin_joints = np.repeat(np.stack([np.arange(22), np.maximum(PARENTS, 0)], axis=1), 3, axis=0)
    skin_weights = np.tile([0.7, 0.3], (66, 1))
    return {"joint_names": list(JOINT_NAMES), "parents": list(PARENTS), "rest_joints": rest.astype(np.float32),
            "mesh": {"vertices": vertices.astype(np.float32), "faces": faces,
                     "skin_joints": skin_joints.astype(np.int32), "skin_weights": skin_weights.astype(np.float32)}}


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    qv = np.concatenate([np.zeros(v.shape[:-1] + (1,)), v], -1)
    return _quat_mul(_quat_mul(q, qv), q * np.array([1, -1, -1, -1]))[..., 1:]


def forward_kinematics(rest: np.ndarray, root_translation: np.ndarray, local_quats: np.ndarray) -> np.ndarray:
    """Protocol convention: G_j = G_parent L_j; p_j = p_parent + G_parent (rest_j - rest_parent)."""
    frames = len(root_translation)
    glob = np.zeros((frames, 22, 4))
    joints = np.zeros((frames, 22, 3))
    glob[:, 0], joints[:, 0] = local_quats[:, 0], root_translation
    for j in range(1, 22):
        p = PARENTS[j]
        glob[:, j] = _quat_mul(glob[:, p], local_quats[:, j])
        joints[:, j] = joints[:, p] + _rotate(glob[:, p], np.broadcast_to(rest[j] - rest[p], (frames, 3)))
    return joints


def generate_result(frames: int = 48, fps: float = 24.0, seed: int = 7, variations: int = 1) -> dict:
    """A `result` reply with smooth random rotations (up to ~70 degrees) and a walking root."""
    rng = np.random.default_rng(seed)
    rest = rest_joints()
    out = []
    for v in range(variations):
        t = np.linspace(0, 1, frames)[:, None]
        axes = rng.normal(size=(22, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        angles = 1.2 * np.sin(2 * np.pi * (t + rng.uniform(size=22)))  # (T, 22)
        quats = np.concatenate([np.cos(angles / 2)[..., None], np.sin(angles / 2)[..., None] * axes], -1)
        root = np.column_stack([0.3 * np.sin(3 * t[:, 0]), PELVIS_HEIGHT + 0.05 * t[:, 0], 2.0 * t[:, 0]])
        joints = forward_kinematics(rest, root, quats)
        out.append({"seed": seed + v, "root_translation": root.astype(np.float32),
                    "local_quats": quats.astype(np.float32), "joints": joints.astype(np.float32)})
    return {"type": "result", "fps": fps, "frame_count": frames, "joint_names": list(JOINT_NAMES),
            "parents": list(PARENTS), "rest_joints": rest.astype(np.float32), "variations": out,
            "settings": {"seed": seed, "steps": 1, "guidance": 7.5, "prompt": "a person walks", "frames": 40,
                         "target_fps": fps}, "timings": {"total": 1.0}}


class Event:
    """What a modal operator reads of a bpy.types.Event."""

    def __init__(self, kind: str, value: str = "NOTHING") -> None:
        self.type, self.value = kind, value


def operator_shell(run, operator: str = "MOTIONLCM_OT_generate"):
    """The modal operator's own methods bound to a plain object holding `run`.

    `bpy.ops.motionlcm.generate()` works headless (execute() starts the run, adds the timer and the modal
    handler), but headless Blender never delivers events to that handler; the shell is how a test delivers
    them, through the operator class's unmodified modal()."""
    from motionlcm_blender import operators

    shell = type("OperatorShell", (operators._BackendOperator,), {
        "character_only": getattr(operators, operator).character_only,
        "report": lambda self, kind, text: self.reports.append((*kind, text))})()
    shell._run, shell.reports = run, []
    return shell


def drive(shell, context, timeout: float = 180.0, on_tick=None) -> set[str]:
    """Timer events every 20 ms until the operator's modal() ends; returns its outcome."""
    import time

    deadline = time.monotonic() + timeout
    while (outcome := shell.modal(context, Event("TIMER"))) == {"PASS_THROUGH"}:
        assert time.monotonic() < deadline, f"no reply within {timeout} s"
        if on_tick is not None:
            on_tick(shell._run)
        time.sleep(0.02)
    return outcome


@pytest.fixture(scope="module")
def addon():
    """The add-on registered once for a test module (registration survives a factory reset); unregistering
    stops its backend."""
    import bpy
    import motionlcm_blender

    bpy.ops.wm.read_factory_settings(use_empty=True)
    motionlcm_blender.register()
    yield
    motionlcm_blender.unregister()


def fresh_scene(seconds: float, fps: int = 24):
    """An empty Blender scene at `fps` with the panel set to generate "a person walks forward" for `seconds`
    (seed 3, from frame 1) onto a new character: where the end-to-end tests start."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    settings = scene.motionlcm
    settings.prompt, settings.seconds, settings.seed, settings.start_frame = "a person walks forward", seconds, 3, 1
    settings.target = "NEW"
    return scene
