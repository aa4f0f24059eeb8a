"""HumanML3D representation: official fixtures, real HumanML3D clips, analytic motions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import InvalidRequest
from backend.motion.features import (
    CONTACT_SLICE, FEATURE_BLOCKS, RIC_SLICE, ROOT_SLICE, ROT6D_SLICE, VELOCITY_SLICE, denormalize,
    features_to_joints, joints_to_features, normalize, recover_root,
)
from backend.motion.humanml3d_skeleton import (
    TARGET_BONE_LENGTHS, TARGET_OFFSETS, canonicalize, contact_labels, uniform_skeleton,
)
from backend.motion.rotations import quat_about_y, quat_inv, quat_rotate
from backend.motion.skeleton import FEATURE_DIM, FPS, PARENTS, RAW_OFFSETS

CLIPS = {  # new_joints (T, 22, 3) = official recover_from_ric of new_joint_vecs (T, 263)
    "012314": ("HumanML3D/new_joints/012314.npy", "HumanML3D/new_joint_vecs/012314.npy"),
    "000000": ("example_000000_EricGuoICT/new_joints/000000.npy",
               "example_000000_EricGuoICT/new_joint_vecs/000000.npy"),
}


@pytest.fixture(scope="module", params=sorted(CLIPS))
def clip(request, data_dir):
    joints_path, feats_path = CLIPS[request.param]
    root = data_dir / "humanml3d_reference"
    return np.load(root / joints_path).astype(np.float64), np.load(root / feats_path).astype(np.float64)


def _bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)


def _rest_pose() -> np.ndarray:
    """The target skeleton with every bone along its rest direction, feet on the floor, facing +Z."""
    pose = np.zeros((22, 3))
    for child in range(1, 22):
        pose[child] = pose[PARENTS[child]] + TARGET_OFFSETS[child]
    return pose - np.array([0.0, pose[:, 1].min(), 0.0])


# ---- features -> joints -------------------------------------------------------------------------------

def test_features_to_joints_matches_official_recover_from_ric(fixtures_dir):
    data = np.load(fixtures_dir / "recover_from_ric_012314.npz")
    joints = features_to_joints(data["features"])
    assert joints.dtype == np.float32
    np.testing.assert_allclose(joints, data["joints_recovered"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 4])
def test_features_to_joints_matches_sampler_fixture(fixtures_dir, steps):
    out = np.load(fixtures_dir / f"outputs_steps{steps}.npz")
    lengths = np.load(fixtures_dir / "inputs.npz")["lengths"]
    joints = features_to_joints(torch.from_numpy(out["feats_denorm"]))
    assert joints.dtype == torch.float32 and joints.shape == (2, 196, 22, 3)
    for b, length in enumerate(lengths):
        np.testing.assert_allclose(joints[b, :length].numpy(), out["joints"][b, :length], rtol=0, atol=1e-5)


def test_features_to_joints_batched_padded_differentiable(fixtures_dir):
    feats = torch.from_numpy(np.load(fixtures_dir / "recover_from_ric_012314.npz")["features"]).double()
    single = features_to_joints(feats)
    # Leading batch axes, and padding after a clip leaves its frames unchanged (recovery is causal).
    padded = torch.cat([feats, torch.randn(26, FEATURE_DIM, dtype=torch.float64)])
    batch = torch.stack([padded, padded.flip(0)]).reshape(1, 2, 196, FEATURE_DIM)
    out = features_to_joints(batch)
    assert out.shape == (1, 2, 196, 22, 3) and out.dtype == torch.float64
    torch.testing.assert_close(out[0, 0, :170], single, rtol=0, atol=1e-12)
    np.testing.assert_allclose(features_to_joints(feats.numpy()), single.numpy(), rtol=0, atol=1e-12)
    small = feats[:6].clone().requires_grad_()
    assert torch.autograd.gradcheck(features_to_joints, (small,), fast_mode=True)


def test_recover_root_is_the_pelvis(fixtures_dir):
    feats = np.load(fixtures_dir / "recover_from_ric_012314.npz")["features"]
    quat, pos = recover_root(feats)
    np.testing.assert_allclose(pos, features_to_joints(feats)[:, 0], atol=0)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-6)


# ---- joints -> features on real HumanML3D clips -------------------------------------------------------

def _with_final_frame(joints: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """new_joints lacks the clip's last frame (features need T - 1 rows); its velocities rebuild it."""
    quat, _ = recover_root(feats)
    step = quat_rotate(quat_inv(quat[-1]), feats[-1, VELOCITY_SLICE].reshape(22, 3))
    return np.concatenate([joints, (joints[-1] + step)[None]])


BLOCK_ATOL = {"root": 1e-6, "ric": 1e-5, "rot6d": 2e-5, "velocity": 1e-5, "contacts": 0.0}


def test_joints_to_features_reproduces_humanml3d(clip):
    joints, reference = clip
    feats = joints_to_features(_with_final_frame(joints, reference))
    assert feats.shape == reference.shape and feats.dtype == np.float32
    for name, block in FEATURE_BLOCKS.items():
        np.testing.assert_allclose(feats[:, block], reference[:, block], rtol=0, atol=BLOCK_ATOL[name], err_msg=name)


