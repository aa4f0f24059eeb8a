"""Positions -> rotations: accuracy on real motion (HumanML3D, Bandai-Namco mocap), temporal consistency, rest pose."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.motion.bvh import read_bvh
from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.retarget import GENERATED_REFINE, default_skeleton, fitted_skeleton, retarget, skeleton_from_model
from backend.retarget.bandai import bandai_to_smpl
from backend.retarget.ik import _best_fit, solve
from backend.retarget.kinematics import forward_kinematics, match_bone_lengths, root_scale
from backend.motion.rotations import quat_inv, quat_mul
from backend.motion.skeleton import JOINT_INDEX as J
from backend.motion.skeleton import PARENTS
from retarget_data import HUMANML3D_000000, HUMANML3D_012314, extract_bandai, humanml3d_joints


@pytest.fixture(scope="module")
def real_clips(data_dir, tmp_path_factory):
    """(name, joints (T, 22, 3) metres, fps): two HumanML3D clips and two Bandai clips mapped to SMPL joints."""
    clips = [("hml_012314", humanml3d_joints(data_dir, HUMANML3D_012314), 20.0),
             ("hml_000000", humanml3d_joints(data_dir, HUMANML3D_000000), 20.0)]
    for path in extract_bandai(data_dir, tmp_path_factory.mktemp("bandai"), 2):
        clip = read_bvh(path)
        clips.append((path.stem, bandai_to_smpl(clip), clip.fps))
    return clips


def _errors(joints, skeleton, fps, refine=GENERATED_REFINE):
    """Per-joint FK error (T, 22) of the product path (`retarget` as the server calls it for generated motion,
    without the floor shift) against the clip with its bone lengths matched to `skeleton` (each bone rescaled along
    its own direction from the root outwards, root motion scaled to the legs), and the local rotations."""
    result = retarget(Motion(joints, fps=fps), skeleton, refine=refine, ground=False)
    target = match_bone_lengths(joints, skeleton, root_scale(joints, skeleton))
    return np.linalg.norm(result.fk() - target, axis=-1), result.local_quats


def _jumps(quats):
    rel = quat_mul(quat_inv(quats[:-1]), quats[1:])
    return np.degrees(2 * np.arccos(np.clip(np.abs(rel[..., 0]), 0, 1)))  # (T-1, 22)


def test_fk_reproduces_real_joints_on_default_skeleton(real_clips):
    # The acceptance: mean <= 5 mm, max <= 2 cm on the character that receives the motion (SMPL-X neutral).
    for name, joints, fps in real_clips:
        err, _ = _errors(joints, default_skeleton(), fps)
        assert err.mean() <= 5e-3 and err.max() <= 2e-2, (name, err.mean(), err.max())
    grounded = retarget(Motion(joints, fps=fps)).fk() - retarget(Motion(joints, fps=fps), ground=False).fk()
    np.testing.assert_allclose(grounded, grounded[0, 0] * np.ones_like(grounded), atol=1e-9)  # floor: a y shift
    assert np.abs(grounded[0, 0, [0, 2]]).max() < 1e-12


def test_refinement_needed_for_humanml3d_not_for_bandai(real_clips):
    # HumanML3D's skeleton differs from SMPL-X's by up to ~7 degrees between the children of pelvis and spine3: the
    # analytic solve (exact bone directions) is off by ~1-2 cm there; refinement minimises the position error.
    # Bandai clips are mapped with SMPL-X's geometry at those joints: the analytic solve is already within bounds.
    for name, joints, fps in real_clips:
        analytic, quats = _errors(joints, default_skeleton(), fps, refine="off")
        refined, refined_quats = _errors(joints, default_skeleton(), fps)
        assert refined.mean() < 0.6 * analytic.mean(), (name, refined.mean(), analytic.mean())
        if name.startswith("hml"):
            assert analytic.max() > 2e-2 or analytic.mean() > 5e-3
        else:
            assert analytic.mean() <= 3e-3 and analytic.max() <= 1e-2, (name, analytic.mean(), analytic.max())
        # The smoothness term keeps the corrections from adding jitter: frame-to-frame changes barely grow.
        assert np.percentile(_jumps(refined_quats), 99) <= np.percentile(_jumps(quats), 99) + 1.0


def test_fk_reproduces_real_joints_on_matched_skeleton(real_clips):
    # On a skeleton with the clip's own proportions the analytic solve is exact: every bone direction is matched.
    for name, joints, fps in real_clips:
        skeleton = fitted_skeleton(joints)
        root, quats = solve(joints, skeleton, fps, root_scale(joints, skeleton))
        pos = forward_kinematics(root, quats, skeleton.offsets)[0]
        err = np.linalg.norm(pos - match_bone_lengths(joints, skeleton, root_scale(joints, skeleton)), axis=-1)
        assert err.max() < 1e-4, (name, err.max())


def test_no_rotation_jumps_where_joints_move_little(real_clips):
    checked = 0
    for name, joints, fps in real_clips:
        _, quats = _errors(joints, default_skeleton(), fps)
        slow = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=1) < 0.05
        checked += slow.sum()
        if slow.any():
            assert _jumps(quats)[slow].max() <= 30.0, (name, _jumps(quats)[slow].max())
        assert ((quats[1:] * quats[:-1]).sum(-1) >= 0).all()  # no quaternion sign flips
    assert checked > 100


def test_branching_joints_fit_all_children():
    # The weighted Procrustes fit at pelvis / spine3 (one Gauss-Newton step from a start a few degrees off, as the
    # analytic solve gives it) lands within 1 % of the optimum's cost (the SVD / Kabsch solution), far below the
    # start's; the rest pose stays the identity.
    rng = np.random.default_rng(1)
    rest = rng.normal(size=(3, 3)) * 0.1
    weights = np.array([4.0, 4.0, 13.0])
    truth = Rotation.random(200, random_state=2).as_matrix()
    posed = np.einsum("tab,kb->tka", truth, rest) + rng.normal(scale=0.01, size=(200, 3, 3))
    start = Rotation.from_rotvec(rng.normal(scale=0.05, size=(200, 3))).as_matrix() @ truth
    scaled = posed / np.linalg.norm(posed, axis=-1, keepdims=True) * np.linalg.norm(rest, axis=-1)[:, None]
    u, _, vt = np.linalg.svd(np.einsum("k,tka,kb->tab", weights, scaled, rest))
    fix = np.ones((200, 3))
    fix[:, 2] = np.linalg.det(u @ vt)
    best = (u * fix[:, None]) @ vt

    def cost(g):
        return (weights * ((np.einsum("tab,kb->tka", g, rest) - scaled) ** 2).sum(-1)).sum()

    assert cost(_best_fit(start, rest, posed, weights)) < 1.01 * cost(best) < 0.5 * cost(start)
    eye = np.tile(np.eye(3), (2, 1, 1))
    np.testing.assert_allclose(_best_fit(eye, rest, np.tile(rest, (2, 1, 1)), weights), eye, atol=1e-12)


def test_bandai_mapping_has_smpl_shape(data_dir, tmp_path):
    clip = read_bvh(extract_bandai(data_dir, tmp_path, 1)[0])
    joints = bandai_to_smpl(clip)
    pos = clip.global_positions(0.01)
    for smpl, bandai in (("left_knee", "LowerLeg_L"), ("right_wrist", "Hand_R"), ("head", "Head")):
        np.testing.assert_array_equal(joints[:, J[smpl]], pos[:, clip.index(bandai)])
    hips_mid = (joints[:, 1] + joints[:, 2]) / 2
    rise = np.linalg.norm(joints[:, 0] - hips_mid, axis=-1)  # Bandai's Hips: ~2 cm above the hip line
    assert 0.08 < rise.min() and rise.max() - rise.min() < 1e-6  # SMPL's ~10 cm, rigid with the hips
    rest = default_skeleton().joints
    for parent, children in ((0, [1, 2, 3]), (9, [12, 13, 14])):  # SMPL-X's angles between children
        def angles(p):
            d = p[..., children, :] - p[..., [parent], :]
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
            return np.arccos(np.clip(np.einsum("...ka,...la->...kl", d, d), -1.0, 1.0))
        diff = np.degrees(np.abs(angles(joints) - angles(rest)))
        assert diff.max() < 5.0, (parent, diff.max())  # SMPL-X rest is asymmetric by up to 4 degrees


def _synthetic(frames=60, seed=0):
    """FK of smooth random local rotations (up to ~70 degrees) on the default skeleton."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)[:, None, None]
    rotvec = rng.normal(size=(1, 22, 3)) * 0.6 * np.sin(2 * np.pi * t + rng.uniform(0, 6, size=(1, 22, 1)))
    quats = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_quat(scalar_first=True).reshape(frames, 22, 4)
    root = np.concatenate([t[:, 0] * 2, 0.9 + 0 * t[:, 0], -t[:, 0]], axis=1)
    return forward_kinematics(root, quats, default_skeleton().offsets)[0]


