"""Frame-rate conversion: duration rule, exactness at shared instants, slerp, and 20 -> 30 -> 20 fps round trips."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.motion.bvh import read_bvh
from backend.motion import Motion
from backend.retarget import default_skeleton, fitted_skeleton, retarget
from backend.retarget.bandai import bandai_to_smpl
from backend.retarget.kinematics import forward_kinematics
from backend.retarget.resample import resample, resampled_length, slerp
from retarget_data import HUMANML3D_000000, HUMANML3D_012314, extract_bandai, humanml3d_joints


@pytest.mark.parametrize("frames, fps, target", [(196, 20, 30), (170, 20, 24), (40, 20, 29.97), (196, 20, 60),
                                                 (117, 30, 20), (1, 20, 25), (97, 20, 23.976)])
def test_duration_preserved(frames, fps, target):
    m = resampled_length(frames, fps, target)
    assert abs(m / target - frames / fps) <= 0.5 / target + 1e-12  # N/f seconds, to half a target frame
    assert resampled_length(m, target, fps) == frames or target < fps  # up-sampling and back restores N


def test_exact_at_shared_instants_and_cubic_translation():
    rng = np.random.default_rng(0)
    quats = Rotation.random(40 * 22, random_state=2).as_quat(scalar_first=True).reshape(40, 22, 4)
    offset = rng.normal(size=3)

    def cubic(t):
        return np.hstack([t ** 3 - t, 2 * t ** 2, 0.5 + 0 * t]) + offset

    root = cubic(np.arange(40)[:, None] / 20.0)
    new_root, new_quats = resample(root, quats, 20.0, 60.0)
    assert len(new_quats) == 120
    same = np.abs((new_quats[::3] * quats).sum(-1))  # every third 60-fps frame is a source frame
    np.testing.assert_allclose(same, 1.0, atol=1e-12)
    s = np.minimum(np.arange(120) / 60.0, 39 / 20.0)[:, None]
    np.testing.assert_allclose(new_root, cubic(s), atol=1e-9)  # the spline reproduces a cubic


def test_slerp_is_uniform_and_shortest():
    axis = np.array([0.0, 0.6, 0.8])
    q0 = Rotation.from_rotvec(0.2 * axis).as_quat(scalar_first=True)
    q1 = Rotation.from_rotvec(1.4 * axis).as_quat(scalar_first=True)
    for t in (0.0, 0.25, 0.5, 1.0):
        expected = Rotation.from_rotvec((0.2 + 1.2 * t) * axis).as_quat(scalar_first=True)
        assert abs(slerp(q0, -q1, np.array(t)) @ expected) == pytest.approx(1.0, abs=1e-12)


def _round_trip_error(result):
    there = retarget_resampled(result, 30.0)
    back = retarget_resampled(there, 20.0)
    assert back.num_frames == result.num_frames and back.duration == pytest.approx(result.duration)
    assert there.duration == pytest.approx(result.duration, abs=0.5 / 30)
    return np.linalg.norm(back.fk() - result.fk(), axis=-1)


def retarget_resampled(result, fps):
    root, quats = resample(result.root_translation, result.local_quats, result.fps, fps)
    return type(result)(root, quats, fps, result.rest_joints, result.joint_names, result.parents)


def test_round_trip_20_30_20_on_real_motion(data_dir, tmp_path):
    clip = read_bvh(extract_bandai(data_dir, tmp_path, 1, "walk")[0])
    bandai = bandai_to_smpl(clip)
    walk = retarget(Motion(bandai, fps=clip.fps), fitted_skeleton(bandai), target_fps=20.0)
    kick = retarget(Motion(humanml3d_joints(data_dir, HUMANML3D_000000), fps=20.0), default_skeleton())
    for result in (walk, kick):
        assert _round_trip_error(result).max() <= 5e-3
    # 012314 is extreme (a spin; wrist accelerations up to ~130 m/s^2 at 20 fps): nearly all joints within 5 mm.
    spin = retarget(Motion(humanml3d_joints(data_dir, HUMANML3D_012314), fps=20.0), default_skeleton())
    err = _round_trip_error(spin)
    assert err.mean() <= 1e-3 and np.percentile(err, 99) <= 5e-3


def test_retarget_target_fps_matches_fk_of_resampled():
    skeleton = default_skeleton()
    joints = np.repeat(skeleton.joints[None], 8, axis=0) + np.linspace(0, 0.7, 8)[:, None, None] * [1, 0, 0]
    result = retarget(Motion(joints, fps=20.0), skeleton, target_fps=30.0)
    assert result.num_frames == 12 and result.fps == 30.0
    expected_x = np.minimum(np.arange(12) / 30.0, 7 / 20.0) * 2.0  # 0.1 m per 20-fps frame
    np.testing.assert_allclose(forward_kinematics(result.root_translation, result.local_quats,
                                                  result.offsets)[0][:, 0, 0], expected_x, atol=1e-7)  # float32 refine