def test_joints_to_features_on_new_joints_differs_only_near_the_end(clip):
    """Without the missing last frame the facing smoothing (sigma 20, radius 80 frames) sees a different
    clip end; frames further than 80 from it are unaffected."""
    joints, reference = clip
    feats = joints_to_features(joints)
    assert feats.shape == (len(joints) - 1, FEATURE_DIM)
    early = len(feats) - 80
    for name, block in FEATURE_BLOCKS.items():
        np.testing.assert_allclose(feats[:early, block], reference[:early, block], rtol=0, atol=BLOCK_ATOL[name],
                                   err_msg=name)
    np.testing.assert_allclose(feats, reference[:len(feats)], rtol=0, atol=0.02)


def test_roundtrip_reproduces_real_joints(clip):
    joints, _ = clip
    recovered = features_to_joints(joints_to_features(joints))
    np.testing.assert_allclose(recovered, joints[:-1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("heading", [2.3, np.pi])
def test_features_ignore_placement_heading_and_size(clip, heading):
    joints, _ = clip
    base = joints_to_features(joints)
    moved = quat_rotate(quat_about_y(np.array(heading)), joints * 1.17) + np.array([4.0, 0.6, -7.5])
    feats = joints_to_features(moved)
    for name, block in FEATURE_BLOCKS.items():
        if name != "contacts":
            np.testing.assert_allclose(feats[:, block], base[:, block], rtol=0, atol=1e-5, err_msg=name)
    assert (feats[:, CONTACT_SLICE] != base[:, CONTACT_SLICE]).mean() < 0.01  # only at-threshold frames may flip


def test_target_bone_lengths_match_the_reference_data(clip):
    joints, _ = clip
    np.testing.assert_allclose(_bone_lengths(joints), np.broadcast_to(TARGET_BONE_LENGTHS[1:], (len(joints), 21)),
                               rtol=0, atol=2e-6)
    np.testing.assert_allclose(TARGET_OFFSETS, RAW_OFFSETS * TARGET_BONE_LENGTHS[:, None], atol=0)


# ---- skeleton steps ---------------------------------------------------------------------------------

def test_uniform_skeleton_sets_lengths_and_keeps_directions(clip):
    joints, _ = clip
    rng = np.random.default_rng(3)
    bones = joints[:, 1:] - joints[:, list(PARENTS[1:])]
    bones *= rng.uniform(0.7, 1.3, size=(1, 21, 1))
    odd = np.empty_like(joints)
    odd[:, 0] = joints[:, 0]
    for child in range(1, 22):
        odd[:, child] = odd[:, PARENTS[child]] + bones[:, child - 1]
    out = uniform_skeleton(odd)
    np.testing.assert_allclose(_bone_lengths(out), np.broadcast_to(TARGET_BONE_LENGTHS[1:], (len(out), 21)), atol=1e-12)
    unit = lambda b: b / np.linalg.norm(b, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(unit(out[:, 1:] - out[:, list(PARENTS[1:])]), unit(bones), atol=1e-12)
    leg = lambda j: _bone_lengths(j)[0, [4, 7]].sum()  # noqa: E731  (bones into joints 5 and 8)
    np.testing.assert_allclose(out[:, 0], odd[:, 0] * leg(out) / leg(odd), atol=1e-12)


def test_canonicalize_floor_origin_and_facing(clip):
    joints, _ = clip
    moved = quat_rotate(quat_about_y(np.array(-1.1)), joints) + np.array([1.0, 0.3, 2.0])
    out = canonicalize(moved)
    assert abs(out[..., 1].min()) < 1e-12
    np.testing.assert_allclose(out[0, 0, [0, 2]], 0, atol=1e-12)
    across = (out[0, 2] - out[0, 1]) + (out[0, 17] - out[0, 16])  # right minus left: points to -X when facing +Z
    assert across[0] < 0 and abs(across[2]) < 1e-12
    np.testing.assert_allclose(out, joints, atol=1e-6)  # HumanML3D joints are already canonical


def test_contact_labels_threshold_per_joint():
    joints = np.zeros((4, 22, 3))
    joints[:, 10, 0] = [0.0, 0.01, 0.11, 0.21]  # left foot: still, then 0.1 m per frame
    joints[:, 8, 2] = [0.0, 0.04, 0.08, 0.12]  # right ankle: 0.04 m per frame, squared 0.0016
    contacts = contact_labels(joints)
    np.testing.assert_array_equal(contacts, [[1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 1, 1]])
    strict = contact_labels(joints, threshold=np.array([0.001, 0.002]))  # (ankle, foot)
    np.testing.assert_array_equal(strict[:, 2], [0, 0, 0])


# ---- analytic motions -------------------------------------------------------------------------------

@pytest.mark.parametrize("velocity", [(0.0, 0.0, 1.2), (0.9, 0.0, 0.0), (0.3, 0.0, -0.5)])
def test_constant_velocity_translation(velocity):
    speed = np.array(velocity)  # metres per second, the body keeps facing +Z
    frames = 60
    joints = _rest_pose()[None] + (np.arange(frames)[:, None, None] / FPS) * speed
    feats = joints_to_features(joints)
    np.testing.assert_allclose(feats[:, 0], 0, atol=1e-7)
    np.testing.assert_allclose(feats[:, 1:3], np.broadcast_to(speed[[0, 2]] / FPS, (frames - 1, 2)), atol=1e-7)
    np.testing.assert_allclose(feats[:, 3], _rest_pose()[0, 1], atol=1e-7)
    ric = (_rest_pose()[1:] - _rest_pose()[0] * [1, 0, 1]).ravel()
    np.testing.assert_allclose(feats[:, RIC_SLICE], np.broadcast_to(ric, (frames - 1, 63)), atol=1e-7)
    identity6d = np.tile([1.0, 0, 0, 0, 1, 0], 21)
    np.testing.assert_allclose(feats[:, ROT6D_SLICE], np.broadcast_to(identity6d, (frames - 1, 126)), atol=1e-7)
    np.testing.assert_allclose(feats[:, VELOCITY_SLICE], np.broadcast_to(np.tile(speed / FPS, 22), (frames - 1, 66)),
                               atol=1e-7)
    still = float(((speed / FPS) ** 2).sum() < 0.002)
    np.testing.assert_array_equal(feats[:, CONTACT_SLICE], still)
    np.testing.assert_allclose(joints_to_features(joints[:2]), feats[:1], atol=1e-7)  # shortest clip: one row


def test_turning_in_place_through_a_full_turn():
    """Yaw 0.5 rad/s for 10 s (5 rad: the facing passes -Z). Away from the smoothing edges the root
    rotation velocity is minus half the yaw step; the round trip holds everywhere."""
    rate, frames = 0.5, 200
    yaw = rate * np.arange(frames) / FPS
    joints = quat_rotate(quat_about_y(yaw)[:, None], _rest_pose()[None])
    feats = joints_to_features(joints)
    np.testing.assert_allclose(feats[81:118, 0], -rate / FPS / 2, rtol=1e-6)
    np.testing.assert_allclose(feats[:, ROOT_SLICE][:, 1:], np.broadcast_to([0.0, 0.0, _rest_pose()[0, 1]], (199, 3)),
                               atol=1e-7)
    np.testing.assert_allclose(features_to_joints(feats), joints[:-1], rtol=0, atol=1e-5)


# ---- normalisation and bad input --------------------------------------------------------------------

def test_normalize_roundtrip_with_humanml3d_stats(data_dir, fixtures_dir):
    mean = np.load(data_dir / "humanml3d_reference/HumanML3D/Mean.npy")
    std = np.load(data_dir / "humanml3d_reference/HumanML3D/Std.npy")
    out = np.load(fixtures_dir / "outputs_steps1.npz")
    denorm = denormalize(torch.from_numpy(out["feats_norm"]), mean, std)
    assert denorm.dtype == torch.float32
    np.testing.assert_allclose(denorm.numpy(), out["feats_denorm"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(normalize(out["feats_denorm"], mean, std), out["feats_norm"], rtol=0, atol=2e-5)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 22, 3)), "at least 2 frames"),
    (np.zeros((10, 21, 3)), "shape"),
    (np.zeros((10, 22)), "shape"),
    ([["a"]], "numeric"),
])
def test_joints_to_features_rejects_bad_shapes(bad, message):
    with pytest.raises(InvalidRequest, match=message):
        joints_to_features(bad)


