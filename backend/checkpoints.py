"""Checkpoint loading and saving: official MotionLCM `.ckpt` files (read-only) and our own folder format.

Our format is a directory with
  * `model.safetensors`: network weights under vae. / denoiser. / controlnet. / traj_encoder. (float32 or
    float16), plus float32 normalisation tensors `norm.mean`, `norm.std` (features) and `norm.raw_mean`,
    `norm.raw_std` (control hints);
  * `config.json`: format tag and version, architecture (`ModelConfig.to_dict()`), text encoder id and
    dimension, sampling settings, training provenance and a licence note.
Checkpoints are untrusted input: official files are read with `torch.load(weights_only=True)`, ours with
safetensors; nothing is unpickled. Every failure raises `CheckpointError` with a specific message.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.errors import CheckpointError
from backend.models import MotionLCM
from backend.models.config import DenoiserConfig, ModelConfig, TrajEncoderConfig, VAEConfig
from backend.generation.sampling_config import SamplingConfig

FORMAT = "motionlcm-blender-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
NORM_KEYS = ("mean", "std", "raw_mean", "raw_std")
OFFICIAL_TEXT_ENCODER = ("sentence-t5-large", 768)
NETWORK_PREFIXES = ("vae.", "denoiser.", "controlnet.", "traj_encoder.")
DEFAULT_LICENCE = ("Weights are subject to the licences of the data and models they were trained or converted from; "
                   "see the provenance entry.")
OFFICIAL_LICENCE = ("Converted from an official MotionLCM checkpoint: MotionLCM 'License for Non-commercial "
                    "Scientific Research Purposes' applies to these weights.")


@dataclass
class LoadedCheckpoint:
    """A ready-to-sample model (eval mode, float32) and everything needed to use it correctly."""

    model: MotionLCM
    config: ModelConfig
    mean: np.ndarray  # (nfeats,) float32, HumanML3D feature mean
    std: np.ndarray  # (nfeats,)
    raw_mean: np.ndarray  # (njoints, 3) float32, control-hint mean (metres)
    raw_std: np.ndarray  # (njoints, 3)
    text_encoder_id: str
    text_dim: int
    checkpoint_id: str  # "<name>@<first 12 hex of the weights' sha256>"
    name: str
    source: str  # "official" or "motionlcm"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # guidance, timesteps, tuning penalty
    provenance: dict[str, Any] = field(default_factory=dict)
    licence: str = ""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- architecture inference and strict loading

def _stack_shape(state: dict[str, torch.Tensor], prefix: str, pos_key: str) -> dict[str, int]:
    """hidden/ff/layers/max_len of one skip stack, read from its tensors (heads cannot be read: default kept)."""
    marker = f"{prefix}.input_blocks."
    blocks = {k[len(marker):].split(".", 1)[0] for k in state if k.startswith(marker)}
    ff, hidden = state[f"{prefix}.middle_block.linear1.weight"].shape
    return dict(hidden_dim=int(hidden), ff_size=int(ff), num_layers=2 * len(blocks) + 1,
                max_len=int(state[pos_key].shape[0]))


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """ModelConfig of an official state dict (prefixed keys). Attention heads are not stored: 4 (official) is used."""
    required = ("vae.skel_embedding.weight", "vae.global_motion_token", "denoiser.latent_pre.weight",
                "denoiser.emb_proj.1.weight", "denoiser.time_embedding.linear_1.weight")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not a MotionLCM/MLD checkpoint with a VAE and a denoiser: missing {missing}")
    try:
        vae = VAEConfig(nfeats=int(state["vae.skel_embedding.weight"].shape[1]),
                        **_stack_shape(state, "vae.encoder", "vae.query_pos_encoder.pe"))
        cond = state.get("denoiser.time_embedding.cond_proj.weight")
        controlnet = "controlnet.controlnet_cond_embedding.0.weight" in state
        denoiser = DenoiserConfig(
            text_dim=int(state["denoiser.emb_proj.1.weight"].shape[1]),
            time_dim=int(state["denoiser.time_embedding.linear_1.weight"].shape[1]),
            time_cond_proj_dim=int(cond.shape[1]) if cond is not None else None,
            controlnet_embed_dim=int(state["controlnet.controlnet_cond_embedding.0.weight"].shape[0])
            if controlnet else DenoiserConfig.controlnet_embed_dim,
            **_stack_shape(state, "denoiser.encoder", "denoiser.query_pos.pe"))
        traj = TrajEncoderConfig()
        if controlnet:
            traj = TrajEncoderConfig(njoints=int(state["traj_encoder.skel_embedding.weight"].shape[1]) // 3,
                                     **_stack_shape(state, "traj_encoder.encoder", "traj_encoder.query_pos_encoder.pe"))
        return ModelConfig(latent_size=int(state["vae.global_motion_token"].shape[0]) // 2,
                           latent_channels=int(state["denoiser.latent_pre.weight"].shape[1]),
                           vae=vae, denoiser=denoiser, traj_encoder=traj, controlnet=controlnet)
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"cannot infer the architecture from the checkpoint tensors: {exc}") from exc


def _build_model(cfg: ModelConfig, state: dict[str, torch.Tensor], origin: str) -> MotionLCM:
    """MotionLCM(cfg) holding exactly `state` (upcast to float32); lists missing/unexpected keys and shape mismatches.

    Built on the meta device and filled with `assign=True`: no random initialisation, no extra copy.
    """
    with torch.device("meta"):
        model = MotionLCM(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            problems.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
    if problems:
        raise CheckpointError(f"{origin} does not fit its architecture: " + "; ".join(problems))
    bad = [k for k, v in state.items() if not v.is_floating_point()]
    if bad:
        raise CheckpointError(f"{origin}: non-floating-point weight tensors {bad[:3]}")
    weights = {k: v.float().contiguous() for k, v in state.items()}
    broken = [k for k, v in weights.items() if not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"{origin} is corrupted: non-finite values (NaN/Inf, or float16 overflow) in {broken[:3]}")
    model.load_state_dict(weights, strict=True, assign=True)
    return model


def _as_float32(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float32)
    if array.shape != shape:
        raise CheckpointError(f"{what} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise CheckpointError(f"{what} contains non-finite values")
    return array


def _norm_stats(cfg: ModelConfig, values: dict[str, Any], origin: str) -> dict[str, np.ndarray]:
    shapes = {"mean": (cfg.vae.nfeats,), "std": (cfg.vae.nfeats,),
              "raw_mean": (cfg.traj_encoder.njoints, 3), "raw_std": (cfg.traj_encoder.njoints, 3)}
    stats = {k: _as_float32(values[k], shapes[k], f"{origin}: {k}") for k in NORM_KEYS}
    if np.any(stats["std"] <= 0) or np.any(stats["raw_std"] <= 0):
        raise CheckpointError(f"{origin}: standard deviations must be positive")
    return stats


# ---------------------------------------------------------------- official .ckpt

def _read_official_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The safe unpickler names the refused global (e.g. posix.system) or the opcode it cannot read.
        reason = next((line.strip() for line in str(exc).splitlines()
                       if "GLOBAL" in line or "Unsupported" in line), str(exc).splitlines()[0])
        if "GLOBAL" in reason:
            raise CheckpointError(f"{path} was refused: it contains pickled code or objects, not only tensors "
                                  f"({reason}); untrusted checkpoints are never unpickled") from exc
        raise CheckpointError(f"{path} is corrupted or not a PyTorch weights file ({reason})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupted or truncated ({exc})") from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    # Evaluator networks (t2m_*) and anything else outside the sampling networks are ignored.
    return {k: v for k, v in state.items() if k.startswith(NETWORK_PREFIXES)}


def _default_norm() -> dict[str, np.ndarray]:
    from backend.motion.norm_stats import humanml3d_mean_std, spatial_mean_std

    (mean, std), (raw_mean, raw_std) = humanml3d_mean_std(), spatial_mean_std()
    return dict(mean=mean, std=std, raw_mean=raw_mean, raw_std=raw_std)


def load_official_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                             norm: dict[str, Any] | None = None) -> LoadedCheckpoint:
    """Load an official MotionLCM/MLD `.ckpt` (float16 tensors are upcast to float32).

    The architecture is inferred from the tensors (cond_proj -> LCM w-conditioning, emb_proj -> text_dim,
    controlnet.* -> ControlNet). Official models use sentence-t5-large (768-d) text embeddings. `norm` (keys
    mean, std, raw_mean, raw_std) overrides the HumanML3D statistics shipped in `backend.motion.norm_stats`.
    """
    path = Path(path)
    state = _read_official_state(path)
    cfg = infer_config(state)
    model = _build_model(cfg, state, str(path))
    stats = _norm_stats(cfg, norm if norm is not None else _default_norm(), str(path))
    text_id, text_dim = OFFICIAL_TEXT_ENCODER
    if cfg.text_dim != text_dim:
        text_id = f"unknown-{cfg.text_dim}d"
    return LoadedCheckpoint(
        model=model.to(device).eval(), config=cfg, text_encoder_id=text_id, text_dim=cfg.text_dim,
        checkpoint_id=f"{path.stem}@{file_sha256(path)[:12]}", name=path.stem, source="official",
        provenance={"converted_from": path.name}, licence=OFFICIAL_LICENCE, **stats)


# ---------------------------------------------------------------- our folder format

def save_checkpoint(path: str | Path, model: MotionLCM, *, text_encoder_id: str, text_dim: int,
                    mean: Any, std: Any, raw_mean: Any, raw_std: Any,
                    provenance: dict[str, Any] | None = None, licence: str | None = None,
                    half: bool = False, sampling: SamplingConfig | None = None) -> Path:
    """Write `model` to the folder `path` (created if needed) as model.safetensors + config.json.

    half: store network weights as float16 (normalisation tensors stay float32). sampling: the LCM guidance and
    timesteps per step count and the latent tuning penalty recommended with this model (default: the official
    values). Returns the folder.
    """
    from safetensors.torch import save_file

    cfg = model.config
    if int(text_dim) != cfg.text_dim:
        raise CheckpointError(f"text_dim {text_dim} does not match the model's text projection ({cfg.text_dim})")
    stats = _norm_stats(cfg, dict(mean=mean, std=std, raw_mean=raw_mean, raw_std=raw_std), "save_checkpoint")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    broken = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"non-finite weights{' after float16 conversion (use half=False)' if half else ''}: "
                              f"{broken[:3]}")
    tensors.update({f"norm.{k}": torch.from_numpy(v.copy()) for k, v in stats.items()})
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": cfg.to_dict(),
        "text_encoder": {"id": text_encoder_id, "dim": int(text_dim)},
        "sampling": (sampling or SamplingConfig()).to_dict(),
        "weights_dtype": "float16" if half else "float32",
        "provenance": provenance or {},
        "licence": licence or DEFAULT_LICENCE,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def read_config(folder: Path, expected_format: str) -> dict[str, Any]:
    """A checkpoint folder's config.json, which must carry `expected_format` (the AR engine's folders too)."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{folder}: missing {CONFIG_FILE}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != expected_format:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a {expected_format} config (format tag missing or "
                              "different)")
    return config


