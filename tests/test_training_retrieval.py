"""The contrastive retrieval evaluator (`training/evaluation/retrieval.py`) on the synthetic walking/waving data:
it learns (loss drops, held-out retrieval beats chance), round-trips through its folder, and drives the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.dataset import HumanML3D, collate
from training.data.synthetic import build_synthetic_dataset
from training.evaluation import metrics
from training.evaluation.evaluate import EvalSettings, evaluate, load_evaluator, main
from training.evaluation.retrieval import (RetrievalEvaluator, is_retrieval_evaluator, load_retrieval_evaluator,
                                           save_retrieval_evaluator, train_retrieval_evaluator)
from training_helpers import synthetic_root, tiny_run

STEPS, BATCH = 80, 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_retrieval_evaluator(synthetic_root(tmp_path_factory), tmp_path_factory.mktemp("retrieval"),
                                     steps=STEPS, batch_size=BATCH, seed=0, hidden=64, embed_dim=64, threads=1)


def _pairs(root, split="all"):
    """Every clip of a split with one caption, as raw (un-normalised) features, as the report passes them."""
    dataset = HumanML3D(root, split, mean=np.zeros(263, np.float32), std=np.ones(263, np.float32))
    return collate([dataset[i] for i in range(len(dataset))])


def test_training_lowers_the_loss_and_retrieves_held_out_pairs(trained, tmp_path):
    first, last = np.mean(trained.losses[:5]), np.mean(trained.losses[-10:])
    assert first > np.log(BATCH) * 0.8  # starts near uniform over the batch
    assert last < 0.5 * first, (first, last)
    # Held out: new clips (another seed: other speeds, lengths, wave rates) of the same six kinds.
    build_synthetic_dataset(tmp_path / "held_out", num_clips=24, seed=1)
    batch = _pairs(tmp_path / "held_out")
    evaluator = trained.evaluator
    texts, motions = evaluator.text_embeddings(batch["text"]), evaluator.motion_embeddings(batch["motion"],
                                                                                          batch["length"])
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    group = len(texts)
    result = metrics.r_precision_and_matching(texts, motions, group=group)
    chance = 1 / group  # top-1 by a random ranking of the group; a kind-perfect ranking expects 1/4 (4 clips a kind)
    assert result["R_precision_top_1"] > 2 * chance, (result, chance)


def test_folder_round_trip_and_batch_independence(trained, tmp_path):
    loaded = load_retrieval_evaluator(trained.folder)
    assert isinstance(loaded, RetrievalEvaluator) and is_retrieval_evaluator(trained.folder)
    batch = _pairs(trained.evaluator.config.data, "train")
    for evaluator in (loaded, load_evaluator(str(trained.folder), None)):
        np.testing.assert_array_equal(evaluator.text_embeddings(batch["text"]),
                                      trained.evaluator.text_embeddings(batch["text"]))
        np.testing.assert_array_equal(evaluator.motion_embeddings(batch["motion"], batch["length"]),
                                      trained.evaluator.motion_embeddings(batch["motion"], batch["length"]))
    # Saving the loaded one again gives the same files' contents back.
    save_retrieval_evaluator(tmp_path / "again", loaded.model, loaded.config, loaded.mean.numpy(), loaded.std.numpy())
    again = load_retrieval_evaluator(tmp_path / "again")
    np.testing.assert_array_equal(again.motion_embeddings(batch["motion"], batch["length"]),
                                  loaded.motion_embeddings(batch["motion"], batch["length"]))
    # A clip's embedding does not depend on the padding its batch adds.
    shortest = int(torch.argmin(batch["length"]))
    n = int(batch["length"][shortest])
    alone = loaded.motion_embeddings(batch["motion"][shortest:shortest + 1, :n], batch["length"][shortest:shortest + 1])
    np.testing.assert_allclose(alone[0], loaded.motion_embeddings(batch["motion"], batch["length"])[shortest],
                               atol=1e-5)


def test_report_names_the_retrieval_evaluator(trained, tmp_path, tmp_path_factory):
    # R-precision works on groups of 32 pairs, more than the shared 24-clip dataset has.
    build_synthetic_dataset(tmp_path / "forty", num_clips=40, seed=2)
    settings = EvalSettings(split="all", max_clips=32, batch_size=16, joints=("pelvis",), densities=(5,),
                            mm_repeats=3)
    report = evaluate(tiny_run(tmp_path_factory) / "controlnet" / "checkpoint", tmp_path / "forty", settings,
                      evaluator_dir=str(trained.folder))
    assert (f"MotionLCM retrieval evaluator trained on {trained.evaluator.config.data} ({STEPS} steps), "
            "not comparable to published numbers") in report
    assert "Guo et al." not in report and "not computed" not in report
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| skating ratio"))
    row = dict(zip([c.strip() for c in lines[header].strip("|").split("|")],
                   [c.strip() for c in lines[header + 2].strip("|").split("|")]))
    for column in ("FID", "R_precision_top_1", "R_precision_top_3", "Matching_score", "MultiModality"):
        assert np.isfinite(float(row[column])), (column, row)


def test_cli_subcommand_trains_an_evaluator(tmp_path, tmp_path_factory):
    out = tmp_path / "evaluator"
    assert main(["train-evaluator", str(out), "--data", str(synthetic_root(tmp_path_factory)), "--steps", "2",
                 "--batch-size", "4", "--threads", "1"]) == 0
    assert is_retrieval_evaluator(out) and (out / "model.safetensors").is_file()
    assert load_retrieval_evaluator(out).config.steps == 2
