"""Pure numpy retargeting of an SMPL motion onto any armature's rest pose (no bpy; see rig_transfer.py).

Why world-space: each mapped bone gets the SMPL joint's world rotation *relative to the rest pose*,
pre-multiplied by a rest alignment A that turns the rig's rest bone direction onto SMPL's (T-pose vs
A-pose), so bone directions match whatever the rig's rest pose, bone roll or hierarchy. Where a joint is
unmapped (a rig with two spine bones), the mapped bone is aimed at the next mapped joint instead of its
direct SMPL child, which spreads the missing bend. The local pose-bone rotations are then solved down the
rig's own hierarchy, including the unmapped helper bones and their Copy Transforms/Rotation constraints
(Rigify's MCH chain), evaluated the way Blender does: slerp/lerp between own and target by influence.

Spaces: HumanML3D vectors map to armature space by `axes` (3x3): the rig's own left/up/forward from its
rest pose, snapped to the nearest axis permutation; for a Z-up rig facing -Y it is the add-on's
HumanML3D (x, y, z) = Blender (x, z, -y) (curves.blender_to_humanml). Rotation matrices act on column vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pose_math import make_continuous
from .rig_mapping import JOINT_INDEX, JOINT_NAMES, PARENTS

# Which SMPL child a joint's bone points at (its centre-line or limb child); leaves have none.
AIM_CHILD: dict[int, int] = {0: 3, 3: 6, 6: 9, 9: 12, 12: 15, 1: 4, 4: 7, 7: 10, 2: 5, 5: 8, 8: 11,
                             13: 16, 16: 18, 18: 20, 14: 17, 17: 19, 19: 21}
CONSTRAINT_KINDS = ("COPY_TRANSFORMS", "COPY_ROTATION")


@dataclass(frozen=True)
class Constraint:
    kind: str  # one of CONSTRAINT_KINDS, "replace" mixing
    target: int  # bone index in the same armature
    influence: float
    space: str = "WORLD"  # owner and target space: "WORLD" (armature) or "LOCAL" (relative to rest)


@dataclass
class RigRest:
    """An armature's rest pose as plain arrays (rig_transfer.rig_rest_of reads it from bpy)."""
    names: list[str]
    parents: list[int]  # -1 for none
    matrices: np.ndarray  # (N, 4, 4) bone.matrix_local, armature space
    constraints: list[list[Constraint]] = field(default_factory=list)  # per bone, in stack order

    def __post_init__(self) -> None:
        self.constraints = self.constraints or [[] for _ in self.names]

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class RootMapping:
    """Where a pelvis position in HumanML3D space lands in the rig's armature space, and back.

    The SMPL rest pelvis maps onto the rig's rest pelvis; displacements from it are turned by `axes` and
    scaled by `scale` (armature units per metre; by default the rig's leg length over the SMPL body's)."""
    axes: np.ndarray  # (3, 3) HumanML3D -> armature space
    scale: float
    rig_pelvis: np.ndarray  # (3,) rest pelvis, armature space
    smpl_pelvis: np.ndarray  # (3,) rest pelvis, HumanML3D metres

    def to_rig(self, points: np.ndarray) -> np.ndarray:
        return self.rig_pelvis + self.scale * (np.asarray(points) - self.smpl_pelvis) @ self.axes.T

    def to_model(self, points: np.ndarray) -> np.ndarray:
        return self.smpl_pelvis + (np.asarray(points) - self.rig_pelvis) @ self.axes / self.scale


@dataclass
class RigPose:
    rotations: dict[str, np.ndarray]  # bone -> (T, 4) w, x, y, z basis rotations, sign-continuous
    root_location: np.ndarray  # (T, 3) basis location of the root bone (bone axes, armature units)
    root: RootMapping
    root_offset: np.ndarray  # (T, 3) the same travel in armature space (for keying the armature object instead)


# ---- rotation helpers (vectorised over leading axes) ----

