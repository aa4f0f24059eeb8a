"""Consistency latent tuning (backend.generation.latent_tuning) on a small random checkpoint: it must pull the decoded
motion onto its controls, leave uncontrolled samples alone, and refuse requests it cannot serve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.generation.controls import JointControl
from backend.errors import InvalidRequest
from backend.generation.latent_tuning import noise_correlation
from backend.models.config import ModelConfig
from backend.generation.pipeline import MotionLCMPipeline

from test_pipeline import _save


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return MotionLCMPipeline.from_checkpoint(_save(tmp_path_factory.mktemp("ckpt") / "tiny", ModelConfig.tiny()))


def _pelvis_error(result, control: JointControl, sample: int = 0) -> float:
    got = result.joints[sample, control.frames, 0]
    return float(np.linalg.norm(got - control.positions, axis=-1).mean())


def test_noise_correlation_scores_white_noise_low_and_structure_high():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(64, 16, 32, generator=g)
    smooth = torch.cumsum(torch.randn(64, 16, 32, generator=g), dim=1) / 4.0
    assert float(noise_correlation(white).mean()) < 0.01
    assert float(noise_correlation(smooth).mean()) > 10 * float(noise_correlation(white).mean())


@pytest.mark.parametrize("steps", [1, 2])
def test_tuning_pulls_the_pelvis_onto_its_path(pipe, steps):
    frames = 40
    plain = pipe.generate(["a person walks"], [frames], steps=steps, seed=3)
    # Target: the untuned motion's own pelvis path bent sideways, up to 0.3 m at the end (every motion starts
    # at the origin of the ground plane, so the bend starts at 0).
    bend = np.linspace(0.0, 0.3, frames, dtype=np.float32)[:, None] * np.array([1.0, 0.0, 0.0], np.float32)
    control = JointControl.dense("pelvis", plain.joints[0, :frames, 0] + bend)
    before = pipe.generate(["a person walks"], [frames], controls=[[control]], steps=steps, seed=3, fit=False)
    after = pipe.generate(["a person walks"], [frames], controls=[[control]], steps=steps, seed=3, tuning=40,
                          fit=False)
    assert after.settings["tuning"] == 40 and after.settings["tuning_penalty"] == 100.0 and "tuning" in after.timings
    assert before.settings["tuning_penalty"] is None
    assert np.isfinite(after.joints).all()
    assert _pelvis_error(after, control) < 0.6 * _pelvis_error(before, control)


def test_tuning_leaves_uncontrolled_samples_unchanged(pipe):
    control = JointControl(joint="pelvis", frames=np.array([0, 20, 39]),
                           positions=np.array([[0, 0.9, 0], [0.5, 0.9, 0.5], [1.0, 0.9, 1.0]], np.float32))
    plain = pipe.generate(["a person walks", "a person waves"], [40, 40], controls=[[control], None], seed=1,
                          fit=False)
    tuned = pipe.generate(["a person walks", "a person waves"], [40, 40], controls=[[control], None], seed=1,
                          tuning=10, fit=False)
    np.testing.assert_array_equal(tuned.joints[1], plain.joints[1])
    assert not np.allclose(tuned.joints[0], plain.joints[0])


def test_tuning_refuses_what_it_cannot_do(pipe):
    with pytest.raises(InvalidRequest, match="needs joint controls"):
        pipe.generate(["a person walks"], [40], tuning=10)
    control = JointControl.dense("pelvis", np.zeros((40, 3), np.float32))
    with pytest.raises(InvalidRequest, match="iterations"):
        pipe.generate(["a person walks"], [40], controls=[[control]], tuning=-5)
    with pytest.raises(InvalidRequest, match="iterations"):
        pipe.generate(["a person walks"], [40], controls=[[control]], tuning=10**6)


def test_the_pipeline_tunes_with_its_checkpoints_penalty(pipe, monkeypatch):
    import dataclasses

    import backend.generation.latent_sampler as sampler_module

    seen = []
    real = sampler_module.tune_latents

    def spy(*args, settings, **kwargs):
        seen.append(settings)
        return real(*args, settings=settings, **kwargs)

    monkeypatch.setattr(sampler_module, "tune_latents", spy)
    control = JointControl.dense("pelvis", np.zeros((40, 3), np.float32) + [0, 0.9, 0])
    sampling = dataclasses.replace(pipe.checkpoint.sampling, tuning_penalty=7.0)
    own = MotionLCMPipeline(dataclasses.replace(pipe.checkpoint, sampling=sampling), pipe.text_encoder, pipe.device)
    for p in (pipe, own):
        p.generate(["a person walks"], [40], controls=[[control]], seed=0, tuning=2)
    assert [(s.iterations, s.correlation_penalty) for s in seen] == [(2, 100.0), (2, 7.0)]
