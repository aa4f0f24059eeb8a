"""Checkpoints of a training run that resume exactly (written atomically under `OUT/train_state/`):
`weights.safetensors` (objective, optimiser tensors), `state.json` (step, epoch, batch position, optimiser
hyperparameters) and per rank `rng_rank{r}.safetensors` + `rng_rank{r}.json` (torch, CUDA, numpy and python RNG
states) and `params_rank{r}.sha256` (digest of that rank's trainable weights, equal on all ranks under DDP)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .runtime import Context, barrier


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
