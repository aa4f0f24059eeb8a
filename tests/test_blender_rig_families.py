"""Every rig family the presets name, built in headless Blender as its exporters lay it out (extra bones, twist
bones, a hip connected to a root bone, random bone rolls), in A- and T-pose, facing -Y and +Y: mapped automatically
by name, and with the names scrambled by shape; a real walk and a real right-hand raise (Bandai mocap, retargeted
onto the default body as the backend does) bake with the travel, the stance feet and the raised hand of the
source."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from backend.motion.bvh import read_bvh  # noqa: E402
from backend.motion import Motion  # noqa: E402
from backend.retarget import default_skeleton, retarget  # noqa: E402
from backend.retarget.bandai import bandai_to_smpl  # noqa: E402
from motionlcm_blender import bake, rig_transfer  # noqa: E402
from retarget_data import extract_bandai  # noqa: E402
from training.data.prepare import resample  # noqa: E402

J = {name: i for i, name in enumerate((
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist"))}
HML_TO_BLENDER = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])


def _layout(family: str) -> list[tuple[str, str | None, tuple, str | None]]:
    """(bone, parent, where its head is, the SMPL joint it is) for a family's body bones. Where: ("j", joint),
    ("mid", joint_a, joint_b, t) or ("up", joint, metres)."""
    def side(fmt: str, s: str) -> str:
        return fmt.format(L=s.upper(), l=s, Left="Left" if s == "l" else "Right", left="left" if s == "l" else "right")

    spec: list[tuple[str, str | None, tuple, str | None]] = []
    if family == "mixamo":
        spec += [("Hips", None, ("j", "pelvis"), "pelvis"), ("Spine", "Hips", ("j", "spine1"), "spine1"),
                 ("Spine1", "Spine", ("j", "spine2"), "spine2"), ("Spine2", "Spine1", ("j", "spine3"), "spine3"),
                 ("Neck", "Spine2", ("j", "neck"), "neck"), ("Head", "Neck", ("j", "head"), "head"),
                 ("HeadTop_End", "Head", ("up", "head", 0.2), None)]
        limbs = [("{Left}UpLeg", "Hips", "hip"), ("{Left}Leg", "{Left}UpLeg", "knee"),
                 ("{Left}Foot", "{Left}Leg", "ankle"), ("{Left}ToeBase", "{Left}Foot", "foot"),
                 ("{Left}Shoulder", "Spine2", "collar"), ("{Left}Arm", "{Left}Shoulder", "shoulder"),
                 ("{Left}ForeArm", "{Left}Arm", "elbow"), ("{Left}Hand", "{Left}ForeArm", "wrist")]
    elif family == "cc_iclone":
        spec += [("RL_BoneRoot", None, ("root",), None), ("CC_Base_Hip", "RL_BoneRoot", ("j", "pelvis"), "pelvis"),
                 ("CC_Base_Pelvis", "CC_Base_Hip", ("up", "pelvis", -0.02), None),
                 ("CC_Base_Waist", "CC_Base_Hip", ("j", "spine1"), "spine1"),
                 ("CC_Base_Spine01", "CC_Base_Waist", ("j", "spine2"), "spine2"),
                 ("CC_Base_Spine02", "CC_Base_Spine01", ("j", "spine3"), "spine3"),
                 ("CC_Base_NeckTwist01", "CC_Base_Spine02", ("j", "neck"), "neck"),
                 ("CC_Base_NeckTwist02", "CC_Base_NeckTwist01", ("mid", "neck", "head", 0.5), None),
                 ("CC_Base_Head", "CC_Base_NeckTwist02", ("j", "head"), "head")]
        limbs = [("CC_Base_{L}_Thigh", "CC_Base_Pelvis", "hip"), ("CC_Base_{L}_Calf", "CC_Base_{L}_Thigh", "knee"),
                 ("CC_Base_{L}_Foot", "CC_Base_{L}_Calf", "ankle"),
                 ("CC_Base_{L}_ToeBase", "CC_Base_{L}_Foot", "foot"),
                 ("CC_Base_{L}_Clavicle", "CC_Base_Spine02", "collar"),
                 ("CC_Base_{L}_Upperarm", "CC_Base_{L}_Clavicle", "shoulder"),
                 ("CC_Base_{L}_Forearm", "CC_Base_{L}_Upperarm", "elbow"),
                 ("CC_Base_{L}_Hand", "CC_Base_{L}_Forearm", "wrist")]
    elif family == "daz_genesis":
        spec += [("hip", None, ("j", "pelvis"), "pelvis"), ("pelvis", "hip", ("up", "pelvis", -0.02), None),
                 ("abdomenLower", "hip", ("j", "spine1"), "spine1"), ("chestLower", "abdomenLower", ("j", "spine2"),
                                                                       "spine2"),
                 ("chestUpper", "chestLower", ("j", "spine3"), "spine3"), ("neckLower", "chestUpper", ("j", "neck"),
                                                                          "neck"),
                 ("head", "neckLower", ("j", "head"), "head")]
        limbs = [("{l}ThighBend", "pelvis", "hip"), ("{l}ThighTwist", "{l}ThighBend", ("mid", "hip", "knee")),
                 ("{l}Shin", "{l}ThighTwist", "knee"), ("{l}Foot", "{l}Shin", "ankle"), ("{l}Toe", "{l}Foot", "foot"),
                 ("{l}Collar", "chestUpper", "collar"), ("{l}ShldrBend", "{l}Collar", "shoulder"),
                 ("{l}ShldrTwist", "{l}ShldrBend", ("mid", "shoulder", "elbow")),
                 ("{l}ForearmBend", "{l}ShldrTwist", "elbow"),
                 ("{l}ForearmTwist", "{l}ForearmBend", ("mid", "elbow", "wrist")),
                 ("{l}Hand", "{l}ForearmTwist", "wrist")]
    elif family == "vrm":
        spec += [("Root", None, ("root",), None), ("J_Bip_C_Hips", "Root", ("j", "pelvis"), "pelvis"),
                 ("J_Bip_C_Spine", "J_Bip_C_Hips", ("j", "spine1"), "spine1"),
                 ("J_Bip_C_Chest", "J_Bip_C_Spine", ("j", "spine2"), "spine2"),
                 ("J_Bip_C_UpperChest", "J_Bip_C_Chest", ("j", "spine3"), "spine3"),
                 ("J_Bip_C_Neck", "J_Bip_C_UpperChest", ("j", "neck"), "neck"),
                 ("J_Bip_C_Head", "J_Bip_C_Neck", ("j", "head"), "head")]
        limbs = [("J_Bip_{L}_UpperLeg", "J_Bip_C_Hips", "hip"), ("J_Bip_{L}_LowerLeg", "J_Bip_{L}_UpperLeg", "knee"),
                 ("J_Bip_{L}_Foot", "J_Bip_{L}_LowerLeg", "ankle"), ("J_Bip_{L}_ToeBase", "J_Bip_{L}_Foot", "foot"),
                 ("J_Bip_{L}_Shoulder", "J_Bip_C_UpperChest", "collar"),
                 ("J_Bip_{L}_UpperArm", "J_Bip_{L}_Shoulder", "shoulder"),
                 ("J_Bip_{L}_LowerArm", "J_Bip_{L}_UpperArm", "elbow"),
                 ("J_Bip_{L}_Hand", "J_Bip_{L}_LowerArm", "wrist")]
    elif family == "biped":
        spec += [("Bip01", None, ("j", "pelvis"), None), ("Bip01 Pelvis", "Bip01", ("j", "pelvis"), "pelvis"),
                 ("Bip01 Spine", "Bip01 Pelvis", ("j", "spine1"), "spine1"),
                 ("Bip01 Spine1", "Bip01 Spine", ("j", "spine2"), "spine2"),
                 ("Bip01 Spine2", "Bip01 Spine1", ("j", "spine3"), "spine3"),
                 ("Bip01 Neck", "Bip01 Spine2", ("j", "neck"), "neck"),
                 ("Bip01 Head", "Bip01 Neck", ("j", "head"), "head")]
        limbs = [("Bip01 {L} Thigh", "Bip01 Pelvis", "hip"), ("Bip01 {L} Calf", "Bip01 {L} Thigh", "knee"),
                 ("Bip01 {L} Foot", "Bip01 {L} Calf", "ankle"), ("Bip01 {L} Toe0", "Bip01 {L} Foot", "foot"),
                 ("Bip01 {L} Clavicle", "Bip01 Spine2", "collar"),
                 ("Bip01 {L} UpperArm", "Bip01 {L} Clavicle", "shoulder"),
                 ("Bip01 {L} Forearm", "Bip01 {L} UpperArm", "elbow"), ("Bip01 {L} Hand", "Bip01 {L} Forearm", "wrist")]
    elif family == "cmu":
        spec += [("Hips", None, ("j", "pelvis"), "pelvis"), ("LowerBack", "Hips", ("up", "pelvis", 0.0), "spine1"),
                 ("Spine", "LowerBack", ("j", "spine2"), "spine2"), ("Spine1", "Spine", ("j", "spine3"), "spine3"),
                 ("Neck", "Spine1", ("j", "neck"), "neck"), ("Neck1", "Neck", ("mid", "neck", "head", 0.5), None),
                 ("Head", "Neck1", ("j", "head"), "head")]
        limbs = [("{L}HipJoint", "Hips", ("up", "pelvis", -0.03)), ("{Left}UpLeg", "{L}HipJoint", "hip"),
                 ("{Left}Leg", "{Left}UpLeg", "knee"), ("{Left}Foot", "{Left}Leg", "ankle"),
                 ("{Left}ToeBase", "{Left}Foot", "foot"), ("{Left}Shoulder", "Spine1", "collar"),
                 ("{Left}Arm", "{Left}Shoulder", "shoulder"), ("{Left}ForeArm", "{Left}Arm", "elbow"),
                 ("{Left}Hand", "{Left}ForeArm", "wrist")]
    elif family == "smpl":  # SMPL joint names, as SMPL add-ons name their armatures
        spec += [("Pelvis", None, ("j", "pelvis"), "pelvis"), ("Spine1", "Pelvis", ("j", "spine1"), "spine1"),
                 ("Spine2", "Spine1", ("j", "spine2"), "spine2"), ("Spine3", "Spine2", ("j", "spine3"), "spine3"),
                 ("Neck", "Spine3", ("j", "neck"), "neck"), ("Head", "Neck", ("j", "head"), "head")]
        limbs = [("{L}_Hip", "Pelvis", "hip"), ("{L}_Knee", "{L}_Hip", "knee"), ("{L}_Ankle", "{L}_Knee", "ankle"),
                 ("{L}_Foot", "{L}_Ankle", "foot"), ("{L}_Collar", "Spine3", "collar"),
                 ("{L}_Shoulder", "{L}_Collar", "shoulder"), ("{L}_Elbow", "{L}_Shoulder", "elbow"),
                 ("{L}_Wrist", "{L}_Elbow", "wrist")]
    else:  # ue_mannequin (UE5)
        spec += [("root", None, ("root",), None), ("pelvis", "root", ("j", "pelvis"), "pelvis"),
                 ("spine_01", "pelvis", ("j", "spine1"), "spine1"),
                 ("spine_02", "spine_01", ("mid", "spine1", "spine2", 0.5), None),
                 ("spine_03", "spine_02", ("j", "spine2"), "spine2"),
                 ("spine_04", "spine_03", ("mid", "spine2", "spine3", 0.5), None),
                 ("spine_05", "spine_04", ("j", "spine3"), "spine3"), ("neck_01", "spine_05", ("j", "neck"), "neck"),
                 ("head", "neck_01", ("j", "head"), "head")]
        limbs = [("thigh_{l}", "pelvis", "hip"), ("calf_{l}", "thigh_{l}", "knee"), ("foot_{l}", "calf_{l}", "ankle"),
                 ("ball_{l}", "foot_{l}", "foot"), ("clavicle_{l}", "spine_05", "collar"),
                 ("upperarm_{l}", "clavicle_{l}", "shoulder"), ("lowerarm_{l}", "upperarm_{l}", "elbow"),
                 ("hand_{l}", "lowerarm_{l}", "wrist")]
    for s in ("l", "r"):
        whole = "left" if s == "l" else "right"
        for bone, parent, part in limbs:
            where = ("j", f"{whole}_{part}") if isinstance(part, str) else (
                (part[0], *[p if p == "pelvis" or isinstance(p, float) else f"{whole}_{p}" for p in part[1:]]))
            joint = f"{whole}_{part}" if isinstance(part, str) else None
            spec.append((side(bone, s), side(parent, s) if parent else None, where, joint))
    return spec


PRESET_OF = {"mixamo": "mixamo", "cc_iclone": "cc_iclone", "daz_genesis": "daz_genesis", "vrm": "vrm",
             "biped": "biped", "cmu": "cmu", "ue_mannequin": "ue_mannequin", "smpl": "smpl"}


def _template(t_pose: bool) -> np.ndarray:
    """(22, 3) Blender-space heads: the default body, legs 10 % longer, arms in A-pose (45 degrees down) or T-pose."""
    rest = default_skeleton().joints @ HML_TO_BLENDER.T
    heads = rest.copy()
    for leg in (("left_hip", "left_knee", "left_ankle", "left_foot"), ("right_hip", "right_knee", "right_ankle",
                                                                       "right_foot")):
        for a, b in zip(leg[:-1], leg[1:]):
            heads[J[b]] = heads[J[a]] + 1.1 * (rest[J[b]] - rest[J[a]])
    heads -= [0.0, 0.0, min(heads[J["left_foot"], 2], heads[J["left_ankle"], 2] - 0.08)]
    for s in ("left", "right"):
        shoulder, elbow, wrist = J[f"{s}_shoulder"], J[f"{s}_elbow"], J[f"{s}_wrist"]
        out = np.sign(heads[shoulder, 0] - heads[J["spine3"], 0])
        drop = np.radians(45.0 if not t_pose else 0.0)
        direction = np.array([out * np.cos(drop), 0.0, -np.sin(drop)])
        upper, lower = (np.linalg.norm(rest[b] - rest[a]) for a, b in ((shoulder, elbow), (elbow, wrist)))
        heads[elbow] = heads[shoulder] + upper * direction
        heads[wrist] = heads[elbow] + lower * direction
    return heads


def _build(family: str, t_pose: bool, facing: str, scrambled: bool):
    """The armature and {SMPL joint: bone name}."""
    heads22 = _template(t_pose)
    spec = _layout(family)
    names = {bone: (f"Bone.{i:03d}" if scrambled else bone) for i, (bone, *_rest) in enumerate(spec)}

    def where(w: tuple) -> np.ndarray:
        if w[0] == "root":
            return np.zeros(3)
        if w[0] == "j":
            return heads22[J[w[1]]]
        if w[0] == "up":
            return heads22[J[w[1]]] + [0.0, 0.0, w[2]]
        return heads22[J[w[1]]] + (w[3] if len(w) > 3 else 0.5) * (heads22[J[w[2]]] - heads22[J[w[1]]])

    heads = {bone: where(w) for bone, _p, w, _j in spec}
    if facing == "+Y":
        heads = {b: h * [-1.0, -1.0, 1.0] for b, h in heads.items()}
    obj = bpy.data.objects.new(family, bpy.data.armatures.new(family))
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    rolls = np.random.default_rng(len(spec)).uniform(-np.pi, np.pi, len(spec))
    children = {bone: [b for b, p, _w, _j in spec if p == bone] for bone, *_r in spec}
    for i, (bone, parent, _w, _j) in enumerate(spec):
        edit = obj.data.edit_bones.new(names[bone])
        edit.head = heads[bone]
        kids = [heads[c] for c in children[bone] if np.linalg.norm(heads[c] - heads[bone]) > 1e-3]
        if kids:
            edit.tail = kids[0]
        else:
            up = heads[bone] - heads[parent] if parent and np.linalg.norm(heads[bone] - heads[parent]) > 1e-3 \
                else np.array([0.0, 0.0, 0.1])
            edit.tail = heads[bone] + 0.5 * up if np.linalg.norm(up) > 1e-3 else heads[bone] + [0.0, 0.0, 0.1]
        edit.roll = rolls[i]
    for bone, parent, _w, _j in spec:
        if parent:
            edit = obj.data.edit_bones[names[bone]]
            edit.parent = obj.data.edit_bones[names[parent]]
    pelvis = next(b for b, _p, _w, j in spec if j == "pelvis")
    pelvis_edit = obj.data.edit_bones[names[pelvis]]
    if pelvis_edit.parent is None:  # a connected hip under a root bone, as many exporters make
        root = obj.data.edit_bones.new("Bone.root" if scrambled else "rig_root")
        root.head, root.tail = (0.0, 0.0, 0.0), tuple(pelvis_edit.head)
        pelvis_edit.parent = root
    if (pelvis_edit.parent.tail - pelvis_edit.head).length < 1e-4:
        pelvis_edit.use_connect = True
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj, {j: names[b] for b, _p, _w, j in spec if j}


@pytest.fixture(scope="module")
def motions(data_dir, tmp_path_factory):
    """A real walk and a real right-hand raise, retargeted onto the default body as the backend does."""
    out = {}
    for key, contains in (("walk", "_walk_normal_"), ("raise", "raise-up-right-hand_normal")):
        (path,) = extract_bandai(data_dir, tmp_path_factory.mktemp(key), 1, contains)
        clip = read_bvh(path)
        joints = resample(bandai_to_smpl(clip), clip.fps)[:120]
        target = retarget(Motion(joints.astype(np.float32), fps=20.0))
        out[key] = {"root_translation": target.root_translation, "local_quats": target.local_quats,
                    "rest_joints": target.rest_joints, "joints": target.fk()}
    return out


def _heads(obj, bones: dict[str, str], frames) -> dict[str, np.ndarray]:
    out = {j: [] for j in bones}
    for frame in frames:
        bpy.context.scene.frame_set(frame)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        for j, bone in bones.items():
            out[j].append(np.array(evaluated.matrix_world @ evaluated.pose.bones[bone].head))
    return {j: np.array(v) for j, v in out.items()}


def _leg(points: dict[str, np.ndarray], frame: int = 0) -> float:
    return float(sum(np.linalg.norm(points[b][frame] - points[a][frame])
                     for a, b in (("left_hip", "left_knee"), ("left_knee", "left_ankle"))))


def _check_bakes(obj, mapping, motions, where: tuple) -> None:
    """The walk travels as far as the source's (in leg lengths, within 10 %), its stance ankles sit as the
    source's do (within 2 cm), and the raised right hand ends above the head."""
    src = motions["walk"]["joints"] @ HML_TO_BLENDER.T  # the SMPL character's motion, Blender axes
    src_leg = _leg({j: src[:, J[j]] for j in J})
    frames = range(1, len(src) + 1, 10)
    bake.write_action(obj, "walk", rig_transfer.transfer_to_rig(obj, motions["walk"]), 1)
    rig = _heads(obj, {j: mapping.bones[j] for j in ("pelvis", "left_hip", "left_knee", "left_ankle",
                                                     "right_ankle")}, frames)
    rig_leg = _leg(rig)
    travel = np.linalg.norm(rig["pelvis"][-1, :2] - rig["pelvis"][0, :2]) / rig_leg
    src_travel = np.linalg.norm(src[frames[-1] - 1, 0, :2] - src[0, 0, :2]) / src_leg
    assert abs(travel / src_travel - 1.0) <= 0.1, (where, travel, src_travel)
    for side in ("left_ankle", "right_ankle"):  # stance: the source's lowest ankle frames
        src_h = src[[f - 1 for f in frames], J[side], 2] / src_leg * rig_leg
        low = src_h <= np.percentile(src_h, 30)
        gap = np.abs((rig[side][:, 2] - rig[side][:, 2].min()) - (src_h - src_h.min()))[low]
        assert gap.max() <= 0.02, (where, side, gap.max())
    bake.write_action(obj, "raise", rig_transfer.transfer_to_rig(obj, motions["raise"]), 1)
    top = int(np.argmax(motions["raise"]["joints"][:, J["right_wrist"], 1])) + 1
    hand = _heads(obj, {"hand": mapping.bones["right_wrist"], "head": mapping.bones["head"]}, [top])
    assert hand["hand"][0, 2] > hand["head"][0, 2], where


