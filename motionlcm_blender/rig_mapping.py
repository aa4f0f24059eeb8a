"""Bone-mapping presets from the 22 SMPL joints to the bones of common rigs, and name-based auto-detection.

Pure Python (no bpy): callers pass the armature's bone names. Names are compared through `bone_key`, which
drops namespaces ("mixamorig:", "mixamorig7:", "Armature|"), a prefix shared by every bone, case and
separators, and turns every left/right convention (Left*, L_*, *.L, *_l, *_left) into a ".l"/".r" suffix:
"mixamorig:LeftUpLeg" -> "upleg.l", "thigh_l" -> "thigh.l", "DEF-thigh.L" -> "defthigh.l".

Rigify: the preset animates the FK controls (torso, spine_fk*, neck, head, shoulder.L, upper_arm_fk.L,
forearm_fk.L, hand_fk.L, thigh_fk.L, shin_fk.L, foot_fk.L, toe_fk.L). The DEF-* and ORG-* bones of a
generated rig are driven by Copy Transforms constraints, so keys on them are overridden and bake nothing;
the FK controls are what the animator edits, and the preset keys IK_FK = 1 so the limbs follow them.
"rigify_deform" is for rigs whose DEF-* bones carry no constraints (game exports, plain metarig names).
"""

from __future__ import annotations

import os.path
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# The SMPL joint order of backend/motion/skeleton.py, copied: the add-on cannot import the backend
# (a test keeps them equal).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

# A rig must have these for a mapping to count; spine, neck, head, collars and toes may be absent (the
# retargeting then aims the nearest mapped bone at the next mapped joint, spreading the missing bend).
REQUIRED_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)

_SIDES = {"l": "l", "left": "l", "r": "r", "right": "r"}
_SEPARATORS = ":|._- "


class RigMappingError(ValueError):
    """No preset maps the armature; the message names the preset tried and the bones it lacks."""


def _strip_namespace(name: str) -> str:
    name = re.split(r"[:|]", name)[-1]
    return re.sub(r"^mixamorig\d*[_.]", "", name, flags=re.IGNORECASE)


def shared_prefix(names: Iterable[str]) -> str:
    """The prefix every name shares up to a separator ("CC_Base_", "Armature_"), or "" ."""
    stripped = [_strip_namespace(n) for n in names]
    if len(stripped) < 2:
        return ""
    prefix = os.path.commonprefix(stripped)
    cut = max(prefix.rfind(c) for c in _SEPARATORS)
    return prefix[:cut + 1] if cut >= 0 else ""


def bone_key(name: str, prefix: str = "") -> str:
    """Normalised comparison key of a bone name, e.g. 'mixamorig:LeftForeArm' -> 'forearm.l'."""
    name = _strip_namespace(name)
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)  # camelCase words: LeftUpLeg -> Left Up Leg
    tokens = [t for t in re.split(r"[\s._\-]+", name.lower()) if t]
    side = next((_SIDES[t] for t in tokens if t in _SIDES), "")
    if side:
        tokens.remove(next(t for t in tokens if t in _SIDES))
    core = "".join(tokens)
    return f"{core}.{side}" if side else core


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    bones: dict[str, tuple[str, ...]]  # joint -> candidate bone keys, preferred first
    root: tuple[str, ...]  # candidate keys of the bone that carries the root location
    positions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # where a control's head is off the joint
    properties: tuple[tuple[str, str, float], ...] = ()  # (bone key, custom property, value) to key


def _limbs(collar: str, shoulder: str, elbow: str, wrist: str, hip: str, knee: str, ankle: str,
           foot: str, fmt: str = "{}.{}") -> dict[str, tuple[str, ...]]:
    parts = {"collar": collar, "shoulder": shoulder, "elbow": elbow, "wrist": wrist,
             "hip": hip, "knee": knee, "ankle": ankle, "foot": foot}
    return {f"{side}_{joint}": (fmt.format(key, side[0]),)
            for side in ("left", "right") for joint, key in parts.items()}


def _sided(parts: dict[str, tuple[str, ...]], prefixes: tuple[str, ...] = ("",)) -> dict[str, tuple[str, ...]]:
    """Left and right joints from {joint: candidate keys}, each key also with every prefix (a family's own
    prefix, which stays in the key when not every bone of the armature carries it)."""
    return {f"{side}_{joint}": tuple(f"{p}{key}.{side[0]}" for key in keys for p in prefixes)
            for side in ("left", "right") for joint, keys in parts.items()}


