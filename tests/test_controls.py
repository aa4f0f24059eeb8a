"""Controls -> hints: rebuilt exactly from the official fixture, validation errors, control files, CLI argument."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.generation.controls import (
    JointControl, build_hint, denormalize_hint, load_control_file, make_hint_mask, normalize_hint,
    parse_control_arg, validate_controls,
)
from backend.errors import InvalidRequest
from backend.motion.norm_stats import spatial_mean_std


def _controls_from_fixture(hint_denorm: np.ndarray, hint_mask: np.ndarray) -> list[JointControl]:
    """One sample's controls, read back from the official (T, 22, 3) arrays, via the request-JSON form."""
    controls = []
    for j in np.nonzero(hint_mask.any(axis=(0, 2)))[0]:
        frames = np.nonzero(hint_mask[:, j, 0])[0]
        as_json = json.dumps({"joint": int(j), "frames": frames.tolist(),
                              "positions": hint_denorm[frames, j].tolist()})
        controls.append(JointControl.from_dict(json.loads(as_json)))
    return controls


def test_build_hint_reproduces_the_official_fixture(fixtures_dir):
    inputs = np.load(fixtures_dir / "inputs.npz")
    lengths = inputs["lengths"].tolist()
    controls = [_controls_from_fixture(inputs["hint_denorm"][b], inputs["hint_mask"][b]) for b in range(2)]
    assert [c.joint for cs in controls for c in cs] == ["pelvis", "pelvis"]
    assert [len(cs[0].frames) for cs in controls] == [196, 30]
    hint, mask = build_hint(controls, lengths, inputs["raw_mean"], inputs["raw_std"], max_len=196)
    assert hint.shape == mask.shape == (2, 196, 22, 3) and hint.dtype == mask.dtype == torch.float32
    assert torch.equal(mask, torch.from_numpy(inputs["hint_mask"]))
    torch.testing.assert_close(hint, torch.from_numpy(inputs["hint"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(denormalize_hint(hint, mask, inputs["raw_mean"], inputs["raw_std"]),
                               torch.from_numpy(inputs["hint_denorm"]), atol=1e-6, rtol=0)
    # Default T = the longest length; the packaged statistics are the fixture's.
    raw_mean, raw_std = spatial_mean_std()
    hint2, mask2 = build_hint(controls, lengths, raw_mean, raw_std)
    assert torch.equal(hint2, hint) and torch.equal(mask2, mask)


def test_hint_is_analytic_masked_and_zero_padded():
    raw_mean = np.arange(66, dtype=np.float32).reshape(22, 3) / 10
    raw_std = np.full((22, 3), 0.5, dtype=np.float32)
    head = JointControl.waypoints("head", {3: (1.0, 2.0, 3.0), 0: (0.0, 1.5, 0.0)})
    hint, mask = build_hint([[head], []], [5, 40], raw_mean, raw_std, max_len=48)
    assert hint.shape == (2, 48, 22, 3)
    expected = (np.array([1.0, 2.0, 3.0]) - raw_mean[15]) / 0.5
    np.testing.assert_allclose(hint[0, 3, 15].numpy(), expected, atol=1e-6)
    assert mask[0].sum() == 6 and mask[0, [0, 3], 15].eq(1).all()
    assert hint[0].abs().sum() == hint[0, [0, 3], 15].abs().sum()  # nothing outside the controlled entries
    assert mask[1].sum() == 0 and hint[1].abs().sum() == 0
    assert hint[0, 5:].abs().sum() == 0 and mask[:, 40:].sum() == 0


def test_batched_torch_helpers_match_build_hint():
    rng = np.random.default_rng(0)
    raw_mean, raw_std = spatial_mean_std()
    joints = torch.from_numpy(rng.normal(size=(2, 50, 22, 3)).astype(np.float32))
    frame_sel = torch.zeros(2, 50, dtype=torch.bool)
    frame_sel[0, [1, 7, 45]] = True
    frame_sel[1, [2, 30, 44]] = True
    joint_sel = torch.zeros(2, 22, dtype=torch.bool)
    joint_sel[0, 20] = joint_sel[1, 0] = joint_sel[1, 11] = True
    lengths = torch.tensor([50, 40])
    mask = make_hint_mask(frame_sel, joint_sel, lengths)
    hint = normalize_hint(joints, mask, raw_mean, raw_std)
    controls = [[JointControl("left_wrist", [1, 7, 45], joints[0, [1, 7, 45], 20])],
                [JointControl(j, [2, 30], joints[1, [2, 30], j]) for j in (0, 11)]]
    ref_hint, ref_mask = build_hint(controls, [50, 40], raw_mean, raw_std)
    assert torch.equal(mask, ref_mask)  # frame 44 of sample 1 lies past its length
    assert torch.equal(hint, ref_hint)


def test_joint_control_normalises_input_and_round_trips():
    c = JointControl(21, [5, 1, 5], [[0.5, 1, 0], [0, 1, 0], [0.5, 1, 0]])
    assert c.joint == "right_wrist" and c.index == 21
    assert c.frames.tolist() == [1, 5] and c.frames.dtype == np.int64 and c.positions.dtype == np.float32
    again = JointControl.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again.to_dict() == c.to_dict() == {"joint": "right_wrist", "frames": [1, 5],
                                              "positions": [[0.0, 1.0, 0.0], [0.5, 1.0, 0.0]]}
    dense = JointControl.dense("pelvis", np.ones((4, 3)))
    assert dense.frames.tolist() == [0, 1, 2, 3] and JointControl("left_foot", [2.0], [[0, 0, 0]]).frames[0] == 2


@pytest.mark.parametrize("make, message", [
    (lambda: JointControl("left_knee", [0], [[0, 0, 0]]), "joint 'left_knee' cannot be controlled; use one of: pelvis"),
    (lambda: JointControl(4, [0], [[0, 0, 0]]), "joint 4 cannot be controlled"),
    (lambda: JointControl("head", [0, 1], [[0, 0, 0]]), "'head': 2 frames but 1 positions"),
    (lambda: JointControl("head", [0], [[0, 0]]), r"positions must have shape \(K, 3\), got \(1, 2\)"),
    (lambda: JointControl("head", [0, 1], [[0, 0, 0], [0, np.nan, 0]]), r"\[0.0, nan, 0.0\] at frame 1 is not finite"),
    (lambda: JointControl("head", [0], [[np.inf, 0, 0]]), "is not finite"),
    (lambda: JointControl("head", [-1], [[0, 0, 0]]), "frame -1 is out of range"),
    (lambda: JointControl("head", [1.5], [[0, 0, 0]]), "frame 1.5 is not an integer"),
    (lambda: JointControl("head", [], np.zeros((0, 3))), "non-empty 1-D list"),
    (lambda: JointControl("head", [2, 2], [[0, 0, 0], [0, 1, 0]]),
     r"'head' has two different positions at frame 2: \[0.0, 0.0, 0.0\] and \[0.0, 1.0, 0.0\]"),
    (lambda: JointControl.from_dict({"joint": "head", "frames": [0]}), "exactly the keys"),
])
def test_bad_controls_raise_specific_errors(make, message):
    with pytest.raises(InvalidRequest, match=message):
        make()


def test_validate_controls_checks_length_and_conflicts_across_controls():
    a = JointControl("pelvis", [0, 10], [[0, 1, 0], [1, 1, 0]])
    validate_controls([a, JointControl("pelvis", [10], [[1, 1, 0]])], 11)  # same position twice is fine
    with pytest.raises(InvalidRequest, match="frame 10 is out of range .*< the clip length 10"):
        validate_controls([a], 10)
    with pytest.raises(InvalidRequest, match="'pelvis' has two different positions at frame 10"):
        validate_controls([a, JointControl("pelvis", [10], [[2, 1, 0]])], 11)
    a.positions[0, 0] = np.nan  # mutated after construction: still caught
    with pytest.raises(InvalidRequest, match="not finite"):
        validate_controls([a], 11)
    with pytest.raises(InvalidRequest, match="expected JointControl objects, got dict"):
        validate_controls([{"joint": "pelvis"}], 11)


def test_build_hint_rejects_inconsistent_batches():
    stats = spatial_mean_std()
    c = JointControl("pelvis", [50], [[0, 1, 0]])
    with pytest.raises(InvalidRequest, match="1 control lists for 2 lengths"):
        build_hint([[c]], [60, 60], *stats)
    with pytest.raises(InvalidRequest, match="max_len 40 is shorter than the longest sample"):
        build_hint([[c]], [60], *stats, max_len=40)
    with pytest.raises(InvalidRequest, match="frame 50 is out of range"):
        build_hint([[], [c]], [60, 45], *stats)
    with pytest.raises(InvalidRequest, match="length 0 is not a positive"):
        build_hint([[]], [0], *stats)


def test_npy_dense_path_is_resampled_linearly_over_the_clip(tmp_path):
    path = tmp_path / "walk.npy"
    np.save(path, np.array([[0, 0.9, 0], [0, 0.9, 2], [1, 0.9, 2]], dtype=np.float32))
    c = load_control_file("pelvis", path, 41)
    assert c.frames.tolist() == list(range(41))
    # 3 points at frames 0, 20, 40; frame 10 is halfway between the first two, frame 30 between the last two.
    np.testing.assert_allclose(c.positions[[0, 10, 20, 30, 40]],
                               [[0, 0.9, 0], [0, 0.9, 1], [0, 0.9, 2], [0.5, 0.9, 2], [1, 0.9, 2]], atol=1e-6)
    exact = np.random.default_rng(1).normal(size=(41, 3)).astype(np.float32)
    np.save(path, exact)
    assert np.array_equal(load_control_file(0, path, 41).positions, exact)  # K == length: used as is


def test_npy_waypoints_and_json_formats(tmp_path):
    np.save(tmp_path / "w.npy", np.array([[0, 0, 1, 0], [39, 2, 1, 3]]))
    w = load_control_file("right_foot", tmp_path / "w.npy", 40)
    assert w.frames.tolist() == [0, 39] and w.positions.tolist() == [[0, 1, 0], [2, 1, 3]]
    (tmp_path / "w.json").write_text(json.dumps({"joint": "head", "frames": [5], "positions": [[0, 1.7, 0]]}))
    assert load_control_file("head", tmp_path / "w.json", 40).to_dict()["frames"] == [5]
    (tmp_path / "d.json").write_text(json.dumps([[0, 1, 0], [2, 1, 0]]))
    d = load_control_file("left_wrist", tmp_path / "d.json", 5)
    np.testing.assert_allclose(d.positions[:, 0], [0, 0.5, 1, 1.5, 2], atol=1e-6)


@pytest.mark.parametrize("name, content, message", [
    ("missing.json", None, "missing.json' for 'pelvis' does not exist"),
    ("p.csv", "0,0,0", "unsupported file type '.csv'; use .npy or .json"),
    ("bad.json", "{nope", "not valid JSON"),
    ("keys.json", '{"frames": [1]}', r"got keys \['frames'\]"),
    ("other.json", '{"joint": "head", "frames": [1], "positions": [[0, 0, 0]]}', "for joint 'head'"),
    ("flat.json", "[1, 2, 3]", r"list of \[x, y, z\] points, got shape \(3,\)"),
    ("str.json", '"pelvis"', "got str"),
    ("one.json", "[[0, 1, 0]]", "at least 2 points"),
    ("late.json", '{"frames": [40], "positions": [[0, 1, 0]]}', "frame 40 is out of range"),
    ("nan.npy", np.array([[0, np.nan, 0], [0, 1, 0]]), "NaN or infinite"),
    ("cols.npy", np.zeros((5, 2)), r"got shape \(5, 2\)"),
    ("text.npy", np.array(["a", "b"]), "not numbers"),
])
def test_bad_control_files_raise_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InvalidRequest, match=message) as info:
        load_control_file("pelvis", path, 40)
    assert name in str(info.value)


def test_parse_control_arg():
    assert parse_control_arg("left_wrist=paths/hand.npy") == ("left_wrist", Path("paths/hand.npy"))
    for bad, message in (("pelvis", "must look like JOINT=FILE"), ("=a.json", "JOINT=FILE"),
                         ("neck=a.json", "joint 'neck' cannot be controlled")):
        with pytest.raises(InvalidRequest, match=message):
            parse_control_arg(bad)
