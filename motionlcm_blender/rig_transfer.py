"""Rig-to-rig transfer: one backend result (rotations on the SMPL body) onto a user's armature (any mapped rig).

"Retargeting" (backend/retarget) turns joint positions into rotations on the SMPL body; this module moves those
rotations and the travel onto another skeleton, through the bone mapping (presets, shape, or the user's own).

`transfer_to_rig` only reads the scene: it returns channels for bake.write_action, or raises
RigMappingError / ValueError before anything is created, so a failure leaves the scene as it was.
The math is in rig_solver (pure numpy); this module reads the rig's rest pose and constraints from bpy and
turns solved quaternions into each bone's own rotation mode, so the user's rig settings stay untouched.

Assumptions: bones that are not mapped are at rest (their current pose is not keyed); the root bone's
location is in its own rest axes (Blender's default "Local Location").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bpy
import numpy as np
from mathutils import Quaternion

from . import bake, mapping_store, pose_math, rig_mapping, rig_shape, rig_solver
from .rig_mapping import JOINT_NAMES, RigMappingError

Channels = dict[tuple[str, str], np.ndarray]

# Constraints that decide a bone's transform: keys on a bone carrying one would not show.
_OVERRIDING = {"COPY_TRANSFORMS", "COPY_ROTATION", "CHILD_OF", "TRANSFORM", "ACTION", "ARMATURE",
               "DAMPED_TRACK", "LOCKED_TRACK", "TRACK_TO", "IK", "SPLINE_IK", "STRETCH_TO"}
_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def _constraints_of(obj: bpy.types.Object, pose_bone: bpy.types.PoseBone,
                    index: Mapping[str, int]) -> list[rig_solver.Constraint]:
    """The constraints rig_solver can evaluate; others are taken to leave a bone at rest."""
    found = []
    for c in pose_bone.constraints:
        if (c.type not in rig_solver.CONSTRAINT_KINDS or not c.enabled or c.influence <= 0
                or getattr(c, "target", None) != obj or c.subtarget not in index
                or c.owner_space != c.target_space or c.owner_space not in ("WORLD", "LOCAL")
                or c.mix_mode != "REPLACE"):
            continue
        partial_copy = c.type == "COPY_ROTATION" and (
            not (c.use_x and c.use_y and c.use_z) or c.invert_x or c.invert_y or c.invert_z)
        if partial_copy:
            continue
        found.append(rig_solver.Constraint(c.type, index[c.subtarget], float(c.influence), c.owner_space))
    return found


def rig_rest_of(armature_obj: bpy.types.Object) -> rig_solver.RigRest:
    bones = armature_obj.data.bones
    names = [b.name for b in bones]
    index = {n: i for i, n in enumerate(names)}
    return rig_solver.RigRest(
        names=names,
        parents=[index[b.parent.name] if b.parent else -1 for b in bones],
        matrices=np.array([np.array(b.matrix_local) for b in bones], dtype=np.float64),
        constraints=[_constraints_of(armature_obj, armature_obj.pose.bones[n], index) for n in names])


def mapping_of(armature_obj: bpy.types.Object, preset: str | None = "auto",
               use_stored: bool = True) -> rig_mapping.RigMapping:
    """The armature's bone mapping: a named preset, "shape" (rig_shape, from the hierarchy and rest pose), or with
    "auto" the mapping stored on the armature (the Bone Mapping panel, `use_stored`), else the best preset by bone
    names and, when none maps the rig, by shape. Raises RigMappingError naming what is missing."""
    names = [b.name for b in armature_obj.data.bones]
    auto = preset in (None, "", "auto")
    if auto and use_stored:
        bones, root = mapping_store.stored_mapping(armature_obj)
        if bones:
            return rig_mapping.custom_mapping(bones, names, armature_obj.name, root)
    if preset != rig_shape.SHAPE:
        try:
            return rig_mapping.resolve_mapping(names, preset, armature_obj.name)
        except RigMappingError as by_name:
            if not auto:
                raise
            reason = str(by_name)
    else:
        reason = ""
    rig = rig_rest_of(armature_obj)
    try:
        return rig_shape.map_by_shape(names, rig.parents, rig.matrices[:, :3, 3])
    except RigMappingError as by_shape:
        raise RigMappingError(f"{reason} {by_shape}".strip()) from None


def travel_carrier(armature_obj: bpy.types.Object, rig: rig_solver.RigRest, root_bone: str) -> str | None:
    """Where the root travel is keyed: the mapped root bone if Blender lets its location move it, else its
    nearest ancestor that can move, else None (the armature object). A bone connected to its parent
    (`use_connect`) ignores its location, and a locked location cannot be keyed."""
    bones, pose_bones = armature_obj.data.bones, armature_obj.pose.bones
    movable = [not bones[n].use_connect and not any(pose_bones[n].lock_location) for n in rig.names]
    return rig_solver.travel_bone(rig, root_bone, movable)


def travel_note(armature_obj: bpy.types.Object, root_bone: str, carrier: str | None) -> str:
    """What the panel and the report say when the travel could not go to the mapped root bone ('' if it did)."""
    if carrier == root_bone:
        return ""
    why = "is connected to its parent" if armature_obj.data.bones[root_bone].use_connect else \
        "has a locked location"
    where = f"its ancestor bone '{carrier}'" if carrier else f"the armature object '{armature_obj.name}'"
    return f"The root bone '{root_bone}' {why}, so the travel is keyed on {where}."


def travel_note_for(armature_obj: bpy.types.Object, preset: str | None = "auto") -> str:
    """travel_note for the armature's mapping under `preset`."""
    mapping = mapping_of(armature_obj, preset)
    return travel_note(armature_obj, mapping.root_bone,
                       travel_carrier(armature_obj, rig_rest_of(armature_obj), mapping.root_bone))