def test_joints_to_features_rejects_nan_and_degenerate_bodies():
    joints = np.repeat(_rest_pose()[None], 5, axis=0)
    nan = joints.copy()
    nan[3, 7, 1] = np.nan
    with pytest.raises(InvalidRequest, match=r"NaN.*\[3\]"):
        joints_to_features(nan)
    collapsed = joints.copy()
    collapsed[:, 4] = collapsed[:, 1]  # knee on the hip
    with pytest.raises(ValueError, match="coincides"):
        joints_to_features(collapsed)
    with pytest.raises(ValueError, match="faces"):
        joints_to_features(np.broadcast_to(np.arange(22.0)[:, None] * [0.0, 0.1, 0.0], (5, 22, 3)))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 262), np.float32), "shape"),
    (torch.zeros(263), "shape"),
    (np.zeros((0, 263), np.float32), "shape"),
    (np.zeros((10, 263), np.int64), "floating"),
    (np.full((3, 263), np.nan, np.float32), "NaN"),
    (torch.zeros(2, 3, 263).index_fill_(1, torch.tensor([2]), float("inf")), "infinite"),
    ([0.0] * 263, "numpy array or torch tensor"),
])
def test_features_to_joints_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        features_to_joints(bad)


def test_large_finite_features_are_not_mistaken_for_nan():
    feats = np.full((3, FEATURE_DIM), 3e38, np.float32)  # their sum overflows; every value is finite
    assert features_to_joints(feats).shape == (3, 22, 3)
