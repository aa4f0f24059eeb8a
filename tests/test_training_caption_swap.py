"""ControlNet stage: `control.caption_swap` trains a share of samples with another clip's caption."""

from __future__ import annotations

import numpy as np
import torch

from backend.models import ModelConfig, MotionLCM
from training.common import load_stage_config
from training.stages.controlnet import ControlNetObjective


class _RecordingText:
    """Stands in for the frozen text encoder: one fixed embedding per caption, and a log of what was asked."""

    def __init__(self, dim: int) -> None:
        self.dim, self.calls = dim, []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.stack([torch.full((1, self.dim), float(len(t))) for t in texts])


def _batch(size: int, frames: int = 16) -> dict:
    hint_mask = torch.zeros(size, frames, 22, 3)
    hint_mask[:, :, 0] = 1  # dense pelvis
    return {"motion": torch.randn(size, frames, 263), "mask": torch.ones(size, frames, dtype=torch.bool),
            "hint": torch.randn(size, frames, 22, 3), "hint_mask": hint_mask,
            "text": [f"caption number {i}" + "!" * i for i in range(size)]}


def _objective(swap: float) -> tuple[ControlNetObjective, _RecordingText]:
    text = _RecordingText(ModelConfig.tiny().text_dim)
    control = {**load_stage_config("controlnet", "tiny")["control"], "caption_swap": swap}
    zeros, ones = np.zeros(263), np.ones(263)
    objective = ControlNetObjective(MotionLCM(ModelConfig.tiny()), text, zeros, ones, np.zeros((22, 3)),
                                    np.ones((22, 3)), control)
    return objective, text


def test_without_swap_every_sample_keeps_its_caption():
    objective, text = _objective(0.0)
    batch = _batch(8)
    objective(batch)
    assert text.calls == [batch["text"]]


def test_swapped_samples_take_captions_from_the_same_batch_at_the_configured_rate():
    torch.manual_seed(0)
    objective, text = _objective(0.5)
    kept, total = 0, 0
    for _ in range(20):
        batch = _batch(16)
        objective(batch)
        used = text.calls[-1]
        assert len(used) == 16 and set(used) <= set(batch["text"])
        kept += sum(u == t for u, t in zip(used, batch["text"]))
        total += 16
    # A swapped sample keeps its own caption only when the permutation maps it to itself (1 in 16):
    # expected share kept = 0.5 + 0.5 / 16 = 0.53.
    assert 0.43 < kept / total < 0.63
