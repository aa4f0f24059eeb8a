"""Bone mapping by shape (motionlcm_blender.rig_shape): synthetic rigs of every preset family's layout, with
meaningless bone names, in A-pose and T-pose, facing -Y and +Y."""

from __future__ import annotations

import numpy as np
import pytest

from motionlcm_blender.rig_mapping import RigMappingError
from motionlcm_blender.rig_shape import map_by_shape
from rig_fixtures import JOINTS, PARENTS, a_pose_joints


def _template(t_pose: bool) -> np.ndarray:
    heads = a_pose_joints()
    if t_pose:  # arms straight out sideways from the shoulders
        for shoulder, elbow, wrist in ((16, 18, 20), (17, 19, 21)):
            side = np.sign(heads[shoulder, 0])
            upper = np.linalg.norm(heads[elbow] - heads[shoulder])
            lower = np.linalg.norm(heads[wrist] - heads[elbow])
            heads[elbow] = heads[shoulder] + [side * upper, 0.0, 0.0]
            heads[wrist] = heads[elbow] + [side * lower, 0.0, 0.0]
    return heads


def _rig(layout: str, t_pose: bool) -> tuple[list[str], list[int], np.ndarray, dict[str, int]]:
    """(names, parents, heads, expected joint -> bone index) of a rig laid out as a family does."""
    heads = _template(t_pose)
    bones: list[tuple[str, int, np.ndarray]] = []  # (kind, parent index, head)
    index: dict[str, int] = {}

    def add(key: str, parent: str | None, head: np.ndarray) -> None:
        index[key] = len(bones)
        bones.append((key, -1 if parent is None else index[parent], np.asarray(head, dtype=np.float64)))

    def mid(a: int, b: int, t: float = 0.5) -> np.ndarray:
        return heads[a] + t * (heads[b] - heads[a])

    if layout == "root_bone":
        add("root", None, [0.0, 0.0, 0.0])
    pelvis_parent = "root" if layout == "root_bone" else None
    add("pelvis", pelvis_parent, heads[0])
    leg_parent = "pelvis"
    if layout == "cc":  # Hip carries a Pelvis bone with the legs, and the spine
        add("leg_pelvis", "pelvis", heads[0] + [0.0, 0.0, -0.02])
        leg_parent = "leg_pelvis"
    spine_parent = "pelvis"
    if layout == "cmu":
        add("lowerback", "pelvis", heads[0])
        spine_parent = "lowerback"
    for j in (3, 6, 9):
        add(JOINTS[j], spine_parent if j == 3 else JOINTS[PARENTS[j]], heads[j])
    if layout == "daz":  # a fourth spine bone between spine2 and spine3
        index["spine3"] = len(bones)  # re-add spine3 under an extra bone
        bones.pop()
        add("chest_lower", "spine2", mid(6, 9, 0.5))
        add("spine3", "chest_lower", heads[9])
    add("neck", "spine3", heads[12])
    if layout in ("cmu", "cc"):
        add("neck_upper", "neck", mid(12, 15, 0.5))
        add("head", "neck_upper", heads[15])
    else:
        add("head", "neck", heads[15])
    if layout != "no_head_top":  # a head-top bone above the head, as Mixamo's HeadTop_End
        add("head_end", "head", heads[15] + [0.0, 0.0, 0.18])
    for side in ("left", "right"):
        s = 0 if side == "left" else 1
        hip, knee, ankle, foot = (1 + s, 4 + s, 7 + s, 10 + s)
        parent = leg_parent
        if layout == "cmu":  # a bone from the pelvis out to the hip joint
            add(f"{side}_hipjoint", leg_parent, heads[0] + [0.0, 0.0, -0.03])
            parent = f"{side}_hipjoint"
        add(f"{side}_hip", parent, heads[hip])
        if layout == "daz":
            add(f"{side}_thigh_twist", f"{side}_hip", mid(hip, knee))
            add(f"{side}_knee", f"{side}_thigh_twist", heads[knee])
        else:
            add(f"{side}_knee", f"{side}_hip", heads[knee])
            if layout == "cc":
                add(f"{side}_thigh_twist_leaf", f"{side}_hip", mid(hip, knee, 0.3))
        add(f"{side}_ankle", f"{side}_knee", heads[ankle])
        add(f"{side}_foot", f"{side}_ankle", heads[foot])
        add(f"{side}_toe_end", f"{side}_foot", heads[foot] + (heads[foot] - heads[ankle]) * [0.4, 0.4, 0.0])
        collar, shoulder, elbow, wrist = (13 + s, 16 + s, 18 + s, 20 + s)
        add(f"{side}_collar", "spine3", heads[collar])
        add(f"{side}_shoulder", f"{side}_collar", heads[shoulder])
        if layout == "daz":
            add(f"{side}_upper_twist", f"{side}_shoulder", mid(shoulder, elbow))
            add(f"{side}_elbow", f"{side}_upper_twist", heads[elbow])
            add(f"{side}_fore_twist", f"{side}_elbow", mid(elbow, wrist))
            add(f"{side}_wrist", f"{side}_fore_twist", heads[wrist])
        else:
            add(f"{side}_elbow", f"{side}_shoulder", heads[elbow])
            if layout == "cc":
                add(f"{side}_upper_twist_leaf", f"{side}_shoulder", mid(shoulder, elbow, 0.2))
            add(f"{side}_wrist", f"{side}_elbow", heads[wrist])
        direction = (heads[wrist] - heads[elbow]) / np.linalg.norm(heads[wrist] - heads[elbow])
        for finger in range(5):
            base = heads[wrist] + 0.06 * direction + [0.0, 0.02 * (finger - 2), 0.0]
            add(f"{side}_finger{finger}_1", f"{side}_wrist", base)
            add(f"{side}_finger{finger}_2", f"{side}_finger{finger}_1", base + 0.03 * direction)
    names = [f"Bone.{i:03d}" for i in range(len(bones))]  # meaningless names, in a shuffled order below
    order = np.random.default_rng(len(layout)).permutation(len(bones))
    position = {old: new for new, old in enumerate(order)}
    parents = [-1 if bones[old][1] < 0 else position[bones[old][1]] for old in order]
    rig_heads = np.stack([bones[old][2] for old in order])
    expected = {joint: position[index[joint]] for joint in JOINTS}
    if layout == "cmu":  # as the CMU preset maps it: the lower back (from the pelvis) is spine1
        expected["spine1"], expected["spine2"] = position[index["lowerback"]], position[index["spine1"]]
    return names, parents, rig_heads, expected


@pytest.mark.parametrize("layout", ["mixamo", "root_bone", "cc", "daz", "cmu", "no_head_top"])
@pytest.mark.parametrize("t_pose", [False, True])
@pytest.mark.parametrize("facing", ["-Y", "+Y"])
def test_shape_mapping_finds_every_joint_of_a_rig_with_meaningless_names(layout, t_pose, facing):
    names, parents, heads, expected = _rig(layout, t_pose)
    if facing == "+Y":  # turned 180 degrees about Z: left is now -X
        heads = heads * [-1.0, -1.0, 1.0]
    mapping = map_by_shape(names, parents, heads)
    assert mapping.preset == "shape" and not mapping.missing_required
    wrong = {j: (mapping.bones.get(j), names[b]) for j, b in expected.items() if mapping.bones.get(j) != names[b]}
    assert not wrong, wrong
    assert mapping.root_bone == names[expected["pelvis"]]


def test_shape_mapping_says_what_it_cannot_find():
    heads = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.5], [0.0, 0.0, 1.8]])
    with pytest.raises(RigMappingError, match="no two pairs of matching limbs"):
        map_by_shape(["a", "b", "c"], [-1, 0, 1], heads)