def _prefixed(bones: dict[str, tuple[str, ...]], prefixes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {joint: tuple(f"{p}{key}" for key in keys for p in prefixes) for joint, keys in bones.items()}


_LIMB_JOINTS = ("collar", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "foot")
_CC = ("", "ccbase")  # Character Creator: CC_Base_*, beside RL_BoneRoot in CC4 (so no shared prefix)
_BIPED = ("bip01", "bip001", "")  # 3ds Max: "Bip01 L Thigh" (older) or "Bip001 L Thigh"; "" once stripped

PRESETS: dict[str, Preset] = {p.name: p for p in (
    # Mixamo's names are Maya HumanIK's, which allows up to ten spine bones (Spine, Spine1..Spine9) and is
    # often under a namespace ("Character1:Hips") or a shared prefix ("Character1_Hips").
    Preset("mixamo", "Mixamo / Maya HumanIK", {
        "pelvis": ("hips",), "spine1": ("spine",), "spine2": ("spine2", "spine1"),
        "spine3": tuple(f"spine{n}" for n in range(9, 1, -1)),
        "neck": ("neck",), "head": ("head",),
        **_limbs("shoulder", "arm", "forearm", "hand", "upleg", "leg", "foot", "toebase")},
        root=("hips",)),
    Preset("rigify", "Rigify (FK controls)", {
        "pelvis": ("spinefk",), "spine1": ("spinefk001",), "spine2": ("spinefk002",),
        "spine3": ("spinefk003",), "neck": ("neck",), "head": ("head",),
        **_limbs("shoulder", "upperarmfk", "forearmfk", "handfk", "thighfk", "shinfk", "footfk", "toefk")},
        root=("torso",),
        # The spine FK controls pivot away from the joints; the ORG chain marks where the joints are.
        positions={"pelvis": ("orgspine",), "spine1": ("orgspine001",), "spine2": ("orgspine002",),
                   "spine3": ("orgspine003",), "neck": ("orgspine004",), "head": ("orgspine006",)},
        properties=tuple((f"{limb}parent.{s}", "IK_FK", 1.0) for limb in ("upperarm", "thigh") for s in "lr")),
    Preset("rigify_deform", "Rigify deform bones (no constraints)", {
        "pelvis": ("defspine", "spine"), "spine1": ("defspine001", "spine001"),
        "spine2": ("defspine002", "spine002"), "spine3": ("defspine003", "spine003"),
        "neck": ("defspine004", "spine004"), "head": ("defspine006", "spine006"),
        **{j: (f"def{k[0]}", k[0]) for j, k in _limbs(
            "shoulder", "upperarm", "forearm", "hand", "thigh", "shin", "foot", "toe").items()}},
        root=("defspine", "spine")),
    Preset("ue_mannequin", "Unreal Engine mannequin (UE4/UE5)", {
        # UE5 has spine_01..05, UE4 spine_01..03: joints are resolved from spine3 down, unused first.
        "pelvis": ("pelvis",), "spine1": ("spine01",), "spine2": ("spine03", "spine02"),
        "spine3": ("spine05", "spine03"), "neck": ("neck01",), "head": ("head",),
        **_limbs("clavicle", "upperarm", "lowerarm", "hand", "thigh", "calf", "foot", "ball")},
        root=("pelvis",)),
    # Character Creator / iClone: Hip carries Pelvis (the thighs) and Waist (the spine).
    Preset("cc_iclone", "Character Creator / iClone", {
        **_prefixed({"pelvis": ("hip",), "spine1": ("waist",), "spine2": ("spine01",), "spine3": ("spine02",),
                     "neck": ("necktwist01",), "head": ("head",)}, _CC),
        **_sided(dict(zip(_LIMB_JOINTS, [("clavicle",), ("upperarm",), ("forearm",), ("hand",), ("thigh",),
                                         ("calf",), ("foot",), ("toebase",)])), _CC)},
        root=_prefixed({"root": ("hip",)}, _CC)["root"]),
    # Daz Genesis 8 (lThighBend, lShldrBend, abdomenLower...) and 9 (l_thigh, l_upperarm, spine1..4...); the
    # twist bones between are left at rest.
    Preset("daz_genesis", "Daz Genesis 8/9", {
        "pelvis": ("hip",), "spine1": ("abdomenlower", "spine1"), "spine2": ("chestlower", "spine3", "spine2"),
        "spine3": ("chestupper", "spine4"), "neck": ("necklower", "neck1"), "head": ("head",),
        **_sided(dict(zip(_LIMB_JOINTS, [("collar", "shoulder"), ("shldrbend", "upperarm"),
                                         ("forearmbend", "forearm"), ("hand",), ("thighbend", "thigh"), ("shin",),
                                         ("foot",), ("toe", "toes", "metatarsals")])))},
        root=("hip",)),
    # VRM / VRoid: J_Bip_C_Hips, J_Bip_L_UpperLeg... (VRoid), or the VRM humanoid names (hips, leftUpperLeg...).
    Preset("vrm", "VRM / VRoid", {
        "pelvis": ("jbipchips", "hips"), "spine1": ("jbipcspine", "spine"),
        "spine2": ("jbipcchest", "chest", "jbipcspine", "spine"),
        "spine3": ("jbipcupperchest", "upperchest", "jbipcchest", "chest"), "neck": ("jbipcneck", "neck"),
        "head": ("jbipchead", "head"),
        **_sided(dict(zip(_LIMB_JOINTS, [("shoulder",), ("upperarm",), ("lowerarm",), ("hand",), ("upperleg",),
                                         ("lowerleg",), ("foot",), ("toebase", "toes")])), ("jbip", ""))},
        root=("jbipchips", "hips")),
    Preset("biped", "3ds Max Biped", {
        **_prefixed({"pelvis": ("pelvis",), "spine1": ("spine",), "spine2": ("spine1",), "spine3": ("spine2",),
                     "neck": ("neck",), "head": ("head",)}, _BIPED),
        **_sided(dict(zip(_LIMB_JOINTS, [("clavicle",), ("upperarm",), ("forearm",), ("hand",), ("thigh",),
                                         ("calf",), ("foot",), ("toe0",)])), _BIPED)},
        root=("bip01", "bip001", "bip01pelvis", "bip001pelvis", "pelvis")),
    # CMU motion capture as BVH (the MotionBuilder-friendly conversion): LowerBack below Spine, LHipJoint bones
    # from the hips to the thighs (left at rest).
    Preset("cmu", "CMU / MotionBuilder BVH", {
        "pelvis": ("hips",), "spine1": ("lowerback",), "spine2": ("spine",), "spine3": ("spine1",),
        "neck": ("neck",), "head": ("head",),
        **_limbs("shoulder", "arm", "forearm", "hand", "upleg", "leg", "foot", "toebase")},
        root=("hips",)),
    Preset("smpl", "SMPL joint names", {
        "pelvis": ("pelvis",), "spine1": ("spine1",), "spine2": ("spine2",), "spine3": ("spine3",),
        "neck": ("neck",), "head": ("head",),
        **_limbs("collar", "shoulder", "elbow", "wrist", "hip", "knee", "ankle", "foot")},
        root=("pelvis",)),
)}


@dataclass(frozen=True)
class RigMapping:
    preset: str
    bones: dict[str, str]  # joint -> bone whose rotation is keyed
    positions: dict[str, str]  # joint -> bone whose rest head marks the joint (includes `bones`' joints)
    root_bone: str  # bone whose location is keyed
    properties: tuple[tuple[str, str, float], ...]  # (bone, custom property, value) keyed constant
    missing_required: tuple[str, ...]

    @property
    def score(self) -> float:
        """Fraction of the 22 joints mapped; 0 when a required joint or the root bone is missing."""
        return 0.0 if self.missing_required else len(self.bones) / len(JOINT_NAMES)


def map_bones(bone_names: Iterable[str], preset: Preset) -> RigMapping:
    """Apply one preset to an armature's bone names (missing required joints are reported, not raised)."""
    names = list(bone_names)
    prefix = shared_prefix(names)
    by_key: dict[str, str] = {}
    for name in names:
        by_key.setdefault(bone_key(name, prefix), name)  # first bone wins when two normalise alike
    used: set[str] = set()

    def pick(keys: tuple[str, ...]) -> str | None:
        found = next((by_key[k] for k in keys if k in by_key and by_key[k] not in used), None)
        if found is not None:
            used.add(found)
        return found

    bones: dict[str, str] = {}
    for joint in reversed(JOINT_NAMES):  # top of the spine first, so a long spine keeps its upper bones
        if joint in preset.bones and (bone := pick(preset.bones[joint])) is not None:
            bones[joint] = bone
    bones = {j: bones[j] for j in JOINT_NAMES if j in bones}
    positions = dict(bones)
    for joint, keys in preset.positions.items():
        bone = next((by_key[k] for k in keys if k in by_key), None)
        if bone is not None and joint in bones:
            positions[joint] = bone
    root_bone = next((by_key[k] for k in preset.root if k in by_key), None)
    missing = [j for j in REQUIRED_JOINTS if j not in bones]
    if root_bone is None:
        missing.append("root")
    properties = tuple((by_key[k], prop, value) for k, prop, value in preset.properties if k in by_key)
    return RigMapping(preset.name, bones, positions, root_bone or "", properties, tuple(missing))


def _expected_names(preset: Preset, joints: Iterable[str]) -> str:
    return ", ".join(f"{j} ({'/'.join(preset.root if j == 'root' else preset.bones[j])})" for j in joints)


def resolve_mapping(bone_names: Iterable[str], preset: str | None = "auto",
                    armature_name: str = "the armature") -> RigMapping:
    """The mapping of a named preset, or with "auto"/None the best-scoring one.

    Raises RigMappingError naming the unmapped required joints (with the bone names looked for)."""
    names = list(bone_names)
    if preset not in (None, "", "auto"):
        if preset not in PRESETS:
            raise RigMappingError(f"Unknown rig preset '{preset}'; choose one of: auto, {', '.join(PRESETS)}.")
        candidates = [map_bones(names, PRESETS[preset])]
    else:
        candidates = [map_bones(names, p) for p in PRESETS.values()]
    # Highest score wins; among failures, the preset with the most bones found explains best what is missing.
    best = max(candidates, key=lambda m: (m.score, len(m.bones)))
    if best.missing_required:
        tried = PRESETS[best.preset]
        hint = "" if preset not in (None, "", "auto") else " (closest preset)"
        raise RigMappingError(
            f"Cannot map the motion onto '{armature_name}': the {tried.label} preset{hint} found no bone for "
            f"{_expected_names(tried, best.missing_required)}. Rename those bones or pick another preset.")
    return best


# ---- mappings edited by hand (the Bone Mapping panel) and saved as JSON presets ----

MAPPING_FORMAT = "motionlcm-bone-mapping"
CHAINS = {"pelvis": ("pelvis",), "left leg": ("left_hip", "left_knee", "left_ankle"),
          "right leg": ("right_hip", "right_knee", "right_ankle"),
          "left arm": ("left_shoulder", "left_elbow", "left_wrist"),
          "right arm": ("right_shoulder", "right_elbow", "right_wrist")}
assert sorted(j for c in CHAINS.values() for j in c) == sorted(REQUIRED_JOINTS)


def missing_chains(bones: dict[str, str]) -> str:
    """'left leg (left_knee), right arm (right_wrist)': the required chains a mapping lacks, '' when complete."""
    parts = []
    for chain, joints in CHAINS.items():
        lacking = [j for j in joints if not bones.get(j)]
        if lacking:
            parts.append(f"{chain} ({', '.join(lacking)})")
    return ", ".join(parts)


def custom_mapping(bones: dict[str, str], bone_names: Iterable[str], armature_name: str = "the armature",
                   root: str | None = None) -> RigMapping:
    """A hand-made mapping {joint: bone} checked against the armature's bones; the pelvis bone carries the travel
    unless `root` names another. Raises RigMappingError naming unknown joints or bones and missing chains."""
    names = set(bone_names)
    unknown_joints = sorted(set(bones) - set(JOINT_NAMES))
    if unknown_joints:
        raise RigMappingError(f"The bone mapping names joints that do not exist: {', '.join(unknown_joints)}.")
    chosen = {j: b for j, b in bones.items() if b}
    unknown = sorted({b for b in chosen.values() if b not in names} | ({root} - names if root else set()))
    if unknown:
        raise RigMappingError(f"The bone mapping of '{armature_name}' names bones it does not have: "
                              f"{', '.join(unknown)}.")
    lacking = missing_chains(chosen)
    if lacking:
        raise RigMappingError(f"The bone mapping of '{armature_name}' has no bone for: {lacking}. Pick them in "
                              "the Bone Mapping panel.")
    ordered = {j: chosen[j] for j in JOINT_NAMES if j in chosen}
    return RigMapping("custom", ordered, dict(ordered), root or ordered["pelvis"], (), ())


def mapping_to_json(mapping: RigMapping) -> str:
    import json

    return json.dumps({"format": MAPPING_FORMAT, "version": 1, "bones": mapping.bones, "root": mapping.root_bone},
                      indent=1)


def mapping_from_json(text: str) -> tuple[dict[str, str], str | None]:
    """(bones, root) of a saved preset; raises RigMappingError on anything else."""
    import json

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RigMappingError(f"The bone-mapping preset is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT or not isinstance(data.get("bones"), dict):
        raise RigMappingError(f"Not a bone-mapping preset (expected a JSON object with \"format\": "
                              f"\"{MAPPING_FORMAT}\" and \"bones\").")
    bones = data["bones"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in bones.items()):
        raise RigMappingError("A bone-mapping preset maps joint names to bone names (strings).")
    root = data.get("root")
    return dict(bones), root if isinstance(root, str) and root else None
