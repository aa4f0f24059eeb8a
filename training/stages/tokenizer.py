"""The MotionMillion tokenizer stage: a convolutional encoder/decoder around FSQ on 272-dim windows.

Loss (the public code's: reconstruction + `loss_vel` x the same on velocities; FSQ needs no commitment loss):
smooth-L1 on the normalised features + 0.1 x smooth-L1 on their frame-to-frame differences. The result is
`OUT/tokenizer/checkpoint` (model.safetensors with the feature statistics, config.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.ar_checkpoint import save_tokenizer
from backend.models.motion_tokenizer import MotionTokenizer, TokenizerConfig

from ..common import Objective, load_stage_config, output_path, stage_dir, train_settings
from ..data.windows272 import Windows272
from ..engine import TrainResult, train
from ..runtime import barrier, setup

class TokenizerObjective(Objective):
    def __init__(self, model: MotionTokenizer, weights: dict) -> None:
        super().__init__()
        self.tokenizer = model
        self.weights = {k: float(v) for k, v in weights.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["motion"]
        rec, _ = self.tokenizer(x)
        rec = rec.float()
        terms = {"rec": self.weights["rec"] * F.smooth_l1_loss(rec, x),
                 "vel": self.weights["vel"] * F.smooth_l1_loss(rec[:, 1:] - rec[:, :-1], x[:, 1:] - x[:, :-1])}
        terms["loss"] = sum(terms.values())
        return terms


def tokenizer_config(cfg: dict) -> TokenizerConfig:
    model = dict(cfg["model"])
    model["levels"] = tuple(int(level) for level in model["levels"])
    return TokenizerConfig(**model)


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg = load_stage_config("tokenizer", preset, overrides, config)
    ctx = setup(int(cfg["train"]["seed"]))
    dataset = Windows272(data, "train", window=int(cfg["data"]["window"]), seed=int(cfg["train"]["seed"]))
    settings = train_settings(cfg, len(dataset), ctx.world_size)
    model = MotionTokenizer(tokenizer_config(cfg))
    objective = TokenizerObjective(model, cfg["loss"])
    result = train(objective, dataset, settings, stage_dir(out, "tokenizer"), ctx, resume=resume,
                   stop_after=stop_after)
    if ctx.is_main and result.steps == settings.steps:
        save_tokenizer(output_path(out, "tokenizer"), model, dataset.mean, dataset.std,
                       {"trainer": "motionlcm-train", "stage": "tokenizer", "preset": preset, "steps": result.steps,
                        "data": str(dataset.root), "config": json.loads(json.dumps(cfg, default=str))})
    barrier(ctx)
    return result
