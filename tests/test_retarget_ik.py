"""Positions -> rotations: accuracy on real motion (HumanML3D, Bandai-Namco mocap), temporal consistency, rest pose."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.bvh import read_bvh
from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.retarget import default_skeleton, fitted_skeleton, retarget, skeleton_from_model
from backend.retarget.bandai import bandai_to_smpl
from backend.retarget.ik import solve
from backend.retarget.kinematics import forward_kinematics, match_bone_lengths, root_scale
from backend.retarget.refine import refine
from backend.rotations import quat_inv, quat_mul
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


def _errors(joints, skeleton, fps, refined=False):
    scale = root_scale(joints, skeleton)
    root, quats = solve(joints, skeleton, fps, scale)
    target = match_bone_lengths(joints, skeleton, scale)
    if refined:
        quats = refine(root, quats, skeleton, target)
    pos = forward_kinematics(root, quats, skeleton.offsets)[0]
    return np.linalg.norm(pos - target, axis=-1), quats


def _jumps(quats):
    rel = quat_mul(quat_inv(quats[:-1]), quats[1:])
    return np.degrees(2 * np.arccos(np.clip(np.abs(rel[..., 0]), 0, 1)))  # (T-1, 22)


def test_fk_reproduces_real_joints_on_matched_skeleton(real_clips):
    # Bone-length matching: the target skeleton takes the clip's proportions (default rest pose conventions).
    for name, joints, fps in real_clips:
        err, _ = _errors(joints, fitted_skeleton(joints), fps)
        assert err.mean() <= 5e-3 and err.max() <= 2e-2, (name, err.mean(), err.max())
        assert err.max() < 1e-4, (name, err.max())  # in fact exact: every bone direction is matched


def test_refinement_on_default_skeleton_humanml3d(real_clips):
    # On SMPL-X's own proportions the hips/collars attach differently from HumanML3D's skeleton: the analytic solve
    # is off there by ~1-2 cm, refinement spreads it: mean <= 5 mm, max <= 2 cm.
    for name, joints, fps in real_clips[:2]:
        analytic, quats = _errors(joints, default_skeleton(), fps)
        refined, refined_quats = _errors(joints, default_skeleton(), fps, refined=True)
        assert refined.mean() <= 5e-3 and refined.max() <= 2e-2, (name, refined.mean(), refined.max())
        assert refined.mean() < 0.5 * analytic.mean()
        # The smoothness term keeps the corrections from adding jitter: frame-to-frame changes barely grow.
        assert np.percentile(_jumps(refined_quats), 99) <= np.percentile(_jumps(quats), 99) + 1.0


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
