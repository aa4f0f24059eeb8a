"""Control fitting (backend.generation.fitting) on real HumanML3D clips and analytic paths, without a model:
exact controls, poses kept, heading that follows the path, features that still describe the motion, and honest
warnings."""

from __future__ import annotations

import numpy as np
import pytest

from backend.generation.controls import JointControl
from backend.motion.features import features_to_joints
from backend.generation.fitting import (
    PELVIS_HEIGHT_RANGE, _facing_angles, _yaw, control_errors, fit_motion, heading_change, refit_features,
)
from backend.motion.skeleton import FPS, JOINT_INDEX, PARENTS

CLIP = ("HumanML3D/new_joints/012314.npy", "HumanML3D/new_joint_vecs/012314.npy")  # a real 8.5 s walk, 5.5 m


@pytest.fixture(scope="module")
def walk(data_dir):
    root = data_dir / "humanml3d_reference"
    return (np.load(root / CLIP[0]).astype(np.float32), np.load(root / CLIP[1]).astype(np.float32))


def _bones(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[:, 1:] - joints[:, list(PARENTS[1:])], axis=-1)


def _circle(frames: int, radius: float = 2.0, turns: float = 0.75, height: float = 0.9) -> np.ndarray:
    a = np.linspace(0.0, 2 * np.pi * turns, frames)
    return np.stack([radius * (1 - np.cos(a)), np.full(frames, height), radius * np.sin(a)], 1).astype(np.float32)


