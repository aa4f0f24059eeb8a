"""Skip transformers (U-Net-like stacks of post-norm transformer layers) shared by all MotionLCM networks.

Tensors are batch-first, (B, L, C). Parameter names follow torch.nn.MultiheadAttention and the official
layer layout (`self_attn.in_proj_weight`, `linear1`, `norm1`, `input_blocks.0`, ...) so official
checkpoints load unchanged, but attention runs through `scaled_dot_product_attention`.

Key masks are boolean (B, L) with True = a real token that may be attended to.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.models.config import StackConfig
from backend.models.embeddings import timestep_sinusoids
from backend.models.cpu_inference import linear, linear_gelu, pack, run_wide


def attention_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, Lk) visibility -> the (B, 1, 1, Lk) boolean mask SDPA expects; None when everything is visible."""
    if key_mask is None or bool(key_mask.all()):
        return None
    return key_mask[:, None, None, :]


class MultiheadAttention(nn.Module):
    """Multi-head attention with the parameter layout of `nn.MultiheadAttention` (packed q/k/v projection)."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        self.packed: dict[str, torch.Tensor] = {}  # cpu_inference copies of the q/k/v projection, once packed

    def pack_weights(self) -> int:
        """Packed copies of the q/k/v projection: whole (self-attention) and split (cross-attention)."""
        dim = self.in_proj_weight.shape[1]
        w_q, w_kv = self.in_proj_weight.split([dim, 2 * dim])
        self.packed = {"qkv": pack(self.in_proj_weight), "q": pack(w_q), "kv": pack(w_kv)}
        return len(self.packed)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention over `x`, or cross-attention to `memory`; `mask` comes from `attention_mask`."""
        batch, length, dim = x.shape
        packed = self.packed.get
        if memory is None:
            q, k, v = linear(x, self.in_proj_weight, self.in_proj_bias, packed("qkv")).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([dim, 2 * dim])
            b_q, b_kv = self.in_proj_bias.split([dim, 2 * dim])
            q = linear(x, w_q, b_q, packed("q"))
            k, v = linear(memory, w_kv, b_kv, packed("kv")).chunk(2, dim=-1)
        heads = self.num_heads
        q, k, v = (t.unflatten(-1, (heads, dim // heads)).transpose(1, 2) for t in (q, k, v))
        out = run_wide(batch * length, F.scaled_dot_product_attention, q, k, v, attn_mask=mask,
                       dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class EncoderLayer(nn.Module):
    """Post-norm layer: self-attention, then GELU feed-forward, each followed by residual + LayerNorm."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.p = cfg.dropout
        self.self_attn = MultiheadAttention(d, cfg.num_heads, cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.ff_size)
        self.linear2 = nn.Linear(cfg.ff_size, d)
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self._drop(linear_gelu(self.linear1, x)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, keep: int | None = None) -> torch.Tensor:
        """`keep`: compute only the first `keep` output tokens (they still attend to all of `x`)."""
        if keep is None:
            x = self.norm1(x + self._drop(self.self_attn(x, mask=mask)))
        else:
            # Self-attention restricted to some queries is cross-attention of those rows to the full sequence,
            # which the packed projection already supports: same weights, same result for the kept rows.
            query = x[:, :keep]
            x = self.norm1(query + self._drop(self.self_attn(query, memory=x, mask=mask)))
        return self.norm2(x + self._drop(self._feed_forward(x)))


class DecoderLayer(EncoderLayer):
    """Post-norm layer: masked self-attention, cross-attention to `memory` (unmasked), feed-forward."""

    def __init__(self, cfg: StackConfig) -> None:
        super().__init__(cfg)
        self.multihead_attn = MultiheadAttention(cfg.hidden_dim, cfg.num_heads, cfg.dropout)
        self.norm3 = nn.LayerNorm(cfg.hidden_dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,  # type: ignore[override]
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self._drop(self.self_attn(x, mask=mask)))
        x = self.norm2(x + self._drop(self.multihead_attn(x, memory=memory)))
        return self.norm3(x + self._drop(self._feed_forward(x)))


class SkipTransformer(nn.Module):
    """(n-1)/2 input blocks, a middle block, (n-1)/2 output blocks with LIFO skip connections.

    Before each output block the activation is concatenated with the latest unused input-block output and
    fused by `linear_blocks[j]` (2C -> C). Layer i (in execution order 0..n-1) can receive an additive residual
    (ControlNet injection) and/or report its output (ControlNet collection); the residual-added value is what
    the skip connection stores.
    """

    def __init__(self, cfg: StackConfig, layer: type[EncoderLayer], final_norm: bool) -> None:
        super().__init__()
        half = (cfg.num_layers - 1) // 2
        d = cfg.hidden_dim
        self.input_blocks = nn.ModuleList(layer(cfg) for _ in range(half))
        self.middle_block = layer(cfg)
        self.output_blocks = nn.ModuleList(layer(cfg) for _ in range(half))
        self.linear_blocks = nn.ModuleList(nn.Linear(2 * d, d) for _ in range(half))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps) if final_norm else None
        # Xavier-uniform for every matrix of the stack (the official initialisation).
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, *layer_args: torch.Tensor | None,
                mask: torch.Tensor | None = None, residuals: list[torch.Tensor] | None = None,
                collect: bool = False, keep: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the stack; `layer_args` (e.g. decoder memory) go to every layer before `mask`.

        Returns the final activation (after the norm, if any) and, when `collect`, the per-layer outputs.
        `keep` (encoder layers only): the caller reads only the first `keep` tokens, so the last layer
        computes only those rows (the trajectory encoder reads 16 of up to 212 tokens).
        """
        if keep is not None and (residuals is not None or collect):
            raise ValueError("keep cannot be combined with residuals or collect (they need every token)")
        outputs: list[torch.Tensor] = []
        index = 0
        final = 2 * len(self.input_blocks)  # execution index of the last layer

        def run_layer(block: nn.Module, h: torch.Tensor) -> torch.Tensor:
            nonlocal index
            extra = {"keep": keep} if keep is not None and index == final else {}
            h = block(h, *layer_args, mask=mask, **extra)
            if residuals is not None:
                h = h + residuals[index]
            if collect:
                outputs.append(h)
            index += 1
            return h

        skips = []
        for block in self.input_blocks:
            x = run_layer(block, x)
            skips.append(x)
        x = run_layer(self.middle_block, x)
        for block, fuse in zip(self.output_blocks, self.linear_blocks):
            x = fuse(torch.cat([x, skips.pop()], dim=-1))
            x = run_layer(block, x)
        if self.norm is not None:
            x = self.norm(x)
        return x, outputs


class LearnedPositions(nn.Module):
    """Learned positional embedding stored as `pe` of shape (max_len, 1, C), added to the first L tokens.

    Initialised with the sinusoidal table, not the reference's uniform noise (same shape, so official weights
    load unchanged): with noise every frame's code is an unrelated random vector; sinusoids give neighbouring
    frames similar, distinct codes from the first step. A VAE decoder trained from scratch first outputs one
    static pose per clip; on 16 walking clips it left that plateau about 100 steps sooner this way (by step
    400 of 500 instead of beginning to at step 500; docs/training.md).
    """

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        # On the CPU even when the model is built on the meta device (checkpoint loading): a meta arange runs
        # through torch's decompositions, whose first import costs about a second of start-up.
        table = timestep_sinusoids(torch.arange(max_len, device="cpu"), dim, flip_sin_to_cos=False)
        self.pe = nn.Parameter(table[:, None, :].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.pe.shape[0]:
            raise ValueError(f"sequence of {length} tokens exceeds the positional table ({self.pe.shape[0]})")
        return x + self.pe[:length, 0]
