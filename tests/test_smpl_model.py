"""A user's SMPL / SMPL-X model as the character's body (--smpl-dir): rest joints, shape, mesh and weights, the
`skeleton` and `generate` replies, and clear errors for a bad folder or a missing `smplx` package.

No licensed model files are available to tests, so `write_synthetic_model` writes a small body in the files' own
format (what smplx reads): a cluster of vertices around each joint whose mean is the joint (so J_regressor recovers
the chosen joints exactly), bound 100 % to it, and a ring around each bone's middle shared by both ends.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.serving import protocol, server
from backend.serving.body_mesh import model_body
from backend.retarget.rest_pose import default_skeleton
from backend.retarget.smpl_model import skeleton_from_model
from backend.serving.server import BodyModel, Session
from backend.motion.skeleton import PARENTS
from backend_doubles import FakePipeline, Replies
from conftest import REPO
from motionlcm_blender.client import BackendClient

NATIVE_SHIFT = np.array([0.02, -0.35, 0.03])  # where the model's own frame puts the body: undone by the floor
HEAD, LEFT_WRIST, RIGHT_WRIST = 15, 20, 21
OCTAHEDRON = np.concatenate([np.eye(3), -np.eye(3)])
OCTAHEDRON_FACES = np.array([[0, 1, 2], [1, 3, 2], [3, 4, 2], [4, 0, 2], [1, 0, 5], [3, 1, 5], [4, 3, 5], [0, 4, 5]])


def _extra_joints(body: np.ndarray, kind: str) -> tuple[list[int], list[np.ndarray]]:
    """Parents and positions of the joints past the 22 body joints: SMPL's two hand joints; SMPL-X's jaw and eyes
    (children of the head) and five three-joint fingers per hand."""
    parents, positions = [], []
    for wrist, elbow in ((LEFT_WRIST, 18), (RIGHT_WRIST, 19)):
        along = (body[wrist] - body[elbow]) / np.linalg.norm(body[wrist] - body[elbow])
        if kind == "smpl":
            parents.append(wrist)
            positions.append(body[wrist] + 0.08 * along)
    if kind == "smplx":
        for offset in ([0, -0.05, 0.08], [0.03, 0.04, 0.07], [-0.03, 0.04, 0.07]):
            parents.append(HEAD)
            positions.append(body[HEAD] + offset)
        for wrist, elbow in ((LEFT_WRIST, 18), (RIGHT_WRIST, 19)):
            along = (body[wrist] - body[elbow]) / np.linalg.norm(body[wrist] - body[elbow])
            for finger in range(5):
                spread = np.array([0.0, 0.0, 0.02 * (finger - 2)])
                for segment in range(3):
                    parents.append(wrist if segment == 0 else 22 + len(positions) - 1)
                    positions.append(body[wrist] + spread + 0.03 * (segment + 1) * along)
    return parents, positions


def synthetic_model(kind: str = "smpl", seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of an SMPL (24 joints) or SMPL-X (55 joints) model file built on the default rest skeleton."""
    rng = np.random.default_rng(seed)
    body = default_skeleton().joints + NATIVE_SHIFT
    extra_parents, extra = _extra_joints(body, kind)
    parents = np.array([-1, *PARENTS[1:], *extra_parents])
    joints = np.concatenate([body, np.array(extra)])
    count = len(joints)
    radius = 0.004  # small enough that no cluster reaches another joint's
    vertices = [joints[:, None] + radius * OCTAHEDRON[None]]  # (J, 6, 3): vertex 6j + k belongs to joint j
    weights = [np.repeat(np.eye(count), 6, axis=0)]
    faces = [(OCTAHEDRON_FACES[None] + 6 * np.arange(count)[:, None, None]).reshape(-1, 3)]
    ring = 0.01 * np.array([[1, 0, 0], [0, 0, 1], [-1, 0, 0], [0, 0, -1]])
    for j in range(1, count):  # a ring at each bone's middle, half on each end (SMPL's hand joints: folded away)
        start = sum(len(v.reshape(-1, 3)) for v in vertices)
        vertices.append((joints[j] + joints[parents[j]]) / 2 + ring)
        weights.append(np.tile(0.5 * (np.eye(count)[j] + np.eye(count)[parents[j]]), (4, 1)))
        faces.append(start + np.array([[0, 1, 2], [0, 2, 3]]))
    vertices = np.concatenate([v.reshape(-1, 3) for v in vertices])
    regressor = np.zeros((count, len(vertices)))
    regressor[np.repeat(np.arange(count), 6), np.arange(6 * count)] = 1 / 6
    kintree = np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(count)]).astype(np.int64)
    num_dirs = 10 if kind == "smpl" else 20  # SMPL-X files hold 10 shape then 10 expression directions
    model = {"v_template": vertices, "f": np.concatenate(faces).astype(np.uint32), "J_regressor": regressor,
             "weights": np.concatenate(weights), "kintree_table": kintree,
             "shapedirs": 0.01 * rng.standard_normal((len(vertices), 3, num_dirs)),
             "posedirs": np.zeros((len(vertices), 3, 9 * (count - 1)))}
    if kind == "smplx":
        model.update(hands_componentsl=np.eye(45), hands_componentsr=np.eye(45), hands_meanl=np.zeros(45),
                     hands_meanr=np.zeros(45), lmk_faces_idx=np.zeros(51, dtype=np.int64),
                     lmk_bary_coords=np.full((51, 3), 1 / 3))
    return model