@pytest.mark.parametrize("family", sorted(PRESET_OF))
@pytest.mark.parametrize("scrambled", [False, True], ids=["named", "scrambled"])
def test_rig_families_map_and_bake_a_walk_and_a_raised_hand(motions, family, scrambled):
    for t_pose in (False, True):
        for facing in ("-Y", "+Y"):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            obj, expected = _build(family, t_pose, facing, scrambled)
            mapping = rig_transfer.mapping_of(obj)
            assert mapping.preset == ("shape" if scrambled else PRESET_OF[family]), (t_pose, facing)
            assert all(mapping.bones.get(j) == b for j, b in expected.items()), (t_pose, facing, mapping.bones)
            _check_bakes(obj, mapping, motions, (family, t_pose, facing))


def test_a_generated_rigify_rig_bakes_on_its_fk_controls(motions):
    """Rigify's own human metarig, generated: the FK controls carry the motion (IK/FK switched to FK)."""
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    try:
        bpy.ops.object.armature_human_metarig_add()
        bpy.ops.pose.rigify_generate()
        rig = bpy.context.active_object
        mapping = rig_transfer.mapping_of(rig)
        assert mapping.preset == "rigify" and mapping.root_bone == "torso"
        _check_bakes(rig, mapping, motions, ("rigify",))
    finally:
        addon_utils.disable("rigify", default_set=True)
