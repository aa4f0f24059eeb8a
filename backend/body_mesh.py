"""The skinned mannequin mesh of the `skeleton` reply, on the 22-joint HumanML3D body.

mannequin-x's wooden mesh is skinned to a 54-joint SMPL-X skeleton whose first 22 joints are the
SMPL body in HumanML3D order, in the same axes (Y up, facing +Z, metres). Hand joints' weights are
folded onto their nearest body ancestor (the wrists), and each vertex is moved by the skin-weighted
offset between mannequin-x's joints and the rest skeleton we retarget to, so the mesh sits on
that skeleton exactly (a pure translation when the proportions agree).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .skeleton import NUM_JOINTS


@lru_cache(maxsize=1)
def _mannequin() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (V,3), faces (F,3), dense body weights (V,22), mannequin body joints (22,3)."""
    from mannequin import _io

    source = _io.load(kind="wooden")
    parents = np.asarray(source.parents)
    body_joint = np.arange(len(parents))
    for joint in range(NUM_JOINTS, len(parents)):  # parents come before children in this skeleton
        body_joint[joint] = body_joint[parents[joint]]
    weights = np.zeros((len(source.vertices), NUM_JOINTS), dtype=np.float64)
    rows = np.repeat(np.arange(len(source.vertices)), source.skin_joint_indices.shape[1])
    np.add.at(weights, (rows, body_joint[source.skin_joint_indices.ravel()]), source.skin_weights.ravel())
    joints = np.asarray(source.skin_source_joint_positions[:NUM_JOINTS], dtype=np.float64)
    return (np.asarray(source.vertices, dtype=np.float64), np.asarray(source.faces, dtype=np.int32),
            weights, joints)


def body_mesh(rest_joints: np.ndarray) -> dict[str, np.ndarray]:
    """The mesh fitted to `rest_joints` (22,3): vertices, faces, skin_joints (V,K) and skin_weights (V,K)."""
    vertices, faces, weights, mannequin_joints = _mannequin()
    offsets = np.asarray(rest_joints, dtype=np.float64) - mannequin_joints
    fitted = vertices + weights @ offsets
    k = int((weights > 0).sum(axis=1).max())
    skin_joints = np.argsort(-weights, axis=1)[:, :k]
    skin_weights = np.take_along_axis(weights, skin_joints, axis=1)
    skin_weights /= skin_weights.sum(axis=1, keepdims=True)
    return {"vertices": fitted.astype(np.float32), "faces": faces,
            "skin_joints": skin_joints.astype(np.int32), "skin_weights": skin_weights.astype(np.float32)}