def test_exact_on_synthetic_poses():
    joints = _synthetic()
    skeleton = default_skeleton()
    root, quats = solve(joints, skeleton, 20.0)
    np.testing.assert_allclose(forward_kinematics(root, quats, skeleton.offsets)[0], joints, atol=1e-9)


def test_straight_limb_keeps_its_twist():
    # A straight arm and leg swinging, with 1 mm noise: the bend plane is undefined, the twist must stay smooth.
    rng = np.random.default_rng(3)
    skeleton = default_skeleton()
    frames = 80
    swing = np.radians(80) * np.sin(np.linspace(0, 2 * np.pi, frames))
    quats = np.tile([1.0, 0, 0, 0], (frames, 22, 1))
    for j, axis in ((16, [0, 0, 1.0]), (1, [1.0, 0, 0])):
        quats[:, j] = Rotation.from_rotvec(np.outer(swing, axis)).as_quat(scalar_first=True)
    elbow, knee = skeleton.joints[18] - skeleton.joints[16], skeleton.joints[4] - skeleton.joints[1]
    quats[:, 18] = Rotation.align_vectors([elbow] * 1, [skeleton.joints[20] - skeleton.joints[18]])[0].as_quat(
        scalar_first=True)  # straighten the SMPL-X rest elbow
    quats[:, 4] = Rotation.align_vectors([knee], [skeleton.joints[7] - skeleton.joints[4]])[0].as_quat(
        scalar_first=True)
    joints = forward_kinematics(np.zeros((frames, 3)), quats, skeleton.offsets)[0]
    joints += rng.normal(scale=1e-3, size=joints.shape)
    _, solved = solve(joints, skeleton, 20.0)
    assert _jumps(solved)[:, [16, 18, 1, 4]].max() < 10.0


