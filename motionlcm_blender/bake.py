"""Bake a generation into a NEW Action with bulk F-Curve writes; the previous Action goes to the NLA.

Blender 4.4+ (slotted actions): F-Curves live in a channelbag of the Action's slot for the object.
Blender 4.2-4.3 (legacy actions): `action.fcurves`. Keys are written with `keyframe_points.add(n)` and
`foreach_set`, never `keyframe_insert`, so 196 frames x 22 bones take milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import bpy
import numpy as np

from . import pose_math

_LINEAR = 1  # KeyframeInterpolation enum value of 'LINEAR' (BEZT_IPO_LIN) for foreach_set
ACTION_NAME_CHARS = 48


def _fcurve_collection(action: bpy.types.Action, obj: bpy.types.Object):
    """Where the object's F-Curves go: the channelbag of a new slot (4.4+), or action.fcurves (legacy)."""
    if hasattr(action, "slots"):
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True).fcurves, slot
    return action.fcurves, None


def _new_fcurve(fcurves, slotted: bool, data_path: str, index: int, group: str):
    if slotted:  # ActionChannelbagFCurves.new
        return fcurves.new(data_path, index=index, group_name=group)
    return fcurves.new(data_path, index=index, action_group=group)


def _push_to_nla(obj: bpy.types.Object) -> None:
    """Keep the object's current Action as an NLA strip (like Blender's Push Down) before replacing it."""
    anim = obj.animation_data
    previous = anim.action if anim else None
    if previous is None:
        return
    track = anim.nla_tracks.new()
    track.name = previous.name
    strip = track.strips.new(previous.name, int(previous.frame_range[0]), previous)
    if hasattr(anim, "action_slot") and anim.action_slot is not None:
        strip.action_slot = anim.action_slot


def assign_action(obj: bpy.types.Object, action: bpy.types.Action, slot: Any = None) -> None:
    """Make `action` the object's active Action (its first slot unless given); the current one goes to the NLA."""
    anim = obj.animation_data or obj.animation_data_create()
    if anim.action == action:
        return
    _push_to_nla(obj)
    anim.action = action
    if hasattr(anim, "action_slot"):
        slot = slot if slot is not None else (action.slots[0] if len(action.slots) else None)
        if slot is not None:
            anim.action_slot = slot


def _set_custom_properties(action: bpy.types.Action, props: Mapping[str, Any]) -> None:
    for key, value in props.items():
        if isinstance(value, (bool, int, float, str)):
            action[key] = value
        elif value is not None:
            action[key] = json.dumps(value)  # nested settings stay readable and re-loadable


def write_action(obj: bpy.types.Object, name: str, channels: Mapping[tuple[str, str], np.ndarray],
                 start_frame: float, props: Mapping[str, Any] | None = None,
                 frame_step: float = 1.0) -> bpy.types.Action:
    """Create a new Action from per-frame channel values, push the object's current Action to the NLA
    and assign the new one. Reusable for any armature (the retargeting module uses it too).

    channels: {(bone_name, data_path): (T, k) values} with data_path a pose-bone property such as
    "rotation_quaternion" or "location"; bone_name "" addresses the object itself. Frame i is keyed at
    start_frame + i * frame_step with linear interpolation.
    """
    action = bpy.data.actions.new(name)
    try:
        fcurves, slot = _fcurve_collection(action, obj)
        for (bone, prop), values in channels.items():
            values = np.asarray(values, dtype=np.float32)
            values = values[:, None] if values.ndim == 1 else values
            count = len(values)
            co = np.empty((values.shape[1], count, 2), dtype=np.float32)  # (frame, value) pairs per index
            co[:, :, 0] = start_frame + np.arange(count) * frame_step
            co[:, :, 1] = values.T
            interpolation = np.full(count, _LINEAR, dtype=np.int32)
            path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}' if bone else prop
            for index in range(values.shape[1]):
                fcurve = _new_fcurve(fcurves, slot is not None, path, index, bone or "Object")
                points = fcurve.keyframe_points
                points.add(count)
                points.foreach_set("co", co[index].ravel())
                points.foreach_set("interpolation", interpolation)
                fcurve.update()
        _set_custom_properties(action, props or {})
        assign_action(obj, action, slot)
    except Exception:
        bpy.data.actions.remove(action)  # never leave a half-written Action behind
        raise
    return action


def action_name(prompt: str, seed: int | None) -> str:
    """'<prompt, shortened> s<seed>' within Blender's 63-byte name limit."""
    text = " ".join(prompt.split())
    if len(text) > ACTION_NAME_CHARS:
        text = text[:ACTION_NAME_CHARS - 1].rstrip() + "…"
    return f"{text} s{seed}" if seed is not None else text


def bake_variation(obj: bpy.types.Object, joint_names: list[str], variation: Mapping[str, np.ndarray],
                   fps: float, start_frame: float, scene_fps: float, name: str,
                   props: Mapping[str, Any] | None = None, unit_scale: float = 1.0) -> bpy.types.Action:
    """Bake one result variation onto an armature whose bones are named after the joints (character.py).

    Rotations go through pose_math.bone_rotation_quats with each bone's actual rest matrix, so any bone
    orientation is exact; the root bone also gets the pelvis location.
    """
    bones = obj.data.bones
    missing = [j for j in joint_names if j not in bones]
    if missing:
        raise ValueError(f"Armature '{obj.name}' lacks the bones {', '.join(missing)}; "
                         "bake onto a character made by MotionLCM or pick a rig mapping.")
    rest = np.array([np.array(bones[j].matrix_local)[:3, :3] for j in joint_names])
    quats = pose_math.bone_rotation_quats(variation["local_quats"], rest)
    root = joint_names[0]
    location = pose_math.root_bone_locations(variation["root_translation"],
                                             np.array(bones[root].head_local), rest[0], unit_scale)
    channels: dict[tuple[str, str], np.ndarray] = {(root, "location"): location}
    for j, joint in enumerate(joint_names):
        channels[(joint, "rotation_quaternion")] = quats[:, j]
    action = write_action(obj, name, channels, start_frame, props, frame_step=scene_fps / fps)
    for joint in joint_names:
        obj.pose.bones[joint].rotation_mode = "QUATERNION"
    return action


def snapshot_animation(obj: bpy.types.Object) -> dict[str, Any]:
    """What restore_animation needs to undo any number of write_action calls on `obj`."""
    anim = obj.animation_data
    return {"had_anim": anim is not None, "action": anim.action if anim else None,
            "slot": getattr(anim, "action_slot", None) if anim else None,
            "tracks": len(anim.nla_tracks) if anim else 0, "actions": set(bpy.data.actions)}


def restore_animation(obj: bpy.types.Object, snapshot: dict[str, Any]) -> None:
    """Remove the NLA tracks and Actions made since the snapshot and reassign the previous Action."""
    anim = obj.animation_data
    if anim is None:
        return
    while len(anim.nla_tracks) > snapshot["tracks"]:
        anim.nla_tracks.remove(anim.nla_tracks[-1])
    anim.action = snapshot["action"]
    if snapshot["slot"] is not None:
        anim.action_slot = snapshot["slot"]
    for action in [a for a in bpy.data.actions if a not in snapshot["actions"]]:
        bpy.data.actions.remove(action)
    if not snapshot["had_anim"]:
        obj.animation_data_clear()
