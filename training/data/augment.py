"""Mirror images, time reversal and re-timing of real clips: the `augment` setting of every training stage.

Dataset 2 has no backward walks, so a ControlNet trained on it cannot follow a path walked backwards
(held-out "walk back" clips: 2.1 m pelvis error against 0.45 m for forward walks). Played backwards, its
walks and runs are backward locomotion; mirrored, every clip also exists turning and waving the other way;
re-timed (played 0.8x to 1.25x as fast, resampled), every path comes at more speeds. All transforms go through
joint positions and back through the HumanML3D feature processing, so every feature block (rotations,
velocities, contacts) agrees with the new motion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import numpy as np
import torch

from backend.motion.features import TARGET_OFFSETS, features_to_joints, joints_to_features
from backend.motion.skeleton import JOINT_INDEX, JOINT_NAMES, MAX_FRAMES, MIN_FRAMES

# Each joint's mirror image: left_* <-> right_*, the spine onto itself.
MIRRORED_JOINTS: tuple[int, ...] = tuple(
    JOINT_INDEX[name.replace("left_", "right_") if name.startswith("left_") else name.replace("right_", "left_")]
    for name in JOINT_NAMES)
_SIDE = re.compile(r"\b(left|right)\b", re.IGNORECASE)
RETIME_SPEEDS = (0.8, 1.25)  # playback speed factors a re-timed sample draws from (log-uniform)
RETIME_UNIT = 4  # re-timed lengths stay multiples of 4 frames, as crops are


@dataclass(frozen=True)
class Augment:
    """Per-sample probabilities; each transform is drawn independently."""

    mirror: float = 0.0   # x -> -x (the character's left and right swap), "left"/"right" swapped in the caption
    reverse: float = 0.0  # played backwards; the caption is dropped ("", as for classifier-free guidance)
    #                       because most captions no longer hold ("sits down" played backwards)
    retime: float = 0.0  # played faster or slower (RETIME_SPEEDS), resampled to the new length; caption kept

    def __post_init__(self) -> None:
        for field in fields(self):
            if not 0.0 <= getattr(self, field.name) <= 1.0:
                raise ValueError(f"augment.{field.name} is a probability, got {getattr(self, field.name)}")

    @property
    def active(self) -> bool:
        return self.mirror > 0 or self.reverse > 0 or self.retime > 0


def mirror_joints(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 3) Y-up positions reflected through the x = 0 plane, joints renamed left <-> right."""
    mirrored = joints[:, list(MIRRORED_JOINTS)].copy()
    mirrored[..., 0] *= -1
    return mirrored


def mirror_caption(text: str) -> str:
    """Swap the words left and right, keeping their capitalisation."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        other = "right" if word.lower() == "left" else "left"
        return other.capitalize() if word[0].isupper() else other
    return _SIDE.sub(swap, text)


def features_from_joints(joints: np.ndarray, mirrored: bool) -> np.ndarray:
    """(T, 22, 3) -> (T, 263): the last frame's velocities continue its motion (the processing needs T + 1).

    The processing gives a clip the target skeleton's bone lengths, which differ left to right by up to 9 mm
    per bone; a mirrored clip keeps its own (mirrored) lengths instead, so that it is an exact mirror image and
    its root path is not rescaled by the ratio of the two legs (1.2 %).
    """
    extended = np.concatenate([joints, 2 * joints[-1:] - joints[-2:-1]])
    offsets = TARGET_OFFSETS[list(MIRRORED_JOINTS)] if mirrored else TARGET_OFFSETS
    return joints_to_features(extended, target_offsets=offsets)


def retime_joints(joints: np.ndarray, speed: float) -> np.ndarray:
    """(T, 22, 3) played `speed` times as fast: linearly resampled to about (T - 1) / speed + 1 frames, rounded
    to a multiple of RETIME_UNIT within the trained range (the speed actually applied follows from that)."""
    frames = int(round((len(joints) - 1) / speed)) + 1
    frames = int(np.clip(round(frames / RETIME_UNIT) * RETIME_UNIT, MIN_FRAMES, MAX_FRAMES))
    source = np.linspace(0.0, len(joints) - 1, frames)
    low = np.minimum(source.astype(np.int64), len(joints) - 2)
    weight = (source - low)[:, None, None]
    return (1.0 - weight) * joints[low] + weight * joints[low + 1]


def augment(motion: np.ndarray, caption: tuple[str, str], spec: Augment,
            rng: np.random.Generator) -> tuple[np.ndarray, tuple[str, str]]:
    """Features (T, 263) and (caption, tokens) of a sample, transformed as `rng` draws; unchanged if none is.
    A re-timed sample has another length."""
    mirror, reverse = rng.random() < spec.mirror, rng.random() < spec.reverse
    retime = spec.retime > 0 and rng.random() < spec.retime  # no draw when off: earlier runs keep their streams
    if not (mirror or reverse or retime):
        return motion, caption
    with torch.no_grad():
        joints = features_to_joints(torch.from_numpy(np.ascontiguousarray(motion))[None])[0].numpy()
    if mirror:
        joints = mirror_joints(joints)
        caption = (mirror_caption(caption[0]), mirror_caption(caption[1]))
    if reverse:
        joints = joints[::-1]
        caption = ("", "")
    if retime:
        low, high = np.log(RETIME_SPEEDS)
        joints = retime_joints(joints, float(np.exp(rng.uniform(low, high))))
    return features_from_joints(joints, mirrored=mirror), caption
