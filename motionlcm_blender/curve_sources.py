"""Read control trajectories from Blender objects, in world space (object transforms and parents applied).

Sources: Bezier / NURBS / poly curves (first spline), Grease Pencil strokes (Blender 4.3+ Grease Pencil v3,
4.2 legacy fallback; the active layer's last stroke), and keyframed objects such as empties. The geometry
itself (Bezier evaluation, resampling, axes, timing) is in the pure module curves.py.
"""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from . import curves, request_builder

PATH = "PATH"  # the whole curve walked at uniform speed over the clip
WAYPOINTS = "WAYPOINTS"  # keyframes at their frames, or curve points timed by distance


def _world(obj: bpy.types.Object, local: np.ndarray) -> np.ndarray:
    return curves.transform_points(local, np.array(obj.matrix_world))


def _first_spline(obj: bpy.types.Object) -> bpy.types.Spline:
    if len(obj.data.splines) == 0:
        raise curves.CurveError(f"Curve '{obj.name}' has no points; draw a path first.")
    return obj.data.splines[0]


def _read(collection, attribute: str, width: int) -> np.ndarray:
    flat = np.empty(len(collection) * width, dtype=np.float64)
    collection.foreach_get(attribute, flat)
    return flat.reshape(-1, width)


def _curve_path(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    spline = _first_spline(obj)
    if spline.type == "BEZIER":
        points = spline.bezier_points
        local = curves.evaluate_bezier(_read(points, "co", 3), _read(points, "handle_left", 3),
                                       _read(points, "handle_right", 3), spline.use_cyclic_u)
    elif spline.type == "POLY":
        local = _read(spline.points, "co", 4)[:, :3]
        if spline.use_cyclic_u and len(local) > 1:
            local = np.vstack([local, local[:1]])
    else:  # NURBS: Blender's own evaluation, at the curve's resolution
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            if len(mesh.polygons):
                raise curves.CurveError(f"Curve '{obj.name}' has bevel or extrusion, so its NURBS path cannot be "
                                        "read; remove them or convert the spline to Bezier or Poly.")
            local = _read(mesh.vertices, "co", 3)
        finally:
            evaluated.to_mesh_clear()
    return _world(obj, local)


def _curve_knots(obj: bpy.types.Object) -> np.ndarray:
    spline = _first_spline(obj)
    if spline.type == "BEZIER":
        return _world(obj, _read(spline.bezier_points, "co", 3))
    return _world(obj, _read(spline.points, "co", 4)[:, :3])


def _grease_pencil_stroke(obj: bpy.types.Object) -> np.ndarray:
    layer = obj.data.layers.active
    if layer is None:
        raise curves.CurveError(f"Grease Pencil '{obj.name}' has no active layer.")
    if obj.type == "GREASEPENCIL":  # v3 (Blender 4.3+)
        frame = layer.current_frame()
        strokes = frame.drawing.strokes if frame is not None else []
        if len(strokes) == 0:
            raise curves.CurveError(f"Grease Pencil '{obj.name}' has no stroke on the current frame of "
                                    f"layer '{layer.name}'; draw the path there.")
        local = np.array([tuple(p.position) for p in strokes[-1].points], dtype=np.float64)
        local = curves.transform_points(local, np.array(layer.matrix_local))  # the layer's own transform
    else:  # legacy GPENCIL (Blender 4.2)
        frame = layer.active_frame
        if frame is None or len(frame.strokes) == 0:
            raise curves.CurveError(f"Grease Pencil '{obj.name}' has no stroke on layer '{layer.info}'.")
        local = curves.transform_points(_read(frame.strokes[-1].points, "co", 3), np.array(layer.matrix_layer))
    return _world(obj, local)


def _object_fcurves(obj: bpy.types.Object) -> list[bpy.types.FCurve]:
    anim = obj.animation_data
    action = anim.action if anim else None
    if action is None:
        return []
    if hasattr(anim, "action_slot"):  # slotted actions (4.4+): the channelbags of the assigned slot
        slot = anim.action_slot
        bags = [strip.channelbag(slot) for layer in action.layers for strip in layer.strips] if slot else []
        return [fc for bag in bags if bag is not None for fc in bag.fcurves]
    return list(action.fcurves)


def _keyframe_frames(obj: bpy.types.Object) -> list[float]:
    transforms = ("location", "rotation_euler", "rotation_quaternion", "scale")
    return sorted({round(k.co[0], 3) for fc in _object_fcurves(obj) if fc.data_path in transforms
                   for k in fc.keyframe_points})


def _keyed_positions(obj: bpy.types.Object, scene: bpy.types.Scene) -> tuple[list[float], np.ndarray]:
    """World location of the object at each of its keyframes (parents and constraints included)."""
    frames = _keyframe_frames(obj)
    if not frames:
        raise curves.CurveError(f"'{obj.name}' has no keyframes; key its location at the frames it should "
                                "reach, or use a curve as the source.")
    current = (scene.frame_current, scene.frame_subframe)
    positions = []
    try:
        for frame in frames:
            scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
            positions.append(tuple(obj.matrix_world.translation))
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return frames, np.array(positions, dtype=np.float64)


def is_curve_like(obj: bpy.types.Object) -> bool:
    return obj.type in ("CURVE", "GREASEPENCIL", "GPENCIL")


def control_request(context: bpy.types.Context, obj: bpy.types.Object | None, joint: str, mode: str,
                    density: float, frame_count: int, start_frame: float,
                    to_target: np.ndarray, pelvis_height_m: float) -> dict[str, Any]:
    """One `controls` entry of the generate request, in the target's space (to_target: world -> target 4x4)."""
    if obj is None:
        raise curves.CurveError(f"The {joint} control has no source object; pick a curve, Grease Pencil or empty.")
    scene = context.scene
    unit_scale = scene.unit_settings.scale_length
    scene_fps = scene.render.fps / scene.render.fps_base
    try:
        if mode == PATH:
            if not is_curve_like(obj):
                raise curves.CurveError(f"'{obj.name}' is not a curve or Grease Pencil; use it as waypoints "
                                        "(keyframes) or pick a curve for a path.")
            depsgraph = context.evaluated_depsgraph_get()
            world = _curve_path(obj, depsgraph) if obj.type == "CURVE" else _grease_pencil_stroke(obj)
            return request_builder.path_control(joint, curves.transform_points(world, to_target), frame_count,
                                                   density, unit_scale, pelvis_height_m)
        if obj.type == "CURVE":
            knots = curves.transform_points(_curve_knots(obj), to_target)
            frames = request_builder.knot_frames(knots, frame_count)
        else:
            scene_frames, world = _keyed_positions(obj, scene)
            knots = curves.transform_points(world, to_target)
            frames = curves.scene_to_model_frames(scene_frames, start_frame, scene_fps, frame_count)
        return request_builder.waypoint_control(joint, knots, frames, unit_scale, pelvis_height_m)
    except curves.CurveError as exc:
        raise curves.CurveError(f"{joint} control ('{obj.name}'): {exc}") from exc
