"""Joint positions to rotations, analytically, for a whole clip at once (vectorised over frames).

Every joint with children gets a global rotation G (T, 3, 3) that maps its rest bone direction exactly onto the
posed one (the swing); the twist about that bone comes from the joints that define it:
- pelvis: the hip line (left - right hip) and the spine; spine1/spine2: their bone and a blend of the hip and
  shoulder lines; spine3: the neck and the collar line;
- hips and shoulders: the bend plane of knee / elbow where the limb is bent; where it is nearly straight (the plane
  undefined) the twist of nearby bent frames (a confidence-weighted average over ~0.05 s), else the twist carried
  over from the parent; so a straightening limb never flips 180 degrees. The rest pose solves to identity;
- neck, collars, knees, elbows, ankles: the parent's frame carried by the shortest swing (minimal twist), which for
  knees and elbows keeps the bend a hinge about the plane found at hip / shoulder;
- leaves (head, wrists, feet) have no child to aim at: they keep their parent's rotation (local identity).
The joints with several children (pelvis: hips and spine1; spine3: neck and collars) are then fitted to all of them
(weighted Procrustes, `_best_fit`): where the clip's angles between those children differ from the rest skeleton's,
no rotation matches every child, and the fit spreads the error instead of putting it all on one child.
Where a bone has zero length in a frame (or a twist reference vanishes) the joint falls back to its parent's carried
rotation, so degenerate input gives well-defined rotations, never NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from backend.motion.humanml3d_skeleton import check_joints
from backend.motion.rotations import matrix_to_quat, quat_continuous
from backend.motion.skeleton import JOINT_INDEX as J
from backend.motion.skeleton import NUM_JOINTS, PARENTS
from backend.retarget.rest_pose import RestSkeleton, default_skeleton, place_on_floor

_EPS = 1e-9
# Bend directions of the distal bone when the limb flexes: elbows forward (+Z), knees backward (-Z).
_ARM_BEND, _LEG_BEND = np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0])
# Bend-plane confidence ramps from 0 to 1 between these sines of the bend angle (about 8 and 30 degrees).
_BEND_SIN_LOW, _BEND_SIN_HIGH = np.sin(np.radians(8.0)), np.sin(np.radians(30.0))
# Weight of the parent-carried twist where no bent frame is near (relative to one fully bent frame).
_CARRIED_PRIOR = 0.02
# Time scale (seconds) over which limb twist is averaged.
_TWIST_SIGMA_S = 0.05


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over the last axis (numpy's np.cross is several times slower on small arrays)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.sqrt((v * v).sum(-1))
    return v / np.maximum(norm, _EPS)[..., None], norm


def _apply(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) times vectors (..., 3), broadcasting."""
    return (m @ v[..., None])[..., 0]


