"""Add-on math and rules that need no Blender: curves, request building, pose conversion, job tracking."""

from __future__ import annotations

import numpy as np
import pytest

from motionlcm_blender import curves, request_builder, pose_math
from motionlcm_blender.backend_job import BackendJob


def test_axis_conversion_matches_design():
    blender = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(curves.blender_to_humanml(blender), [[1.0, 3.0, -2.0]])
    np.testing.assert_allclose(curves.humanml_to_blender(curves.blender_to_humanml(blender, 0.01), 0.01), blender)
    np.testing.assert_allclose(curves.blender_to_humanml(blender, unit_scale=0.01), [[0.01, 0.03, -0.02]])


def test_default_pelvis_height_is_the_spatial_mean(data_dir):
    mean = np.load(data_dir / "motionlcm_spatial_norm" / "Mean_raw.npy")
    assert curves.DEFAULT_PELVIS_HEIGHT_M == pytest.approx(float(mean[0, 1]), abs=0.01)


def test_resample_uniform_spacing_on_an_l_shaped_polyline():
    points = curves.resample_uniform(np.array([[0, 0, 0], [3, 0, 0], [3, 0, 0], [3, 1, 0]]), 9)
    np.testing.assert_allclose(np.linalg.norm(np.diff(points, axis=0), axis=1), 0.5, atol=1e-9)
    np.testing.assert_allclose(points[[0, -1]], [[0, 0, 0], [3, 1, 0]])


@pytest.mark.parametrize("points, message", [
    ([[1, 2, 3]], "single point"), ([[1, 2, 3], [1, 2, 3], [1, 2, 3]], "zero length")])
def test_degenerate_paths_are_refused(points, message):
    with pytest.raises(curves.CurveError, match=message):
        curves.resample_uniform(np.array(points, dtype=float), 40)


def test_bezier_quarter_circle_stays_on_the_circle():
    k = 4 / 3 * (np.sqrt(2) - 1)  # handle length of a quarter circle
    knots = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    left = np.array([[1.0, -k, 0], [k, 1.0, 0]])
    right = np.array([[1.0, k, 0], [-k, 1.0, 0]])
    points = curves.evaluate_bezier(knots, left, right, cyclic=False)
    assert np.abs(np.linalg.norm(points, axis=1) - 1.0).max() < 3e-4
    np.testing.assert_allclose(points[[0, -1]], knots)


def test_scene_frames_map_to_model_frames_and_out_of_range_is_named():
    frames = curves.scene_to_model_frames([1, 25, 49], start_frame=1, scene_fps=24, model_frames=60)
    assert frames.tolist() == [0, 20, 40]
    with pytest.raises(curves.CurveError, match="frame\\(s\\) 200"):
        curves.scene_to_model_frames([1, 200], start_frame=1, scene_fps=24, model_frames=60)


def test_pelvis_path_on_the_floor_is_lifted_to_standing_height():
    path = np.array([[0, 0, 0], [0, -4, 0]], dtype=float)  # Blender: 4 m towards -Y (the character's front)
    control = request_builder.path_control("pelvis", path, 40, 1.0, 1.0)
    positions = np.array(control["positions"])
    assert control["frames"] == list(range(40))
    np.testing.assert_allclose(positions[:, 1], curves.DEFAULT_PELVIS_HEIGHT_M)
    np.testing.assert_allclose(positions[-1], [0, curves.DEFAULT_PELVIS_HEIGHT_M, 4.0])
    raised = request_builder.path_control("pelvis", path + [0, 0, 1.1], 40, 1.0, 1.0)
    np.testing.assert_allclose(np.array(raised["positions"])[:, 1], 1.1)


