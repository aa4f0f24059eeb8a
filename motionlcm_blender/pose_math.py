"""Pure quaternion math that turns the backend's HumanML3D-space rotations into Blender pose channels.

Convention of a result (docs/protocol.md): joint j's global rotation is G_j = G_parent(j) * L_j, where
L_j = local_quats[:, j] (w, x, y, z) is expressed in HumanML3D world axes and the rest pose has identity
rotations; a joint's position is p_j = p_parent + G_parent (rest_j - rest_parent).

Blender: a pose bone's rotation_quaternion R_j acts in the bone's rest frame B_j (armature space, the
3x3 of bone.matrix_local). Its pose matrix is P_j = P_parent B_parent^-1 B_j R_j, and P_j = G'_j B_j with
G'_j = A G_j A^T the global rotation seen in Blender axes (A maps HumanML3D to Blender axes). Solving gives
    R_j = D_j L_j D_j^-1  with  D_j = B_j^T A,
exact for whatever head/tail/roll a bone has, so bones can point at their children and look natural.
"""

from __future__ import annotations

import numpy as np

# Blender vector = AXES_HUMANML_TO_BLENDER @ HumanML3D vector: (x, y, z) -> (x, -z, y).
AXES_HUMANML_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# Leaf bones get a tail along their parent's direction, this long relative to the parent bone.
LEAF_LENGTH_RATIO = 0.6
MIN_BONE_LENGTH = 0.03


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) w, x, y, z quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return np.asarray(q) * np.array([1.0, -1.0, -1.0, -1.0])


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3x3 rotation matrix (Shepperd's method, numerically stable)."""
    m = np.asarray(m, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def make_continuous(quats: np.ndarray) -> np.ndarray:
    """Flip signs along time (axis 0) so consecutive quaternions lie in the same hemisphere (no spins).

    Flipping q_t by the running product of the signs of dot(q_k, q_k-1), k <= t, makes every
    consecutive dot product non-negative in one vectorised pass."""
    q = np.asarray(quats, dtype=np.float64)
    signs = np.ones(q.shape[:-1])
    signs[1:] = np.where(np.sum(q[1:] * q[:-1], axis=-1) < 0, -1.0, 1.0)
    return q * np.cumprod(signs, axis=0)[..., None]


def bone_rotation_quats(local_quats: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """(T, J, 4) HumanML3D local rotations -> (T, J, 4) pose-bone rotation_quaternion values.

    bone_rest: (J, 3, 3) armature-space rest orientations (bone.matrix_local's 3x3), in joint order.
    """
    d = np.stack([quat_from_matrix(np.asarray(b).T @ AXES_HUMANML_TO_BLENDER) for b in bone_rest])
    q = np.asarray(local_quats, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return make_continuous(quat_multiply(quat_multiply(d[None], q), quat_conjugate(d)[None]))


def root_bone_locations(root_translation_m: np.ndarray, rest_head_bu: np.ndarray, bone_rest: np.ndarray,
                        unit_scale: float = 1.0) -> np.ndarray:
    """(T, 3) pelvis positions (HumanML3D metres) -> the root pose bone's location channel (bone axes, units)."""
    target = np.asarray(root_translation_m, dtype=np.float64) @ AXES_HUMANML_TO_BLENDER.T / unit_scale
    return (target - np.asarray(rest_head_bu)) @ np.asarray(bone_rest)


def rest_bone_tails(heads: np.ndarray, parents: list[int]) -> np.ndarray:
    """Tails for bones whose heads are joints (Blender axes): each bone points at its centre-line child.

    With several children (pelvis, spine3) the child closest to the body's mid-plane (smallest |x|
    offset) is chosen, i.e. spine1 and neck; leaves extend their parent's direction.
    """
    heads = np.asarray(heads, dtype=np.float64)
    tails = np.empty_like(heads)
    for j in range(len(heads)):
        children = [c for c, p in enumerate(parents) if p == j]
        if children:
            child = min(children, key=lambda c: abs(heads[c, 0] - heads[j, 0]))
            tail = heads[child]
        else:
            direction = heads[j] - heads[parents[j]]
            length = max(np.linalg.norm(direction) * LEAF_LENGTH_RATIO, MIN_BONE_LENGTH)
            tail = heads[j] + direction / max(np.linalg.norm(direction), 1e-9) * length
        if np.linalg.norm(tail - heads[j]) < MIN_BONE_LENGTH:  # Blender deletes zero-length bones
            tail = heads[j] + np.array([0.0, 0.0, MIN_BONE_LENGTH])
        tails[j] = tail
    return tails
