"""The MotionMillion tokenizer (backend.models.motion_tokenizer): shapes and the token path, and a tiny one
overfitting two real clips in the 272-dim representation (its training objective works end to end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.models.motion_tokenizer import MotionTokenizer, TokenizerConfig
from retarget_data import HUMANML3D_000000, HUMANML3D_012314, humanml3d_joints
from training.data.rep272_data import joints_to_272

TINY = TokenizerConfig(width=64, depth=2, levels=(8, 5, 5, 5))


def test_shapes_tokens_and_their_decoding():
    torch.manual_seed(0)
    model = MotionTokenizer(TINY).eval()
    features = torch.randn(3, 48, 272)
    with torch.no_grad():
        reconstruction, tokens = model(features)
        codes, same_tokens = model.encode(features)
        assert reconstruction.shape == (3, 48, 272) and tokens.shape == (3, 12)  # 4 frames per token
        assert torch.equal(tokens, same_tokens) and tokens.max() < model.quantizer.codebook_size == 1000
        torch.testing.assert_close(model.decode(tokens), model.decode_codes(codes))  # tokens carry everything
    with pytest.raises(ValueError, match="T a multiple of 4"):
        model(torch.randn(1, 50, 272))


def test_a_tiny_tokenizer_overfits_two_real_clips(data_dir):
    clips = [joints_to_272(humanml3d_joints(data_dir, rel))[:64] for rel in (HUMANML3D_012314, HUMANML3D_000000)]
    x = torch.tensor(np.stack(clips), dtype=torch.float32)
    x = (x - x.mean(dim=(0, 1))) / x.std(dim=(0, 1)).clamp(min=0.05)
    torch.manual_seed(0)
    model = MotionTokenizer(TINY)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(200):
        reconstruction, _ = model(x)
        loss = torch.nn.functional.smooth_l1_loss(reconstruction, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 0.2 and losses[-1] < 0.01, (losses[0], losses[-1])  # measured 0.27 -> 0.004


def test_tokenizer_stage_trains_on_prepared_272_data_resumes_and_exports(tmp_path, tmp_path_factory):
    """`motionlcm-train tokenizer --preset tiny` on a dataset prepared with --format both: the loss falls, a
    resumed run ends where the uninterrupted one does, and the exported checkpoint loads and tokenizes."""
    from training.cli import train_main
    from training_helpers import labelled_272_dataset
    from backend.ar_checkpoint import load_tokenizer
    from training.stages.tokenizer import main

    data = labelled_272_dataset(tmp_path_factory)
    assert train_main(["tokenizer", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny"]) == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "tokenizer" / "history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 150 and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    # Interrupted at step 70 and resumed: the same final weights as the uninterrupted run.
    main(data, tmp_path / "resumed", preset="tiny", stop_after=70)
    main(data, tmp_path / "resumed", preset="tiny", resume=True)
    done, _, _ = load_tokenizer(tmp_path / "run" / "tokenizer" / "checkpoint")
    again, mean, std = load_tokenizer(tmp_path / "resumed" / "tokenizer" / "checkpoint")
    for (name, a), (_, b) in zip(done.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    clip = (torch.from_numpy(np.load(data / "vector_272" / "walk0.npy")[:32]) - mean) / std
    with torch.no_grad():
        reconstruction, tokens = again(clip[None])
    assert tokens.shape == (1, 8) and reconstruction.shape == (1, 32, 272)
    # motionlcm-eval tokenizer: reconstruction MPJPE, rotation error, codebook usage on the clips.
    from training.evaluation.tokenizer_eval import evaluate_tokenizer

    report = evaluate_tokenizer(tmp_path / "run" / "tokenizer" / "checkpoint", data, "train")
    assert report["clips"] >= 6 and 0 < report["mpjpe_m"] < 1.0
    assert 0 < report["rotation_error_deg"]["mean"] < 90 and len(report["rotation_error_deg"]["per_joint"]) == 22
    assert report["codebook"]["size"] == 1000 and 0 < report["codebook"]["used_fraction"] <= 1
    assert 1 <= report["codebook"]["perplexity"] <= 1000
