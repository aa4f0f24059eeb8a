"""The default text encoder, all-MiniLM-L6-v2, run directly: Rust tokenizer + a 6-layer BERT in plain torch.

The sentence-transformers pipeline gives the same embeddings (tests/test_text_encoders.py compares them to
1e-5) but costs about 2.8 s to import and 10-30 ms of per-call overhead on a 2-core CPU, more than the encoder
itself (docs/performance.md). This module reads the packaged folder's own files: tokenizer.json (`tokenizers`),
config.json, sentence_bert_config.json (max_seq_length) and model.safetensors; the folder's module list must be
Transformer -> mean Pooling -> Normalize, which is what sentence-transformers runs for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.models import cpu_inference

# What this implementation computes; a folder that asks for anything else is refused, not approximated.
_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize")
_BERT = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def check_folder(folder: Path) -> dict:
    """The BERT config of a sentence-transformers folder this module can run exactly; ValueError otherwise."""
    modules = tuple(m.get("type") for m in _read_json(folder / "modules.json"))
    if modules != _MODULES:
        raise ValueError(f"{folder}: module list {modules} is not Transformer -> Pooling -> Normalize")
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{folder}: pooling {modes} is not mean pooling")
    config = _read_json(folder / "config.json")
    wrong = {k: config.get(k) for k, v in _BERT.items() if config.get(k) != v}
    if wrong:
        raise ValueError(f"{folder}: not a plain BERT ({wrong})")
    return config


class MiniLM:
    """Prompts -> (B, hidden) unit-norm sentence embeddings, as sentence-transformers computes them."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = check_folder(folder)
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.hidden = int(config["hidden_size"])
        max_len = int(_read_json(folder / "sentence_bert_config.json")["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # sentence-transformers pads to the longest prompt and truncates at max_seq_length (not the file's 128).
        self.tokenizer.enable_truncation(max_len)
        pad_id = int(config.get("pad_token_id", 0))
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id))
        w = {k: v.to(device=device, dtype=torch.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
        for i in range(self.layers):  # one packed q/k/v projection per layer: one matrix product instead of three
            p = f"encoder.layer.{i}.attention.self."
            w[p + "qkv.weight"] = torch.cat([w.pop(p + n + ".weight") for n in ("query", "key", "value")])
            w[p + "qkv.bias"] = torch.cat([w.pop(p + n + ".bias") for n in ("query", "key", "value")])
        self.w = w
        self.device = device
        # oneDNN-packed copies of every matrix (backend.models.cpu_inference), keyed like the weights.
        self.packed = ({k: cpu_inference.pack(v) for k, v in w.items() if k.endswith(".weight") and v.dim() == 2
                        and not k.startswith("embeddings.")} if cpu_inference.available(device) else {})

    def _norm(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.layer_norm(x, (self.hidden,), self.w[prefix + ".weight"], self.w[prefix + ".bias"], self.eps)

    def _linear(self, x: torch.Tensor, prefix: str, gelu: bool = False) -> torch.Tensor:
        weight = prefix + ".weight"
        return cpu_inference.linear(x, self.w[weight], self.w[prefix + ".bias"], self.packed.get(weight), gelu)

    def _layer(self, x: torch.Tensor, i: int, mask: torch.Tensor) -> torch.Tensor:
        p = f"encoder.layer.{i}."
        batch, length, _ = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for t in self._linear(x, p + "attention.self.qkv").chunk(3, dim=-1))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(batch, length, -1)
        x = self._norm(x + self._linear(attended, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = self._linear(x, p + "intermediate.dense", gelu=True)
        return self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch(prompts)
        ids = torch.tensor([e.ids for e in encodings], device=self.device)
        real = torch.tensor([e.attention_mask for e in encodings], device=self.device, dtype=torch.bool)
        positions = torch.arange(ids.shape[1], device=self.device)
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
             + w["embeddings.token_type_embeddings.weight"][0])  # one segment: token type 0 everywhere
        x = self._norm(x, "embeddings.LayerNorm")
        mask = real[:, None, None, :]  # padding is never attended to
        for i in range(self.layers):
            x = self._layer(x, i, mask)
        weights = real.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)
