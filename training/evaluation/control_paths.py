"""Pelvis paths to judge control fitting on: real captures the model never trained on, and built paths.

Real: every clip of Bandai dataset 1's held-out styles (proud, childish, giant; its SOURCE.md), converted as the
data preparation converts clips (SMPL joints, 20 fps, HumanML3D skeleton, placed at the origin facing +Z), cut to
the model's 196 frames. The archive is read at run time; nothing converted is written. Prompts are paraphrases
written for this test, not training captions. Built: straight walks at three speeds, an S-curve, a circle, a
stop-and-go path and forward hops, at the pelvis height of the HumanML3D skeleton.
"""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.motion.features import features_to_joints, joints_to_features
from backend.motion.skeleton import FPS, MAX_FRAMES

DS1_ARCHIVE = Path("bandai_namco_ds1_eval") / "bandai_namco_dataset1_bvh_json.tar.xz"
HELD_OUT_STYLES = ("proud", "childish", "giant")  # never trained on (dataset 1's SOURCE.md)
PELVIS_HEIGHT = 0.94  # metres: the HumanML3D skeleton standing (Mean_raw of the pelvis)

# Paraphrases of each held-out content, phrased unlike the training captions.
PROMPTS = {
    "walk": "someone strolls ahead at an easy pace",
    "walk-back": "a person retreats, stepping backwards",
    "walk-left": "a person shuffles sideways to the left",
    "walk-right": "a person sidesteps towards the right",
    "run": "someone jogs along",
    "dash": "a person sprints as fast as possible",
    "bow": "a person bends forward in a polite bow",
    "bye": "someone waves goodbye with one hand",
    "byebye": "a person waves farewell with both hands",
    "guide": "a person gestures to show someone the way",
}


@dataclass
class ControlPath:
    name: str
    prompt: str
    pelvis: np.ndarray  # (T, 3) metres, HumanML3D axes
    joints: np.ndarray | None = None  # (T, 22, 3) the capture, for real paths


def held_out_paths(data_dir: Path) -> list[ControlPath]:
    """The 33 held-out clips of dataset 1 as pelvis paths (plus their joints), in archive order."""
    from training.data.mapping import BANDAI
    from training.data.prepare import load_source_joints

    out = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(data_dir / DS1_ARCHIVE, "r:xz") as archive:
        for member in archive:
            parts = Path(member.name).stem.split("_")  # dataset-1_{content}_{style}_{id}
            if not member.name.endswith(".bvh") or len(parts) != 4 or parts[2] not in HELD_OUT_STYLES:
                continue
            path = Path(tmp) / Path(member.name).name
            with archive.extractfile(member) as src:
                path.write_bytes(src.read())
            joints = load_source_joints(path, BANDAI, FPS)[:MAX_FRAMES + 1]
            path.unlink()
            canonical = features_to_joints(joints_to_features(joints.astype(np.float32)))
            out.append(ControlPath(f"{parts[1]}_{parts[2]}_{parts[3]}", PROMPTS[parts[1]], canonical[:, 0].copy(),
                                   canonical))
    return out


def _along(distance: np.ndarray, curve: str) -> np.ndarray:
    """Ground points (T, 2) as x, z at arc length `distance` along a named curve starting at the origin, +Z."""
    if curve == "straight":
        return np.stack([np.zeros_like(distance), distance], 1)
    if curve == "circle":  # 3 m across, turning left
        r = 1.5
        a = distance / r
        return np.stack([r * (1 - np.cos(a)), r * np.sin(a)], 1)
    # S-curve: a sine of 0.8 m amplitude over 6 m of forward travel (arc length solved numerically)
    z = np.linspace(0.0, distance[-1] * 1.2, 4000)
    x = 0.8 * np.sin(2 * np.pi * z / 6.0)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(z)))])
    return np.stack([np.interp(distance, s, x), np.interp(distance, s, z)], 1)


def built_paths(frames: int = MAX_FRAMES) -> list[ControlPath]:
    """Paths an animator draws: straight walks at 0.8, 1.3 and 2.5 m/s, an S-curve, a circle, stop-and-go,
    forward hops."""
    t = np.arange(frames) / FPS
    height = np.full(frames, PELVIS_HEIGHT)

    def path(distance: np.ndarray, curve: str = "straight", y: np.ndarray = height) -> np.ndarray:
        xz = _along(distance, curve)
        return np.stack([xz[:, 0], y, xz[:, 1]], 1)

    # stop-and-go: walk 2 s at 1.2 m/s, stand 2 s, walk again (eased speed changes over 0.5 s)
    speed = np.interp(t, [0, 0.5, 2.0, 2.5, 4.5, 5.0, t[-1]], [0, 1.2, 1.2, 0, 0, 1.2, 1.2])
    stop_go = np.concatenate([[0.0], np.cumsum(speed[1:] / FPS)])
    hops = PELVIS_HEIGHT + 0.25 * np.abs(np.sin(np.pi * t / 0.8))  # a hop every 0.8 s, 25 cm up
    return [
        ControlPath("straight_0.8mps", "a person walks slowly forward", path(0.8 * t)),
        ControlPath("straight_1.3mps", "a person walks forward", path(1.3 * t)),
        ControlPath("straight_2.5mps", "a person jogs forward", path(2.5 * t)),
        ControlPath("s_curve", "a person walks along a winding path", path(1.1 * t, "s")),
        ControlPath("circle", "a person walks in a circle", path(1.0 * t, "circle")),
        ControlPath("stop_and_go", "a person walks, stops for a moment, then walks on", path(stop_go)),
        ControlPath("forward_hops", "a person hops forward", path(0.9 * t, y=hops)),
    ]
