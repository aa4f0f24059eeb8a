"""Degenerate input: clear errors (InvalidRequest) or well-defined, finite results; never NaN rotations."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.retarget import default_skeleton, retarget, RestSkeleton
from backend.retarget.feet import skating_ratio
from backend.retarget.ik import solve
from backend.retarget.resample import resample


def _assert_sane(result):
    q = result.local_quats
    assert np.isfinite(q).all() and np.isfinite(result.root_translation).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)
    assert np.isfinite(result.fk()).all()


def test_no_frames():
    with pytest.raises(InvalidRequest, match="no frames"):
        retarget(Motion(np.zeros((0, 22, 3)), fps=20.0))


def test_nan_joints():
    joints = np.repeat(default_skeleton().joints[None], 5, axis=0)
    joints[3, 7, 1] = np.nan
    with pytest.raises(InvalidRequest, match="NaN.*frame 3"):
        retarget(Motion(joints, fps=20.0))


def test_wrong_shape():
    with pytest.raises(InvalidRequest, match=r"\(T, 22, 3\)"):
        solve(np.zeros((4, 21, 3)), default_skeleton())


@pytest.mark.parametrize("options", [
    {}, {"foot_lock": True, "refine": "positions", "target_fps": 30.0, "in_place": True}])
def test_single_frame(options):
    skeleton = default_skeleton()
    result = retarget(Motion(skeleton.joints[None] + 0.1, fps=20.0), skeleton, **options)
    _assert_sane(result)
    assert result.num_frames == (2 if options else 1)  # 1 frame at 20 fps lasts 0.05 s = 1.5 frames at 30 fps
    if not options:
        np.testing.assert_allclose(result.fk()[0], skeleton.joints + [0.1, 0.0, 0.1], atol=1e-6)


def test_zero_length_bones_fall_back_to_parent():
    skeleton = default_skeleton()
    joints = np.repeat(skeleton.joints[None], 4, axis=0)
    joints[:, 20] = joints[:, 18]  # left wrist on the elbow
    joints[:, [4, 7, 10]] = joints[:, 1:2]  # left knee, ankle and foot on the hip
    result = retarget(Motion(joints, fps=20.0), skeleton, refine="off")
    _assert_sane(result)  # analytic: the collapsed bones keep their rest direction relative to the parent
    np.testing.assert_allclose(result.local_quats[:, [18, 4, 7]], np.tile([1.0, 0, 0, 0], (4, 3, 1)), atol=1e-9)
    _assert_sane(retarget(Motion(joints, fps=20.0), skeleton, foot_lock=True, refine="positions"))


def test_all_joints_at_one_point():
    result = retarget(Motion(np.full((6, 22, 3), 0.5), fps=20.0), foot_lock=True, refine="positions", target_fps=24.0)
    _assert_sane(result)


def test_bad_settings():
    skeleton = default_skeleton()
    result = retarget(Motion(skeleton.joints[None].repeat(3, 0), fps=20.0), skeleton)
    with pytest.raises(InvalidRequest, match="scale"):
        result.bvh_text(scale=0.0)
    with pytest.raises(ValueError, match="frame rates"):
        resample(result.root_translation, result.local_quats, 20.0, -5.0)
    with pytest.raises(InvalidRequest, match="zero-length"):
        RestSkeleton(np.zeros((22, 3)))
    with pytest.raises(ValueError, match="2 frames"):
        skating_ratio(skeleton.joints[None])
