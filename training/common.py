"""What the four stage scripts share: configs, data, text embeddings, checkpoints in and out."""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

from backend.models import ModelConfig, MotionLCM

from .data.augment import Augment
from .data.dataset import ControlSpec, HumanML3D
from .runtime import Context, setup
from .settings import TrainSettings

STAGES = ("vae", "mld", "lcm", "controlnet")
PRESETS = ("tiny", "default", "official")


# ---- configs ----------------------------------------------------------------------------------------------------

def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ValueError(f"--set expects KEY.PATH=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.split("."), yaml.safe_load(value)


def load_stage_config(stage: str, preset: str = "default", overrides: list[str] | None = None,
                      path: str | Path | None = None) -> dict:
    """The stage's YAML (bundled, or `path`), with `presets[preset]` and `--set a.b=value` overrides applied."""
    if path is None:
        text = resources.files("training").joinpath("configs").joinpath(f"{stage}.yaml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    presets = raw.pop("presets", None)
    if presets is not None and preset not in presets:
        raise ValueError(f"{stage}: unknown preset {preset!r}; choose from {', '.join(presets)}")
    cfg = _merge(raw, presets[preset]) if presets else raw  # a user's YAML without presets is used as written
    for item in overrides or []:
        keys, value = _parse_override(item)
        node = cfg
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    cfg["stage"], cfg["preset"] = stage, preset
    return cfg


def train_settings(cfg: dict, dataset_len: int, world_size: int) -> TrainSettings:
    """Steps from `train.steps`, or from `train.epochs` like the official scripts (epochs x batches/epoch)."""
    train = dict(cfg["train"])
    epochs, steps = train.pop("epochs", None), train.pop("steps", None)
    if steps is None:
        if epochs is None:
            raise ValueError("train.steps or train.epochs must be set")
        steps = int(epochs) * max(1, dataset_len // (int(train["batch_size"]) * world_size))
    numeric = {k: float(v) for k, v in train.items()
               if k in ("learning_rate", "weight_decay", "beta1", "beta2", "eps", "max_grad_norm")}
    return TrainSettings.from_dict({**train, **numeric, "steps": int(steps)})


def model_config(cfg: dict, text_dim: int, *, time_cond_proj_dim: int | None, controlnet: bool) -> ModelConfig:
    """The architecture of this stage: teacher (no w-embedding) or LCM student, with or without ControlNet."""
    model = cfg["model"]
    if model == "tiny":
        base = ModelConfig.tiny(text_dim=text_dim, controlnet=controlnet)
    elif model == "official":
        base = dataclasses.replace(ModelConfig().with_text_dim(text_dim), controlnet=controlnet)
    elif isinstance(model, dict):
        # The official architecture with other stack sizes, e.g. {hidden_dim: 192, num_layers: 5}: applied to
        # the VAE, denoiser/ControlNet and trajectory encoder alike (the latent stays 16 x 32); or per stack,
        # e.g. {vae: {num_layers: 7}, denoiser: {hidden_dim: 128}}.
        official = ModelConfig().with_text_dim(text_dim)
        names = ("vae", "denoiser", "traj_encoder")
        per_stack = model if set(model) <= set(names) else {name: model for name in names}
        try:
            stacks = {name: dataclasses.replace(getattr(official, name), **per_stack.get(name, {}))
                      for name in names}
            base = dataclasses.replace(official, controlnet=controlnet, **stacks)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model sizes {model!r} do not fit the architecture: {exc}") from exc
    else:
        raise ValueError(f"model must be 'official', 'tiny' or a mapping of stack sizes, got {model!r}")
    return dataclasses.replace(base, denoiser=dataclasses.replace(base.denoiser,
                                                                  time_cond_proj_dim=time_cond_proj_dim))


# ---- data -------------------------------------------------------------------------------------------------------

def augmentation(cfg: dict) -> Augment:
    values = dict(cfg.get("augment") or {})
    known = [field.name for field in dataclasses.fields(Augment)]
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"augment: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return Augment(**{key: float(value) for key, value in values.items()})


def control_spec(cfg: dict) -> ControlSpec:
    joints = cfg["control"]["joints"]
    if joints == "pelvis":
        spec = ControlSpec.pelvis()
    elif joints == "all":
        spec = ControlSpec.six_joints()
    else:
        raise ValueError(f"control.joints must be 'pelvis' or 'all', got {joints!r}")
    return dataclasses.replace(spec, density=cfg["control"].get("density", "random"))


class TextEmbedder:
    """The frozen text encoder with a cache: a corpus has a few thousand distinct captions at most."""

    def __init__(self, spec: str | None, device: torch.device) -> None:
        from backend.generation.text_encoders import load_text_encoder

        self.encoder = load_text_encoder(spec, device="cpu")
        self.device = device
        self.cache: dict[str, torch.Tensor] = {}

    @property
    def id(self) -> str:
        return self.encoder.id

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            for text, emb in zip(missing, self.encoder.encode(missing)):
                self.cache[text] = emb.to(self.device)
        return torch.stack([self.cache[t] for t in texts])

    def warm(self, dataset: HumanML3D) -> None:
        self([""] + sorted({caption for _, _, captions in dataset.items for caption, _ in captions}))


# ---- checkpoints ------------------------------------------------------------------------------------------------

class TextStage(NamedTuple):
    """What the three text-conditioned stages (mld, lcm, controlnet) start from."""

    cfg: dict
    seed: int
    ctx: Context
    dataset: HumanML3D
    settings: TrainSettings
    text: TextEmbedder


def start_text_stage(stage: str, data: str | Path, preset: str, overrides: list[str] | None,
                     config: str | Path | None) -> TextStage:
    """Config, seeded process, training set (with control windows for the ControlNet), settings, warm text cache."""
    cfg = load_stage_config(stage, preset, overrides, config)
    seed = int(cfg["train"]["seed"])
    ctx = setup(seed)
    control = control_spec(cfg) if stage == "controlnet" else None
    dataset = HumanML3D(data, "train", seed=seed, control=control, augmentation=augmentation(cfg))
    text = TextEmbedder(cfg.get("text_encoder"), ctx.device)
    text.warm(dataset)
    return TextStage(cfg, seed, ctx, dataset, train_settings(cfg, len(dataset), ctx.world_size), text)


def stage_dir(out: str | Path, stage: str) -> Path:
    return Path(out) / stage


def output_path(out: str | Path, stage: str) -> Path:
    """The stage's result: an engine checkpoint folder (model.safetensors + config.json, backend.checkpoints)."""
    return stage_dir(out, stage) / "checkpoint"


def load_stage_output(out: str | Path, stage: str) -> MotionLCM:
    from backend.checkpoints import load_checkpoint

    path = output_path(out, stage)
    if not path.exists():
        raise ValueError(f"{path} is missing: run `motionlcm-train {stage}` first")
    return load_checkpoint(path).model


def export(model: MotionLCM, out: str | Path, stage: str, cfg: dict, text: TextEmbedder | None,
           dataset: HumanML3D, text_encoder_meta: tuple[str, int] | None = None, steps: int = 0) -> Path:
    """Write the stage's result in the engine's format (rank 0 only)."""
    from backend.checkpoints import save_checkpoint

    encoder_id, text_dim = text_encoder_meta or (text.id, text.dim)  # type: ignore[union-attr]
    path = output_path(out, stage)
    raw_mean, raw_std = _spatial_stats(dataset)
    info_file = dataset.root / "dataset.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.exists() else {}
    provenance = {"trainer": "motionlcm-train", "stage": stage, "preset": cfg.get("preset"), "steps": steps,
                  "data": str(dataset.root), "dataset": info, "config": json.loads(json.dumps(cfg, default=str))}
    save_checkpoint(path, model, text_encoder_id=encoder_id, text_dim=text_dim,
                    mean=np.asarray(dataset.mean, np.float32), std=np.asarray(dataset.std, np.float32),
                    raw_mean=raw_mean, raw_std=raw_std, provenance=provenance, licence=info.get("licence"))
    return path


def _spatial_stats(dataset: HumanML3D) -> tuple[np.ndarray, np.ndarray]:
    if getattr(dataset, "control", None) is not None:
        return dataset.raw_mean.astype(np.float32), dataset.raw_std.astype(np.float32)
    from backend.motion.norm_stats import spatial_mean_std

    return spatial_mean_std()


def text_encoder_identity(spec: str | None) -> tuple[str, int]:
    """(id, dim) of the text encoder a stage records, without loading the default one."""
    from backend.generation.text_encoders import DEFAULT_ENCODER_DIM, DEFAULT_ENCODER_ID, load_text_encoder

    if spec in (None, DEFAULT_ENCODER_ID):
        return DEFAULT_ENCODER_ID, DEFAULT_ENCODER_DIM
    encoder = load_text_encoder(spec)
    return encoder.id, encoder.dim


class Objective(torch.nn.Module):
    """Base for the stage objectives: modules listed in `frozen` get no gradients and stay in eval mode
    (no dropout) even while the objective trains."""

    frozen: tuple[str, ...] = ()

    def freeze(self) -> None:
        for name in self.frozen:
            getattr(self, name).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "Objective":
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self
