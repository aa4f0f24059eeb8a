"""The training loop every stage shares: AdamW with warm-up + cosine, gradient clipping, autocast, DDP,
TensorBoard, and checkpoints that resume exactly (train_state.py).

A stage hands over an `objective`: an nn.Module whose forward(batch) returns a dict of losses with a "loss"
entry, whose trainable parameters are those with requires_grad, and which may define `after_optimizer_step()`
(e.g. an EMA update). Frozen parts live inside it too, so DDP, devices and checkpoints see one module.
Logs: TensorBoard under `OUT/tensorboard`, the same scalars in `OUT/history.jsonl`. Items draw their
randomness from (seed, epoch, index), so restoring the sampler position and the RNG states reproduces the
uninterrupted run. Settings: settings.py; where it runs: runtime.py; which clips: batches.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .batches import ResumableSampler, curriculum_order
from .data.dataset import collate
from .runtime import Context, autocast, seed_everything
from .settings import TrainSettings
from .train_state import load_state, save_state

Validate = Callable[[], dict[str, float]]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then half a cosine down to 0 at `total` (diffusers' "cosine" schedule)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


@dataclass
class TrainResult:
    losses: list[float]  # the "loss" of every step run in this call, rank 0's values
    steps: int  # global step reached
    seconds: float


def train(objective: nn.Module, dataset, settings: TrainSettings, out_dir: str | Path, ctx: Context, *,
          resume: bool = False, stop_after: int | None = None, validate: Validate | None = None,
          validate_every: int = 0) -> TrainResult:
    """Run until `settings.steps` (or `stop_after` global steps, for tests). Returns rank 0's losses.

    `validate` (rank 0, every `validate_every` steps and at the end) returns scalars for TensorBoard; it must
    not draw from the global RNGs (use its own generator) so that validation never changes training."""
    started = time.perf_counter()
    run = Trainer(objective, dataset, settings, Path(out_dir), ctx, resume)
    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    with _torch_threads(settings.threads), run.reporting(end):
        while run.progress["step"] < end:
            for batch in run.batches():  # this epoch's batches, from where the run stands
                phase_ended = run.step(batch)  # a curriculum phase that ends also ends the epoch
                run.report(end, validate, validate_every)
                run.checkpoint(end)
                if run.progress["step"] >= end or phase_ended:
                    break
            else:
                run.next_epoch()
    return TrainResult(run.losses, run.progress["step"], time.perf_counter() - started)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Trainer:
    """One call of `train`: the optimiser, sampler, loggers and the progress counters (step, epoch, batch)."""

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
        self.last: tuple[dict[str, torch.Tensor], float, float] | None = None  # terms, lr, grad norm
        self.writer = self.bar = None

    def batches(self) -> DataLoader:
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

    def next_epoch(self) -> None:
        self.progress["epoch"] += 1
        self.progress["batch_in_epoch"] = 0

    def step(self, batch: dict) -> bool:
        """One optimiser step; True when it ends a curriculum phase (the epoch then ends too)."""
        settings, device, pool = self.settings, self.ctx.device, self.pool_size()
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
        self.last = terms, lr, float(grad_norm)
        phase_ended = self.pool_size() != pool
        if phase_ended:  # the next batches come from another pool: a new epoch, before any checkpoint
            self.next_epoch()
        return phase_ended

    @contextlib.contextmanager
    def reporting(self, end: int) -> Iterator[None]:
        """TensorBoard and the progress bar on rank 0 for the duration of the run."""
        if self.ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter
            from tqdm import tqdm

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
            self.bar = tqdm(total=end, initial=self.progress["step"], desc=self.out.name, unit="step",
                            dynamic_ncols=True)
        self.objective.train()
        try:
            yield
        finally:
            if self.ctx.is_main:
                self.bar.close()
                self.writer.close()

    def report(self, end: int, validate: Validate | None, validate_every: int) -> None:
        """Rank 0: the step's scalars every `log_every` steps, validation every `validate_every`, the bar."""
        if not self.ctx.is_main:
            return
        step = self.progress["step"]
        if step % self.settings.log_every == 0 or step == end:
            terms, lr, grad_norm = self.last
            scalars = {k: float(v.detach()) for k, v in terms.items()}
            scalars.update(lr=lr, grad_norm=grad_norm)
            for key, value in scalars.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            with open(self.out / "history.jsonl", "a", encoding="utf-8") as f:  # plain-text copy of the curves
                f.write(json.dumps({"step": step, **scalars}) + "\n")
        if validate is not None and validate_every > 0 and (step % validate_every == 0 or step == end):
            self.objective.eval()
            for key, value in validate().items():
                self.writer.add_scalar(f"val/{key}", value, step)
            self.objective.train()
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.losses[-1]:.4f}")

    def checkpoint(self, end: int) -> None:
        step = self.progress["step"]
        if step % self.settings.checkpoint_every == 0 or step == end:
            save_state(self.state_dir, self.ctx, self.objective, self.optimizer,
                       {**self.progress, "grad_scaler": self.scaler.state_dict()})