def test_density_thins_frames_evenly_keeping_both_ends():
    line = np.array([[0, 0, 1.0], [1, 0, 1.0]])
    control = request_builder.path_control("left_wrist", line, 100, 0.1, 1.0)
    assert len(control["frames"]) == 10 and control["frames"][0] == 0 and control["frames"][-1] == 99
    assert set(np.diff(control["frames"])) <= {11, 12} and set(control) == {"joint", "frames", "positions"}
    np.testing.assert_allclose(np.array(control["positions"])[:, 0], np.array(control["frames"]) / 99, atol=1e-5)
    assert request_builder.path_control("left_wrist", line, 40, 0.01, 1.0)["frames"] == [0, 39]
    assert request_builder.path_control("left_wrist", line, 40, 1.0, 1.0)["frames"] == list(range(40))
    with pytest.raises(curves.CurveError, match="Density must be in"):
        request_builder.path_control("left_wrist", line, 40, 0.0, 1.0)


def test_waypoints_keep_the_later_of_two_keys_on_one_frame():
    control = request_builder.waypoint_control("head", np.array([[0, 0, 1.5], [1, 0, 1.5], [2, 0, 1.5]]),
                                                  np.array([30, 0, 30]), 1.0)
    assert control["frames"] == [0, 30]
    np.testing.assert_allclose(control["positions"][1], [2, 1.5, 0])


def _settings(**changes):
    values = dict(prompt="a person jumps", seconds=3.0, steps=2, seed=5, target_fps=25.0)
    values.update(changes)
    return request_builder.GenerationSettings(**values)


def test_generate_request_follows_the_protocol():
    request = request_builder.build_generate_request(_settings(prompt="  a person\n jumps "), [])
    assert request == {"type": "generate", "prompt": "a person jumps", "frames": 60, "controls": [], "steps": 2,
                       "guidance": None, "seed": 5, "variations": 1, "fit": True, "tuning": 0, "target_fps": 25.0,
                       "in_place": False, "foot_lock": True, "rest_joints": None}


def test_latent_tuning_is_sent_only_with_controls_and_fitting_as_set():
    control = request_builder.path_control("pelvis", np.array([[0, 0, 0], [2, 0, 0.0]]), 60, 1.0, 1.0)
    with_control = request_builder.build_generate_request(_settings(tuning=100), [control])
    assert with_control["tuning"] == 100 and with_control["fit"] is True
    assert request_builder.build_generate_request(_settings(tuning=100), [])["tuning"] == 0
    assert request_builder.build_generate_request(_settings(fit=False), [control])["fit"] is False


def test_control_summary_names_the_error_and_keeps_every_warning():
    def variation(seed, warnings):
        return {"seed": seed, "controls": {"fitted": True, "draft": {}, "warnings": warnings,
                                           "error": {"pelvis": {"mean_m": 0.0, "max_m": 0.0},
                                                     "left_wrist": {"mean_m": 0.12, "max_m": 0.3}}}}
    line, warnings = request_builder.control_summary(
        {"variations": [variation(3, ["left_wrist: out of reach"]), variation(4, ["pelvis: too fast"])]})
    assert line == ("pelvis 0.0 cm from its control on average (0.0 cm at worst); left wrist 12.0 cm from its "
                    "control on average (30.0 cm at worst)")
    assert warnings == ["seed 3: left_wrist: out of reach", "seed 4: pelvis: too fast"]
    assert request_builder.control_summary({"variations": [{"seed": 1}]}) == ("", [])


@pytest.mark.parametrize("changes, message", [
    ({"prompt": " \n "}, "prompt is empty"), ({"seconds": 1.5}, "MotionLCM makes 2 to 120 s"),
    ({"seconds": 130.0}, "2600 model frames"), ({"seconds": 12.0, "variations": 2}, "set Variations to 1"),
    ({"seconds": 12.0, "tuning": 10}, "Latent Tuning works on single clips"),
    ({"steps": 3}, "Steps must be one of"), ({"variations": 9}, "Variations must be between"),
    ({"seed": -1}, "seed must be 0 or more"), ({"tuning": 5000}, "Latent tuning takes 0 to 1000")])
def test_bad_settings_give_specific_errors(changes, message):
    with pytest.raises(request_builder.RequestError, match=message):
        request_builder.build_generate_request(_settings(**changes), [])


