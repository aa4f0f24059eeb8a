"""A BVH we write is read by Blender's own importer (headless bpy, in a subprocess) with the same joint positions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backend.motion.bvh import read_bvh
from backend.motion import Motion
from backend.retarget import write_bvh
from backend.motion.skeleton import JOINT_NAMES
from retarget_data import HUMANML3D_000000, humanml3d_joints

BLENDER_SCRIPT = textwrap.dedent("""
    import sys
    import bpy
    import numpy as np

    path, out, scale, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=path, axis_forward="-Z", axis_up="Y", global_scale=scale,
                            frame_start=1, use_fps_scale=False, rotate_mode="NATIVE",
                            update_scene_fps=True, update_scene_duration=True)
    arm = next(o for o in bpy.context.scene.objects if o.type == "ARMATURE")
    names = [b.name for b in arm.pose.bones]
    scene = bpy.context.scene
    frames = []
    for f in range(1, count + 1):  # frame_start=1
        scene.frame_set(f)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        ev = arm.evaluated_get(depsgraph)
        frames.append([list(ev.matrix_world @ b.head) for b in ev.pose.bones])
    np.savez(out, heads=np.array(frames), names=np.array(names), fps=scene.render.fps / scene.render.fps_base)
""")


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_blender_imports_our_bvh(data_dir, tmp_path, scale):
    pytest.importorskip("bpy")  # checked here; Blender itself runs in a subprocess
    joints = humanml3d_joints(data_dir, HUMANML3D_000000)[:24]
    path = tmp_path / "clip.bvh"
    result = write_bvh(Motion(joints, fps=20.0), path, fps=30.0, scale=scale)
    expected = result.fk()  # metres, HumanML3D axes
    script = tmp_path / "import_bvh.py"
    script.write_text(BLENDER_SCRIPT)
    out = tmp_path / "blender.npz"
    # global_scale undoes the file's units, so Blender's positions are in metres in both cases.
    run = subprocess.run([sys.executable, str(script), str(path), str(out), str(1.0 / scale),
                          str(result.num_frames)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    data = np.load(out)
    names = [str(n) for n in data["names"]]
    assert sorted(names) == sorted(JOINT_NAMES)  # end sites make no bones
    heads = data["heads"][:, [names.index(n) for n in JOINT_NAMES]]
    assert heads.shape == expected.shape and float(data["fps"]) == pytest.approx(30.0)
    # Blender (x, y, z) = HumanML3D (x, -z, y), the -90 degree turn about X of the import's axis conversion.
    ours = np.stack([expected[..., 0], -expected[..., 2], expected[..., 1]], axis=-1)
    err = np.linalg.norm(heads - ours, axis=-1)
    assert err.max() < 1e-3, f"max {err.max() * 1e3:.3f} mm"
    # Our own reader agrees too (in the file's units).
    clip = read_bvh(path)
    ours_read = clip.global_positions(1.0 / scale)[:, [clip.index(n) for n in JOINT_NAMES]]
    assert np.abs(ours_read - expected).max() < 1e-5 and clip.fps == pytest.approx(30.0)
