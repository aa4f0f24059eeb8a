"""Where training runs: the process group (torchrun), the device, seeding, autocast, barriers."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(seed: int) -> Context:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU); seed everything."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    seed_everything(seed)  # identical model initialisation on every rank
    return Context(rank, world, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")


# ---- resume state ---------------------------------------------------------------------------------------------


def barrier(ctx: Context) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if ctx.world_size > 1:
        dist.barrier()


# ---- the loop ---------------------------------------------------------------------------------------------------
