"""Captioned token sequences for the MotionMillion generator: each clip of a `prepare --format both` dataset in
the 272-dim representation, turned into tokens by a frozen tokenizer once, when the stage starts.

Every clip is tokenised from each of the first `frames_per_token` frames (4 token sequences that see the motion at
different phases; the public code's tokenised data is one phase). An item picks one of them and one of the
clip's captions; with probability `crop` it starts at a random token instead of the clip's start, so the generator
also learns to continue from the middle of a motion, which is what a context window that slides over a long
motion hands it (backend.models.ar_transformer). Choices come from (seed, epoch, index), so a resumed run sees
the same items. An item is in the trainer's batch format (training.data.dataset.collate): `codes` (L,),
`length`, `text`, `name`, empty `tokens`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.models.motion_tokenizer import MotionTokenizer
from backend.motion.skeleton import FPS

from .rep272_data import split_272
from .text_format import read_caption_file

MIN_TOKENS = 4  # a shorter clip (or caption window) teaches little but the end token


def tokenize_clip(tokenizer: MotionTokenizer, features: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
                  offset: int = 0) -> list[int]:
    """(T, 272) raw features from frame `offset`, cut to a multiple of the tokenizer's step -> tokens."""
    step = tokenizer.config.frames_per_token
    usable = (len(features) - offset) // step * step
    if usable <= 0:
        return []
    with torch.no_grad():
        x = (torch.as_tensor(features[offset:offset + usable], dtype=torch.float32) - mean) / std
        return tokenizer.encode(x[None])[1][0].tolist()


class TokenClips(Dataset):
    def __init__(self, root: str | Path, split: str, tokenizer: MotionTokenizer, mean: torch.Tensor,
                 std: torch.Tensor, *, crop: float = 0.0, seed: int = 0) -> None:
        self.root = Path(root)
        names = split_272(self.root, split)
        step = tokenizer.config.frames_per_token
        # (name, [token sequence per phase], [captions])
        self.items: list[tuple[str, list[list[int]], list[str]]] = []
        for name in names:
            vector, text = self.root / "vector_272" / f"{name}.npy", self.root / "texts" / f"{name}.txt"
            if not vector.is_file() or not text.is_file():
                continue
            features = np.load(vector).astype(np.float32)
            groups: dict[tuple[float, float], list[str]] = {}
            for entry in read_caption_file(text):
                groups.setdefault((entry.start, entry.end), []).append(entry.caption)
            for (start, end), captions in groups.items():
                whole = start == 0.0 and end == 0.0
                window = features if whole else features[int(start * FPS):int(end * FPS)]
                phases = [tokenize_clip(tokenizer, window, mean, std, offset) for offset in range(step)]
                phases = [p for p in phases if len(p) >= MIN_TOKENS]
                if phases:
                    self.items.append((name if whole else f"{name}@{start}-{end}", phases, captions))
        if not self.items:
            raise ValueError(f"{self.root}: no clip of split {split!r} has {MIN_TOKENS * step} frames")
        self.crop, self.seed, self.epoch = crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def captions(self) -> list[str]:
        return sorted({c for _, _, captions in self.items for c in captions})

    def longest(self) -> int:
        return max(len(p) for _, phases, _ in self.items for p in phases)

    def __getitem__(self, index: int) -> dict:
        name, phases, captions = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        codes = phases[int(rng.integers(len(phases)))]
        if rng.random() < self.crop and len(codes) > MIN_TOKENS:
            codes = codes[int(rng.integers(0, len(codes) - MIN_TOKENS + 1)):]
        return {"codes": torch.tensor(codes, dtype=torch.long), "length": len(codes),
                "text": captions[int(rng.integers(len(captions)))], "name": name, "tokens": []}
