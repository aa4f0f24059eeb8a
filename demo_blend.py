"""The demo's .blend: `python demo_blend.py DEMO_DIR` turns the `demo_scene.json` that `motionlcm demo` wrote
(the backend's skeleton and generate replies, in the protocol's own form) into DEMO_DIR/demo.blend with Blender's
Python module (bpy), through the add-on's own character and bake code, so the file is exactly what an animator
gets from the Generate button. It sits beside install.py, which runs it: the one place where the add-on and the
backend's output meet outside the protocol (the backend never imports the add-on).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from motionlcm_blender import bake, character, curves, wire

SCENE_FILE = "demo_scene.json"


def _control_curve(name: str, points_humanml: np.ndarray) -> bpy.types.Object:
    """A poly curve showing the pelvis control path on the floor (Blender axes)."""
    points = curves.humanml_to_blender(points_humanml)
    data = bpy.data.curves.new(name, "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new("POLY")
    spline.points.add(len(points) - 1)
    spline.points.foreach_set("co", np.c_[points, np.ones(len(points))].astype(np.float32).ravel())
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def write_blend(path: Path, skeleton: dict[str, Any], result: dict[str, Any], prompt: str,
                control_path: np.ndarray) -> Path:
    """A fresh scene at the result's fps with the SMPL character, the baked Action, the control curve,
    a camera and a light; saved to `path`."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    fps = float(result["fps"])
    scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps
    variation = result["variations"][0]
    frames = len(variation["local_quats"])
    scene.frame_start, scene.frame_end = 1, frames
    obj = character.create_character(bpy.context, skeleton)
    props = {"prompt": prompt, "seed": int(variation["seed"]),
             **{k: v for k, v in result.get("settings", {}).items() if isinstance(v, (int, float, str, bool))}}
    bake.bake_variation(obj, list(result["joint_names"]), variation, fps=fps, start_frame=1, scene_fps=fps,
                        name=bake.action_name(prompt, int(variation["seed"])), props=props)
    _control_curve("pelvis control", control_path)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (6.0, -5.0, 3.2), (np.radians(68), 0.0, np.radians(45))
    scene.camera = camera
    light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    scene.collection.objects.link(light)
    light.rotation_euler = (np.radians(40), 0.0, np.radians(30))
    scene.world = bpy.data.worlds.new("World")
    scene.world.color = (0.6, 0.62, 0.65)  # a light backdrop instead of black, for the first look
    path = Path(path).resolve()
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python demo_blend.py DEMO_DIR (the folder `motionlcm demo` wrote)", file=sys.stderr)
        return 2
    folder = Path(args[0])
    scene = wire.decode_arrays(json.loads((folder / SCENE_FILE).read_text(encoding="utf-8")))
    path = write_blend(folder / "demo.blend", scene["skeleton"], scene["result"], scene["prompt"],
                       np.asarray(scene["control_path"], dtype=np.float64))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