def _frame(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal frames (..., 3, 3) with columns [a, b made orthogonal to a, a x b], and where they exist."""
    e1, na = _unit(a)
    b_perp = b - (b * e1).sum(-1, keepdims=True) * e1
    e2, nb = _unit(b_perp)
    valid = (na > _EPS) & (nb > 1e-6 * np.maximum(np.sqrt((b * b).sum(-1)), _EPS))
    return np.stack([e1, e2, _cross(e1, e2)], axis=-1), valid


def _swing(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation matrices (..., 3, 3) taking unit vectors u onto unit vectors v (Rodrigues:
    c I + [k]x + k k^T / (1 + c)); a half turn about an axis perpendicular to u where they are opposite."""
    k = _cross(u, v)
    c = (u * v).sum(-1)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    skew = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(k.shape + (3,))
    outer = k[..., :, None] * k[..., None, :] / np.maximum(1.0 + c, 1e-12)[..., None, None]
    m = c[..., None, None] * np.eye(3) + skew + outer
    opposite = c < -1 + 1e-9
    if opposite.any():  # rare: any axis perpendicular to u will do
        axis = _unit(_cross(u, np.eye(3)[np.argmin(np.abs(u), axis=-1)]))[0]
        half_turn = 2.0 * axis[..., :, None] * axis[..., None, :] - np.eye(3)
        m = np.where(opposite[..., None, None], half_turn, m)
    return m


def _carried(g_parent: np.ndarray, a_rest: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Minimal-twist global rotation: the parent's rotation followed by the shortest swing of the rest bone onto `a`
    (just the parent's rotation where `a` has zero length)."""
    u = _unit(_apply(g_parent, a_rest))[0]
    v, na = _unit(a)
    v = np.where(na[..., None] > _EPS, v, u)
    return _swing(u, v) @ g_parent


def _aimed(g_parent: np.ndarray, a_rest: np.ndarray, b_rest: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation taking the rest frame (a_rest, b_rest) onto (a, b); the carried rotation where it is undefined."""
    posed, valid = _frame(a, b)
    rest, _ = _frame(a_rest, b_rest)
    g = posed @ np.swapaxes(rest, -1, -2)
    if valid.all():
        return g
    return np.where(valid[..., None, None], g, _carried(g_parent, a_rest, a))


def _bend_normals(upper: np.ndarray, lower: np.ndarray, convention: np.ndarray,
                  sigma: float) -> np.ndarray:
    """Twist references of limbs' first bones (..., L, 3): the bend-plane normal where a limb is bent; elsewhere the
    twist of confidently bent neighbouring frames, or the `convention` normal (perpendicular to `upper`) where there
    are none. Twist angles (about the bone, relative to `convention`) are averaged over time (axis 0) with the bend
    confidence as weight (Gaussian, `sigma` frames), so a limb that straightens keeps its twist instead of snapping.
    """
    a, _ = _unit(upper)
    n, sin_bend = _unit(_cross(a, _unit(lower)[0]))
    w = np.clip((sin_bend - _BEND_SIN_LOW) / (_BEND_SIN_HIGH - _BEND_SIN_LOW), 0.0, 1.0)
    ortho = _cross(a, convention)
    twist = w[..., None] * np.stack([(n * convention).sum(-1), (n * ortho).sum(-1)], axis=-1)
    if sigma > 0 and len(twist) > 1:
        twist = gaussian_filter1d(twist, sigma, axis=0, mode="nearest")
    twist[..., 0] += _CARRIED_PRIOR
    cos_sin = twist / np.sqrt((twist * twist).sum(-1, keepdims=True))
    return cos_sin[..., :1] * convention + cos_sin[..., 1:] * ortho


def _best_fit(g: np.ndarray, rest: np.ndarray, posed: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) minimising sum_k w_k |G rest_k - posed_k|^2, with each posed child offset (..., K, 3)
    rescaled to its rest length (the bone-length-matched clip): a weighted Procrustes fit of a branching joint to
    all its children, as one Gauss-Newton step from `g` (exact for the children that define the twist, so a few
    degrees from the optimum: one step lands within ~1 % of its cost; more change the FK error by < 0.1 mm).
    Children whose posed bone has zero length do not count; with none left `g` stays."""
    direction, norm = _unit(posed)
    w = weights * (norm > _EPS)
    b = direction * np.sqrt((rest * rest).sum(-1))[..., None]
    c = _apply(g[..., None, :, :], rest)  # rest offsets under the current rotation
    # Normal equations of the linearised problem (delta x c ~ b - c): sum w (|c|^2 I - c c^T) delta = sum w c x b.
    wc = w[..., None] * c
    normal = ((w * (rest * rest).sum(-1)).sum(-1)[..., None, None] + 1e-9) * np.eye(3)  # |c| = |rest|
    for k in range(rest.shape[-2]):  # a loop over the few children beats one broadcast sum here
        normal -= wc[..., k, :, None] * c[..., k, None, :]
    rhs = _cross(wc, b).sum(-2)
    m0, m1, m2 = normal[..., 0], normal[..., 1], normal[..., 2]  # symmetric: inverse rows are column crosses
    adjugate = np.stack([_cross(m1, m2), _cross(m2, m0), _cross(m0, m1)], axis=-2)
    delta = _apply(adjugate, rhs) / (m0 * adjugate[..., 0, :]).sum(-1)[..., None]
    return _rotation(delta) @ g


def _rotation(v: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of rotation vectors (Rodrigues: cos I + sin [a]x + (1 - cos) a a^T)."""
    axis, angle = _unit(v)
    kx, ky, kz = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(kx)
    k = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(v.shape + (3,))
    s, c = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return c * np.eye(3) + s * k + (1 - c) * (axis[..., :, None] * axis[..., None, :])


# Joints solved together, level by level down the tree (a level's parents are solved before it).
_NECK_COLLARS, _NECK_COLLAR_CHILDREN = [12, 13, 14], [15, 16, 17]
_LIMB_ROOTS, _LIMB_MIDS, _LIMB_ENDS = [1, 2, 16, 17], [4, 5, 18, 19], [7, 8, 20, 21]
_LIMB_BENDS = np.array([_LEG_BEND, _LEG_BEND, _ARM_BEND, _ARM_BEND])
_ANKLES, _TOES = [7, 8], [10, 11]
_LEAVES = [10, 11, 15, 20, 21]
_PARENT_ARRAY = np.array(PARENTS)
# Branching joints fitted to all their children, each weighted by the joints in its subtree (an error at a child
# carries over to its whole subtree, so this minimises the summed squared error of the analytic solve).
_BRANCHES, _BRANCH_CHILDREN = [0, 9], [[1, 2, 3], [12, 13, 14]]
_BRANCH_WEIGHTS = np.array([[4.0, 4.0, 13.0], [2.0, 4.0, 4.0]])


def _across(q: np.ndarray, w_hips: float) -> np.ndarray:
    """Left-to-right reference of a spine joint: the hip and shoulder lines blended."""
    hips = _unit(q[..., J["left_hip"], :] - q[..., J["right_hip"], :])[0]
    shoulders = _unit(q[..., J["left_shoulder"], :] - q[..., J["right_shoulder"], :])[0]
    return w_hips * hips + (1 - w_hips) * shoulders


def solve_global_rotations(joints: np.ndarray, skeleton: RestSkeleton, fps: float = 20.0) -> np.ndarray:
    """Global rotations (T, 22, 3, 3) taking `skeleton`'s rest pose onto the posed `joints` (T, 22, 3) at `fps`."""
    p = check_joints(joints, min_frames=1)
    r = skeleton.joints
    g = np.empty((p.shape[0], NUM_JOINTS, 3, 3))
    eye = np.broadcast_to(np.eye(3), g[:, 0].shape)
    g[:, 0] = _aimed(eye, r[1] - r[2], r[3] - r[0], p[:, 1] - p[:, 2], p[:, 3] - p[:, 0])
    for j, c, w_hips in ((3, 6, 2 / 3), (6, 9, 1 / 3)):
        g[:, j] = _aimed(g[:, PARENTS[j]], r[c] - r[j], _across(r, w_hips), p[:, c] - p[:, j], _across(p, w_hips))
    g[:, 9] = _aimed(g[:, 6], r[12] - r[9], r[13] - r[14], p[:, 12] - p[:, 9], p[:, 13] - p[:, 14])
    # After the spine: its joints used the pelvis only as a fallback for degenerate frames.
    branches = np.array(_BRANCHES)[:, None]
    g[:, _BRANCHES] = _best_fit(g[:, _BRANCHES], r[_BRANCH_CHILDREN] - r[branches],
                                p[:, _BRANCH_CHILDREN] - p[:, branches], _BRANCH_WEIGHTS)

    def carry(js: list[int], cs: list[int]) -> None:
        g[:, js] = _carried(g[:, _PARENT_ARRAY[js]], r[cs] - r[js], p[:, cs] - p[:, js])

    carry(_NECK_COLLARS, _NECK_COLLAR_CHILDREN)
    # Limbs: the same twist reference on the rest pose (against the anatomical bend direction) and on every frame
    # (against that direction carried along by the parent and the swing), so the rest pose solves to identity.
    a_rest = r[_LIMB_MIDS] - r[_LIMB_ROOTS]
    convention = _unit(_cross(a_rest, _LIMB_BENDS))[0]
    n_rest = _bend_normals(a_rest[None], (r[_LIMB_ENDS] - r[_LIMB_MIDS])[None], convention[None], 0.0)
    upper, lower = p[:, _LIMB_MIDS] - p[:, _LIMB_ROOTS], p[:, _LIMB_ENDS] - p[:, _LIMB_MIDS]
    g_parent = g[:, _PARENT_ARRAY[_LIMB_ROOTS]]
    carried = _apply(_carried(g_parent, a_rest, upper), convention)
    normal = _bend_normals(upper, lower, carried, _TWIST_SIGMA_S * fps)
    g[:, _LIMB_ROOTS] = _aimed(g_parent, a_rest, n_rest[0], upper, normal)
    carry(_LIMB_MIDS, _LIMB_ENDS)
    carry(_ANKLES, _TOES)
    g[:, _LEAVES] = g[:, _PARENT_ARRAY[_LEAVES]]
    return g


def local_quaternions(global_rot: np.ndarray) -> np.ndarray:
    """Local rotations (T, 22, 4) w,x,y,z from global ones (T, 22, 3, 3), sign-continuous over time."""
    local = global_rot.copy()
    local[:, 1:] = np.swapaxes(global_rot[:, _PARENT_ARRAY[1:]], -1, -2) @ global_rot[:, 1:]
    return continuous(matrix_to_quat(local))


def continuous(quats: np.ndarray) -> np.ndarray:
    """Sign-continuous quaternions over time (axis 0); a single frame is returned as is (rotations.quat_continuous
    returns an empty array for one frame)."""
    return quat_continuous(quats, axis=0) if len(quats) > 1 else quats


def solve(joints: np.ndarray, skeleton: RestSkeleton, fps: float = 20.0,
          root_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Analytic IK. Returns root translation (T, 3) (the pelvis's world position, times `root_scale`) and local
    rotations (T, 22, 4) w,x,y,z relative to `skeleton`'s rest pose."""
    p = check_joints(joints, min_frames=1)
    return p[:, 0] * root_scale, local_quaternions(solve_global_rotations(p, skeleton, fps))


def fitted_skeleton(joints: np.ndarray, base: RestSkeleton | None = None) -> RestSkeleton:
    """A rest skeleton with the proportions of a clip: `base`'s rest pose conventions, the clip's median bone lengths,
    and, at joints with several children (pelvis, spine3), the clip's own attachment geometry expressed in `base`'s
    rest frame (median over frames). FK of the solved rotations on it reproduces the clip's joints."""
    base = base or default_skeleton()
    joints = np.asarray(joints, dtype=np.float64)
    glob = solve_global_rotations(joints, base)
    parents = np.array(base.parents)
    local = np.einsum("tjba,tjb->tja", glob[:, parents[1:]], joints[:, 1:] - joints[:, parents[1:]])
    offsets = np.median(local, axis=0)
    offsets *= (np.median(np.linalg.norm(local, axis=-1), axis=0)
                / np.maximum(np.linalg.norm(offsets, axis=-1), 1e-9))[:, None]
    rest = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        rest[j] = rest[parents[j]] + offsets[j - 1]
    return RestSkeleton(place_on_floor(rest))