def _top_bone(rig: rig_solver.RigRest, bone: str) -> str:
    b = rig.index(bone)
    while rig.parents[b] >= 0:
        b = rig.parents[b]
    return rig.names[b]


def _check_keyable(armature_obj: bpy.types.Object, mapping: rig_mapping.RigMapping, carrier: str | None) -> None:
    keyed = [*mapping.bones.values(), *([carrier] if carrier else [])]
    driven = [f"{bone} ({c.type.replace('_', ' ').title()})"
              for bone in dict.fromkeys(keyed)
              for c in armature_obj.pose.bones[bone].constraints
              if c.type in _OVERRIDING and c.enabled and c.influence > 0]
    if driven:
        raise RigMappingError(
            f"The {rig_mapping.PRESETS[mapping.preset].label} preset would key bones of '{armature_obj.name}' that "
            f"constraints drive, so the motion would not show: {', '.join(driven)}. Pick the preset for the "
            "rig's control bones (e.g. 'rigify' for a generated Rigify rig) or disable those constraints.")


def _motion_arrays(result: Mapping[str, Any], rest_joints: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rest = rest_joints if rest_joints is not None else result.get("rest_joints")
    missing = [k for k in ("root_translation", "local_quats") if k not in result]
    missing += ["rest_joints"] if rest is None else []
    if missing:
        raise ValueError(f"The generation result lacks {', '.join(missing)}; cannot retarget it.")
    root = np.asarray(result["root_translation"], dtype=np.float64)
    quats = np.asarray(result["local_quats"], dtype=np.float64)
    rest = np.asarray(rest, dtype=np.float64)
    joints = len(JOINT_NAMES)
    if root.ndim != 2 or root.shape[1] != 3 or len(root) == 0 or quats.shape != (len(root), joints, 4) \
            or rest.shape != (joints, 3):
        raise ValueError(f"The generation result has the wrong shapes: root_translation {root.shape}, local_quats "
                         f"{quats.shape}, rest_joints {rest.shape}; expected (T, 3), (T, {joints}, 4), ({joints}, 3).")
    if not (np.isfinite(root).all() and np.isfinite(quats).all() and np.isfinite(rest).all()):
        raise ValueError("The generation result contains NaN or infinite values; cannot retarget it.")
    if (np.linalg.norm(quats, axis=-1) < 1e-6).any():
        raise ValueError("The generation result contains zero-length quaternions; cannot retarget it.")
    return root, quats, rest


def _rotation_channel(rotation_mode: str, quats: np.ndarray) -> tuple[str, np.ndarray]:
    """Quaternions as the bone's own rotation channel, so its rotation mode is left as the user set it."""
    if rotation_mode == "QUATERNION":
        return "rotation_quaternion", quats
    if rotation_mode == "AXIS_ANGLE":
        values = [Quaternion(q).to_axis_angle() for q in quats]
        return "rotation_axis_angle", np.array([[angle, *axis] for axis, angle in values])
    eulers, previous = [], None
    for q in quats:  # compatible eulers: no 360-degree jumps between frames
        quat = Quaternion(q)
        previous = quat.to_euler(rotation_mode) if previous is None else quat.to_euler(rotation_mode, previous)
        eulers.append(tuple(previous))
    return "rotation_euler", np.array(eulers)


def transfer_to_rig(armature_obj: bpy.types.Object, result: Mapping[str, Any], preset: str | None = "auto",
                    in_place: bool = False, rest_joints: Any = None, root_scale: float | None = None) -> Channels:
    """Channels {(bone, data_path): (T, k)} for bake.write_action that make the armature follow one variation.

    result: a variation (root_translation (T, 3), local_quats (T, 22, 4)); rest_joints (22, 3) come from the
    argument or result["rest_joints"] (the generate reply's top level). preset: a rig_mapping.PRESETS name,
    or "auto"/None. root_scale: armature units per metre of root travel; None = leg-length ratio.
    Raises RigMappingError (no preset fits, or it would key constraint-driven bones) or ValueError
    (malformed result); nothing in bpy.data is changed either way.
    """
    if armature_obj is None or armature_obj.type != "ARMATURE":
        name = getattr(armature_obj, "name", "nothing")
        raise RigMappingError(f"Retargeting needs an armature; '{name}' is not one. Select the character's armature.")
    root, quats, rest = _motion_arrays(result, rest_joints)
    mapping = mapping_of(armature_obj, preset)
    rig = rig_rest_of(armature_obj)
    carrier = travel_carrier(armature_obj, rig, mapping.root_bone)
    _check_keyable(armature_obj, mapping, carrier)
    solve_root = carrier or _top_bone(rig, mapping.root_bone)
    pose = rig_solver.solve_rig_pose(rig, mapping.bones, mapping.positions, solve_root, rest, root, quats,
                                     in_place, root_scale)
    rotations = dict(pose.rotations)
    rotations.setdefault(mapping.root_bone, np.tile(_IDENTITY, (len(root), 1)))  # solved as unrotated
    channels: Channels = {}
    for bone, values in rotations.items():
        prop, channel = _rotation_channel(armature_obj.pose.bones[bone].rotation_mode, values)
        channels[(bone, prop)] = channel
    if carrier is not None:
        channels[(carrier, "location")] = pose.root_location
    else:  # no bone can move: the armature object travels (its own axes and scale apply to the offset)
        basis = np.array(armature_obj.matrix_basis)
        channels[("", "location")] = basis[:3, 3] + pose.root_offset @ basis[:3, :3].T
    for bone, prop, value in mapping.properties:  # e.g. Rigify IK_FK = 1: the limbs follow the FK controls
        if prop in armature_obj.pose.bones[bone]:
            path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]["{prop}"]'
            channels[("", path)] = np.full((len(root), 1), value)
    return channels


