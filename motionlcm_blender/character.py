"""Create the SMPL 22-joint character from the backend's `skeleton` reply: an armature plus a skinned mesh.

Bones are named after the joints, heads at the rest joints, each pointing at its centre-line child
(pose_math.rest_bone_tails), roll 0, not connected. bake.py reads the resulting bone.matrix_local, so the
rotation conversion is exact for these orientations (see pose_math). The mesh (mannequin-x wooden
mannequin, or the real SMPL body when the backend has an SMPL folder) comes in the same reply format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bpy
import numpy as np

from . import curves, pose_math

SKELETON_TAG = "motionlcm_skeleton"  # custom property marking our characters; value = joint names JSON
REST_JOINTS_TAG = "motionlcm_rest_joints"  # flattened (22, 3) rest joints, HumanML3D metres


def is_motionlcm_character(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == "ARMATURE" and SKELETON_TAG in obj


def rest_joints_of(obj: bpy.types.Object) -> np.ndarray:
    """The HumanML3D rest joints the character was built from (sent as the generate request's rest_joints)."""
    return np.asarray(obj[REST_JOINTS_TAG], dtype=np.float64).reshape(-1, 3)


def _build_bones(arm_obj: bpy.types.Object, names: list[str], parents: list[int], heads: np.ndarray,
                 context: bpy.types.Context) -> None:
    tails = pose_math.rest_bone_tails(heads, parents)
    view_layer = context.view_layer
    if context.mode != "OBJECT":  # edit bones need Edit Mode on this armature alone
        bpy.ops.object.mode_set(mode="OBJECT")
    previous_active = view_layer.objects.active
    view_layer.objects.active = arm_obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones = arm_obj.data.edit_bones
        for name, head, tail in zip(names, heads, tails):
            bone = edit_bones.new(name)
            bone.head, bone.tail, bone.roll = head.tolist(), tail.tolist(), 0.0
        for name, parent in zip(names, parents):
            if parent >= 0:
                edit_bones[name].parent = edit_bones[names[parent]]
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active


def _build_mesh(name: str, mesh_reply: Mapping[str, np.ndarray], unit_scale: float) -> bpy.types.Mesh:
    vertices = curves.humanml_to_blender(mesh_reply["vertices"], unit_scale)
    faces = np.asarray(mesh_reply["faces"], dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min(initial=0) < 0 or faces.max(initial=0) >= len(vertices):
        raise ValueError(f"The backend sent a malformed mesh: faces {faces.shape} for {len(vertices)} vertices.")
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    mesh.update()
    mesh.validate()
    return mesh


def _skin(mesh_obj: bpy.types.Object, mesh_reply: Mapping[str, np.ndarray], names: list[str]) -> None:
    joints = np.asarray(mesh_reply["skin_joints"], dtype=np.int64)
    weights = np.asarray(mesh_reply["skin_weights"], dtype=np.float64)
    if joints.shape != weights.shape or joints.min(initial=0) < 0 or joints.max(initial=0) >= len(names):
        raise ValueError(f"The backend sent malformed skin weights: joints {joints.shape}, weights {weights.shape}.")
    for j, name in enumerate(names):
        group = mesh_obj.vertex_groups.new(name=name)
        rows, cols = np.nonzero((joints == j) & (weights > 0))
        for vertex, weight in zip(rows.tolist(), weights[rows, cols].tolist()):
            group.add([vertex], weight, "ADD")


def _remove(blocks: list[bpy.types.ID]) -> None:
    for block in blocks:  # objects come first in the list, then the data they used
        if isinstance(block, bpy.types.Object):
            bpy.data.objects.remove(block)
        elif isinstance(block, bpy.types.Mesh):
            bpy.data.meshes.remove(block)
        else:
            bpy.data.armatures.remove(block)


def remove_character(arm_obj: bpy.types.Object) -> None:
    """Delete a character this add-on created, with its body mesh and the Actions baked onto it."""
    anim = arm_obj.animation_data
    actions = ({anim.action} | {s.action for t in anim.nla_tracks for s in t.strips}) - {None} if anim else set()
    blocks: list[bpy.types.ID] = list(arm_obj.children) + [arm_obj]
    blocks += [o.data for o in blocks]
    _remove(blocks)
    for action in actions:
        if action.users == 0:
            bpy.data.actions.remove(action)


def create_character(context: bpy.types.Context, skeleton: Mapping[str, Any], name: str = "SMPL",
                     location: tuple[float, float, float] = (0.0, 0.0, 0.0),
                     unit_scale: float = 1.0) -> bpy.types.Object:
    """Armature + skinned mesh in the active collection; removes everything it made if any step fails."""
    names = [str(n) for n in skeleton["joint_names"]]
    parents = [int(p) for p in skeleton["parents"]]
    rest = np.asarray(skeleton["rest_joints"], dtype=np.float64)
    if rest.shape != (len(names), 3) or len(parents) != len(names):
        raise ValueError(f"The backend sent a malformed skeleton: {len(names)} joints, rest {rest.shape}.")
    collection = context.collection or context.scene.collection
    made: list[bpy.types.ID] = []
    try:
        arm_data = bpy.data.armatures.new(name)
        made.append(arm_data)
        arm_obj = bpy.data.objects.new(name, arm_data)
        made.insert(0, arm_obj)
        arm_obj.location = location
        arm_obj[SKELETON_TAG] = ",".join(names)
        arm_obj[REST_JOINTS_TAG] = rest.ravel().tolist()
        collection.objects.link(arm_obj)
        _build_bones(arm_obj, names, parents, curves.humanml_to_blender(rest, unit_scale), context)
        for pose_bone in arm_obj.pose.bones:
            pose_bone.rotation_mode = "QUATERNION"
        if skeleton.get("mesh") is not None:
            mesh = _build_mesh(f"{name} body", skeleton["mesh"], unit_scale)
            made.append(mesh)
            mesh_obj = bpy.data.objects.new(f"{name} body", mesh)
            made.insert(0, mesh_obj)
            collection.objects.link(mesh_obj)
            mesh_obj.parent = arm_obj
            _skin(mesh_obj, skeleton["mesh"], names)
            mesh_obj.modifiers.new("Armature", "ARMATURE").object = arm_obj
    except Exception:
        _remove(made)
        raise
    return arm_obj
