"""Evaluation metrics against hand-computed cases (OmniControl / MotionLCM definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import metrics


def _walk(frames: int = 40) -> np.ndarray:
    """A stick figure translating along +Z at 1 m/s (20 fps), feet in the air at 0.3 m."""
    joints = np.zeros((frames, 22, 3))
    joints[:, :, 1] = 0.3 + np.linspace(0, 1.4, 22)[None]
    joints[:, :, 2] = (np.arange(frames) / 20.0)[:, None]
    return joints


def _one_controlled_joint(frames: int, joint: int, at: list[int]) -> np.ndarray:
    mask = np.zeros((frames, 22, 3))
    mask[at, joint] = 1.0
    return mask


def test_motion_that_follows_its_control_has_zero_errors():
    joints = _walk()
    mask = _one_controlled_joint(40, 0, list(range(40)))
    errors = metrics.control_errors(joints, joints * mask, mask)
    assert errors == {key: 0.0 for key in metrics.CONTROL_KEYS}


def test_a_60cm_miss_at_one_controlled_frame_fails_both_thresholds():
    joints = _walk()
    controlled = [0, 10, 20, 30]
    mask = _one_controlled_joint(40, 20, controlled)
    target = joints.copy()
    target[10, 20] += np.array([0.0, 0.0, 0.6])  # one controlled point 60 cm away
    errors = metrics.control_errors(joints, target, mask)
    assert errors["traj_fail_50cm"] == 1.0 and errors["traj_fail_20cm"] == 1.0
    assert errors["kps_fail_50cm"] == pytest.approx(1 / 4) and errors["kps_fail_20cm"] == pytest.approx(1 / 4)
    assert errors["kps_mean_err(m)"] == pytest.approx(0.6 / 4)


def test_a_30cm_miss_fails_only_the_20cm_threshold_and_uncontrolled_joints_do_not_count():
    joints = _walk()
    mask = _one_controlled_joint(40, 0, [5])
    target = joints.copy()
    target[5, 0, 0] += 0.3
    target[:, 15] += 5.0  # far off, but the head is not controlled
    errors = metrics.control_errors(joints, target, mask)
    assert (errors["traj_fail_20cm"], errors["traj_fail_50cm"]) == (1.0, 0.0)
    assert errors["kps_mean_err(m)"] == pytest.approx(0.3)
    averaged = metrics.mean_control_errors([errors, metrics.control_errors(joints, joints, mask)])
    assert averaged["traj_fail_20cm"] == pytest.approx(0.5)


def test_no_controlled_point_is_an_error():
    with pytest.raises(ValueError, match="no controlled points"):
        metrics.control_errors(_walk(), _walk(), np.zeros((40, 22, 3)))


def test_a_foot_sliding_on_the_ground_skates_and_a_foot_in_the_air_does_not():
    frames = 40
    air = _walk(frames)  # every joint at least 0.3 m up, moving at 1 m/s
    assert metrics.mean_skating_ratio([air]) == 0.0
    ground = air.copy()
    ground[:, 10, 1] = 0.01  # left foot on the floor while the body moves at 1 m/s: it slides
    # 1 m/s on the floor: every one of the 39 transitions skates (even the zero-padded 5-frame average at the
    # ends is 0.6 m/s > 0.5 m/s).
    assert metrics.mean_skating_ratio([ground]) == 1.0
    slow = ground.copy()
    slow[:, 10, 2] = np.arange(frames) * 0.4 / 20.0  # 0.4 m/s on the floor: under the 0.5 m/s threshold
    assert metrics.mean_skating_ratio([slow]) == 0.0
    still = ground.copy()
    still[:, 10, 2] = 0.0  # the same foot planted: no skating
    assert metrics.mean_skating_ratio([still]) == 0.0
    # Grounded, a clip is first moved so that its lowest ankle or foot is at y = 0: the sliding foot 10 cm
    # up (above the 5 cm threshold) skates once grounded; 10 cm below the floor it is found either way.
    for shift, raw in ((0.1, 0.0), (-0.1, 1.0)):
        moved = ground + np.array([0.0, shift, 0.0])
        assert metrics.mean_skating_ratio([moved]) == raw
        assert metrics.mean_skating_ratio([moved], grounded=True) == 1.0
    assert metrics.mean_skating_ratio([still + np.array([0.0, 0.1, 0.0])], grounded=True) == 0.0


def test_mpjpe_diversity_fid_and_r_precision_on_known_inputs():
    rng = np.random.default_rng(0)
    joints = _walk()
    assert metrics.mpjpe(joints + np.array([0.03, 0.04, 0.0]), joints) == pytest.approx(0.05)
    assert metrics.diversity(np.ones((10, 4)), 5, rng) == 0.0
    # Two points 5 apart: each draw pairs them or not, so diversity averages 2.5 over many draws.
    pairs = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert np.mean([metrics.diversity(pairs, 1, rng) for _ in range(400)]) == pytest.approx(2.5, abs=0.4)
    emb = rng.normal(size=(64, 8))
    assert metrics.frechet_distance(emb, emb) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(emb, emb + 1.0) == pytest.approx(8.0, rel=1e-6)  # |mean shift|^2
    perfect = metrics.r_precision_and_matching(emb, emb)
    assert perfect["R_precision_top_1"] == 1.0 and perfect["Matching_score"] == pytest.approx(0.0)
    shuffled = metrics.r_precision_and_matching(emb, emb[::-1].copy())
    assert shuffled["R_precision_top_3"] < 0.2


def test_body_motion_ignores_travel_and_jitter_and_sees_limbs_move():
    t = np.arange(200) / 20.0
    rng = np.random.default_rng(0)
    held = rng.normal(size=(1, 22, 3)).repeat(200, axis=0)
    travelling = held + np.stack([1.4 * t, 0 * t, 0 * t], axis=1)[:, None, :]  # a held pose sliding at 1.4 m/s
    assert metrics.body_motion(travelling) == pytest.approx(0.0, abs=1e-12)
    jittery = travelling + rng.normal(scale=0.005, size=travelling.shape)  # 5 mm of noise per coordinate
    assert metrics.body_motion(jittery) < 0.015
    waving = travelling.copy()
    waving[:, 20, 1] += 0.3 * np.sin(2 * np.pi * t)  # one wrist swings 30 cm up and down once a second
    assert metrics.body_motion(waving) == pytest.approx(0.3 / np.sqrt(2) / np.sqrt(21), rel=0.02)


def test_evaluation_clips_are_spread_over_the_split_not_its_first_names():
    from training.evaluation.evaluate import spread
    assert spread(190, 48)[0] == 0 and spread(190, 48)[-1] == 189
    picked = spread(190, 48)
    assert len(set(picked)) == 48 and max(np.diff(picked)) <= 5  # 190 / 47 = 4.04 apart
    assert spread(5, 48) == [0, 1, 2, 3, 4]


def test_foot_locked_skating_follows_the_contacts_the_features_predict():
    """The report's delivered skating ratio: a figure standing on the floor whose whole body sways sideways at
    1.2 m/s skates in almost every frame; delivered with Foot Lock it skates only where its features say that
    the feet are not planted."""
    from backend.motion.features import CONTACT_SLICE
    from backend.retarget import default_skeleton
    from backend.motion.skeleton import FEATURE_DIM

    rest = default_skeleton().joints.astype(np.float64)
    frames = 60
    phase = (np.arange(frames) / 20.0 * 1.2 / 0.12) % 2.0
    joints = np.repeat((rest - [0.0, rest[:, 1].min(), 0.0])[None], frames, axis=0)
    joints[..., 0] += (0.12 * np.minimum(phase, 2.0 - phase))[:, None]
    planted = np.zeros((frames, FEATURE_DIM), np.float32)
    planted[:, CONTACT_SLICE] = 1.0
    free = np.zeros((frames, FEATURE_DIM), np.float32)
    swaying = metrics.mean_skating_ratio([joints], grounded=True)
    assert swaying > 0.8
    assert metrics.foot_locked_skating_ratio([joints], [planted]) <= 0.1 * swaying
    assert metrics.foot_locked_skating_ratio([joints], [free]) > 0.8
    with pytest.raises(ValueError):
        metrics.foot_locked_skating_ratio([joints], [])
