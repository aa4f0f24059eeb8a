"""Long motions (backend.generation.timeline): segments, chunking, the seam warp, and timelines and continuations
generated with the shipped model, judged by pops at boundaries, seam continuity and path error."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InvalidRequest
from backend.generation import timeline as tl
from backend.generation.controls import JointControl
from backend.generation.pipeline import DEFAULT_CHECKPOINT, MotionLCMPipeline
from backend.motion.skeleton import FPS, MAX_FRAMES
from training.evaluation.metrics import frame_jumps

# Five shots, 30 s (not training captions).
SHOTS = [("a man strolls forward", 7), ("someone stops and bows politely", 5),
         ("the person waves goodbye with the right hand", 5), ("a person jogs ahead", 8),
         ("a man walks forward slowly", 5)]


@pytest.fixture(scope="module")
def pipe() -> MotionLCMPipeline:
    if not (DEFAULT_CHECKPOINT / "config.json").is_file():
        pytest.skip("no shipped model")
    return MotionLCMPipeline.from_checkpoint()


def segments(shots=SHOTS) -> list[tl.Segment]:
    return tl.parse_segments([{"prompt": p, "seconds": s} for p, s in shots])


def max_jumps(joints: np.ndarray, boundaries: list[int]) -> tuple[float, float]:
    """(largest per-frame joint jump in the steps into, across and out of the boundaries, largest elsewhere)."""
    jumps = frame_jumps(joints)
    near = sorted({b + d for b in boundaries for d in (-2, -1, 0) if 0 <= b + d < len(jumps)})
    return float(jumps[near].max()), float(np.delete(jumps, near).max())


def test_segments_are_validated_naming_the_segment():
    assert segments()[1] == tl.Segment("someone stops and bows politely", 100)
    with pytest.raises(InvalidRequest, match="segment 2 has an empty prompt"):
        tl.parse_segments([{"prompt": "a man walks", "seconds": 3}, {"prompt": "  ", "seconds": 3}])
    with pytest.raises(InvalidRequest, match=r"segment 1 \('a man waves'\) lasts 0.5 s; a segment needs at least 1 s"):
        tl.parse_segments([{"prompt": "a man waves", "seconds": 0.5}])
    with pytest.raises(InvalidRequest, match=r"lasts 121 s; at most 120 s \(segment 3 ends past it\)"):
        tl.parse_segments([{"prompt": "a", "seconds": 60}, {"prompt": "b", "seconds": 60}, {"prompt": "c", "seconds": 1}])
    for bad in ([], "walk", [["a man walks", 3]], [{"prompt": "a man walks", "seconds": True}]):
        with pytest.raises(InvalidRequest, match="timeline"):
            tl.parse_segments(bad)


def test_plan_splits_long_segments_evenly_into_clips_with_their_overlap():
    plan = tl.plan_chunks([tl.Segment("a", 500), tl.Segment("b", 30)], continuing=False)
    assert [p[0] for p in plan] == [0, 0, 0, 1]
    assert [p[2] for p in plan] == [167, 167, 166, 30]  # 500 frames in three chunks, each fits with its overlap
    assert [p[1] for p in plan] == [0, 167, 334, 500]
    assert all(frames + tl.OVERLAP <= MAX_FRAMES for _, _, frames in plan)
    assert tl.plan_chunks([tl.Segment("a", MAX_FRAMES)], continuing=True)[0][2] < MAX_FRAMES


def test_local_frame_puts_a_pose_at_the_origin_facing_plus_z(pipe):
    pose = pipe.generate(["a person walks"], [40], seed=0).joints[0, 0].astype(np.float64)
    yaw = 1.1
    turned = tl.to_world(pose, np.array([2.0, 0.0, -1.0]), yaw)  # the pose moved and turned by 1.1 rad
    origin, found = tl.facing_frame(turned)
    assert found == pytest.approx(yaw + tl.facing_frame(pose)[1], abs=1e-6)
    np.testing.assert_allclose(tl.to_world(tl.to_local(turned, origin, found), origin, found), turned, atol=1e-9)
    local = tl.to_local(turned, origin, found)
    assert tl.facing_frame(local)[1] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(local[0, [0, 2]], 0.0, atol=1e-9)


def test_warp_continues_position_velocity_and_acceleration_and_fades_out():
    rng = np.random.default_rng(0)
    t = np.arange(60)[:, None, None] / FPS
    previous = rng.normal(size=(1, 22, 3)) + 1.5 * t[:30] + 2.0 * t[:30] ** 2  # accelerating
    chunk = rng.normal(size=(1, 22, 3)) - 0.5 * t  # elsewhere, moving the other way
    seam = 3
    out = tl.warp_seam(previous, chunk, seam)
    np.testing.assert_allclose(out[seam], previous[-1], atol=1e-12)
    # The next two frames are where previous' velocity and acceleration carry it (a quadratic continues exactly).
    np.testing.assert_allclose(out[seam + 1], 1.5 * t[30] + 2.0 * t[30] ** 2 + (previous[-1] - 1.5 * t[29] - 2.0 * t[29] ** 2),
                               atol=1e-9)
    np.testing.assert_allclose(out[seam + 2] - 2 * out[seam + 1] + out[seam],
                               previous[-1] - 2 * previous[-2] + previous[-3], atol=1e-9)
    np.testing.assert_array_equal(out[seam + tl.BLEND:], chunk[seam + tl.BLEND:])  # the chunk itself after the fade
    np.testing.assert_array_equal(out[:seam], chunk[:seam])


def test_thirty_second_timeline_has_no_pops(pipe):
    result = tl.generate_timeline(pipe, segments(), seed=0)
    assert result.joints.shape == (600, 22, 3) and result.starts == [0, 140, 240, 340, 500]
    boundaries = sorted(set(result.starts[1:]) | {first for first, _ in result.chunks[1:]})
    at_boundaries, inside = max_jumps(result.joints, boundaries)
    assert at_boundaries <= 1.5 * inside, (at_boundaries, inside)  # measured 0.42-0.55x over 4 seeds
    assert np.isfinite(result.joints).all() and result.seeds == [0, 1, 2, 3, 4]


def test_continuation_starts_from_the_last_pose_velocity_and_acceleration(pipe):
    previous = pipe.generate(["a person walks forward"], [120], seed=1).joints[0].astype(np.float64)
    result = tl.generate_timeline(pipe, [tl.Segment("a person waves with both hands", 60)], previous=previous,
                                  seed=2)
    new = result.joints.astype(np.float64)
    assert new.shape == (60, 22, 3)
    # Velocity at the seam from the two frames before it and from the two after it (second-order one-sided
    # differences): equal where the motion is smooth.
    before = (3 * previous[-1] - 4 * previous[-2] + previous[-3]) * FPS / 2
    after = (-3 * previous[-1] + 4 * new[0] - new[1]) * FPS / 2
    assert np.linalg.norm(after - before, axis=-1).max() <= 0.2  # exact by construction (float noise)
    expected = 2 * previous[-1] - previous[-2] + (previous[-1] - 2 * previous[-2] + previous[-3])
    assert np.linalg.norm(new[0] - expected, axis=-1).max() <= 0.01
    assert result.seam_errors[0] > 0.0  # the raw generation did not start there: the warp joined it


def test_a_pelvis_path_over_the_whole_timeline_is_followed(pipe):
    total = 400
    height = float(pipe.checkpoint.raw_mean[0, 1])
    t = np.linspace(0.0, 1.0, total)
    path = np.stack([np.sin(2 * np.pi * t), np.full(total, height), 16.0 * t], axis=1).astype(np.float32)
    result = tl.generate_timeline(pipe, segments([("a man walks", 12), ("a person jogs", 8)]),
                                  controls=[JointControl.dense("pelvis", path)], seed=3)
    error = np.linalg.norm(result.joints[:, 0] - path, axis=-1)
    assert error.max() <= 0.005, error.max()  # as for single clips (fitting): measured 0.4 mm at worst
    assert result.control_errors["pelvis"].max == pytest.approx(float(error.max()), abs=1e-6)


def test_controls_past_the_timeline_and_bad_previous_motions_are_refused(pipe):
    with pytest.raises(InvalidRequest, match="reaches frame 200, past the timeline's 100 frames"):
        tl.generate_timeline(pipe, [tl.Segment("a man walks", 100)],
                             controls=[JointControl.waypoints("pelvis", {200: (0, 0.9, 1)})])
    with pytest.raises(InvalidRequest, match=r"shape \(T >= 2, 22, 3\)"):
        tl.generate_timeline(pipe, [tl.Segment("a man walks", 100)], previous=np.zeros((1, 22, 3)))
