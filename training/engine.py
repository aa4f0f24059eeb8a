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
from dataclasses import dataclass, field
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
    threads: int = 0  # torch CPU threads while training (0: leave torch's setting); tiny models run best on 1
    length_buckets: int = 0  # >0: batches of similar clip length, sorted within runs of this many batches
    # [[steps, clips], ...]: until global step `steps`, batches come only from the first `clips` clips of a
    # seeded order (those whose name contains `curriculum_first` first), then from a wider pool, then all.
    curriculum: list = field(default_factory=list)
    curriculum_first: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        settings = cls(**known)
        phases = settings.curriculum
        shaped = all(isinstance(p, (list, tuple)) and len(p) == 2 and all(type(v) is int for v in p) for p in phases)
        ends = [p[0] for p in phases] if shaped else []
        if not shaped or ends != sorted(set(ends)) or any(p[1] < 1 for p in phases):
            raise ValueError(f"curriculum must be [[steps, clips], ...] of integers with rising steps and at least "
                             f"one clip, got {phases}")
        return settings


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
    """DistributedSampler (also for one process) that can start mid-epoch.

    With `length_buckets` > 0 and a dataset that reports `clip_lengths()`, each run of `length_buckets`
    batches is sorted by clip length before it is cut into batches, and the batches are shuffled: padding
    (and so wasted compute on frames that are masked out anyway) drops by about half on clips of mixed
    length. The order depends only on (seed, epoch), so resuming mid-epoch still reproduces it."""

    def __init__(self, dataset, ctx: Context, seed: int, batch_size: int = 1, length_buckets: int = 0) -> None:
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0
        self.batch_size = batch_size
        lengths = getattr(dataset, "clip_lengths", None)
        self.lengths = np.asarray(lengths()) if length_buckets > 0 and callable(lengths) else None
        self.length_buckets = length_buckets
        self.pool: list[int] | None = None  # set by a curriculum phase: draw only from these clips

    def __iter__(self) -> Iterator[int]:
        if self.pool is not None:
            return iter(self._pool_order()[self.start:])
        order = list(super().__iter__())
        if self.lengths is not None:
            order = self._bucketed(order)
        return iter(order[self.start:])

    def _bucketed(self, order: list[int]) -> list[int]:
        size = self.batch_size
        order = order[: len(order) // size * size]  # whole batches only, as the DataLoader drops the rest
        chunk = size * self.length_buckets
        batches = []
        for begin in range(0, len(order), chunk):
            part = sorted(order[begin:begin + chunk], key=lambda i: self.lengths[i])
            batches += [part[i:i + size] for i in range(0, len(part), size)]
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return [index for b in rng.permutation(len(batches)) for index in batches[b]]

    def _pool_order(self) -> list[int]:
        """This rank's share of the pool, shuffled per epoch and repeated until it fills one batch per rank."""
        per_step = self.batch_size * self.num_replicas
        rng = np.random.default_rng([self.seed, self.epoch])
        order: list[int] = []
        while len(order) < per_step:
            order += rng.permutation(self.pool).tolist()
        return order[: len(order) // per_step * per_step][self.rank::self.num_replicas]

    def __len__(self) -> int:
        if self.pool is not None:
            return max(0, len(self._pool_order()) - self.start)
        total = self.num_samples // self.batch_size * self.batch_size if self.lengths is not None else self.num_samples
        return max(0, total - self.start)


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
    barrier(ctx)
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
    barrier(ctx)
    if ctx.is_main:
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    barrier(ctx)


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


def barrier(ctx: Context) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if ctx.world_size > 1:
        dist.barrier()


# ---- the loop ---------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    losses: list[float]  # the "loss" of every step run in this call, rank 0's values
    steps: int  # global step reached
    seconds: float


class _Run:
    """One call of `train`: the optimiser, sampler, loggers and progress counters."""

    def __init__(self, objective: nn.Module, dataset, settings: TrainSettings, out: Path, ctx: Context,
                 resume: bool) -> None:
        self.objective, self.dataset, self.settings, self.out, self.ctx = objective, dataset, settings, out, ctx
        self.state_dir = out / "train_state"
        objective.to(ctx.device)
        self.trainable = [p for p in objective.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=settings.learning_rate,
                                           betas=(settings.beta1, settings.beta2), eps=settings.eps,
                                           weight_decay=settings.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=settings.precision == "fp16")
        self.progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
        if resume:
            if not (self.state_dir / "state.json").exists():
                raise ValueError(f"--resume: no training state in {self.state_dir}")
            saved = load_state(self.state_dir, ctx, objective, self.optimizer)
            self.progress = {k: v for k, v in saved.items() if k in self.progress}
            if saved.get("grad_scaler"):
                self.scaler.load_state_dict(saved["grad_scaler"])
        else:
            seed_everything(settings.seed + ctx.rank)  # different noise per rank; same start whatever ran before
            if ctx.is_main:
                out.mkdir(parents=True, exist_ok=True)
                (out / "history.jsonl").unlink(missing_ok=True)
        self.model = nn.parallel.DistributedDataParallel(objective) if ctx.world_size > 1 else objective
        self.sampler = ResumableSampler(dataset, ctx, settings.seed, settings.batch_size, settings.length_buckets)
        self.curriculum_order = curriculum_order(dataset, settings) if settings.curriculum else []
        self.losses: list[float] = []
        self.writer = self.bar = None

    def loader(self) -> DataLoader:
        """This epoch's batches from the current position (a resumed run starts mid-epoch)."""
        epoch = self.progress["epoch"]
        self.sampler.set_epoch(epoch)
        self.sampler.start = self.progress["batch_in_epoch"] * self.settings.batch_size
        pool = self.pool_size()
        self.sampler.pool = None if pool is None else self.curriculum_order[:pool]
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        loader = DataLoader(self.dataset, batch_size=self.settings.batch_size, sampler=self.sampler,
                            collate_fn=collate, num_workers=self.settings.num_workers, drop_last=True,
                            pin_memory=self.ctx.device.type == "cuda",
                            # its own generator: creating an iterator must not draw from the global RNG,
                            # or a resumed run (one extra iterator) would diverge from an uninterrupted one
                            generator=torch.Generator().manual_seed(self.settings.seed))
        if self.progress["batch_in_epoch"] == 0 and len(loader) == 0:
            raise ValueError(f"{len(self.dataset)} items cannot fill one batch of {self.settings.batch_size} "
                             f"on each of {self.ctx.world_size} processes")
        return loader

    def pool_size(self) -> int | None:
        """How many clips of the curriculum order the current step draws from (None: the whole dataset)."""
        for until, clips in self.settings.curriculum:
            if self.progress["step"] < int(until):
                return int(clips)
        return None

    def step(self, batch: dict) -> tuple[dict[str, torch.Tensor], float, float]:
        settings, device = self.settings, self.ctx.device
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        lr = settings.learning_rate * lr_factor(self.progress["step"], settings.warmup_steps, settings.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(settings.precision, device):
            terms = self.model(batch)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, settings.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if hasattr(self.objective, "after_optimizer_step"):
            self.objective.after_optimizer_step()
        self.progress["step"] += 1
        self.progress["batch_in_epoch"] += 1
        self.losses.append(float(terms["loss"].detach()))
        return terms, lr, float(grad_norm)

    def log(self, terms: dict[str, torch.Tensor], lr: float, grad_norm: float) -> None:
        scalars = {k: float(v.detach()) for k, v in terms.items()}
        scalars.update(lr=lr, grad_norm=grad_norm)
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, self.progress["step"])
        with open(self.out / "history.jsonl", "a", encoding="utf-8") as f:  # plain-text copy of the curves
            f.write(json.dumps({"step": self.progress["step"], **scalars}) + "\n")

    def validate(self, validate: Callable[[], dict[str, float]]) -> None:
        self.objective.eval()
        for key, value in validate().items():
            self.writer.add_scalar(f"val/{key}", value, self.progress["step"])
        self.objective.train()

    def run(self, end: int, validate: Callable[[], dict[str, float]] | None, validate_every: int) -> None:
        settings, progress, main = self.settings, self.progress, self.ctx.is_main
        if main:
            from torch.utils.tensorboard import SummaryWriter
            from tqdm import tqdm

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
            self.bar = tqdm(total=end, initial=progress["step"], desc=self.out.name, unit="step", dynamic_ncols=True)
        self.objective.train()
        try:
            while progress["step"] < end:
                for batch in self.loader():
                    pool = self.pool_size()
                    terms, lr, grad_norm = self.step(batch)
                    step = progress["step"]
                    phase_ends = self.pool_size() != pool
                    if phase_ends:  # the next batches come from another pool: a new epoch, before any checkpoint
                        progress["epoch"] += 1
                        progress["batch_in_epoch"] = 0
                    if main and (step % settings.log_every == 0 or step == end):
                        self.log(terms, lr, grad_norm)
                    if main and validate is not None and validate_every > 0 and (
                            step % validate_every == 0 or step == end):
                        self.validate(validate)
                    if main:
                        self.bar.update(1)
                        self.bar.set_postfix(loss=f"{self.losses[-1]:.4f}")
                    if step % settings.checkpoint_every == 0 or step == end:
                        save_state(self.state_dir, self.ctx, self.objective, self.optimizer,
                                   {**progress, "grad_scaler": self.scaler.state_dict()})
                    if step >= end or phase_ends:
                        break
                else:
                    progress["epoch"] += 1
                    progress["batch_in_epoch"] = 0
        finally:
            if main:
                self.bar.close()
                self.writer.close()


def curriculum_order(dataset, settings: TrainSettings) -> list[int]:
    """Clip indices in a seeded order, those whose name contains `curriculum_first` first."""
    names = getattr(dataset, "clip_names", None)
    if not callable(names):
        raise ValueError("train.curriculum needs a dataset with clip_names()")
    names = names()
    shuffled = np.random.default_rng([settings.seed, len(names)]).permutation(len(names)).tolist()
    first = [i for i in shuffled if settings.curriculum_first and settings.curriculum_first in names[i]]
    chosen = set(first)
    return first + [i for i in shuffled if i not in chosen]


def train(objective: nn.Module, dataset, settings: TrainSettings, out_dir: str | Path, ctx: Context, *,
          resume: bool = False, stop_after: int | None = None,
          validate: Callable[[], dict[str, float]] | None = None, validate_every: int = 0) -> TrainResult:
    """Run until `settings.steps` (or `stop_after` global steps, for tests). Returns rank 0's losses.

    `validate` (rank 0, every `validate_every` steps and at the end) returns scalars for TensorBoard; it must
    not draw from the global RNGs (use its own generator) so that validation never changes training."""
    started = time.perf_counter()
    run = _Run(objective, dataset, settings, Path(out_dir), ctx, resume)
    previous_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        run.run(settings.steps if stop_after is None else min(settings.steps, stop_after), validate, validate_every)
    finally:
        torch.set_num_threads(previous_threads)
    return TrainResult(run.losses, run.progress["step"], time.perf_counter() - started)
