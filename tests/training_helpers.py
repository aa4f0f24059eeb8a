"""Shared, built-once artefacts of the trainer tests: the synthetic dataset and one tiny `all` run.

Built lazily under pytest's temporary directory and reused by every training test module in the session,
so the expensive parts (dataset preparation, four tiny training stages) run once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

_cache: dict[str, Path] = {}


def synthetic_root(factory: pytest.TempPathFactory) -> Path:
    if "synthetic" not in _cache:
        from training.data.synthetic import build_synthetic_dataset

        root = factory.mktemp("synthetic") / "humanml3d"
        build_synthetic_dataset(root, num_clips=24, seed=0)
        _cache["synthetic"] = root
    return _cache["synthetic"]


def tiny_run(factory: pytest.TempPathFactory) -> Path:
    """`motionlcm-train all --preset tiny` on the synthetic dataset (50 steps per stage)."""
    if "run" not in _cache:
        from training.cli import train_main

        run = factory.mktemp("runs") / "tiny"
        assert train_main(["all", "--data", str(synthetic_root(factory)), "--out", str(run), "--preset", "tiny"]) == 0
        _cache["run"] = run
    return _cache["run"]


def losses(run: Path, stage: str) -> list[float]:
    lines = (run / stage / "history.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]
