"""Control sources read from real Blender objects: curves, Grease Pencil, keyframed empties."""

from __future__ import annotations

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from mathutils import Matrix, Vector  # noqa: E402

from motionlcm_blender import curve_sources, curves  # noqa: E402

IDENTITY = np.eye(4)


@pytest.fixture()
def scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    return scene


def _control(obj, frames=120, mode=curve_sources.PATH, joint="left_foot", density=1.0, to_target=IDENTITY):
    return curve_sources.control_request(bpy.context, obj, joint, mode, density, frames, 1, to_target, 0.94)


def test_bezier_circle_is_sampled_on_the_circle_at_uniform_spacing(scene):
    bpy.ops.curve.primitive_bezier_circle_add(radius=2)
    control = _control(bpy.context.active_object)
    positions = np.array(control["positions"])
    assert control["frames"] == list(range(120)) and positions.shape == (120, 3)
    np.testing.assert_allclose(positions[:, 1], 0.0, atol=1e-9)  # Blender z = 0 -> HumanML3D y = 0
    assert np.abs(np.hypot(positions[:, 0], positions[:, 2]) - 2.0).max() < 1e-3
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert steps.max() / steps.min() - 1 < 0.01
    assert steps.sum() == pytest.approx(2 * math.pi * 2, rel=1e-3)


def _line_curve(name, points, spline_type="BEZIER"):
    data = bpy.data.curves.new(name, "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new(spline_type)
    if spline_type == "BEZIER":
        spline.bezier_points.add(len(points) - 1)
        for bp, co in zip(spline.bezier_points, points):
            bp.co = bp.handle_left = bp.handle_right = co
    else:
        spline.points.add(len(points) - 1)
        for p, co in zip(spline.points, points):
            p.co = (*co, 1.0)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


@pytest.mark.parametrize("spline_type", ["BEZIER", "POLY"])
def test_scaled_rotated_parented_curve_gives_world_points(scene, spline_type):
    parent = bpy.data.objects.new("parent", None)
    scene.collection.objects.link(parent)
    parent.location, parent.rotation_euler = (1.0, 2.0, 0.5), (0.0, 0.0, math.pi / 2)
    curve = _line_curve("path", [(0, 0, 0), (1, 0, 0)], spline_type)
    curve.parent = parent
    curve.scale, curve.rotation_euler = (2.0, 2.0, 2.0), (0.0, math.pi / 2, 0.0)
    bpy.context.view_layer.update()
    world = Matrix.Translation((1.0, 2.0, 0.5)) @ Matrix.Rotation(math.pi / 2, 4, "Z") \
        @ Matrix.Rotation(math.pi / 2, 4, "Y") @ Matrix.Scale(2.0, 4)
    expected_end = world @ Vector((1, 0, 0))  # = (1, 2, -1.5) in Blender
    positions = np.array(_control(curve, frames=40)["positions"])
    np.testing.assert_allclose(positions[0], curves.blender_to_humanml(np.array([[1.0, 2.0, 0.5]]))[0], atol=1e-5)
    np.testing.assert_allclose(positions[-1], curves.blender_to_humanml(np.array([expected_end]))[0], atol=1e-5)


def test_target_space_and_unit_scale_apply(scene):
    scene.unit_settings.scale_length = 0.01  # 1 unit = 1 cm
    curve = _line_curve("path", [(100, 0, 0), (100, -300, 0)])
    to_target = np.linalg.inv(np.array(Matrix.Translation((100, 0, 0))))
    positions = np.array(_control(curve, frames=40, to_target=to_target)["positions"])
    np.testing.assert_allclose(positions[[0, -1]], [[0, 0, 0], [0, 0, 3.0]], atol=1e-6)


@pytest.mark.parametrize("points, message", [([(1, 1, 0)], "single point"), ([(1, 1, 0), (1, 1, 0)], "zero length")])
def test_degenerate_curves_give_clear_errors(scene, points, message):
    curve = _line_curve("bad path", points)
    with pytest.raises(curves.CurveError, match=f"left_foot control \\('bad path'\\): .*{message}"):
        _control(curve)


def test_missing_source_and_unkeyed_empty_are_explained(scene):
    with pytest.raises(curves.CurveError, match="no source object"):
        _control(None)
    empty = bpy.data.objects.new("target", None)
    scene.collection.objects.link(empty)
    with pytest.raises(curves.CurveError, match="no keyframes"):
        _control(empty, mode=curve_sources.WAYPOINTS)
    with pytest.raises(curves.CurveError, match="not a curve"):
        _control(empty, mode=curve_sources.PATH)


def test_keyframed_empty_gives_waypoints_at_their_frames(scene):
    parent = bpy.data.objects.new("parent", None)
    empty = bpy.data.objects.new("hand target", None)
    for obj in (parent, empty):
        scene.collection.objects.link(obj)
    empty.parent, parent.location = parent, (0.0, 0.0, 1.0)
    for frame, location in ((1, (0, 0, 0)), (25, (0, -1, 0.2)), (49, (0.5, -2, 0.4))):
        empty.location = location
        empty.keyframe_insert("location", frame=frame)
    scene.frame_set(7)
    control = _control(empty, frames=60, mode=curve_sources.WAYPOINTS, joint="right_wrist")
    assert control["frames"] == [0, 20, 40] and scene.frame_current == 7
    np.testing.assert_allclose(control["positions"], [[0, 1, 0], [0, 1.2, 1], [0.5, 1.4, 2]], atol=1e-6)


def test_keyframe_after_the_clip_is_refused(scene):
    empty = bpy.data.objects.new("late", None)
    scene.collection.objects.link(empty)
    for frame in (1, 200):
        empty.keyframe_insert("location", frame=frame)
    with pytest.raises(curves.CurveError, match="frame\\(s\\) 200 lie outside the clip"):
        _control(empty, frames=60, mode=curve_sources.WAYPOINTS)


def test_curve_points_as_waypoints_are_timed_by_distance(scene):
    curve = _line_curve("steps", [(0, 0, 0), (0, -1, 0), (0, -3, 0)], "POLY")
    control = _control(curve, frames=61, mode=curve_sources.WAYPOINTS, joint="pelvis")
    assert control["frames"] == [0, 20, 60]
    np.testing.assert_allclose(np.array(control["positions"])[:, 1], 0.94)  # drawn on the floor: lifted


def _stroke_points(layer, frame, count):
    """A new stroke's points: Grease Pencil v3 (Blender 4.3+) or the legacy one (4.2)."""
    if hasattr(layer, "translation"):
        drawing = layer.frames.new(frame).drawing
        drawing.add_strokes([count])
        return [(point, "position") for point in drawing.strokes[0].points]
    stroke = layer.frames.new(frame).strokes.new()
    stroke.points.add(count)
    return [(point, "co") for point in stroke.points]


def test_grease_pencil_stroke_is_a_path(scene):
    pencil = bpy.data.grease_pencils.new("drawn")
    layer = pencil.layers.new("Lines")
    setattr(layer, "translation" if hasattr(layer, "translation") else "location", (0.0, 0.0, 0.5))
    for i, (point, attribute) in enumerate(_stroke_points(layer, scene.frame_current, 5)):
        setattr(point, attribute, (0.0, -0.5 * i, 1.0))
    obj = bpy.data.objects.new("drawn", pencil)
    scene.collection.objects.link(obj)
    obj.location = (1.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    positions = np.array(_control(obj, frames=40, joint="head")["positions"])
    np.testing.assert_allclose(positions[[0, -1]], [[1, 1.5, 0], [1, 1.5, 2]], atol=1e-6)
