"""Our networks + sampler reproduce the official MotionLCM-V2 code (shared/fixtures/motionlcm_official).

The fixture checkpoint is loaded through our official-checkpoint loader and `backend.commands.replay`; every array
of outputs_steps{1,4}.npz must match within atol 1e-4 (the tolerance the official fixtures' notes suggest; the float32 noise
floor is ~1e-5), given the fixture's w-embedding (test_schedulers compares ours with it). Motion arrays are
compared over each sample's valid frames only.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from backend.generation import sampler
from backend.checkpoints import load_official_checkpoint
from backend.commands import replay as replay_module
from backend.commands.replay import replay
from backend.models import cpu_inference

CKPT = "motionlcm_control_s_random_fp16.ckpt"
ATOL = 1e-4
MOTION_ARRAYS = ("feats_norm", "feats_denorm", "joints")


@pytest.fixture(scope="module")
def inputs(fixtures_dir):
    with np.load(fixtures_dir / "inputs.npz") as data:
        return {k: data[k] for k in data.files}


def _compare(result: dict, expected: dict, lengths: np.ndarray) -> dict[str, float]:
    errors = {}
    for name, want in expected.items():
        assert name in result, f"replay lacks {name}"
        got = result[name]
        assert got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}"
        full = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
        if name in MOTION_ARRAYS:
            errors[name] = max(float(np.abs(got[i, :n] - want[i, :n]).max()) for i, n in enumerate(lengths))
            # Padded frames are deterministic too (features 0 / Mean): they match as well.
            assert full <= ATOL, f"{name} (all frames, padding included) differs by {full:.3e}"
        else:
            errors[name] = full
    return errors


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("optimised", [False, True], ids=["plain", "cpu-optimised"])
def test_replay_reproduces_official_outputs(fixtures_dir, inputs, steps, optimised, monkeypatch):
    """Both the plain model and the pipeline's CPU path (backend.models.cpu_inference: packed weights, fused
    GELU, threads only where they pay) stay within the official tolerance."""
    with np.load(fixtures_dir / f"outputs_steps{steps}.npz") as data:
        expected = {k: data[k] for k in data.files}
    if optimised:
        if not cpu_inference.available(torch.device("cpu")):
            pytest.skip("this torch build has no oneDNN")
        load = replay_module.load_any

        def load_packed(*args, **kwargs):
            loaded = load(*args, **kwargs)
            cpu_inference.pack_linear_weights(loaded.model)
            return loaded

        monkeypatch.setattr(replay_module, "load_any", load_packed)
    # The w-embedding's last bits depend on the CPU's exp kernel (test_schedulers checks it against the
    # fixture within two ulps of its arguments); the networks and sampler are compared on the fixture's own.
    official_w = torch.from_numpy(expected["w_embedding"])
    monkeypatch.setattr(sampler, "lcm_guidance_embedding", lambda guidance, batch, dim, device: official_w)
    noise = expected if steps > 1 else None
    with cpu_inference.narrow_threads() if optimised else contextlib.nullcontext():
        result = replay(fixtures_dir / CKPT, inputs, steps=steps, injected_noise=noise)
    errors = _compare(result, expected, inputs["lengths"])
    print(f"\nmax abs error, {steps} step(s):")
    for name, err in errors.items():
        print(f"  {name:36s} {err:.3e}")
    worst = max(errors, key=errors.get)
    assert errors[worst] <= ATOL, f"{worst} differs by {errors[worst]:.3e} (> {ATOL})"
    # Timesteps, guidance and injected noise are exact, not approximately right.
    for name in ("timesteps", "guidance_scale", "z_T"):
        assert errors[name] == 0.0, name


def test_official_checkpoint_structure(fixtures_dir, inputs):
    norm = {k: inputs[k] for k in ("mean", "std", "raw_mean", "raw_std")}
    loaded = load_official_checkpoint(fixtures_dir / CKPT, norm=norm)
    cfg = loaded.config
    assert cfg.latent_shape == (16, 32) and cfg.controlnet and cfg.denoiser.time_cond_proj_dim == 256
    assert (cfg.text_dim, loaded.text_encoder_id) == (768, "sentence-t5-large")
    counts = {name: sum(p.numel() for p in getattr(loaded.model, name).parameters())
              for name in ("vae", "denoiser", "controlnet", "traj_encoder")}
    assert counts == {"vae": 18_056_487, "denoiser": 8_434_464, "controlnet": 9_108_544, "traj_encoder": 7_791_136}
    assert not loaded.model.training
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    # The float16 checkpoint values are reproduced exactly (lossless upcast).
    raw = torch.load(fixtures_dir / CKPT, map_location="cpu", weights_only=True)["state_dict"]
    ours = loaded.model.state_dict()
    assert set(ours) == {k for k in raw if not k.startswith("t2m_")}
    assert all(torch.equal(ours[k], raw[k].float()) for k in ours)


def test_control_path_matters(fixtures_dir, inputs):
    """Guards against a silently skipped ControlNet: zeroing the hint must change z_0 (FIXTURES: up to 0.31)."""
    with np.load(fixtures_dir / "outputs_steps1.npz") as data:
        z0_ref = data["z_0"]
    no_hint = dict(inputs, hint=np.zeros_like(inputs["hint"]))
    z0 = replay(fixtures_dir / CKPT, no_hint, steps=1)["z_0"]
    assert np.abs(z0 - z0_ref).max() > 0.05
