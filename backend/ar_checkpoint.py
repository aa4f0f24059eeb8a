"""Checkpoints of the MotionMillion engine (docs/motionmillion.md): a tokenizer folder, and an engine folder that
holds the tokenizer and the generator together. Both are safetensors + JSON, so nothing is unpickled.

Tokenizer folder (`motionlcm-train tokenizer`): `model.safetensors` with the tokenizer's state dict and its
feature statistics `norm.mean` / `norm.std` (float32); `config.json` with the format tag, the architecture and the
training provenance.
Engine folder (`motionlcm-train ar`, and the shipped `backend/default_model_ar`): `model.safetensors` with
`tokenizer.*`, `generator.*` (float32 or float16) and the float32 `norm.*`; `config.json` with both architectures,
the text encoder, the sampling defaults, provenance and licence.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backend.checkpoints import CONFIG_FILE, WEIGHTS_FILE, file_sha256, load_weights, read_config
from backend.errors import CheckpointError
from backend.models.ar_transformer import ARConfig, MotionGPT
from backend.models.motion_tokenizer import MotionTokenizer, TokenizerConfig

TOKENIZER_FORMAT = "motionlcm-tokenizer"
ENGINE_FORMAT = "motionlcm-ar"
DEFAULT_AR_CHECKPOINT = Path(__file__).resolve().parent / "default_model_ar"


@dataclass(frozen=True)
class ARSampling:
    """The sampling a checkpoint recommends (the CLI, server and add-on defaults for it)."""

    temperature: float = 1.0
    top_k: int | None = None
    guidance: float = 1.0  # classifier-free guidance; 1 = off

    def validate(self) -> None:
        if not (self.temperature > 0 and self.guidance > 0):
            raise CheckpointError(f"sampling needs a positive temperature and guidance, got {self}")
        if self.top_k is not None and self.top_k < 1:
            raise CheckpointError(f"top_k must be at least 1, got {self.top_k}")


@dataclass
class LoadedAR:
    tokenizer: MotionTokenizer
    generator: MotionGPT
    mean: torch.Tensor  # (272,) feature statistics of the tokenizer's data
    std: torch.Tensor
    text_encoder_id: str
    text_dim: int
    checkpoint_id: str  # "<folder name>@<first 12 hex of the weights' sha256>", as for MotionLCM checkpoints
    sampling: ARSampling = field(default_factory=ARSampling)
    provenance: dict[str, Any] = field(default_factory=dict)
    licence: str = ""


def _tokenizer_config(architecture: dict) -> TokenizerConfig:
    return TokenizerConfig(**{**architecture, "levels": tuple(int(v) for v in architecture["levels"])})


def is_engine_folder(path: str | Path) -> bool:
    """Whether `path` is an AR engine folder (its config.json says so)."""
    try:
        return json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == ENGINE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str, folder: Path) -> None:
    try:
        module.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: the {what} weights do not fit its architecture ({exc})") from exc


def save_tokenizer(path: str | Path, model: MotionTokenizer, mean: Any, std: Any, provenance: dict) -> Path:
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tensors["norm.mean"] = torch.as_tensor(mean, dtype=torch.float32)
    tensors["norm.std"] = torch.as_tensor(std, dtype=torch.float32)
    save_file(tensors, str(folder / WEIGHTS_FILE))
    config = {"format": TOKENIZER_FORMAT, "architecture": dataclasses.asdict(model.config), "provenance": provenance}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def load_tokenizer(path: str | Path) -> tuple[MotionTokenizer, torch.Tensor, torch.Tensor]:
    """(model in eval mode, mean, std) of a tokenizer checkpoint folder."""
    folder = Path(path)
    config = read_config(folder, TOKENIZER_FORMAT)
    model = MotionTokenizer(_tokenizer_config(config["architecture"]))
    tensors = load_weights(folder / WEIGHTS_FILE)
    mean, std = tensors.pop("norm.mean"), tensors.pop("norm.std")
    _load_state(model, tensors, "tokenizer", folder)
    return model.eval(), mean, std


def save_ar(path: str | Path, tokenizer: MotionTokenizer, generator: MotionGPT, mean: Any, std: Any, *,
            text_encoder_id: str, text_dim: int, sampling: ARSampling = ARSampling(),
            provenance: dict | None = None, licence: str = "", half: bool = False) -> Path:
    """The engine folder: both networks (float16 with `half`) and the feature statistics (float32)."""
    from safetensors.torch import save_file

    if int(text_dim) != generator.config.text_dim:
        raise CheckpointError(f"text_dim {text_dim} does not match the generator's ({generator.config.text_dim})")
    sampling.validate()
    dtype = torch.float16 if half else torch.float32
    tensors = {f"{prefix}.{k}": v.detach().to("cpu", dtype).contiguous()
               for prefix, module in (("tokenizer", tokenizer), ("generator", generator))
               for k, v in module.state_dict().items()}
    broken = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"non-finite weights{' in float16' if half else ''}: {broken[:3]}")
    tensors["norm.mean"] = torch.as_tensor(mean, dtype=torch.float32)
    tensors["norm.std"] = torch.as_tensor(std, dtype=torch.float32)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": ENGINE_FORMAT})
    config = {"format": ENGINE_FORMAT, "tokenizer": dataclasses.asdict(tokenizer.config),
              "generator": dataclasses.asdict(generator.config),
              "text_encoder": {"id": text_encoder_id, "dim": int(text_dim)},
              "sampling": dataclasses.asdict(sampling), "weights_dtype": "float16" if half else "float32",
              "provenance": provenance or {}, "licence": licence}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def load_ar(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedAR:
    """An engine folder (None: the shipped default), both networks in eval mode and float32 on `device`."""
    folder = DEFAULT_AR_CHECKPOINT if path is None else Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} is not an AR engine checkpoint folder (no {CONFIG_FILE})"
                              + ("; the package ships none: train one with `motionlcm-train ar`" if path is None
                                 else ""))
    config = read_config(folder, ENGINE_FORMAT)
    try:
        tokenizer = MotionTokenizer(_tokenizer_config(config["tokenizer"]))
        generator = MotionGPT(ARConfig(**config["generator"]))
        sampling = ARSampling(**config.get("sampling", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: unreadable architecture in {CONFIG_FILE} ({exc})") from exc
    sampling.validate()
    tensors = load_weights(folder / WEIGHTS_FILE)
    parts = {prefix: {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
             for prefix in ("tokenizer", "generator")}
    _load_state(tokenizer, parts["tokenizer"], "tokenizer", folder)
    _load_state(generator, parts["generator"], "generator", folder)
    if "norm.mean" not in tensors or "norm.std" not in tensors:
        raise CheckpointError(f"{folder}: {WEIGHTS_FILE} has no feature statistics (norm.mean, norm.std)")
    digest = file_sha256(folder / WEIGHTS_FILE)[:12]
    text = config.get("text_encoder", {})
    return LoadedAR(tokenizer=tokenizer.to(device).eval(), generator=generator.to(device).eval(),
                    mean=tensors["norm.mean"].to(device), std=tensors["norm.std"].to(device),
                    text_encoder_id=str(text.get("id")), text_dim=int(text.get("dim", 0)),
                    checkpoint_id=f"{folder.name}@{digest}", sampling=sampling,
                    provenance=config.get("provenance", {}), licence=str(config.get("licence", "")))
