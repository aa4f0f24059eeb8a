"""The MotionMillion tokenizer stage: a convolutional encoder/decoder around FSQ on 272-dim windows.

Loss (the public code's: reconstruction + `loss_vel` x the same on velocities; FSQ needs no commitment loss):
smooth-L1 on the normalised features + 0.1 x smooth-L1 on their frame-to-frame differences. The result is
`OUT/tokenizer/checkpoint` (model.safetensors with the feature statistics, config.json).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.models.motion_tokenizer import MotionTokenizer, TokenizerConfig

from ..common import Objective, load_stage_config, output_path, stage_dir, train_settings
from ..data.windows272 import Windows272
from ..engine import TrainResult, train
from ..runtime import barrier, setup

FORMAT = "motionlcm-tokenizer"


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


def save_tokenizer(model: MotionTokenizer, dataset: Windows272, path: Path, provenance: dict) -> Path:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tensors["norm.mean"], tensors["norm.std"] = torch.from_numpy(dataset.mean), torch.from_numpy(dataset.std)
    save_file(tensors, str(path / "model.safetensors"))
    config = {"format": FORMAT, "architecture": dataclasses.asdict(model.config), "provenance": provenance}
    (path / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def load_tokenizer(path: str | Path) -> tuple[MotionTokenizer, torch.Tensor, torch.Tensor]:
    """(model in eval mode, mean, std) of a tokenizer checkpoint folder."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tokenizer checkpoint (format {config.get('format')!r})")
    architecture = dict(config["architecture"])
    architecture["levels"] = tuple(architecture["levels"])
    model = MotionTokenizer(TokenizerConfig(**architecture))
    tensors = load_file(str(path / "model.safetensors"))
    mean, std = tensors.pop("norm.mean"), tensors.pop("norm.std")
    model.load_state_dict(tensors)
    return model.eval(), mean, std


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
        save_tokenizer(model, dataset, output_path(out, "tokenizer"),
                       {"trainer": "motionlcm-train", "stage": "tokenizer", "preset": preset, "steps": result.steps,
                        "data": str(dataset.root), "config": json.loads(json.dumps(cfg, default=str))})
    barrier(ctx)
    return result