def _canonical(joints: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Fitted joints as features place them: frame 0's pelvis at the xz origin, facing +Z."""
    facing = _facing_angles(joints.astype(np.float64), features.astype(np.float64))
    return _yaw(-facing[0], joints - joints[:1, :1] * np.array([1.0, 0.0, 1.0]))


def test_dense_pelvis_path_is_met_exactly_and_poses_are_kept(walk):
    joints, feats = walk
    path = _circle(len(joints))
    fitted = fit_motion(joints, feats, [JointControl.dense("pelvis", path)])
    assert fitted.report.draft["pelvis"].mean > 1.0  # the clip itself does not walk this circle
    assert np.abs(fitted.joints[:, 0] - path).max() <= 1e-5
    assert fitted.report.final["pelvis"].max <= 1e-5 and fitted.report.warnings == []
    # Every bone keeps its length; above the knees the pose relative to the pelvis is the clip's, turned about Y.
    assert np.abs(_bones(fitted.joints) - _bones(joints)).max() <= 2e-3
    upper = [j for j in range(22) if j not in (4, 5, 7, 8, 10, 11)]
    rel_before = joints[:, upper] - joints[:, :1]
    rel_after = fitted.joints[:, upper] - fitted.joints[:, :1]
    np.testing.assert_allclose(np.linalg.norm(rel_after, axis=-1), np.linalg.norm(rel_before, axis=-1), atol=1e-4)
    np.testing.assert_allclose(rel_after[..., 1], rel_before[..., 1], atol=1e-4)


def test_the_body_turns_with_the_path_as_it_travels(walk):
    """The facing-to-travel angle of the clip survives the bend (this clip walks forwards, sideways and backwards
    in turn): wherever both the clip and the fitted motion travel, it is the same within a few degrees."""
    joints, feats = walk
    fitted = fit_motion(joints, feats, [JointControl.dense("pelvis", _circle(len(joints)))])

    def facing_minus_travel(j: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.gradient(j[:, 0, [0, 2]], axis=0)
        facing = _facing_angles(j.astype(np.float64), f.astype(np.float64))
        return facing - np.arctan2(v[:, 0], v[:, 1]), np.linalg.norm(v, axis=-1) * FPS

    before, speed_before = facing_minus_travel(joints, feats)
    after, speed_after = facing_minus_travel(fitted.joints, fitted.features)
    moving = (speed_before > 0.5) & (speed_after > 0.5)
    assert moving.sum() > 60
    change = np.degrees(np.abs(np.angle(np.exp(1j * (after - before)))))[moving]
    assert np.median(change) < 5.0 and np.percentile(change, 90) < 20.0, np.percentile(change, [50, 90])


def test_features_still_describe_the_fitted_motion(walk):
    joints, feats = walk
    np.testing.assert_allclose(refit_features(feats, joints)[:-1, :67], feats[:-1, :67], atol=1e-5)
    fitted = fit_motion(joints, feats, [JointControl.dense("pelvis", _circle(len(joints)))])
    recovered = features_to_joints(fitted.features)
    np.testing.assert_allclose(recovered, _canonical(fitted.joints, fitted.features), atol=1e-4)
    np.testing.assert_array_equal(fitted.features[:, 259:], feats[:, 259:])  # the model's contacts are kept


def test_sparse_waypoints_are_met_at_their_frames_without_jumps(walk):
    joints, feats = walk
    path = _circle(len(joints))
    frames = np.arange(0, len(joints), 4)  # density 0.25
    fitted = fit_motion(joints, feats, [JointControl("pelvis", frames, path[frames])])
    assert np.abs(fitted.joints[frames, 0] - path[frames]).max() <= 1e-5
    speed = np.linalg.norm(np.diff(fitted.joints[:, 0], axis=0), axis=-1).max() * FPS
    path_speed = np.linalg.norm(np.diff(path, axis=0), axis=-1).max() * FPS
    draft_speed = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1).max() * FPS
    assert speed <= 1.5 * max(path_speed, draft_speed)


@pytest.mark.parametrize("keys", [{0: [0, 0.84, 0], 80: [1.5, 0.9, 2.5], 169: [0.0, 0.9, 5.0]},
                                  {20: [0.5, 0.9, 1.0], 150: [-1.0, 0.9, 3.0]}, {100: [2.0, 0.9, 2.0]}])
def test_a_few_keyed_waypoints_bend_the_motion_smoothly(walk, keys):
    """Keys far apart (an empty keyed at a few frames): met exactly, no jump in between, and the clip's own
    wandering stays between them."""
    joints, feats = walk
    fitted = fit_motion(joints, feats, [JointControl.waypoints("pelvis", keys)])
    for frame, point in keys.items():
        np.testing.assert_allclose(fitted.joints[frame, 0], point, atol=1e-5)
    step = np.linalg.norm(np.diff(fitted.joints[:, 0], axis=0), axis=-1) * FPS
    draft = np.linalg.norm(np.diff(joints[:, 0], axis=0), axis=-1) * FPS
    assert step.max() <= 1.5 * draft.max() + 0.5


# Targets within reach: each joint moved towards the root of its chain (shoulder, hip, spine1) and a little aside.
REACHABLE = {"left_wrist": ("left_shoulder", 0.3), "right_wrist": ("right_shoulder", 0.3), "head": ("spine1", 0.1),
             "left_foot": ("left_hip", 0.15), "right_foot": ("right_hip", 0.15)}


@pytest.mark.parametrize("joint", sorted(REACHABLE))
def test_limb_targets_within_reach_are_met_with_the_pelvis(walk, joint):
    """The pelvis on a circle and another joint off its own place every 2nd frame, within reach."""
    joints, feats = walk
    path = _circle(len(joints))
    on_path = fit_motion(joints, feats, [JointControl.dense("pelvis", path)]).joints
    frames = np.arange(0, len(joints), 2)
    index, (root, fraction) = JOINT_INDEX[joint], REACHABLE[joint]
    towards = on_path[frames, JOINT_INDEX[root]] - on_path[frames, index]
    target = on_path[frames, index] + fraction * towards + np.array([0.03, 0.0, 0.03])
    controls = [JointControl.dense("pelvis", path), JointControl(joint, frames, target)]
    fitted = fit_motion(joints, feats, controls)
    errors = control_errors(fitted.joints, controls)
    assert errors["pelvis"].max <= 1e-4
    assert errors[joint].mean <= 0.005 and errors[joint].max <= 0.02, errors[joint]
    assert np.abs(_bones(fitted.joints) - _bones(joints)).max() <= 2e-3  # IK keeps bone lengths
    assert fitted.report.warnings == []


def test_a_wrist_past_arms_length_leans_the_body_and_out_of_reach_is_reported(walk):
    joints, feats = walk
    frames = np.arange(len(joints))
    shoulder = joints[:, JOINT_INDEX["right_shoulder"]]
    reachable = shoulder + np.array([-0.62, -0.1, 0.15])  # past the arm (~0.55 m), within a lean
    fitted = fit_motion(joints, feats, [JointControl("right_wrist", frames, reachable)])
    assert fitted.report.final["right_wrist"].mean <= 0.01 and fitted.report.warnings == []
    far = joints[:, 0] + np.array([3.0, 0.0, 0.0])
    fitted = fit_motion(joints, feats, [JointControl("right_wrist", frames, far)])
    assert fitted.report.final["right_wrist"].mean > 1.0
    (warning,) = fitted.report.warnings
    assert "right_wrist" in warning and "out of reach" in warning


def test_impossible_pelvis_paths_are_followed_as_far_as_a_body_can_and_reported(walk):
    joints, feats = walk
    length = len(joints)
    sprint = np.stack([np.zeros(length), np.full(length, 0.9), np.linspace(0.0, 20.0 * length / 40, length)], 1)
    fitted = fit_motion(joints, feats, [JointControl.dense("pelvis", sprint)])  # 20 m in 2 s
    assert any("10.1 m/s" in w and "faster than a person runs" in w for w in fitted.report.warnings)
    high = np.stack([joints[:, 0, 0], np.full(length, 3.0), joints[:, 0, 2]], 1)
    fitted = fit_motion(joints, feats, [JointControl.dense("pelvis", high)])
    top = PELVIS_HEIGHT_RANGE[1]
    assert np.abs(fitted.joints[:, 0, 1] - top).max() <= 1e-5
    assert fitted.report.final["pelvis"].mean == pytest.approx(3.0 - top, abs=1e-4)
    assert any("3.00 m above the floor" in w for w in fitted.report.warnings)
    assert any("pelvis: 1.40 m from its control on average" in w for w in fitted.report.warnings)


def test_a_path_much_longer_than_the_motion_travels_is_reported(walk):
    joints, feats = walk
    length = len(joints)
    standing = np.repeat(joints[:1], length, axis=0)  # a clip that does not travel
    line = np.stack([np.zeros(length), np.full(length, 0.9), np.linspace(0.0, 6.0, length)], 1)
    fitted = fit_motion(standing, np.repeat(feats[:1], length, axis=0), [JointControl.dense("pelvis", line)])
    assert fitted.report.final["pelvis"].max <= 1e-5
    assert any("travels 0.0 m but the path is 6.0 m long" in w for w in fitted.report.warnings)


def test_the_draft_is_measured_and_left_alone_when_fitting_is_off(walk):
    joints, feats = walk
    control = JointControl.dense("pelvis", _circle(len(joints)))
    draft = fit_motion(joints, feats, [control], fit=False)
    assert draft.joints is joints and draft.features is feats and not draft.report.fitted
    assert draft.report.final == draft.report.draft and draft.report.draft["pelvis"].mean > 1.0


def test_heading_change_is_zero_for_the_same_path_and_a_quarter_turn_for_a_turned_one():
    t = np.arange(100) / FPS
    straight = np.stack([np.zeros(100), 1.2 * t], 1)
    np.testing.assert_allclose(heading_change(straight, straight), 0.0, atol=1e-9)
    sideways = np.stack([1.2 * t, np.zeros(100)], 1)  # travelling +X: facing angle +90 degrees
    np.testing.assert_allclose(heading_change(straight, sideways), np.pi / 2, atol=1e-6)
    still = np.zeros((100, 2))
    np.testing.assert_allclose(heading_change(still, sideways), 0.0)  # nothing travels: nothing to turn