def write_synthetic_model(folder: Path, kind: str = "smpl", gender: str = "neutral") -> dict[str, np.ndarray]:
    """SMPL as SMPL_<GENDER>.pkl in `folder`; SMPL-X as smplx/SMPLX_<GENDER>.npz (smplx.create's layout)."""
    model = synthetic_model(kind)
    if kind == "smpl":
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"SMPL_{gender.upper()}.pkl", "wb") as file:
            pickle.dump(model, file, protocol=2)
    else:
        (folder / "smplx").mkdir(parents=True, exist_ok=True)
        np.savez(folder / "smplx" / f"SMPLX_{gender.upper()}.npz", **model)
    return model


def on_floor(joints: np.ndarray) -> np.ndarray:
    return joints - np.array([joints[0, 0], joints[:22, 1].min(), joints[0, 2]])


def body_joint_of(model: dict[str, np.ndarray]) -> np.ndarray:
    """(J,) the body joint each model joint's weight must end on, worked out from the kinematic tree by hand."""
    parents = model["kintree_table"][0]
    return np.array([j if j < 22 else (HEAD if parents[j] == HEAD else
                                       LEFT_WRIST if _descends(parents, j, LEFT_WRIST) else RIGHT_WRIST)
                     for j in range(len(parents))])


def _descends(parents: np.ndarray, joint: int, ancestor: int) -> bool:
    while joint > 0 and joint != ancestor:
        joint = int(parents[joint])
    return joint == ancestor


@pytest.fixture(params=["smpl", "smplx"])
def model_dir(request, tmp_path):
    pytest.importorskip("smplx")
    return tmp_path, request.param, write_synthetic_model(tmp_path, request.param)


# ---------------------------------------------------------------- the model's skeleton and body


def test_rest_joints_are_the_models_own_moved_onto_the_floor(model_dir):
    folder, _kind, model = model_dir
    skeleton = skeleton_from_model(folder)
    np.testing.assert_allclose(skeleton.joints, on_floor(model["J_regressor"] @ model["v_template"])[:22], atol=1e-6)
    np.testing.assert_allclose(skeleton.joints, default_skeleton().joints, atol=1e-6)  # it was built on it


def test_betas_move_the_joints_as_the_shape_directions_say(model_dir):
    folder, _kind, model = model_dir
    betas = np.array([1.5, -2.0, 0.0, 0.7])
    shaped = model["v_template"] + model["shapedirs"][..., :4] @ betas
    skeleton = skeleton_from_model(folder, betas=betas)
    np.testing.assert_allclose(skeleton.joints, on_floor(model["J_regressor"] @ shaped)[:22], atol=1e-5)
    assert np.abs(skeleton.joints - skeleton_from_model(folder).joints).max() > 0.005
    joints, mesh = model_body(folder, betas=betas)
    np.testing.assert_allclose(joints, skeleton.joints, atol=1e-9)
    shift = (model["J_regressor"] @ shaped)[:22] - joints
    np.testing.assert_allclose(mesh["vertices"], shaped - shift[0], atol=1e-5)  # one translation for both


def test_mesh_weights_fold_hands_jaw_and_eyes_onto_the_body(model_dir):
    folder, kind, model = model_dir
    _joints, mesh = model_body(folder)
    assert len(mesh["vertices"]) == len(model["v_template"])
    np.testing.assert_array_equal(mesh["faces"], model["f"].astype(np.int32))
    dense = np.zeros((len(mesh["vertices"]), 22))
    np.add.at(dense, (np.arange(len(dense))[:, None].repeat(mesh["skin_joints"].shape[1], 1), mesh["skin_joints"]),
              mesh["skin_weights"])
    expected = np.zeros_like(dense)
    np.add.at(expected, (np.arange(len(dense))[:, None], body_joint_of(model)[None]), model["weights"])
    np.testing.assert_allclose(dense, expected, atol=1e-6)
    assert set(body_joint_of(model)[22:]) == ({LEFT_WRIST, RIGHT_WRIST} if kind == "smpl" else
                                              {HEAD, LEFT_WRIST, RIGHT_WRIST})


# ---------------------------------------------------------------- the backend's replies