def test_timeline_and_continue_requests():
    segments = request_builder.timeline_segments([("a man  walks", 3.0), ("he bows", 1.0)])
    assert segments == [{"prompt": "a man walks", "seconds": 3.0}, {"prompt": "he bows", "seconds": 1.0}]
    body = request_builder.build_generate_request(_settings(), [], timeline=segments,
                                                  continue_from=np.zeros((4, 22, 3)))
    assert body["timeline"] == segments and "prompt" not in body and "frames" not in body
    assert np.asarray(body["continue_from"]).shape == (4, 22, 3)
    assert request_builder.build_generate_request(_settings(seconds=30.0), [])["frames"] == 600
    for items, message in (([("walk", 3.0), (" ", 2.0)], "Segment 2 has an empty prompt"),
                           ([("walk", 0.5)], r"Segment 1 \('walk'\) lasts 0.5 s; a segment needs at least 1 s"),
                           ([("walk", 100.0), ("run", 30.0)], "The timeline lasts 130 s; at most 120 s"),
                           ([], "The timeline has no segments")):
        with pytest.raises(request_builder.RequestError, match=message):
            request_builder.timeline_segments(items)


def test_ar_engine_requests_carry_prompt_and_duration_only():
    request = request_builder.build_generate_request(_settings(engine="ar", seconds=30.0, tuning=5), [])
    assert request == {"type": "generate", "engine": "ar", "prompt": "a person jumps", "frames": 600,
                       "guidance": None, "seed": 5, "variations": 1, "target_fps": 25.0, "in_place": False,
                       "foot_lock": True, "rest_joints": None}
    control = request_builder.path_control("pelvis", np.array([[0, 0, 0], [2, 0, 0.0]]), 60, 1.0, 1.0)
    for kwargs, message in (({"controls": [control]}, "Trajectory controls are not part of the AR engine"),
                            ({"timeline": [{"prompt": "walk", "seconds": 3.0}]}, "Timelines and Continue"),
                            ({"continue_from": np.zeros((4, 22, 3))}, "Timelines and Continue"),
                            ({"settings": _settings(engine="ar", seconds=30.5)}, "the AR engine makes 2 to 30 s"),
                            ({"limits": {**request_builder.FALLBACK_LIMITS, "engines": ["motionlcm"]}},
                             "This backend has no AR engine")):
        args = {"settings": _settings(engine="ar"), "controls": [], **kwargs}
        with pytest.raises(request_builder.RequestError, match=message):
            request_builder.build_generate_request(**args)


@pytest.mark.parametrize("guidance", [0.0, 0.99, 50.5])
def test_guidance_outside_the_backend_range_is_refused(guidance):
    with pytest.raises(request_builder.RequestError, match="Guidance must be between 1 and 50.*Custom Guidance"):
        request_builder.build_generate_request(_settings(guidance=guidance), [])


@pytest.mark.parametrize("guidance", [None, 1.0, 7.5, 50.0])
def test_guidance_none_means_the_checkpoint_default(guidance):
    assert request_builder.build_generate_request(_settings(guidance=guidance), [])["guidance"] == guidance


def test_trained_range_edges_are_accepted():
    assert request_builder.model_frames(2.0) == 40 and request_builder.model_frames(9.8) == 196


def test_two_controls_on_one_joint_are_refused():
    control = request_builder.waypoint_control("head", np.array([[0, 0, 1.5]]), np.array([0]), 1.0)
    with pytest.raises(request_builder.RequestError, match="drive head"):
        request_builder.build_generate_request(_settings(), [control, control])


def _random_rotations(rng, shape):
    q = rng.normal(size=shape + (4,))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _matrix(q):
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def test_quat_from_matrix_round_trips():
    rng = np.random.default_rng(0)
    for q in _random_rotations(rng, (50,)):
        r = pose_math.quat_from_matrix(_matrix(q))
        assert min(np.abs(r - q).max(), np.abs(r + q).max()) < 1e-9


