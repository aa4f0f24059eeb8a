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


def labelled_272_dataset(factory: pytest.TempPathFactory) -> Path:
    """Eight labelled synthetic clips (walks, left and right waves) through `motionlcm-data prepare --format
    both`: a dataset in both representations with captions, for the MotionMillion stages."""
    if "labelled_272" not in _cache:
        import numpy as np

        from training.cli import data_main
        from training.data.synthetic import walking_clip, waving_clip

        root = factory.mktemp("labelled272")
        source = root / "source"
        source.mkdir()
        for i in range(4):
            np.save(source / f"walk{i}.npy", walking_clip(80, 1.0 + 0.2 * i, 0.3 * i, 1.0).astype(np.float32))
            np.save(source / f"wave{i}.npy", waving_clip(80, "left" if i % 2 else "right", 1.5).astype(np.float32))
        (source / "labels.csv").write_text("clip,content,style\n" + "".join(
            f"walk{i},walk,normal\nwave{i},wave-{'left' if i % 2 else 'right'}-hand,normal\n" for i in range(4)))
        data = root / "data"
        assert data_main(["prepare", "--source", str(source), "--mapping", "smpl", "--captions",
                          str(source / "labels.csv"), "--out", str(data), "--format", "both", "--val", "0",
                          "--test", "0"]) == 0
        _cache["labelled_272"] = data
    return _cache["labelled_272"]