def test_skeleton_and_generate_replies_use_the_model(model_dir):
    folder, _kind, model = model_dir
    engine = FakePipeline()
    session, replies = Session(lambda: engine, body=BodyModel(str(folder), "neutral", (1.0, -1.0))), Replies()
    try:
        session.handle({"id": "s", "type": "skeleton"}, replies)
        session.handle({"id": "g", "type": "generate", "prompt": "a person walks", "frames": 40}, replies)
        own = default_skeleton().joints + [0.0, 0.1, 0.0]
        session.handle({"id": "o", "type": "generate", "prompt": "a person walks", "frames": 40,
                        "rest_joints": own.tolist()}, replies)
        skeleton, generated, on_own = replies.final("s"), replies.final("g"), replies.final("o")
    finally:
        session.close(timeout=5)
    expected = skeleton_from_model(folder, betas=np.array([1.0, -1.0])).joints
    assert skeleton["type"] == "result", skeleton
    rest = protocol.decode_array(skeleton["rest_joints"], "rest")
    np.testing.assert_allclose(rest, expected, atol=1e-6)
    assert protocol.decode_array(skeleton["mesh"]["vertices"], "v").shape == model["v_template"].shape
    np.testing.assert_array_equal(protocol.decode_array(generated["rest_joints"], "rest"), rest)
    np.testing.assert_allclose(protocol.decode_array(on_own["rest_joints"], "rest"), own, atol=1e-6)


@pytest.mark.parametrize("case, words", [
    ("absent", "SMPL model folder not found"),
    ("empty", "looked for SMPLX_NEUTRAL.npz|.pkl, SMPL_NEUTRAL.pkl"),
    ("garbage", "could not read the SMPL model"),
])
def test_a_bad_folder_is_a_clear_error_reply_and_the_model_never_loads(tmp_path, case, words):
    pytest.importorskip("smplx")
    folder = tmp_path / "absent" if case == "absent" else tmp_path
    if case == "garbage":
        (folder / "SMPL_NEUTRAL.pkl").write_bytes(b"not a pickle")
    loads = []
    session, replies = Session(lambda: loads.append(1), body=BodyModel(str(folder))), Replies()
    try:
        session.handle({"id": "s", "type": "skeleton"}, replies)
        session.handle({"id": "g", "type": "generate", "prompt": "a person walks", "frames": 40}, replies)
        errors = [replies.final("s"), replies.final("g")]
    finally:
        session.close(timeout=5)
    for error in errors:
        assert error["type"] == "error" and error["code"] == "bad_smpl_model", error
        assert words in error["message"] and str(tmp_path) in error["message"] and error["message"].endswith(".")
        if case != "garbage":
            assert "set the SMPL Models folder in the MotionLCM add-on preferences" in error["message"]
    assert not loads


def test_without_smplx_the_reply_says_how_to_install_it(tmp_path, monkeypatch):
    write_synthetic_model(tmp_path)
    monkeypatch.setitem(sys.modules, "smplx", None)  # `import smplx` raises ImportError
    session, replies = Session(FakePipeline, body=BodyModel(str(tmp_path))), Replies()
    try:
        session.handle({"id": "s", "type": "skeleton"}, replies)
        error = replies.final("s")
    finally:
        session.close(timeout=5)
    assert error["code"] == "bad_smpl_model" and "pip install smplx" in error["message"], error


# ---------------------------------------------------------------- command line and add-on client


def test_server_options_and_the_child_process_serve_the_model(tmp_path):
    pytest.importorskip("smplx")
    model = write_synthetic_model(tmp_path, gender="female")
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    args = parser.parse_args(["--smpl-dir", str(tmp_path), "--smpl-gender", "female", "--smpl-betas", "0.5,-1"])
    assert (args.smpl_dir, args.smpl_gender, args.smpl_betas) == (str(tmp_path), "female", (0.5, -1.0))
    for bad in ("1,x", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--smpl-betas", bad])
    done = subprocess.run([sys.executable, "-m", "backend.serving.server", "--stdio", "--smpl-dir", str(tmp_path),
                           "--smpl-gender", "female"], cwd=REPO, capture_output=True, timeout=120,
                          input=json.dumps({"id": 1, "type": "skeleton"}).encode() + b"\n")
    reply = json.loads(done.stdout.splitlines()[-1])  # after the "queued" progress line
    assert done.returncode == 0 and reply["type"] == "result", done.stderr.decode()[-2000:]
    np.testing.assert_allclose(protocol.decode_array(reply["rest_joints"], "rest"),
                               on_floor(model["J_regressor"] @ model["v_template"])[:22], atol=1e-6)


def test_the_add_on_client_passes_the_smpl_folder_and_gender():
    base = {"python": sys.executable, "device": "cpu"}
    assert "--smpl-dir" not in BackendClient.from_config(base).server_args
    args = BackendClient.from_config({**base, "smpl_dir": "/models/smpl", "smpl_gender": "male"}).server_args
    assert args[args.index("--smpl-dir") + 1] == "/models/smpl" and args[args.index("--smpl-gender") + 1] == "male"
    args = BackendClient.from_config({**base, "smpl_dir": "/models/smpl"}).server_args
    assert args[args.index("--smpl-gender") + 1] == "neutral"
