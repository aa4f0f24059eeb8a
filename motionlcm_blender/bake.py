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


def _append_keys(fcurves, slot: Any, channels: Mapping[tuple[str, str], np.ndarray], start_frame: float,
                 frame_step: float) -> None:
    """Key every channel's frame i at start_frame + i * frame_step (linear), after an F-Curve's existing keys
    (a new F-Curve when the channel has none), in bulk (`foreach_set`)."""
    for (bone, prop), values in channels.items():
        values = np.asarray(values, dtype=np.float32)
        values = values[:, None] if values.ndim == 1 else values
        count = len(values)
        frames = (start_frame + np.arange(count) * frame_step).astype(np.float32)
        path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}' if bone else prop
        for index in range(values.shape[1]):
            fcurve = fcurves.find(path, index=index) or _new_fcurve(fcurves, slot is not None, path, index,
                                                                      bone or "Object")
            points = fcurve.keyframe_points
            kept = len(points)
            co = np.empty(2 * kept, dtype=np.float32)
            interpolation = np.empty(kept, dtype=np.int32)
            points.foreach_get("co", co)
            points.foreach_get("interpolation", interpolation)
            points.add(count)
            points.foreach_set("co", np.concatenate([co, np.stack([frames, values[:, index]], axis=1).ravel()]))
            points.foreach_set("interpolation", np.concatenate([interpolation, np.full(count, _LINEAR, np.int32)]))
            fcurve.update()


def write_action(obj: bpy.types.Object, name: str, channels: Mapping[tuple[str, str], np.ndarray],
                 start_frame: float, props: Mapping[str, Any] | None = None,
                 frame_step: float = 1.0, keep_until: float | None = None) -> bpy.types.Action:
    """Create a new Action from per-frame channel values, push the object's current Action to the NLA
    and assign the new one. Reusable for any armature (the retargeting module uses it too).

    channels: {(bone_name, data_path): (T, k) values} with data_path a pose-bone property such as
    "rotation_quaternion" or "location"; bone_name "" addresses the object itself. Frame i is keyed at
    start_frame + i * frame_step with linear interpolation. keep_until (Continue): the new Action starts as a
    copy of the current one without its keys after that frame (the current one is not changed).
    """
    if keep_until is not None and (obj.animation_data is None or obj.animation_data.action is None):
        raise ValueError(f"'{obj.name}' has no Action to continue; Generate one first.")
    action = bpy.data.actions.new(name) if keep_until is None else obj.animation_data.action.copy()
    try:
        if keep_until is None:
            fcurves, slot = _fcurve_collection(action, obj)
        else:
            action.name = name
            fcurves, slot = _object_fcurves(action, obj)
            _drop_keys_after(fcurves, keep_until)
            for key in [k for k in action.keys() if k.startswith("motionlcm_")]:  # the copy's record is stale
                del action[key]
        _append_keys(fcurves, slot, channels, start_frame, frame_step)
        _set_custom_properties(action, props or {})
        assign_action(obj, action, slot)
    except Exception:
        bpy.data.actions.remove(action)  # never leave a half-written Action behind
        raise
    return action


def _drop_keys_after(fcurves, frame: float) -> None:
    """Remove each F-Curve's keys after `frame` (a tail: keys are in time order); the kept ones stay as they are,
    handles included."""
    for fcurve in fcurves:
        points = fcurve.keyframe_points
        co = np.empty(2 * len(points), dtype=np.float32)
        points.foreach_get("co", co)
        for _ in range(int((co[0::2] > frame + 1e-4).sum())):
            points.remove(points[len(points) - 1], fast=True)
        fcurve.update()


def action_name(prompt: str, seed: int | None) -> str:
    """'<prompt, shortened> s<seed>' within Blender's 63-byte name limit."""
    text = " ".join(prompt.split())
    if len(text) > ACTION_NAME_CHARS:
        text = text[:ACTION_NAME_CHARS - 1].rstrip() + "…"
    return f"{text} s{seed}" if seed is not None else text


def variation_channels(obj: bpy.types.Object, joint_names: list[str], variation: Mapping[str, np.ndarray],
                       unit_scale: float = 1.0) -> dict[tuple[str, str], np.ndarray]:
    """write_action channels of one result variation for an armature whose bones are named after the joints
    (character.py). Rotations go through pose_math.bone_rotation_quats with each bone's actual rest matrix, so
    any bone orientation is exact; the root bone also gets the pelvis location."""
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
    return channels


def bake_variation(obj: bpy.types.Object, joint_names: list[str], variation: Mapping[str, np.ndarray],
                   fps: float, start_frame: float, scene_fps: float, name: str,
                   props: Mapping[str, Any] | None = None, unit_scale: float = 1.0,
                   continue_after: float | None = None) -> bpy.types.Action:
    """Bake one result variation onto a MotionLCM character (a new Action; `continue_after`: the current
    Action's keys up to that frame come first, see write_action)."""
    channels = variation_channels(obj, joint_names, variation, unit_scale)
    action = write_action(obj, name, channels, start_frame, props, frame_step=scene_fps / fps,
                          keep_until=continue_after)
    for joint in joint_names:
        obj.pose.bones[joint].rotation_mode = "QUATERNION"
    return action


def _object_fcurves(action: bpy.types.Action, obj: bpy.types.Object):
    """The F-Curves an assigned `action` holds for `obj`, and the slot (4.4+: the channelbag of the slot with the
    identifier of the object's current one; legacy: action.fcurves, None)."""
    if not hasattr(action, "slots"):
        return action.fcurves, None
    current = getattr(obj.animation_data, "action_slot", None)
    slot = next((s for s in action.slots if current is not None and s.identifier == current.identifier), None)
    slot = slot or (action.slots[0] if len(action.slots) else action.slots.new(id_type="OBJECT", name=obj.name))
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True).fcurves, slot


def add_segment_markers(action: bpy.types.Action, segments: list[Mapping[str, Any]], start_frame: float,
                        frame_step: float) -> None:
    """One pose marker per timeline segment at its first frame, named after its prompt (the Action Editor shows
    them; they travel with the Action into the NLA)."""
    for segment in segments:
        marker = action.pose_markers.new(" ".join(str(segment["prompt"]).split())[:63])
        marker.frame = int(round(start_frame + int(segment["start_frame"]) * frame_step))


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
