"""`motionlcm retarget`: the subcommand end to end (BVH and NPZ outputs, options, errors)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from backend.motion.bvh import read_bvh
from backend.errors import InvalidRequest
from backend.motion import Motion
from backend.commands import retarget as command
from backend.motion.skeleton import JOINT_NAMES
from retarget_data import HUMANML3D_000000, humanml3d_joints


def _run(argv):
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["retarget", *argv])
    return args.func(args)


@pytest.fixture()
def clip_npz(data_dir, tmp_path):
    path = tmp_path / "in.npz"
    Motion(humanml3d_joints(data_dir, HUMANML3D_000000), fps=20.0).save_npz(path)
    return path


def test_bvh_out_with_options(clip_npz, tmp_path):
    out = tmp_path / "clip.bvh"
    assert _run([str(clip_npz), "--fps", "30", "--out", str(out), "--in-place", "--foot-lock", "--scale", "100"]) == 0
    clip = read_bvh(out)
    assert sorted(clip.names) == sorted(JOINT_NAMES) and clip.names[0] == "pelvis"
    assert clip.num_frames == 174 and clip.fps == pytest.approx(30.0)  # 116 frames at 20 fps = 5.8 s
    pos = clip.global_positions(scale=0.01)  # centimetres in the file
    pelvis = pos[:, clip.index("pelvis")]
    np.testing.assert_allclose(pelvis[:, [0, 2]], 0.0, atol=1e-6)  # in place
    feet = pos[:, [clip.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")], 1]
    assert abs(feet.min()) < 1e-5 and 0.8 < pelvis[:, 1].mean() < 1.1  # on the floor, metres after scaling


def test_npz_out(clip_npz, tmp_path):
    out = tmp_path / "clip.npz"
    assert _run([str(clip_npz), "--out", str(out), "--refine", "positions"]) == 0
    with np.load(out) as data:
        assert data["local_quats"].shape == (116, 22, 4) and data["root_translation"].shape == (116, 3)
        assert list(data["joint_names"]) == list(JOINT_NAMES) and float(data["fps"]) == 20.0


def test_no_refine_is_refine_off(clip_npz, tmp_path):
    for flags, name in ((["--no-refine"], "a.npz"), (["--refine", "off"], "b.npz"), ([], "c.npz")):
        assert _run([str(clip_npz), "--out", str(tmp_path / name), *flags]) == 0
    a, b, c = (np.load(tmp_path / n)["local_quats"] for n in ("a.npz", "b.npz", "c.npz"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the default refines (its directions mode)


def test_errors(clip_npz, tmp_path):
    with pytest.raises(InvalidRequest, match=".bvh or .npz"):
        _run([str(clip_npz), "--out", str(tmp_path / "x.fbx")])
    with pytest.raises(InvalidRequest, match="not found"):
        _run([str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.bvh")])
    np.savez(tmp_path / "bad.npz", positions=np.zeros((3, 22, 3)))
    with pytest.raises(InvalidRequest, match="joints"):
        _run([str(tmp_path / "bad.npz"), "--out", str(tmp_path / "x.bvh")])


def test_write_motion_bvh_for_generate(data_dir, tmp_path):
    motion = Motion(humanml3d_joints(data_dir, HUMANML3D_000000), fps=20.0)
    command.write_motion_bvh(motion, tmp_path / "gen.bvh", fps=24.0, scale=100.0)
    clip = read_bvh(tmp_path / "gen.bvh")
    assert clip.num_frames == 139 and clip.fps == pytest.approx(24.0)  # round(116 * 24 / 20)
    hips = clip.global_positions(0.01)[:, clip.index("pelvis"), 1]
    assert 0.7 < hips.mean() < 1.1


def test_cli_turns_a_math_value_error_into_a_clear_error(clip_npz, tmp_path, monkeypatch, capsys):
    import backend.retarget
    from backend.cli import main as cli_main

    def refuse(*args, **kwargs):
        raise ValueError("cannot tell which way the body faces: hips and shoulders coincide")

    monkeypatch.setattr(backend.retarget, "retarget", refuse)
    assert cli_main(["retarget", str(clip_npz), "--out", str(tmp_path / "x.bvh")]) == 2
    assert "motionlcm retarget: error: cannot tell which way the body faces" in capsys.readouterr().err
    assert not (tmp_path / "x.bvh").exists()
