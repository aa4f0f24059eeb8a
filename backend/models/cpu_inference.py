"""Fast inference on the CPU: oneDNN-packed linear weights, and several threads only where they pay.

Packed weights. `nn.Linear` on the CPU runs an MKL GEMM that re-packs the weight on every call and first copies
the broadcast bias into the output; the feed-forward GELU is one more pass over the activations. oneDNN's packed
inner product takes the weight in its own blocked layout once, adds the bias in the GEMM and can apply GELU (erf)
on the way out: 20-45 % faster per matrix product for the shapes of these networks on the 2-core CPU. Outputs
differ from the MKL path by float rounding (about 3e-6 per product; official comparisons hold at 1e-4).
`pack_linear_weights(model)` is for a model whose weights are final (the pipeline calls it after loading): the
packed copies do not follow later changes to the weights. Whenever a gradient is needed (latent tuning
backpropagates to the latents) the ordinary path runs, with the same weights.

Threads. With passive OpenMP waiting (backend/__init__.py), every parallel region wakes a sleeping thread, which
costs tens of microseconds: more than a layer norm, residual add or small product of a 16-token latent takes on
one core. Inside `narrow_threads()` everything runs on one thread except matrix products and attention over at
least `WIDE_ROWS` rows, which get all threads. On an idle 2-core machine one-step controlled generation is about
20 % faster this way; under load it is unchanged (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

WIDE_ROWS = 64  # rows (tokens x batch) from which a product or attention is worth a second thread
_wide_threads = 0  # the thread count for wide operations while narrow_threads() is active; 0: no policy
T = TypeVar("T")


@contextmanager
def narrow_threads() -> Iterator[None]:
    """One intra-op thread for the block, all of torch's threads for wide products and attention inside it."""
    global _wide_threads
    threads = torch.get_num_threads()
    if _wide_threads or threads == 1:  # nested, or nothing to narrow
        yield
        return
    _wide_threads = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _wide_threads = 0


def thread_policy(enabled: bool) -> contextlib.AbstractContextManager:
    """narrow_threads() where `enabled` (a pipeline on the CPU), else nothing."""
    return narrow_threads() if enabled else contextlib.nullcontext()


def run_wide(rows: int, fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs), with all threads when `rows` reaches WIDE_ROWS inside narrow_threads()."""
    if not _wide_threads or rows < WIDE_ROWS:
        return fn(*args, **kwargs)
    torch.set_num_threads(_wide_threads)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(1)


def available(device: torch.device) -> bool:
    """Whether packed weights can run on `device` (a CPU with oneDNN in this torch build)."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available()


def pack(weight: torch.Tensor) -> torch.Tensor:
    """The oneDNN-blocked copy of an (out, in) float32 weight; it serves inputs of any batch and length."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().float().contiguous())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor | None,
           gelu: bool = False) -> torch.Tensor:
    """F.linear (then GELU when `gelu`), through `packed` when it exists and no gradient flows."""
    rows = x.numel() // max(x.shape[-1], 1)
    if packed is None or x.device.type != "cpu" or x.dtype != torch.float32 or (
            torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        y = run_wide(rows, F.linear, x, weight, bias)
        return F.gelu(y) if gelu else y
    return run_wide(rows, torch.ops.mkldnn._linear_pointwise, x, packed, bias, "gelu" if gelu else "none", [],
                    "none" if gelu else "")


class PackedLinear(nn.Linear):
    """An nn.Linear (same parameters, same state-dict keys) that runs through its packed weight."""

    def __init__(self, source: nn.Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = source.in_features, source.out_features
        self.weight, self.bias = source.weight, source.bias
        self.packed = pack(source.weight)

    def forward(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:  # type: ignore[override]
        return linear(x, self.weight, self.bias, self.packed, gelu)


def linear_gelu(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """GELU(layer(x)), fused into the matrix product when `layer` is packed."""
    return layer(x, gelu=True) if isinstance(layer, PackedLinear) else F.gelu(layer(x))


def pack_linear_weights(model: nn.Module) -> int:
    """Replace every nn.Linear below `model` by a PackedLinear sharing its parameters, and let modules with
    their own projections (`pack_weights()`) pack them. Returns the number of packed weights."""
    count = 0
    for parent in list(model.modules()):
        if hasattr(parent, "pack_weights"):
            count += parent.pack_weights()
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear(child))  # ModuleList/Sequential children are named "0", "1"...
                count += 1
    return count
