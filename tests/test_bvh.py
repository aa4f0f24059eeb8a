"""backend.motion.bvh: the general BVH reader (real Bandai-Namco mocap, analytic files) and the writer's round trip."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.motion.bvh import format_bvh, parse_bvh, read_bvh
from backend.errors import InvalidRequest
from backend.motion.skeleton import JOINT_NAMES, PARENTS
from retarget_data import extract_bandai

BANDAI_NODES = {"joint_Root", "Hips", "Spine", "Chest", "Neck", "Head", "Shoulder_L", "Shoulder_R", "UpperArm_L",
                "UpperArm_R", "LowerArm_L", "LowerArm_R", "Hand_L", "Hand_R", "UpperLeg_L", "UpperLeg_R",
                "LowerLeg_L", "LowerLeg_R", "Foot_L", "Foot_R", "Toes_L", "Toes_R"}


@pytest.fixture(scope="module")
def bandai_clip(data_dir, tmp_path_factory):
    return read_bvh(extract_bandai(data_dir, tmp_path_factory.mktemp("bandai"), 1)[0])


def _two_joint(channels: str, values: str, child_channels: str = "") -> str:
    child = f"CHANNELS {len(child_channels.split())} {child_channels}" if child_channels else ""
    return f"""HIERARCHY
ROOT a
{{
  OFFSET 0 0 0
  CHANNELS {len(channels.split())} {channels}
  JOINT b
  {{
    OFFSET 1 0 0
    {child}
    End Site
    {{
      OFFSET 0 2 0
    }}
  }}
}}
MOTION
Frames: 1
Frame Time: 0.05
{values}
"""


def test_reads_real_bandai_clip(bandai_clip):
    clip = bandai_clip
    assert set(clip.names) == BANDAI_NODES and len(clip.names) == 22
    assert all(len(c) == 6 for c in clip.channels) and clip.motion.shape == (clip.num_frames, 132)
    assert clip.fps == pytest.approx(30.0, rel=1e-4)
    pos = clip.global_positions(scale=0.01)
    body = [j for j, p in enumerate(clip.parents) if p > 0]  # joint_Root -> Hips is the global translation
    bones = np.linalg.norm(pos[:, body] - pos[:, [clip.parents[j] for j in body]], axis=-1)
    assert bones.std(axis=0).max() < 1e-6 and bones.min() > 0.02  # rigid skeleton: FK keeps every bone length
    hips, head = pos[:, clip.index("Hips")], pos[:, clip.index("Head")]
    assert 0.3 < np.median(head[:, 1] - hips[:, 1]) < 0.7  # upright person, Y up, metres
    toes = pos[:, [clip.index("Toes_L"), clip.index("Toes_R")], 1]
    assert toes.min() > -0.05 and toes.min(axis=1).max() < 0.6 and np.median(hips[:, 1]) > 0.7


def test_rotation_order_and_degrees():
    # R = Rz(90) Rx(90) for "Zrotation Xrotation": child offset +X -> Rz(+X) = +Y; tip (0,2,0) -> Rz Rx (0,2,0).
    clip = parse_bvh(_two_joint("Xposition Yposition Zposition Zrotation Xrotation", "1 2 3 90 90"))
    pos = clip.global_positions()
    np.testing.assert_allclose(pos[0, 0], [1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(pos[0, 1], [1, 3, 3], atol=1e-12)
    _, rot = clip.global_transforms()
    np.testing.assert_allclose(rot[0, 1] @ [0, 2, 0], [0, 0, 2], atol=1e-12)  # Rx: Y->Z, then Rz keeps Z
    swapped = parse_bvh(_two_joint("Xposition Yposition Zposition Xrotation Zrotation", "1 2 3 90 90"))
    np.testing.assert_allclose(swapped.global_transforms()[1][0, 1] @ [0, 2, 0], [-2, 0, 0], atol=1e-12)


def test_position_channels_replace_offsets():
    clip = parse_bvh(_two_joint("Xposition Yposition Zposition", "0 0 0 5 6 7",
                                child_channels="Xposition Yposition Zposition"))
    np.testing.assert_allclose(clip.global_positions()[0, 1], [5, 6, 7])
    assert clip.end_sites == {1: pytest.approx(np.array([0.0, 2.0, 0.0]))}


def test_writer_round_trip_matches_fk():
    rng = np.random.default_rng(0)
    frames = 7
    offsets = rng.normal(size=(22, 3)) * 0.1
    quats = Rotation.random(frames * 22, random_state=1).as_quat(scalar_first=True).reshape(frames, 22, 4)
    root = rng.normal(size=(frames, 3))
    text = format_bvh(JOINT_NAMES, PARENTS, offsets, root, quats, 1 / 30, rotation_order="YXZ")
    clip = parse_bvh(text)
    assert clip.num_frames == frames and clip.frame_time == pytest.approx(1 / 30)
    order = [clip.index(n) for n in JOINT_NAMES]
    assert [clip.parents[i] for i in order[1:]] == [order[p] for p in PARENTS[1:]]
    # Reference FK straight from the quaternions.
    rot = Rotation.from_quat(quats.reshape(-1, 4), scalar_first=True).as_matrix().reshape(frames, 22, 3, 3)
    glob, pos = np.empty_like(rot), np.empty((frames, 22, 3))
    glob[:, 0], pos[:, 0] = rot[:, 0], root
    for j in range(1, 22):
        glob[:, j] = glob[:, PARENTS[j]] @ rot[:, j]
        pos[:, j] = pos[:, PARENTS[j]] + glob[:, PARENTS[j]] @ offsets[j]
    np.testing.assert_allclose(clip.global_positions()[:, order], pos, atol=1e-5)


@pytest.mark.parametrize("text, needle", [
    ("HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\n}\n", "MOTION"),
    (_two_joint("Xposition Yposition Zposition", "1 2"), "values"),
    (_two_joint("Xposition Yposition Wrotation", "1 2 3"), "CHANNELS"),
    (_two_joint("Xposition", "1").replace("Frame Time: 0.05", "Frame Time: 0"), "Frame Time"),
])
def test_malformed_files_raise(text, needle):
    with pytest.raises(InvalidRequest, match=needle):
        parse_bvh(text)


def test_missing_file_raises(tmp_path):
    with pytest.raises(InvalidRequest, match="cannot read"):
        read_bvh(tmp_path / "nope.bvh")
