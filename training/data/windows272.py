"""Fixed-length windows of a prepared dataset in the 272-dim representation (`prepare --format both`),
normalised with its Mean_272 / Std_272: what the MotionMillion tokenizer trains on.

An item is a dict in the trainer's batch format (training.data.dataset.collate): `motion` (window, 272), `length`,
`name`, and empty `text` / `tokens`. Each epoch crops each clip at a new place; the crop depends only on
(seed, epoch, index), so a resumed run sees the same windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .rep272_data import split_272


class Windows272(Dataset):
    def __init__(self, root: str | Path, split: str, window: int = 64, seed: int = 0) -> None:
        self.root = Path(root)
        names = split_272(self.root, split)
        self.mean = np.load(self.root / "Mean_272.npy").astype(np.float32)
        self.std = np.load(self.root / "Std_272.npy").astype(np.float32)
        clips = {n: np.load(self.root / "vector_272" / f"{n}.npy").astype(np.float32) for n in names}
        self.names = [n for n in names if len(clips[n]) >= window]
        if not self.names:
            raise ValueError(f"no clip of split {split!r} in {self.root} has {window} frames")
        self.clips = [(clips[n] - self.mean) / self.std for n in self.names]
        self.window, self.seed, self.epoch = window, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        start = int(np.random.default_rng((self.seed, self.epoch, index)).integers(0, len(clip) - self.window + 1))
        return {"motion": torch.from_numpy(clip[start:start + self.window].copy()), "length": self.window,
                "name": self.names[index], "text": "", "tokens": []}