def test_default_rest_pose_axes_and_floor():
    rest = default_skeleton().joints
    assert rest[1, 0] > 0 > rest[2, 0] and rest[16, 0] > 0 > rest[17, 0]  # left is +X
    assert rest[15, 1] > rest[12, 1] > rest[0, 1] > rest[4, 1] > rest[7, 1]  # Y up
    assert rest[10, 2] > rest[7, 2] and rest[11, 2] > rest[8, 2]  # toes in front: faces +Z
    assert rest[:, 1].min() == pytest.approx(0.0) and rest[0, [0, 2]] == pytest.approx([0, 0])
    assert 0.8 < rest[0, 1] < 1.1 and 1.3 < rest[15, 1] < 1.8  # metres: an adult's pelvis and head heights
    taller = default_skeleton(np.array([-2.0]))  # SMPL-X's first shape direction scales stature
    assert abs(taller.joints[15, 1] - rest[15, 1]) > 0.02
    with pytest.raises(InvalidRequest, match="betas"):
        default_skeleton(np.zeros(11))


def test_user_model_needs_smplx_and_a_file(tmp_path):
    with pytest.raises(InvalidRequest, match="smplx|not found"):
        skeleton_from_model(tmp_path / "SMPLX_NEUTRAL.npz")


def test_retargeted_fk_is_the_rest_pose_for_identity():
    skeleton = default_skeleton()
    motion = Motion(np.repeat(skeleton.joints[None], 3, axis=0), fps=20.0)
    result = retarget(motion, skeleton, scale_root=False)
    np.testing.assert_allclose(result.local_quats[..., 0], 1.0, atol=1e-9)
    np.testing.assert_allclose(result.fk(), motion.joints, atol=1e-6)


def _single_child_directions(joints):
    """(T, 15, 3) unit directions of the bones whose joint has one child (hips to knees, spine chain, limbs)."""
    pairs = [(j, PARENTS.index(j)) for j in range(22) if PARENTS.count(j) == 1]
    d = np.stack([joints[:, c] - joints[:, j] for j, c in pairs], 1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _other_skeleton(joints):
    """The clip on a skeleton shaped unlike SMPL at its branching joints, as CMU's is: hips 6 cm lower and 3 cm
    further back under the pelvis, collars 5 cm lower on the chest (every single-child bone keeps its direction)."""
    out = np.array(joints, dtype=np.float64)
    forward = np.cross(out[:, J["left_hip"]] - out[:, J["right_hip"]], [0.0, 1.0, 0.0])
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    for leg in ((1, 4, 7, 10), (2, 5, 8, 11)):
        out[:, list(leg)] += np.array([0.0, -0.06, 0.0]) - 0.03 * forward[:, None]
    for arm in ((13, 16, 18, 20), (14, 17, 19, 21)):
        out[:, list(arm)] += np.array([0.0, -0.05, 0.0])
    return out


@pytest.mark.parametrize("rescale", [1.0, 1.25])
def test_default_retargeting_keeps_every_single_child_bone_direction_of_another_skeleton(real_clips, rescale):
    """The issue's acceptance (mean <= 2, 95th percentile <= 6 degrees) on real clips put on a skeleton shaped
    otherwise (and scaled 1.25x): with the default refinement the directions are the source's; the position
    refinement, right for the model's own body, would bend them."""
    for name, joints, fps in real_clips:
        source = _other_skeleton(joints) * rescale
        wanted = _single_child_directions(source)
        angles = {}
        for mode in ("directions", "positions"):
            got = _single_child_directions(retarget(Motion(source, fps=fps), refine=mode).fk())
            angles[mode] = np.degrees(np.arccos(np.clip((got * wanted).sum(-1), -1.0, 1.0)))
        assert angles["directions"].mean() <= 2.0 and np.percentile(angles["directions"], 95) <= 6.0, name
        assert angles["directions"].max() <= 0.01, (name, angles["directions"].max())
        assert np.percentile(angles["positions"], 95) > 3.0, name  # what the default avoids
