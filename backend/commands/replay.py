"""Replay a recorded sampler run from raw inputs and return every intermediate (for compatibility checks).

Input arrays (names as in shared/fixtures/motionlcm_official/inputs.npz): `text_emb` (B, 1, D), `z_T` (B, L, C),
`lengths` (B,), optional `hint` / `hint_mask` (B, T, 22, 3), optional `mean`, `std`, `raw_mean`, `raw_std`
(used for an official .ckpt, which carries no statistics). Re-noising between LCM steps uses the recorded
`step{k}_injected_noise` arrays when given, so multi-step runs are reproducible without the reference RNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.checkpoints import NORM_KEYS, load_any
from backend.errors import InvalidRequest
from backend.generation.latent_sampler import LatentSampler


def _tensor(inputs: dict[str, np.ndarray], name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if name not in inputs:
        raise InvalidRequest(f"replay inputs lack {name!r} (have {sorted(inputs)})")
    return torch.as_tensor(np.asarray(inputs[name]), dtype=dtype)


def replay(checkpoint_path: str | Path, inputs: dict[str, np.ndarray], steps: int = 1,
           injected_noise: dict[str, np.ndarray] | None = None, guidance: float | None = None,
           seed: int | None = None) -> dict[str, np.ndarray]:
    """Run LCM sampling + decoding; returns w_embedding, controlnet_cond, controlnet_residual_step0_block*,
    step{k}_* arrays, z_0, feats_norm, feats_denorm and joints (full padded length, as the reference does).

    Without `injected_noise`, re-noising draws from a torch.Generator seeded with `seed` (0 when None).
    """
    norm = {k: inputs[k] for k in NORM_KEYS} if all(k in inputs for k in NORM_KEYS) else None
    sampler = LatentSampler(load_any(checkpoint_path, norm=norm))
    text_emb, z_T = _tensor(inputs, "text_emb"), _tensor(inputs, "z_T")
    lengths = _tensor(inputs, "lengths", torch.long)
    hint = _tensor(inputs, "hint") if "hint" in inputs else None
    hint_mask = _tensor(inputs, "hint_mask") if "hint_mask" in inputs else None
    noise = None
    if injected_noise is not None:
        names = [f"step{k}_injected_noise" for k in range(steps - 1)]
        missing = [n for n in names if n not in injected_noise]
        if missing:
            raise InvalidRequest(f"injected noise lacks {missing}")
        noise = [torch.as_tensor(np.asarray(injected_noise[n]), dtype=torch.float32) for n in names]
    record: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    z0 = sampler.sample(text_emb, z_T, steps, sampler.guidance(steps, guidance), hint, hint_mask, noise=noise,
                        generator=generator, record=record)
    feats_norm, feats = sampler.decode(z0, lengths)
    result = {k: v.numpy() for k, v in record.items()}
    result["feats_norm"] = feats_norm.numpy()
    result["feats_denorm"] = feats.numpy().astype(np.float32)
    result["joints"] = sampler.joints(feats).numpy().astype(np.float32)
    result["lengths"] = lengths.numpy()
    return result


def _load_npz(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {path} as an .npz archive ({exc})") from exc


def _run(args: argparse.Namespace) -> int:
    noise = _load_npz(args.injected_noise) if args.injected_noise else None
    result = replay(args.checkpoint, _load_npz(args.inputs), steps=args.steps, injected_noise=noise,
                    guidance=args.guidance, seed=args.seed)
    np.savez(args.out, **result)
    print(f"wrote {len(result)} arrays to {args.out}")
    return 0


def add_parser(subparsers: Any) -> None:
    """`motionlcm replay --checkpoint CKPT --inputs inputs.npz --steps 1|2|4 [--injected-noise X.npz] --out R.npz`."""
    parser = subparsers.add_parser("replay", help="re-run the sampler on recorded inputs and save all intermediates",
                                   description=replay.__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="official .ckpt file or checkpoint folder")
    parser.add_argument("--inputs", required=True, help=".npz with text_emb, z_T, lengths[, hint, hint_mask, ...]")
    parser.add_argument("--steps", type=int, choices=(1, 2, 4), default=1)
    parser.add_argument("--injected-noise", help=".npz with step{k}_injected_noise arrays (e.g. outputs_steps4.npz)")
    parser.add_argument("--guidance", type=float, help="LCM guidance w (default: the checkpoint's cfg_step_map)")
    parser.add_argument("--seed", type=int, help="seed for re-noising when no noise is injected (default 0)")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.set_defaults(func=_run)
