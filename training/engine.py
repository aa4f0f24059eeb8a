"""The training loop every stage shares: AdamW with warm-up + cosine, gradient clipping, autocast,
DDP, TensorBoard, and checkpoints that resume exactly.

A stage hands over an `objective`: an nn.Module whose forward(batch) returns a dict of losses with
a "loss" entry, whose trainable parameters are those with requires_grad, and which may define
`after_optimizer_step()` (e.g. an EMA update). Frozen parts live inside it too, so DDP, devices and
checkpoints see one module.

Resume state (`OUT/train_state/`, written atomically): `weights.safetensors` (objective, optimiser
tensors), `state.json` (step, epoch, batch position, optimiser hyperparameters) and per rank
`rng_rank{r}.safetensors` + `rng_rank{r}.json` (torch, CUDA, numpy and python RNG states) and
`params_rank{r}.sha256` (digest of that rank's trainable weights, equal on all ranks under DDP).
Logs: TensorBoard under `OUT/tensorboard`, the same scalars in `OUT/history.jsonl`.
Items draw their randomness from (seed, epoch, index), so restoring the sampler position and
these RNG states reproduces the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, DistributedSampler

from .data.dataset import collate


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA, with loss scaling)
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 1234
    num_workers: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        return cls(**known)


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


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then half a cosine down to 0 at `total` (diffusers' "cosine" schedule)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start mid-epoch."""

    def __init__(self, dataset, ctx: Context, seed: int) -> None:
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


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

def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], data: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    version, internal, gauss = data["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = data["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_state(folder: Path, ctx: Context, objective: nn.Module, optimizer: torch.optim.Optimizer,
               progress: dict) -> None:
    """Every rank writes its RNG state; rank 0 writes weights and progress; the folder swap is atomic."""
    tmp = folder.with_name(folder.name + ".tmp")
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(ctx)
    rng_tensors, rng_data = _rng_state()
    save_file(rng_tensors, str(tmp / f"rng_rank{ctx.rank}.safetensors"))
    (tmp / f"rng_rank{ctx.rank}.json").write_text(json.dumps(rng_data))
    # Every rank's digest of its trainable weights: DDP replicas must stay bit-identical.
    (tmp / f"params_rank{ctx.rank}.sha256").write_text(parameter_digest(objective) + "\n")
    if ctx.is_main:
        tensors = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in objective.state_dict().items()}
        opt = optimizer.state_dict()
        for index, slots in opt["state"].items():
            for name, value in slots.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
        save_file(tensors, str(tmp / "weights.safetensors"))
        groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in opt["param_groups"]]
        (tmp / "state.json").write_text(json.dumps({**progress, "param_groups": groups}, indent=1))
    _barrier(ctx)
    if ctx.is_main:
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    _barrier(ctx)


def parameter_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_state(folder: Path, ctx: Context, objective: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    tensors = load_file(str(folder / "weights.safetensors"), device=str(ctx.device))
    objective.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    data = json.loads((folder / "state.json").read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in data.pop("param_groups")]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    rng_file = folder / f"rng_rank{ctx.rank}.safetensors"
    if not rng_file.exists():
        raise ValueError(f"{folder} was written by fewer processes; resume with the same world size")
    _set_rng_state(load_file(str(rng_file)), json.loads((folder / f"rng_rank{ctx.rank}.json").read_text()))
    return data


def _barrier(ctx: Context) -> None:
    if ctx.world_size > 1:
        dist.barrier()


# ---- the loop ---------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    losses: list[float]  # the "loss" of every step run in this call, rank 0's values
    steps: int  # global step reached
    seconds: float


def train(objective: nn.Module, dataset, settings: TrainSettings, out_dir: str | Path, ctx: Context, *,
          resume: bool = False, stop_after: int | None = None,
          validate: Callable[[], dict[str, float]] | None = None, validate_every: int = 0) -> TrainResult:
    """Run until `settings.steps` (or `stop_after` global steps, for tests). Returns rank 0's losses.

    `validate` (rank 0, every `validate_every` steps and at the end) returns scalars for TensorBoard; it must
    not draw from the global RNGs (use its own generator) so that validation never changes training."""
    out = Path(out_dir)
    state_dir = out / "train_state"
    objective.to(ctx.device)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, betas=(settings.beta1, settings.beta2),
                                  eps=settings.eps, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.precision == "fp16")
    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    if resume:
        if not (state_dir / "state.json").exists():
            raise ValueError(f"--resume: no training state in {state_dir}")
        saved = load_state(state_dir, ctx, objective, optimizer)
        progress = {k: v for k, v in saved.items() if k in progress}
        if saved.get("grad_scaler"):
            scaler.load_state_dict(saved["grad_scaler"])
    else:
        seed_everything(settings.seed + ctx.rank)  # different noise per rank; same start whatever ran before
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "history.jsonl").unlink(missing_ok=True)
    model = nn.parallel.DistributedDataParallel(objective) if ctx.world_size > 1 else objective
    sampler = ResumableSampler(dataset, ctx, settings.seed)
    writer = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    losses: list[float] = []
    bar = None
    if ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(total=end, initial=progress["step"], desc=out.name, unit="step", dynamic_ncols=True)
    started = time.perf_counter()
    objective.train()
    while progress["step"] < end:
        sampler.set_epoch(progress["epoch"])
        sampler.start = progress["batch_in_epoch"] * settings.batch_size
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(progress["epoch"])
        loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=settings.num_workers, drop_last=True,
                            pin_memory=ctx.device.type == "cuda",
                            # its own generator: creating an iterator must not draw from the global RNG,
                            # or a resumed run (one extra iterator) would diverge from an uninterrupted one
                            generator=torch.Generator().manual_seed(settings.seed))
        if progress["batch_in_epoch"] == 0 and len(loader) == 0:
            raise ValueError(f"{len(dataset)} items cannot fill one batch of {settings.batch_size} "
                             f"on each of {ctx.world_size} processes")
        for batch in loader:
            batch = {k: v.to(ctx.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            lr = settings.learning_rate * lr_factor(progress["step"], settings.warmup_steps, settings.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(settings.precision, ctx.device):
                terms = model(batch)
            scaler.scale(terms["loss"]).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if hasattr(objective, "after_optimizer_step"):
                objective.after_optimizer_step()
            progress["step"] += 1
            progress["batch_in_epoch"] += 1
            losses.append(float(terms["loss"].detach()))
            if ctx.is_main and (progress["step"] % settings.log_every == 0 or progress["step"] == end):
                scalars = {k: float(v.detach()) for k, v in terms.items()}
                scalars.update(lr=lr, grad_norm=float(grad_norm))
                for key, value in scalars.items():
                    writer.add_scalar(f"train/{key}", value, progress["step"])
                with open(out / "history.jsonl", "a", encoding="utf-8") as f:  # plain-text copy of the curves
                    f.write(json.dumps({"step": progress["step"], **scalars}) + "\n")
            if validate is not None and ctx.is_main and validate_every > 0 and (
                    progress["step"] % validate_every == 0 or progress["step"] == end):
                objective.eval()
                for key, value in validate().items():
                    writer.add_scalar(f"val/{key}", value, progress["step"])
                objective.train()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if progress["step"] % settings.checkpoint_every == 0 or progress["step"] == end:
                save_state(state_dir, ctx, objective, optimizer, {**progress, "grad_scaler": scaler.state_dict()})
            if progress["step"] >= end:
                break
        else:
            progress["epoch"] += 1
            progress["batch_in_epoch"] = 0
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    return TrainResult(losses, progress["step"], time.perf_counter() - started)
