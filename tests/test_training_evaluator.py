"""The Guo et al. evaluator plumbing, with randomly initialised weights written in the official file layout.

This checks loading (weights_only torch files, global-free vocabulary pickles), tokens -> embeddings, and the
report; it cannot check agreement with the official evaluator's numbers (no released weights here)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from training.evaluation.evaluate import EvalSettings, evaluate
from training.evaluation.t2m_evaluator import (EVALUATOR_FILES, GLOVE_FILES, EvaluatorUnavailable, MotionEncoder,
                                               MovementEncoder, TextEncoder, load_t2m_evaluator)
from training_helpers import synthetic_root, tiny_run

VOCAB = ["unk", "sos", "eos", "a", "person", "walk", "wave", "left", "right", "hand", "forward"]


def _write_evaluator(root, glove, words=VOCAB):
    torch.manual_seed(0)
    model_file = root / EVALUATOR_FILES[0]
    model_file.parent.mkdir(parents=True)
    torch.save({"text_encoder": TextEncoder().state_dict(), "movement_encoder": MovementEncoder().state_dict(),
                "motion_encoder": MotionEncoder().state_dict(), "epoch": 1}, model_file)
    meta = root / EVALUATOR_FILES[1]
    meta.parent.mkdir(parents=True)
    np.save(meta, np.zeros(263, np.float32))
    np.save(root / EVALUATOR_FILES[2], np.ones(263, np.float32))
    glove.mkdir()
    np.save(glove / GLOVE_FILES[0], np.random.default_rng(0).normal(size=(len(words), 300)).astype(np.float32))
    (glove / GLOVE_FILES[1]).write_bytes(pickle.dumps(list(words)))
    (glove / GLOVE_FILES[2]).write_bytes(pickle.dumps({w: i for i, w in enumerate(words)}))


def test_embeddings_from_official_layout_files(tmp_path):
    _write_evaluator(tmp_path / "deps", tmp_path / "glove")
    evaluator = load_t2m_evaluator(tmp_path / "deps", tmp_path / "glove")
    texts = evaluator.text_embeddings(["a/DET person/NOUN walk/VERB forward/ADV", "zzz/OTHER"])
    assert texts.shape == (2, 512) and np.isfinite(texts).all()
    feats = torch.randn(3, 64, 263)
    motions = evaluator.motion_embeddings(feats, torch.tensor([64, 48, 40]))
    assert motions.shape == (3, 512) and np.isfinite(motions).all()
    # Batches need no sorting by length: each clip's embedding is the one it gets alone.
    alone = evaluator.motion_embeddings(feats[2:], torch.tensor([40]))
    np.testing.assert_allclose(motions[2], alone[0], atol=1e-4)
    # Unknown words fall back to "unk" with the OTHER tag; VIP words take their class.
    word, one_hot = evaluator._token("zzz/VERB")
    assert one_hot.argmax() == 14 and np.array_equal(word, evaluator.word_vectors["unk"])
    assert evaluator._token("walk/VERB")[1].argmax() == 12  # Act_VIP


def test_vocabulary_pickles_with_code_are_refused(tmp_path):
    _write_evaluator(tmp_path / "deps", tmp_path / "glove")
    (tmp_path / "glove" / GLOVE_FILES[1]).write_bytes(pickle.dumps(np.float32(1.0)))  # needs a global
    with pytest.raises(EvaluatorUnavailable, match="refusing to load"):
        load_t2m_evaluator(tmp_path / "deps", tmp_path / "glove")
    with pytest.raises(EvaluatorUnavailable, match="missing evaluator files"):
        load_t2m_evaluator(tmp_path / "nowhere", tmp_path / "glove")


def test_report_with_an_evaluator(tmp_path, tmp_path_factory):
    _write_evaluator(tmp_path / "deps", tmp_path / "glove")
    settings = EvalSettings(split="all", max_clips=4, batch_size=4, joints=("pelvis",), densities=(5,), mm_repeats=3)
    report = evaluate(tiny_run(tmp_path_factory) / "controlnet" / "checkpoint", synthetic_root(tmp_path_factory),
                      settings, evaluator_dir=str(tmp_path / "deps"), glove_dir=str(tmp_path / "glove"))
    assert "not computed" not in report
    for column in ("FID", "Diversity (3 pairs)", "real Diversity (3 pairs)", "MultiModality"):
        assert f"| {column} " in report or f" {column} |" in report
