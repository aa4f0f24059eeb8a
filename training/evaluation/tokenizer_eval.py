"""`motionlcm-eval tokenizer`: a MotionMillion tokenizer checkpoint on a split of 272-dim data.

Reported (JSON on stdout, and the figures docs/motionmillion.md asks for):
- reconstruction MPJPE (metres): of the decoded positions in the world, whose root path is integrated from the
  decoded root velocities and heading changes (so it includes drift over the clip), and of the pose alone (the
  root-relative, heading-free positions the features store); whole clips, cut to a multiple of the token size;
- per-joint rotation error: the mean geodesic angle (degrees) between decoded and original joint rotations;
- codebook usage: the fraction of the codebook's codes used over the split, and the perplexity of their use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from backend.motion import rep272
from backend.motion.skeleton import JOINT_NAMES

from ..data.rep272_data import split_272


def evaluate_tokenizer(checkpoint: str | Path, data: str | Path, split: str = "test") -> dict:
    from backend.ar_checkpoint import load_tokenizer

    model, mean, std = load_tokenizer(checkpoint)
    step = model.config.frames_per_token
    root = Path(data)
    names = split_272(root, split)
    if not names:
        raise ValueError(f"split {split!r} of {root} is empty")
    position_errors, pose_errors, angle_errors = [], [], []
    counts = np.zeros(model.quantizer.codebook_size)
    for name in names:
        features = np.load(root / "vector_272" / f"{name}.npy")
        features = features[: len(features) // step * step]
        with torch.no_grad():
            x = (torch.from_numpy(features).float() - mean) / std
            reconstruction, tokens = model(x[None])
        decoded = (reconstruction[0] * std + mean).double().numpy()
        counts += np.bincount(tokens.flatten().numpy(), minlength=len(counts))
        positions, rotations = rep272.from_272(features)
        positions_rec, rotations_rec = rep272.from_272(decoded)
        position_errors.append(np.linalg.norm(positions_rec - positions, axis=-1).mean())
        pose = (decoded - features)[:, rep272.POSITIONS].reshape(len(features), -1, 3)
        pose_errors.append(np.linalg.norm(pose, axis=-1).mean())
        relative = np.einsum("tjik,tjil->tjkl", rotations, rotations_rec)  # R^T R'
        cos = np.clip((np.trace(relative, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
        angle_errors.append(np.degrees(np.arccos(cos)).mean(axis=0))
    used = counts / counts.sum()
    nonzero = used[used > 0]
    per_joint = np.mean(angle_errors, axis=0)
    return {"checkpoint": str(checkpoint), "data": str(root), "split": split, "clips": len(names),
            "mpjpe_m": round(float(np.mean(position_errors)), 4),
            "mpjpe_pose_m": round(float(np.mean(pose_errors)), 4),
            "rotation_error_deg": {"mean": round(float(per_joint.mean()), 2),
                                   "per_joint": {j: round(float(e), 2) for j, e in zip(JOINT_NAMES, per_joint)}},
            "codebook": {"size": int(len(counts)), "used_fraction": round(float((counts > 0).mean()), 4),
                         "perplexity": round(float(np.exp(-(nonzero * np.log(nonzero)).sum())), 1)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="motionlcm-eval tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="tokenizer checkpoint (RUN/tokenizer/checkpoint)")
    parser.add_argument("--data", required=True, help="dataset prepared with --format both")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate_tokenizer(args.checkpoint, args.data, args.split), indent=1))
    return 0
