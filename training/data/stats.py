"""Feature statistics in HumanML3D's convention.

The std is averaged within each feature group (root rotation velocity, root linear velocity,
root height, joint positions, joint rotations, joint velocities, foot contacts) so that no single
near-constant coordinate is blown up by normalisation, and the foot contacts are divided by 5
(HumanML3D's `feat_bias`) so they weigh less in the loss.
"""

from __future__ import annotations

import numpy as np

from backend.motion.skeleton import FEATURE_DIM, NUM_JOINTS

FOOT_CONTACT_BIAS = 5.0


def feature_groups(num_joints: int = NUM_JOINTS) -> list[slice]:
    j = num_joints - 1
    bounds = [0, 1, 3, 4, 4 + 3 * j, 4 + 9 * j, 4 + 9 * j + 3 * num_joints, 4 + 9 * j + 3 * num_joints + 4]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def feature_mean_std(clips: list[np.ndarray], eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Mean and grouped Std, each (263,) float32, over all frames of `clips` (each (T, 263))."""
    data = np.concatenate([np.asarray(c, dtype=np.float64) for c in clips], axis=0)
    if data.shape[1] != FEATURE_DIM:
        raise ValueError(f"expected {FEATURE_DIM}-dim features, got {data.shape[1]}")
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    groups = feature_groups()
    for group in groups:
        std[group] = std[group].mean()
    std[groups[-1]] /= FOOT_CONTACT_BIAS
    std = np.maximum(std, eps)  # a dataset without, say, any foot contact change must not divide by 0
    return mean.astype(np.float32), std.astype(np.float32)
