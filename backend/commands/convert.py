"""`motionlcm convert`: an official MotionLCM `.ckpt`, or one of our checkpoint folders (e.g. to re-save it as
float16 for shipping), into our format (safetensors + JSON) with its statistics, provenance, licence and sampling
settings. An AR engine folder (backend/ar_checkpoint.py) is re-saved the same way, optionally with new recommended
sampling settings."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from backend.ar_checkpoint import is_engine_folder, load_ar, save_ar
from backend.checkpoints import (CONFIG_FILE, OFFICIAL_LICENCE, WEIGHTS_FILE, LoadedCheckpoint, file_sha256,
                                 load_checkpoint, load_official_checkpoint, save_checkpoint)
from backend.errors import CheckpointError
from backend.generation.sampling_config import OFFICIAL_CORRELATION_PENALTY, valid_penalty


def _resave(loaded: LoadedCheckpoint, dst: str | Path, provenance: dict[str, Any], licence: str | None,
            half: bool, tuning_penalty: float | None) -> Path:
    """`loaded` written to `dst` with its statistics and sampling settings; `tuning_penalty` replaces its own."""
    sampling = loaded.sampling
    if tuning_penalty is not None:
        if not valid_penalty(tuning_penalty):
            raise CheckpointError(f"tuning_correlation_penalty must be a number >= 0, got {tuning_penalty!r}")
        sampling = dataclasses.replace(sampling, tuning_penalty=float(tuning_penalty))
    return save_checkpoint(dst, loaded.model, text_encoder_id=loaded.text_encoder_id, text_dim=loaded.text_dim,
                           mean=loaded.mean, std=loaded.std, raw_mean=loaded.raw_mean, raw_std=loaded.raw_std,
                           provenance=provenance, licence=licence, half=half, sampling=sampling)


def convert_official(src: str | Path, dst: str | Path, half: bool = False,
                     norm: dict[str, Any] | None = None, tuning_penalty: float | None = None) -> Path:
    """Official `.ckpt` -> our folder format (same weights, explicit statistics, provenance and licence)."""
    src = Path(src)
    provenance = {"converted_from": src.name, "source_sha256": file_sha256(src), "source_format": "official MotionLCM"}
    return _resave(load_official_checkpoint(src, norm=norm), dst, provenance, OFFICIAL_LICENCE, half, tuning_penalty)


def convert_checkpoint(src: str | Path, dst: str | Path, half: bool = False,
                       tuning_penalty: float | None = None, **ar_sampling: Any) -> Path:
    """An official `.ckpt` or one of our folders (MotionLCM or AR engine) -> our folder format, e.g. float16 for
    shipping. A folder keeps its provenance, licence and sampling settings, and records which weights it was
    converted from. tuning_penalty: the latent tuning correlation penalty to recommend with a MotionLCM model
    (default: a folder's own, the official value for an official checkpoint); ar_sampling (temperature, top_k,
    guidance; None keeps the folder's): the sampling to recommend with an AR engine."""
    src = Path(src)
    chosen = {k: v for k, v in ar_sampling.items() if v is not None}
    ar = src.is_dir() and is_engine_folder(src)
    if ar and tuning_penalty is not None:
        raise CheckpointError("--tuning-penalty applies to MotionLCM checkpoints, not to AR engine folders")
    if chosen and not ar:
        raise CheckpointError(f"{', '.join(chosen)} apply to AR engine folders (motionlcm-train ar), not to {src}")
    if not src.is_dir():
        return convert_official(src, dst, half=half, tuning_penalty=tuning_penalty)
    if Path(dst).resolve() == src.resolve():
        raise CheckpointError(f"--out {dst} is the source folder; write the converted checkpoint elsewhere")
    loaded = load_ar(src) if ar else load_checkpoint(src)
    provenance = {**loaded.provenance, "converted_from": loaded.checkpoint_id,
                  "source_sha256": file_sha256(src / WEIGHTS_FILE)}
    if ar:
        return save_ar(dst, loaded.tokenizer, loaded.generator, loaded.mean, loaded.std,
                       text_encoder_id=loaded.text_encoder_id, text_dim=loaded.text_dim,
                       sampling=dataclasses.replace(loaded.sampling, **chosen), provenance=provenance,
                       licence=loaded.licence, half=half)
    return _resave(loaded, dst, provenance, loaded.licence or None, half, tuning_penalty)


def _run_convert(args: argparse.Namespace) -> int:
    out = convert_checkpoint(args.checkpoint, args.out, half=args.half, tuning_penalty=args.tuning_penalty,
                             temperature=args.temperature, top_k=args.top_k, guidance=args.guidance)
    print(f"wrote {out / WEIGHTS_FILE} and {out / CONFIG_FILE}")
    return 0


def add_parser(subparsers: Any) -> None:
    """`motionlcm convert --checkpoint X.ckpt|DIR --out DIR [--half] [--tuning-penalty P]`."""
    parser = subparsers.add_parser("convert", help="convert an official MotionLCM .ckpt (or re-save a checkpoint "
                                                   "folder, e.g. as float16) into a checkpoint folder",
                                   description=convert_checkpoint.__doc__)
    parser.add_argument("--checkpoint", required=True, help="official MotionLCM .ckpt file or checkpoint folder")
    parser.add_argument("--out", required=True, help="output folder (model.safetensors + config.json)")
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    parser.add_argument("--tuning-penalty", type=float, metavar="P",
                        help="latent tuning correlation penalty recommended with this model, the pipeline's "
                             f"default for it (folders keep theirs unless given; official: "
                             f"{OFFICIAL_CORRELATION_PENALTY:g})")
    ar = parser.add_argument_group("AR engine folders (motionlcm-train ar): recommended sampling")
    ar.add_argument("--temperature", type=float)
    ar.add_argument("--top-k", type=int)
    ar.add_argument("--guidance", type=float, help="classifier-free guidance (1 = off)")
    parser.set_defaults(func=_run_convert)
