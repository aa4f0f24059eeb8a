"""The Bone Mapping panel (Target > Bone Mapping) for a user's armature: the 22 SMPL joints, each with a bone
picker, filled by Detect from the chosen preset or the shape; saved and loaded as presets (mapping_store)."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy.types import Operator, Panel

from . import character, mapping_store, session
from .panel import SidebarPanel
from .rig_mapping import JOINT_NAMES, RigMappingError, custom_mapping, missing_chains

_preset_items: list[tuple[str, str, str]] = []  # kept alive: Blender does not own dynamic enum strings


def _armature(context: bpy.types.Context) -> bpy.types.Object | None:
    settings = context.scene.motionlcm
    obj = settings.armature if settings.target == "ARMATURE" else None
    return obj if obj is not None and not character.is_motionlcm_character(obj) else None


def _presets(_self, _context) -> list[tuple[str, str, str]]:
    _preset_items[:] = [(n, n, f"Bone-mapping preset {n}") for n in mapping_store.preset_names()] or [
        ("", "(no presets saved)", "Save a mapping first")]
    return _preset_items


class _MappingOperator:
    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and _armature(context) is not None

    def _fail(self, message: str) -> set[str]:
        session.set_error(message)
        self.report({"ERROR"}, message)
        return {"CANCELLED"}


class MOTIONLCM_OT_mapping_detect(_MappingOperator, Operator):
    """Fill the mapping from the chosen Bone Mapping preset (Auto-detect: the best preset, else the shape)"""

    bl_idname = "motionlcm.mapping_detect"
    bl_label = "Detect"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        from . import rig_transfer

        obj = _armature(context)
        try:
            mapping = rig_transfer.mapping_of(obj, context.scene.motionlcm.mapping, use_stored=False)
        except RigMappingError as exc:
            return self._fail(str(exc))
        mapping_store.store_mapping(obj, mapping.bones, mapping.root_bone)
        session.set_info(f"Mapped {len(mapping.bones)} of {len(JOINT_NAMES)} joints of '{obj.name}' "
                         f"({mapping.preset}); check them below.")
        return {"FINISHED"}


class MOTIONLCM_OT_mapping_clear(_MappingOperator, Operator):
    """Forget the mapping stored on the armature (Auto-detect then detects again)"""

    bl_idname = "motionlcm.mapping_clear"
    bl_label = "Clear"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _armature(context)
        obj.motionlcm_bones.clear()
        obj.motionlcm_root_bone = ""
        return {"FINISHED"}


class MOTIONLCM_OT_mapping_save(_MappingOperator, Operator):
    """Save the armature's mapping as a preset in your Blender configuration folder"""

    bl_idname = "motionlcm.mapping_save"
    bl_label = "Save Preset"
    name: StringProperty(name="Name", description="Preset name (letters, digits, spaces, - and _)")

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        self.name = self.name or _armature(context).name
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _armature(context)
        bones, root = mapping_store.stored_mapping(obj)
        if not bones:
            return self._fail(f"Nothing is mapped on '{obj.name}' yet: click Detect (or pick the bones) first.")
        try:
            path = mapping_store.save_preset(self.name, custom_mapping(bones, obj.data.bones.keys(), obj.name, root))
        except RigMappingError as exc:
            return self._fail(str(exc))
        session.set_info(f"Saved the bone mapping as {path}.")
        return {"FINISHED"}


class MOTIONLCM_OT_mapping_load(_MappingOperator, Operator):
    """Load a saved bone-mapping preset onto the armature"""

    bl_idname = "motionlcm.mapping_load"
    bl_label = "Load Preset"
    bl_options = {"REGISTER", "UNDO"}
    bl_property = "preset"
    preset: EnumProperty(name="Preset", items=_presets)

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _armature(context)
        try:
            bones, root = mapping_store.load_preset(self.preset)
            custom_mapping(bones, obj.data.bones.keys(), obj.name, root)  # it must fit this armature
        except RigMappingError as exc:
            return self._fail(str(exc))
        mapping_store.store_mapping(obj, bones, root)
        session.set_info(f"Loaded the bone-mapping preset '{self.preset}'.")
        return {"FINISHED"}


class MOTIONLCM_PT_bone_mapping(SidebarPanel, Panel):
    bl_label = "Bone Mapping"
    bl_parent_id = "MOTIONLCM_PT_target"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and _armature(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = _armature(context)
        layout.prop(context.scene.motionlcm, "mapping")
        row = layout.row(align=True)
        row.operator("motionlcm.mapping_detect", icon="VIEWZOOM")
        row.operator("motionlcm.mapping_clear", icon="X")
        row = layout.row(align=True)
        row.operator("motionlcm.mapping_save", icon="FILE_TICK")
        row.operator("motionlcm.mapping_load", icon="FILE_FOLDER")
        if not len(obj.motionlcm_bones):
            layout.label(text="Nothing stored: Generate detects the mapping (Detect shows it here first).",
                         icon="INFO")
            return
        bones, _root = mapping_store.stored_mapping(obj)
        lacking = missing_chains(bones)
        if lacking:
            box = layout.box()
            box.alert = True
            box.label(text=f"Missing: {lacking}", icon="ERROR")
        col = layout.column(align=True)
        col.use_property_split = True
        for item in obj.motionlcm_bones:
            col.prop_search(item, "bone", obj.data, "bones", text=item.joint.replace("_", " ").title())
        layout.use_property_split = True
        layout.prop_search(obj, "motionlcm_root_bone", obj.data, "bones")


CLASSES = (MOTIONLCM_OT_mapping_detect, MOTIONLCM_OT_mapping_clear, MOTIONLCM_OT_mapping_save,
           MOTIONLCM_OT_mapping_load, MOTIONLCM_PT_bone_mapping)