def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                    axis=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) w, x, y, z (largest-component method)."""
    m = np.asarray(m, dtype=np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - trace], -1)], -2)
    best = np.argmax(np.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1), axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def slerp_matrices(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """Rotation a -> b by `weight` (Blender blends constraint results this way)."""
    if weight >= 1.0:
        return np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)).copy()
    qa, qb = matrix_to_quat(a), matrix_to_quat(b)
    dot = np.sum(qa * qb, axis=-1, keepdims=True)
    qb = np.where(dot < 0, -qb, qb)
    angle = np.arccos(np.clip(np.abs(dot), -1.0, 1.0))
    small = angle < 1e-6
    sin = np.where(small, 1.0, np.sin(angle))
    wa = np.where(small, 1 - weight, np.sin((1 - weight) * angle) / sin)
    wb = np.where(small, weight, np.sin(weight * angle) / sin)
    return quat_to_matrix(wa * qa + wb * qb)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (..., 3, 3) turning direction a onto direction b."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    cos = np.sum(a * b, axis=-1)
    # Opposite directions: half-turn about any axis perpendicular to a.
    helper = np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    perpendicular = np.cross(a, helper)
    perpendicular /= np.linalg.norm(perpendicular, axis=-1, keepdims=True)
    opposite = cos < -1 + 1e-9
    half_turn = 2 * perpendicular[..., :, None] * perpendicular[..., None, :] - np.eye(3)
    k = np.zeros(axis.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    scale = np.where(opposite, 0.0, 1.0 / np.maximum(1 + cos, 1e-9))[..., None, None]
    r = np.eye(3) + k + k @ k * scale
    return np.where(opposite[..., None, None], half_turn, r)


def frame_from(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal basis (columns) with the first axis along `primary`, the second towards `secondary`."""
    x = primary / np.linalg.norm(primary)
    y = secondary - np.dot(secondary, x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


# ---- the source motion ----

def smpl_forward_kinematics(rest_joints: np.ndarray, root_translation: np.ndarray,
                            local_quats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protocol convention (docs/protocol.md): G_j = G_parent L_j, p_j = p_parent + G_parent (rest_j - rest_parent).

    Returns global rotations (T, 22, 3, 3) and joint positions (T, 22, 3)."""
    local = quat_to_matrix(local_quats)
    frames = len(root_translation)
    glob = np.empty((frames, len(JOINT_NAMES), 3, 3))
    pos = np.empty((frames, len(JOINT_NAMES), 3))
    glob[:, 0], pos[:, 0] = local[:, 0], root_translation
    for j in range(1, len(JOINT_NAMES)):
        p = PARENTS[j]
        glob[:, j] = glob[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + glob[:, p] @ (rest_joints[j] - rest_joints[p])
    return glob, pos


# ---- the target rig ----

def rig_axes(rig_joints: dict[int, np.ndarray]) -> np.ndarray:
    """HumanML3D -> armature rotation from the rig's rest: left = hips, up = pelvis to mid-shoulders."""
    left = rig_joints[JOINT_INDEX["left_hip"]] - rig_joints[JOINT_INDEX["right_hip"]]
    up = (rig_joints[JOINT_INDEX["left_shoulder"]] + rig_joints[JOINT_INDEX["right_shoulder"]]) / 2 \
        - rig_joints[JOINT_INDEX["pelvis"]]
    up_left_back = frame_from(up, left)  # up x left points backwards
    measured = np.stack([up_left_back[:, 1], up_left_back[:, 0], -up_left_back[:, 2]], axis=1)
    snapped = np.zeros((3, 3))
    for col in range(3):  # a rig leaning a little still gets the exact axis conversion
        row = int(np.argmax(np.abs(measured[:, col])))
        snapped[row, col] = np.sign(measured[row, col])
    return snapped if np.isclose(np.linalg.det(snapped), 1.0) else measured


def joint_heads(rig: RigRest, positions: dict[str, str]) -> dict[int, np.ndarray]:
    """Rest joint positions of the rig (armature space), by SMPL joint index."""
    return {JOINT_INDEX[j]: rig.matrices[rig.index(b)][:3, 3] for j, b in positions.items()}


def root_mapping(heads: dict[int, np.ndarray], rest_joints: np.ndarray,
                 root_scale: float | None = None) -> RootMapping:
    axes = rig_axes(heads)
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if root_scale is None:  # strides fit the legs: the ratio of thigh plus shin lengths
        root_scale = _leg_length(heads) / _leg_length(dict(enumerate(rest_joints)))
    return RootMapping(axes, root_scale, heads[0], rest_joints[0])


def _leg_length(points: dict[int, np.ndarray]) -> float:
    """Hip to knee plus knee to ankle, averaged over both legs (independent of where a rig's pelvis bone sits)."""
    total = 0.0
    for side in ("left", "right"):
        hip, knee, ankle = (points[JOINT_INDEX[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        total += np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee)
    return float(total / 2)


def _aim(joint: int, mapped: set[int]) -> int | None:
    child = AIM_CHILD.get(joint)
    while child is not None and child not in mapped:
        child = AIM_CHILD.get(child)
    return child


def _evaluation_order(rig: RigRest, needed: set[int]) -> list[int]:
    """Bones to evaluate, parents and constraint targets first."""
    order: list[int] = []
    state: dict[int, bool] = {}

    def visit(b: int) -> None:
        if state.get(b) is not None:
            return
        state[b] = False
        deps = [rig.parents[b]] if rig.parents[b] >= 0 else []
        deps += [c.target for c in rig.constraints[b]]
        for d in deps:
            if state.get(d) is not False:  # a dependency cycle (Blender warns and breaks it too) is skipped
                visit(d)
        state[b] = True
        order.append(b)

    for b in sorted(needed):
        visit(b)
    return order


def _evaluate(rig: RigRest, order: list[int], targets: dict[int, np.ndarray], root: int,
              root_offset: np.ndarray, frames: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray],
                                                              dict[int, np.ndarray]]:
    """Armature-space rotations and heads per bone, and each bone's frame before its basis ("own")."""
    rot: dict[int, np.ndarray] = {}
    head: dict[int, np.ndarray] = {}
    own: dict[int, np.ndarray] = {}
    basis: dict[int, np.ndarray] = {}  # rotation relative to the rest pose, what LOCAL-space constraints copy
    for b in order:
        rest = rig.matrices[b]
        parent = rig.parents[b]
        if parent >= 0:
            relative = np.linalg.inv(rig.matrices[parent]) @ rest
            own[b] = rot[parent] @ relative[:3, :3]
            h = head[parent] + rot[parent] @ relative[:3, 3]
        else:
            own[b] = np.broadcast_to(rest[:3, :3], (frames, 3, 3))
            h = np.broadcast_to(rest[:3, 3], (frames, 3))
        r = targets.get(b, own[b])
        if b == root:
            h = h + root_offset  # the root bone's location channel moves it in armature space
        if b not in targets:  # mapped bones must not be constrained (checked by the caller)
            for c in rig.constraints[b]:
                weight = min(c.influence, 1.0)
                if weight <= 0 or c.target not in rot:  # not evaluated first: part of a skipped cycle
                    continue
                if c.space == "LOCAL":
                    r = own[b] @ slerp_matrices(np.swapaxes(own[b], -1, -2) @ r, basis[c.target], weight)
                else:
                    r = slerp_matrices(r, rot[c.target], weight)
                    if c.kind == "COPY_TRANSFORMS":
                        h = h + weight * (head[c.target] - h)
        rot[b], head[b] = r, h
        basis[b] = np.swapaxes(own[b], -1, -2) @ r
    return rot, head, own


def solve_rig_pose(rig: RigRest, bones: dict[str, str], positions: dict[str, str], root_bone: str,
                   rest_joints: np.ndarray, root_translation: np.ndarray, local_quats: np.ndarray,
                   in_place: bool = False, root_scale: float | None = None) -> RigPose:
    """Pose-bone channels that make the rig's mapped bones follow the SMPL motion.

    bones/positions: joint name -> bone name (animated bones; bones whose rest heads mark the joints).
    root_scale: armature units per metre for the root translation; None = rig leg length / SMPL leg length.
    """
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    root_translation = np.asarray(root_translation, dtype=np.float64)
    frames = len(root_translation)
    heads = joint_heads(rig, positions)
    root_map = root_mapping(heads, rest_joints, root_scale)
    axes = root_map.axes
    glob_h, pos_h = smpl_forward_kinematics(rest_joints, root_translation, local_quats)
    glob = axes @ glob_h @ axes.T  # SMPL world rotations relative to rest, armature axes
    pos = pos_h @ axes.T
    smpl_rest = rest_joints @ axes.T
    mapped = {JOINT_INDEX[j] for j in bones}

    align: dict[int, np.ndarray] = {}
    world: dict[int, np.ndarray] = {}
    for j in sorted(mapped):  # parents first, so leaves can reuse their parent's alignment
        aim = _aim(j, set(heads))
        if aim is None or np.linalg.norm(heads[aim] - heads[j]) < 1e-6:  # leaf, or no span to align
            ancestor = PARENTS[j]
            while ancestor >= 0 and ancestor not in align:
                ancestor = PARENTS[ancestor]
            align[j] = align[ancestor] if ancestor >= 0 else np.eye(3)
            world[j] = glob[:, j]
            continue
        rig_dir, smpl_dir = heads[aim] - heads[j], smpl_rest[aim] - smpl_rest[j]
        if j == 0:  # the pelvis also fixes facing: align the hip line as well
            hips = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
            align[j] = frame_from(smpl_dir, smpl_rest[hips[0]] - smpl_rest[hips[1]]) @ \
                frame_from(rig_dir, heads[hips[0]] - heads[hips[1]]).T
        else:
            align[j] = rotation_between(rig_dir, smpl_dir)
        # Swing the rotated rest span onto the posed span: a no-op when `aim` is the direct child.
        span_rest = glob[:, j] @ smpl_dir
        world[j] = rotation_between(span_rest, pos[:, aim] - pos[:, j]) @ glob[:, j]

    bone_of = {j: rig.index(bones[JOINT_NAMES[j]]) for j in mapped}
    targets = {bone_of[j]: world[j] @ align[j] @ rig.matrices[bone_of[j]][:3, :3] for j in mapped}
    root = rig.index(root_bone)
    pelvis_bone = rig.index(positions["pelvis"])
    needed = set(targets) | {root, pelvis_bone}
    order = _evaluation_order(rig, needed)

    pelvis = root_translation.copy()
    if in_place:
        pelvis[:, [0, 2]] = rest_joints[0, [0, 2]]  # HumanML3D's ground plane is x-z
    goal = root_map.to_rig(pelvis)

    # Root location: offset the root bone so the pelvis lands on the goal, whatever pivot the rig uses.
    _, head0, own = _evaluate(rig, order, targets, root, np.zeros((frames, 3)), frames)
    offset = goal - head0[pelvis_bone]
    root_location = np.einsum("tji,tj->ti", own[root], offset)
    # Rotations do not depend on the root offset, so each bone's frame before its basis ("own") is final.
    rotations = {rig.names[b]: make_continuous(matrix_to_quat(np.swapaxes(own[b], -1, -2) @ target))
                 for b, target in targets.items()}
    return RigPose(rotations, root_location, root_map, offset)


def travel_bone(rig: RigRest, root_bone: str, movable: list[bool]) -> str | None:
    """The bone that carries the travel: `root_bone` when it can move (`movable`, per bone: not connected to its
    parent, location not locked), else its nearest ancestor that can; None when none can (key the object)."""
    b = rig.index(root_bone)
    while b >= 0 and not movable[b]:
        b = rig.parents[b]
    return rig.names[b] if b >= 0 else None
