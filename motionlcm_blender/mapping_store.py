"""A bone mapping stored on the armature, and mapping presets saved as JSON in the user's configuration folder.

The Bone Mapping panel edits `Object.motionlcm_bones` (one item per SMPL joint; `bone` names one of the
armature's bones, or is empty) and `Object.motionlcm_root_bone` (the bone that carries the travel; empty: the
pelvis bone). A stored mapping is what Auto-detect uses (rig_transfer.mapping_of): a regenerate reuses what the
user confirmed, and a successful bake stores the mapping it used. Presets: `<Blender config>/motionlcm/
bone_mappings/NAME.json` (rig_mapping.mapping_to_json).
"""

from __future__ import annotations

import re
from pathlib import Path

import bpy
from bpy.props import CollectionProperty, StringProperty
from bpy.types import PropertyGroup

from .rig_mapping import JOINT_NAMES, RigMapping, RigMappingError, mapping_from_json, mapping_to_json

PRESET_FOLDER = ("motionlcm", "bone_mappings")


class MotionLCMBoneItem(PropertyGroup):
    joint: StringProperty(name="Joint", description="SMPL joint")
    bone: StringProperty(name="Bone", description="The armature's bone that follows this SMPL joint")


def stored_mapping(obj: bpy.types.Object) -> tuple[dict[str, str], str | None]:
    """({joint: bone} of the non-empty items, root bone or None); empty when nothing is stored (or the add-on's
    properties are not registered, as for scripts that call rig_transfer directly)."""
    bones = {item.joint: item.bone for item in getattr(obj, "motionlcm_bones", ()) if item.bone}
    return bones, getattr(obj, "motionlcm_root_bone", "") or None


def store_mapping(obj: bpy.types.Object, bones: dict[str, str], root: str | None = None) -> None:
    """Write a mapping onto the armature: every SMPL joint, in order (unmapped ones empty)."""
    obj.motionlcm_bones.clear()
    for joint in JOINT_NAMES:
        item = obj.motionlcm_bones.add()
        item.joint, item.bone = joint, bones.get(joint, "")
    obj.motionlcm_root_bone = root if root and root != bones.get("pelvis") else ""


def preset_folder(create: bool = False) -> Path:
    return Path(bpy.utils.user_resource("CONFIG", path="/".join(PRESET_FOLDER), create=create))


def preset_names() -> list[str]:
    folder = preset_folder()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def save_preset(name: str, mapping: RigMapping) -> Path:
    """Write `mapping` as preset `name` (letters, digits, spaces, - and _); returns the file."""
    if not re.fullmatch(r"[\w\- ]{1,64}", name.strip() or "-"):
        raise RigMappingError(f"A preset name uses letters, digits, spaces, '-' and '_' (at most 64), got {name!r}.")
    path = preset_folder(create=True) / f"{name.strip()}.json"
    path.write_text(mapping_to_json(mapping), encoding="utf-8")
    return path


def load_preset(name: str) -> tuple[dict[str, str], str | None]:
    path = preset_folder() / f"{name}.json"
    if not path.is_file():
        raise RigMappingError(f"No bone-mapping preset named '{name}' in {path.parent}.")
    return mapping_from_json(path.read_text(encoding="utf-8"))


def register() -> None:
    bpy.utils.register_class(MotionLCMBoneItem)
    bpy.types.Object.motionlcm_bones = CollectionProperty(type=MotionLCMBoneItem)
    bpy.types.Object.motionlcm_root_bone = StringProperty(
        name="Travel Bone", description="Bone whose location carries the travel (empty: the pelvis bone)")


def unregister() -> None:
    del bpy.types.Object.motionlcm_root_bone
    del bpy.types.Object.motionlcm_bones
    bpy.utils.unregister_class(MotionLCMBoneItem)