def rig_target_matrix(armature_obj: bpy.types.Object, rest_joints: Any, preset: str | None = "auto",
                      root_scale: float | None = None, unit_scale: float = 1.0) -> np.ndarray:
    """World -> target space (Blender axes, scene units) for control points of a generate request for this rig.

    curves.blender_to_humanml(curves.transform_points(world, matrix), unit_scale) gives the HumanML3D pelvis
    position that transfer_to_rig (same rest_joints, preset, root_scale) puts on the world point; exact for the
    pelvis, approximate for joints whose lengths differ between the rig and SMPL. Raises RigMappingError.
    """
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise RigMappingError(f"'{getattr(armature_obj, 'name', 'nothing')}' is not an armature.")
    mapping = mapping_of(armature_obj, preset)
    heads = rig_solver.joint_heads(rig_rest_of(armature_obj), mapping.positions)
    root = rig_solver.root_mapping(heads, np.asarray(rest_joints, dtype=np.float64), root_scale)
    to_model = np.eye(4)  # armature space -> HumanML3D metres, RootMapping.to_model as a matrix
    to_model[:3, :3] = root.axes.T / root.scale
    to_model[:3, 3] = root.smpl_pelvis - root.axes.T @ root.rig_pelvis / root.scale
    to_target = np.eye(4)
    to_target[:3, :3] = pose_math.AXES_HUMANML_TO_BLENDER / unit_scale
    return to_target @ to_model @ np.linalg.inv(np.array(armature_obj.matrix_world))


def bake_to_rig(armature_obj: bpy.types.Object, result: Mapping[str, Any], name: str, start_frame: float,
                frame_step: float = 1.0, preset: str | None = "auto", in_place: bool = False,
                props: Mapping[str, Any] | None = None, rest_joints: Any = None,
                root_scale: float | None = None, continue_after: float | None = None) -> bpy.types.Action:
    """transfer_to_rig, then a new Action via bake.write_action (frame_step = scene fps / result fps; after the
    current Action's keys up to `continue_after` when continuing)."""
    channels = transfer_to_rig(armature_obj, result, preset, in_place, rest_joints, root_scale)
    return bake.write_action(armature_obj, name, channels, start_frame, props, frame_step=frame_step,
                             keep_until=continue_after)
