"""The MotionMillion generator stage: a causal transformer learns the tokenizer's codes of captioned clips.

Per item the sequence is [text] + codes + [end]; the loss is the cross-entropy of each next token (codes and the
end token), over real positions only. Captions are replaced by "" with probability `text_dropout`, which is what
classifier-free guidance samples against. The tokenizer is frozen: clips are tokenised once when the stage starts
(training/data/token_clips.py). The result, `OUT/ar/checkpoint`, is an engine folder holding the tokenizer and the
generator (backend/ar_checkpoint.py): what `motionlcm generate --engine ar --checkpoint` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.ar_checkpoint import ARSampling, load_tokenizer, save_ar
from backend.models.ar_transformer import ARConfig, MotionGPT

from ..common import Objective, TextEmbedder, load_stage_config, output_path, stage_dir, train_settings
from ..data.token_clips import TokenClips
from ..engine import TrainResult, train
from ..runtime import barrier, setup


class ARObjective(Objective):
    def __init__(self, model: MotionGPT, text: TextEmbedder, text_dropout: float) -> None:
        super().__init__()
        self.generator, self.text, self.text_dropout = model, text, float(text_dropout)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        codes, lengths = batch["codes"], batch["length"].to(batch["codes"].device)
        texts = [("" if torch.rand(()) < self.text_dropout else t) for t in batch["text"]]
        end = self.generator.config.end_token
        # Targets: each code, then the end token after the last one; padding is ignored.
        positions = torch.arange(codes.shape[1] + 1, device=codes.device)[None]
        targets = torch.cat([codes, codes.new_zeros(len(codes), 1)], dim=1)
        targets = torch.where(positions == lengths[:, None], end, targets)
        targets = targets.masked_fill(positions > lengths[:, None], -100)
        logits = self.generator(self.text(texts).flatten(1), codes)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        with torch.no_grad():
            real = targets != -100
            accuracy = (logits.argmax(-1) == targets)[real].float().mean()
        return {"loss": loss, "token_accuracy": accuracy.detach()}


def main(data: str | Path, out: str | Path, *, preset: str = "default", overrides: list[str] | None = None,
         config: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    cfg = load_stage_config("ar", preset, overrides, config)
    seed = int(cfg["train"]["seed"])
    ctx = setup(seed)
    tokenizer_path = Path(cfg["tokenizer"]) if cfg.get("tokenizer") else output_path(out, "tokenizer")
    if not (tokenizer_path / "config.json").is_file():
        raise ValueError(f"{tokenizer_path} is no tokenizer checkpoint: run `motionlcm-train tokenizer` first "
                         "or set tokenizer: PATH")
    tokenizer, mean, std = load_tokenizer(tokenizer_path)
    dataset = TokenClips(data, "train", tokenizer, mean, std, crop=float(cfg["data"]["crop"]), seed=seed)
    text = TextEmbedder(cfg.get("text_encoder"), ctx.device)
    text([""] + dataset.captions())
    # Positions the generator is trained on: the longest clip of the data (longer motions slide their context).
    model = MotionGPT(ARConfig(codebook_size=tokenizer.quantizer.codebook_size, text_dim=text.dim,
                               max_tokens=dataset.longest(), **cfg["model"]))
    settings = train_settings(cfg, len(dataset), ctx.world_size)
    objective = ARObjective(model, text, cfg["text_dropout"])
    result = train(objective, dataset, settings, stage_dir(out, "ar"), ctx, resume=resume, stop_after=stop_after)
    if ctx.is_main and result.steps == settings.steps:
        info_file = Path(data) / "dataset.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.exists() else {}
        sampling = ARSampling(**cfg["sampling"])
        save_ar(output_path(out, "ar"), tokenizer, model.eval(), mean, std, text_encoder_id=text.id,
                text_dim=text.dim, sampling=sampling, licence=str(info.get("licence") or ""),
                provenance={"trainer": "motionlcm-train", "stage": "ar", "preset": preset, "steps": result.steps,
                            "data": str(Path(data)), "dataset": info, "tokenizer": str(tokenizer_path),
                            "clips": len(dataset), "config": json.loads(json.dumps(cfg, default=str))})
    barrier(ctx)
    return result