def load_weights(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (nothing unpickled); CheckpointError when missing or damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not weights.is_file():
        raise CheckpointError(f"{weights.parent}: missing {weights.name}")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is corrupted or truncated ({exc})") from exc


def _read_config(folder: Path) -> dict[str, Any]:
    config = read_config(folder, FORMAT)
    version = config.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{folder}: format_version {version!r} is not supported (this engine reads "
                              f"up to {FORMAT_VERSION}); update the engine")
    return config


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint folder written by `save_checkpoint` (model in eval mode, float32)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    config = _read_config(folder)
    try:
        cfg = ModelConfig.from_dict(config["architecture"])
        text = config["text_encoder"]
        text_id, text_dim = str(text["id"]), int(text["dim"])
        sampling = SamplingConfig.from_dict(config.get("sampling", {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: invalid or incomplete entry ({exc})") from exc
    if text_dim != cfg.text_dim:
        raise CheckpointError(f"{folder}: text encoder dim {text_dim} differs from the architecture's {cfg.text_dim}")
    weights = folder / WEIGHTS_FILE
    tensors = load_weights(weights)
    norm = {k: tensors.pop(f"norm.{k}", None) for k in NORM_KEYS}
    absent = [f"norm.{k}" for k, v in norm.items() if v is None]
    if absent:
        raise CheckpointError(f"{weights}: missing normalisation tensors {absent}")
    stats = _norm_stats(cfg, {k: v.float() for k, v in norm.items()}, str(weights))
    model = _build_model(cfg, tensors, str(weights))
    return LoadedCheckpoint(
        model=model.to(device).eval(), config=cfg, text_encoder_id=text_id, text_dim=text_dim,
        checkpoint_id=f"{folder.name}@{file_sha256(weights)[:12]}", name=folder.name, source="motionlcm",
        sampling=sampling, provenance=dict(config.get("provenance") or {}), licence=str(config.get("licence", "")), **stats)


def load_any(path: str | Path, device: str | torch.device = "cpu",
             norm: dict[str, Any] | None = None) -> LoadedCheckpoint:
    """A folder -> `load_checkpoint`; a file (official `.ckpt`) -> `load_official_checkpoint` (with `norm`)."""
    path = Path(path)
    if path.is_dir():
        return load_checkpoint(path, device)
    if path.is_file():
        return load_official_checkpoint(path, device, norm=norm)
    raise CheckpointError(f"checkpoint not found: {path} (expected an official .ckpt file or a checkpoint folder)")
