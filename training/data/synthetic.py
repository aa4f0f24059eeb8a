"""A tiny procedural dataset for tests only: walking and waving stick figures with captions.

The clips are (T, 22, 3) joint arrays in HumanML3D space (metres, Y up, facing +Z at frame 0,
20 fps) written as `.npy` files plus a `captions.csv`, so that tests exercise the same
`prepare` path a user's own joint arrays would take. Nothing here resembles real mocap quality.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from backend.motion.skeleton import FPS, NUM_JOINTS, PARENTS

# Rest pose offsets from each joint's parent (metres), arms hanging down, facing +Z.
_REST_OFFSETS = np.array([
    [0, 0.93, 0], [0.09, -0.08, 0], [-0.09, -0.08, 0], [0, 0.10, 0], [0, -0.40, 0], [0, -0.40, 0],
    [0, 0.13, 0], [0, -0.40, 0], [0, -0.40, 0], [0, 0.05, 0], [0, -0.05, 0.12], [0, -0.05, 0.12],
    [0, 0.20, 0], [0.08, 0.08, 0], [-0.08, 0.08, 0], [0, 0.10, 0.02], [0.12, 0, 0], [-0.12, 0, 0],
    [0, -0.26, 0], [0, -0.26, 0], [0, -0.25, 0], [0, -0.25, 0],
])


def _rot_x(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    o, z = np.ones_like(angle), np.zeros_like(angle)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _forward_kinematics(local_rot: np.ndarray, root_pos: np.ndarray) -> np.ndarray:
    """local_rot (T, 22, 3, 3), root_pos (T, 3) -> joint positions (T, 22, 3)."""
    frames = local_rot.shape[0]
    glob = np.zeros_like(local_rot)
    pos = np.zeros((frames, NUM_JOINTS, 3))
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            glob[:, j] = local_rot[:, j]
            pos[:, j] = root_pos
        else:
            glob[:, j] = glob[:, parent] @ local_rot[:, j]
            pos[:, j] = pos[:, parent] + np.einsum("tij,j->ti", glob[:, parent], _REST_OFFSETS[j])
    return pos


def walking_clip(frames: int, speed: float, turn_rate: float, stride_hz: float) -> np.ndarray:
    """A walk at `speed` m/s turning at `turn_rate` rad/s (positive = to the character's left)."""
    t = np.arange(frames) / FPS
    phase = 2 * np.pi * stride_hz * t
    rot = np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1))
    heading = turn_rate * t
    rot[:, 0] = _rot_y(heading)
    swing = 0.45 * np.sin(phase)
    rot[:, 1], rot[:, 2] = _rot_x(-swing), _rot_x(swing)
    rot[:, 4] = _rot_x(0.6 * np.clip(np.sin(phase + np.pi / 2), 0, None))
    rot[:, 5] = _rot_x(0.6 * np.clip(np.sin(phase - np.pi / 2), 0, None))
    rot[:, 16], rot[:, 17] = _rot_x(0.4 * np.sin(phase)), _rot_x(-0.4 * np.sin(phase))
    # Integrate the heading so the path curves; +Z is forward at frame 0.
    velocity = np.stack([np.sin(heading), np.zeros(frames), np.cos(heading)], -1) * speed / FPS
    root = np.cumsum(velocity, axis=0) - velocity[0]
    root[:, 1] = 0.93 + 0.02 * np.cos(2 * phase)
    return _forward_kinematics(rot, root)


def waving_clip(frames: int, hand: str, wave_hz: float) -> np.ndarray:
    """Standing still, raising one or both arms sideways and waving the forearm."""
    t = np.arange(frames) / FPS
    rot = np.tile(np.eye(3), (frames, NUM_JOINTS, 1, 1))
    raise_angle = np.minimum(t / 0.8, 1.0) * 2.6
    wave = 0.5 * np.sin(2 * np.pi * wave_hz * t) * np.minimum(t / 0.8, 1.0)
    if hand in ("left", "both"):
        rot[:, 16], rot[:, 18] = _rot_z(raise_angle), _rot_z(wave)
    if hand in ("right", "both"):
        rot[:, 17], rot[:, 19] = _rot_z(-raise_angle), _rot_z(-wave)
    root = np.zeros((frames, 3))
    root[:, 1] = 0.93
    return _forward_kinematics(rot, root)


_WALK_CAPTIONS = {
    "straight": ["a person walks forward", "someone walks straight ahead at a steady pace"],
    "left": ["a person walks while turning left", "someone walks forward and curves to the left"],
    "right": ["a person walks while turning right", "someone walks forward and curves to the right"],
}
_WAVE_CAPTIONS = {
    "left": ["a person waves with the left hand", "someone raises the left arm and waves"],
    "right": ["a person waves with the right hand", "someone raises the right arm and waves"],
    "both": ["a person waves with both hands", "someone lifts both arms and waves them"],
}


def write_synthetic_source(out_dir: str | Path, num_clips: int = 24, seed: int = 0) -> Path:
    """Write `num_clips` clips as `clip_XXX.npy` (T, 22, 3) plus `captions.csv`; returns `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str]] = []
    for i in range(num_clips):
        name = f"clip_{i:03d}"
        frames = int(rng.integers(48, 90))
        if i % 2 == 0:
            kind = ("straight", "left", "right")[(i // 2) % 3]
            turn = {"straight": 0.0, "left": 0.5, "right": -0.5}[kind]
            joints = walking_clip(frames, speed=float(rng.uniform(0.9, 1.5)), turn_rate=turn,
                                  stride_hz=float(rng.uniform(0.8, 1.1)))
            captions = _WALK_CAPTIONS[kind]
        else:
            hand = ("left", "right", "both")[(i // 2) % 3]
            joints = waving_clip(frames, hand, wave_hz=float(rng.uniform(1.0, 2.0)))
            captions = _WAVE_CAPTIONS[hand]
        np.save(out / f"{name}.npy", joints.astype(np.float32))
        rows.extend((name, caption) for caption in captions)
    with open(out / "captions.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "caption"])
        writer.writerows(rows)
    return out


def build_synthetic_dataset(root: str | Path, num_clips: int = 24, seed: int = 0):
    """The synthetic clips run through `prepare` into a HumanML3D-format `root`; returns the PrepareReport."""
    import tempfile

    from .caption_sources import load_caption_source
    from .mapping import IDENTITY
    from .prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        source = write_synthetic_source(tmp, num_clips, seed)
        captions = load_caption_source(source / "captions.csv", source)
        return prepare([(source, captions)], root, IDENTITY, seed=seed, val_fraction=0.1, test_fraction=0.1,
                       licence="synthetic test data (procedural, no licence restrictions)", progress=False)
