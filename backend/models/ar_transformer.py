"""The MotionMillion engine's generator: a LLaMA-style causal transformer over motion tokens, conditioned on text.

Pre-norm blocks with RMSNorm, rotary positions and a SwiGLU feed-forward; the text embedding (the offline MiniLM
sentence vector by default) is projected to one prefix token. The vocabulary is the tokenizer's codebook plus an
end token. `generate` samples with temperature, top-k and classifier-free guidance (the unconditional pass uses
the empty prompt's embedding, as training drops text at random) and a key/value cache, so each new token costs
one position's work. Motions longer than the trained context (`max_tokens` positions) slide: when the window is
full, the cache restarts from the text and the window's newer half, so time still grows linearly with length and
no position is ever past those trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ARConfig:
    codebook_size: int
    text_dim: int = 384
    dim: int = 512
    layers: int = 8
    heads: int = 8
    max_tokens: int = 150  # motion-token positions attended over: 600 frames at 4 frames per token
    rope_base: float = 10000.0
    dropout: float = 0.0  # on each block's attention and feed-forward outputs, in training

    @property
    def end_token(self) -> int:
        return self.codebook_size

    @property
    def vocab(self) -> int:
        return self.codebook_size + 1


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate (B, H, L, D) queries or keys by their absolute positions (L,), pairs (i, i + D/2)."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs[None]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: ARConfig) -> None:
        super().__init__()
        self.heads, self.base = cfg.heads, cfg.rope_base
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention_norm = RMSNorm(cfg.dim)
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim)
        hidden = int(2 * 4 * cfg.dim / 3 + 255) // 256 * 256  # LLaMA's SwiGLU width, rounded to 256
        self.w1 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor,
                cache: dict[str, torch.Tensor] | None) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for t in self.wqkv(self.attention_norm(x)).chunk(3, dim=-1))
        q, k = rotary(q, positions, self.base), rotary(k, positions, self.base)
        if cache is not None:  # keys and values of earlier positions, extended in place
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # Causal over the whole sequence: the new queries sit at its end.
        mask = torch.ones(length, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - length)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.dropout(self.wo(attended.transpose(1, 2).reshape(batch, length, dim)))
        h = self.ffn_norm(x)
        return x + self.dropout(self.w2(F.silu(self.w1(h)) * self.w3(h)))


class MotionGPT(nn.Module):
    def __init__(self, cfg: ARConfig) -> None:
        super().__init__()
        self.config = cfg
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim)
        self.tok_embeddings = nn.Embedding(cfg.vocab, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim)
        self.output = nn.Linear(cfg.dim, cfg.vocab, bias=False)

    def forward(self, text: torch.Tensor, tokens: torch.Tensor, caches: list[dict] | None = None,
                start: int = 0) -> torch.Tensor:
        """Logits (B, L, vocab) for the next token after each input position.

        text (B, text_dim) is position 0; tokens (B, L') the motion tokens. With `caches` (one dict per layer,
        empty at first) the call may pass only the new tokens: `start` is the position of the first input (the
        text counts as one); text is then None after the first call."""
        parts = [] if text is None else [self.text_proj(text)[:, None]]
        x = torch.cat(parts + [self.tok_embeddings(tokens)], dim=1)
        if start + x.shape[1] > self.config.max_tokens + 1:
            raise ValueError(f"at most {self.config.max_tokens} motion tokens, got {start + x.shape[1] - 1}")
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, None if caches is None else caches[i])
        return self.output(self.norm(x))

    @torch.no_grad()
    def generate(self, text: torch.Tensor, empty_text: torch.Tensor | None = None, max_tokens: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, guidance: float = 1.0,
                 generator: torch.Generator | None = None, min_tokens: int = 0,
                 progress: Callable[[float], None] | None = None) -> list[list[int]]:
        """Motion tokens per prompt, up to the end token or `max_tokens` (default: the trained context; more
        slide the context window). The end token cannot come before `min_tokens`: equal bounds give an exact
        length. guidance != 1 mixes the logits of `empty_text` (classifier-free guidance):
        uncond + guidance * (cond - uncond). `progress(fraction)` is called after each token and may raise."""
        batch = text.shape[0]
        limit = max_tokens or self.config.max_tokens
        guided = guidance != 1.0
        if guided and empty_text is None:
            raise ValueError("classifier-free guidance needs the empty prompt's embedding")
        conditioning = torch.cat([text, empty_text.expand(batch, -1)]) if guided else text
        window = self.config.max_tokens

        def restart(context: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
            """A fresh cache holding the text and `context` (B, n) tokens at positions 1..n; the next logits."""
            caches: list[dict] = [{} for _ in self.layers]
            tokens = torch.cat([context, context]) if guided else context
            return caches, self(conditioning, tokens, caches)[:, -1]

        caches, logits = restart(text.new_zeros(batch, 0, dtype=torch.long))
        cached = 0  # motion tokens in the cache
        out = torch.empty(batch, 0, dtype=torch.long, device=text.device)
        done = torch.zeros(batch, dtype=torch.bool, device=text.device)
        for step in range(limit):
            if guided:
                logits = logits[batch:] + guidance * (logits[:batch] - logits[batch:])
            logits = logits / max(temperature, 1e-6)
            if step < min_tokens:
                logits[:, self.config.end_token] = float("-inf")
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            token = token.masked_fill(done[:, None], self.config.end_token)
            out = torch.cat([out, token], dim=1)
            done |= token[:, 0] == self.config.end_token
            if progress is not None:
                progress((step + 1) / limit)
            if done.all() or step + 1 == limit:
                break
            if cached + 1 > window:  # the window is full: keep its newer half
                caches, logits = restart(out[:, -(window // 2):])
                cached = window // 2
            else:
                feed = torch.cat([token, token]) if guided else token
                cached += 1
                logits = self(None, feed, caches, start=cached)[:, -1]
        end = self.config.end_token
        return [row[:row.index(end)] if end in row else row for row in out.tolist()]
