"""The skinned body mesh of the `skeleton` reply, on the 22-joint HumanML3D body.

By default mannequin-x's wooden mesh: it is skinned to a 54-joint SMPL-X skeleton whose first 22 joints
are the SMPL body in HumanML3D order, in the same axes (Y up, facing +Z, metres). Each vertex is moved
by the skin-weighted offset between mannequin-x's joints and the rest skeleton we retarget to, so the
mesh sits on that skeleton exactly (a pure translation when the proportions agree). With a user's
SMPL/SMPL-X model it is that model's own body, moved onto the floor with its joints.

Either way, weights on joints past the body (hands, jaw, eyes) are folded onto their nearest body
ancestor (wrists, head): the character has the body's 22 bones only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.motion.skeleton import NUM_JOINTS


def _body_ancestor(parents: np.ndarray) -> np.ndarray:
    """(J,) for each joint, itself if it is one of the 22 body joints, else its nearest body ancestor."""
    body_joint = np.arange(len(parents))
    for joint in range(NUM_JOINTS, len(parents)):  # parents come before children in SMPL-family skeletons
        body_joint[joint] = body_joint[parents[joint]]
    return body_joint


@lru_cache(maxsize=1)
def _mannequin() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V,3), faces (F,3), dense body weights (V,22), mannequin body joints (22,3)."""
    from mannequin import _io

    source = _io.load(kind="wooden")
    body_joint = _body_ancestor(np.asarray(source.parents))
    weights = np.zeros((len(source.vertices), NUM_JOINTS), dtype=np.float64)
    rows = np.repeat(np.arange(len(source.vertices)), source.skin_joint_indices.shape[1])
    np.add.at(weights, (rows, body_joint[source.skin_joint_indices.ravel()]), source.skin_weights.ravel())
    joints = np.asarray(source.skin_source_joint_positions[:NUM_JOINTS], dtype=np.float64)
    return (np.asarray(source.vertices, dtype=np.float64), np.asarray(source.faces, dtype=np.int32),
            weights, joints)


def _reply_mesh(vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The reply's form: dense (V, 22) weights become each vertex's K largest, renormalised."""
    k = int((weights > 0).sum(axis=1).max())
    skin_joints = np.argsort(-weights, axis=1)[:, :k]
    skin_weights = np.take_along_axis(weights, skin_joints, axis=1)
    skin_weights /= skin_weights.sum(axis=1, keepdims=True)
    return {"vertices": vertices.astype(np.float32), "faces": np.asarray(faces, dtype=np.int32),
            "skin_joints": skin_joints.astype(np.int32), "skin_weights": skin_weights.astype(np.float32)}


def body_mesh(rest_joints: np.ndarray) -> dict[str, np.ndarray]:
    """The mannequin fitted to `rest_joints` (22,3): vertices, faces, skin_joints (V,K) and skin_weights (V,K)."""
    vertices, faces, weights, mannequin_joints = _mannequin()
    offsets = np.asarray(rest_joints, dtype=np.float64) - mannequin_joints
    return _reply_mesh(vertices + weights @ offsets, faces, weights)


def model_body(model_path: str | Path, gender: str = "neutral",
               betas: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A user's SMPL/SMPL-X model: its rest joints (22,3) on the floor, as the rest skeleton to retarget to, and
    its body mesh in the same place, skinned to those 22 joints (needs the optional `smplx` package)."""
    from backend.retarget.rest_pose import floor_offset
    from backend.retarget.smpl_model import load_model

    body = load_model(model_path, gender, betas)
    shift = floor_offset(body.joints[:NUM_JOINTS])
    fold = np.eye(NUM_JOINTS)[_body_ancestor(body.parents)]  # (J, 22): each joint's weight goes to its body joint
    return body.joints[:NUM_JOINTS] - shift, _reply_mesh(body.vertices - shift, body.faces, body.weights @ fold)
