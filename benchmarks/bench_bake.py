"""Bake speed: our bulk F-Curve writes versus a per-frame keyframe_insert loop, in one headless Blender run.

    python benchmarks/bench_bake.py [--frames 196] [--repeats 7]

Prints one JSON object. Both methods bake the same synthetic result (196 frames x 22 bones: 22 quaternion
rotations + root location) onto a fresh SMPL character, including the rotation conversion; one warm-up
run each is excluded and the median of the repeats is reported. Goal: ours >= 20x faster and < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from addon_synthetic import generate_result, skeleton_reply  # noqa: E402
from motionlcm_blender import bake, character, pose_math  # noqa: E402


def _bulk(obj, result) -> None:
    bake.bake_variation(obj, result["joint_names"], result["variations"][0], result["fps"], 1, result["fps"],
                        "bench bulk")


def _keyframe_insert(obj, result) -> None:
    names, variation = result["joint_names"], result["variations"][0]
    bones = obj.data.bones
    rest = np.array([np.array(bones[n].matrix_local)[:3, :3] for n in names])
    quats = pose_math.bone_rotation_quats(variation["local_quats"], rest)
    location = pose_math.root_bone_locations(variation["root_translation"], np.array(bones[names[0]].head_local),
                                             rest[0])
    obj.animation_data_create().action = bpy.data.actions.new("bench keyframe_insert")
    pose = obj.pose.bones
    for frame in range(len(quats)):
        pose[names[0]].location = location[frame]
        pose[names[0]].keyframe_insert("location", frame=frame + 1)
        for j, name in enumerate(names):
            pose[name].rotation_quaternion = quats[frame, j]
            pose[name].keyframe_insert("rotation_quaternion", frame=frame + 1)


def _time(method, obj, result, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats + 1):  # the first run is the warm-up
        obj.animation_data_clear()
        for action in list(bpy.data.actions):
            bpy.data.actions.remove(action)
        start = time.perf_counter()
        method(obj, result)
        timings.append((time.perf_counter() - start) * 1000.0)
    return timings[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = character.create_character(bpy.context, skeleton_reply())
    result = generate_result(frames=args.frames, fps=20.0)
    ours = _time(_bulk, obj, result, args.repeats)
    keyframe_insert = _time(_keyframe_insert, obj, result, max(3, args.repeats // 2))
    ours_ms, insert_ms = statistics.median(ours), statistics.median(keyframe_insert)
    print(json.dumps({
        "benchmark": "bake", "blender_version": bpy.app.version_string, "frames": args.frames,
        "bones": len(result["joint_names"]), "fcurves": len(result["joint_names"]) * 4 + 3,
        "repeats": {"ours": len(ours), "keyframe_insert": len(keyframe_insert)}, "warmup_excluded": True,
        "ours_ms_median": round(ours_ms, 2), "keyframe_insert_ms_median": round(insert_ms, 2),
        "speedup": round(insert_ms / ours_ms, 1),
        "goal_met": {"at_least_20x": insert_ms / ours_ms >= 20, "under_50ms": ours_ms < 50},
        "ours_ms_all": [round(t, 2) for t in ours], "keyframe_insert_ms_all": [round(t, 2) for t in keyframe_insert],
    }, indent=2))


if __name__ == "__main__":
    main()
