"""The 272-dim representation (backend.motion.rep272): its layout, exact round trips on real clips, and the
rotations and positions it carries agreeing with each other (features to a rig need no IK)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.motion import rep272
from backend.motion.rotations import matrix_to_quat
from backend.retarget import default_skeleton
from backend.retarget.kinematics import forward_kinematics
from retarget_data import HUMANML3D_000000, HUMANML3D_012314, humanml3d_joints
from training.data.rep272_data import rotated_clip


@pytest.mark.parametrize("clip", [HUMANML3D_012314, HUMANML3D_000000])
def test_round_trip_on_real_clips_is_exact(data_dir, clip):
    positions, rotations = rep272.canonicalize_272(*rotated_clip(humanml3d_joints(data_dir, clip)))
    features = rep272.to_272(positions, rotations)
    assert features.shape == (len(positions), 272) and np.isfinite(features).all()
    back_positions, back_rotations = rep272.from_272(features)
    np.testing.assert_allclose(back_positions, positions, atol=1e-9)
    np.testing.assert_allclose(back_rotations, rotations, atol=1e-9)
    np.testing.assert_allclose(rep272.to_272(back_positions, back_rotations), features, atol=1e-9)
    # float32 storage (the datasets' and the model's precision) costs micrometres over a 10 s clip.
    np.testing.assert_allclose(rep272.from_272(features.astype(np.float32))[0], positions, atol=1e-4)


def test_recovered_rotations_drive_the_skeleton_to_the_recovered_positions(data_dir):
    """What makes the representation useful for rigs: forward kinematics of its rotations (no IK) puts the joints
    where its positions say."""
    skeleton = default_skeleton()
    positions, rotations = rep272.canonicalize_272(*rotated_clip(humanml3d_joints(data_dir)))
    back_positions, back_rotations = rep272.from_272(rep272.to_272(positions, rotations))
    driven = forward_kinematics(back_positions[:, 0], matrix_to_quat(back_rotations), skeleton.offsets)[0]
    np.testing.assert_allclose(driven, back_positions, atol=1e-6)


def test_layout_frame_zero_and_a_turn_in_place():
    """Analytic: a rest-pose body turning in place at 1 rad/s, 20 fps: no root travel, a constant heading step,
    positions heading-free (so constant), velocities 0."""
    frames, rate = 40, 1.0 / 20.0
    skeleton = default_skeleton()
    yaw = np.arange(frames) * rate
    rotations = np.tile(np.eye(3), (frames, 22, 1, 1))
    rotations[:, 0] = rep272.rot_y(yaw)
    quats = matrix_to_quat(rotations)
    root = np.tile(skeleton.joints[0], (frames, 1))
    positions = forward_kinematics(root, quats, skeleton.offsets)[0]
    features = rep272.to_272(*rep272.canonicalize_272(positions, rotations))
    np.testing.assert_allclose(features[0, 2:8], [1, 0, 0, 0, 1, 0])  # the identity at frame 0
    np.testing.assert_allclose(features[:, 0:2], 0.0, atol=1e-12)
    np.testing.assert_allclose(features[1:, 2:8], np.tile(rep272.rows_to_6d(rep272.rot_y(np.array(-rate))), (39, 1)),
                               atol=1e-12)
    np.testing.assert_allclose(features[:, rep272.POSITIONS], np.tile(features[0, rep272.POSITIONS], (frames, 1)),
                               atol=1e-12)
    np.testing.assert_allclose(features[:, rep272.VELOCITIES], 0.0, atol=1e-12)
    np.testing.assert_allclose(features[:, rep272.ROTATIONS.start:rep272.ROTATIONS.start + 6],
                               np.tile([1, 0, 0, 0, 1, 0], (frames, 1)), atol=1e-12)  # root: heading removed
    assert rep272.FEATURE_DIM_272 == 272 and rep272.ROTATIONS.stop == 272


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"to_272 needs positions \(T, 22, 3\)"):
        rep272.to_272(np.zeros((5, 21, 3)), np.zeros((5, 22, 3, 3)))
    with pytest.raises(ValueError, match=r"from_272 needs \(T, 272\)"):
        rep272.from_272(np.zeros((5, 263)))