def test_bone_rotation_satisfies_the_pose_equation():
    """R = B^T A L A^T B for any bone rest orientation B (see pose_math's docstring)."""
    rng = np.random.default_rng(1)
    local = _random_rotations(rng, (3, 2))
    rest = np.stack([_matrix(q) for q in _random_rotations(rng, (2,))])
    basis = pose_math.bone_rotation_quats(local, rest)
    a = pose_math.AXES_HUMANML_TO_BLENDER
    for t in range(3):
        for j in range(2):
            expected = rest[j].T @ a @ _matrix(local[t, j]) @ a.T @ rest[j]
            np.testing.assert_allclose(_matrix(basis[t, j]), expected, atol=1e-9)
    assert np.all(np.sum(basis[1:] * basis[:-1], axis=-1) >= 0)  # continuous signs


def test_bone_tails_point_at_the_centre_line_child():
    heads = np.array([[0, 0, 1.0], [0.1, 0, 0.95], [-0.1, 0, 0.95], [0.0, 0, 1.1], [0.1, 0, 0.5]])
    tails = pose_math.rest_bone_tails(heads, [-1, 0, 0, 0, 1])
    np.testing.assert_allclose(tails[0], heads[3])  # pelvis -> spine, not a hip
    np.testing.assert_allclose(tails[1], heads[4])
    assert np.linalg.norm(tails[4] - heads[4]) == pytest.approx(0.27)  # leaf: 0.6 x its parent's 0.45 m


class FakeClient:
    def __init__(self):
        self.sent, self.cancelled, self.queue = [], [], []

    def submit(self, request):
        self.sent.append(request)
        return f"job-{len(self.sent)}"

    def poll(self):
        replies, self.queue = self.queue, []
        return replies

    def cancel(self, job_id):
        self.cancelled.append(job_id)


def test_job_tracks_progress_and_results_of_its_own_requests():
    client = FakeClient()
    job = BackendJob(client, {"skeleton": {"type": "skeleton"}, "generate": {"type": "generate"}})
    assert [r["type"] for r in client.sent] == ["skeleton", "generate"]
    client.queue = [{"id": "job-1", "type": "result", "rest_joints": 1},
                    {"id": "stale", "type": "result"},
                    {"id": "job-2", "type": "progress", "stage": "sampling", "fraction": 0.5}]
    assert not job.update()
    assert (job.stage, job.fraction) == ("sampling", 0.5)
    client.queue = [{"id": "job-2", "type": "result", "fps": 24}]
    assert job.update() and job.error is None and set(job.results) == {"skeleton", "generate"}


def test_job_error_cancels_what_is_still_pending():
    client = FakeClient()
    job = BackendJob(client, {"skeleton": {"type": "skeleton"}, "generate": {"type": "generate"}})
    client.queue = [{"id": "job-1", "type": "error", "code": "internal", "message": "Boom."}]
    assert job.update() and job.error == "Boom." and job.error_code == "internal"
    assert "job-2" in client.cancelled


def test_the_fallback_limits_are_the_backends_and_given_limits_rule():
    from backend import limits

    assert request_builder.FALLBACK_LIMITS == limits.as_dict()
    fewer = {**limits.as_dict(), "max_variations": 2, "steps": [1], "max_prompt_chars": 10}
    with pytest.raises(request_builder.RequestError, match="Variations must be between 1 and 2"):
        request_builder.build_generate_request(_settings(variations=3, steps=1), [], limits=fewer)
    with pytest.raises(request_builder.RequestError, match=r"Steps must be one of \(1,\)"):
        request_builder.build_generate_request(_settings(), [], limits=fewer)
    with pytest.raises(request_builder.RequestError, match="the limit is 10"):
        request_builder.build_generate_request(_settings(steps=1), [], limits=fewer)
    # An incomplete set (an older backend) is not trusted: the fallback applies.
    assert request_builder.usable_limits({"max_variations": 2}) is request_builder.FALLBACK_LIMITS
