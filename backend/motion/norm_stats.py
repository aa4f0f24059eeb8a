"""Normalisation statistics shipped as package data (see the NOTICE files under backend/motion/data/).

- HumanML3D Mean/Std (263,): models see motion features as (x - Mean) / Std.
- MotionLCM spatial Mean_raw/Std_raw (22, 3): control hints are (joint position - Mean_raw) / Std_raw.

Read through importlib.resources so they load from a source checkout, an installed wheel or a zip alike.
Each call returns fresh arrays, so callers may modify them.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from backend.motion.skeleton import FEATURE_DIM, NUM_JOINTS


def _load(folder: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    resource = resources.files(__package__).joinpath("data", folder, name)
    with resource.open("rb") as f:
        array = np.load(f, allow_pickle=False)
    # A wrong shape means the package data is broken, not the user's input: fail loudly.
    if array.shape != shape or array.dtype != np.float32:
        raise RuntimeError(f"package data {folder}/{name} is {array.dtype}{array.shape}, expected float32{shape}")
    return array


def humanml3d_mean_std() -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D feature Mean and Std, each (263,) float32."""
    return (_load("humanml3d", "Mean.npy", (FEATURE_DIM,)), _load("humanml3d", "Std.npy", (FEATURE_DIM,)))


def spatial_mean_std() -> tuple[np.ndarray, np.ndarray]:
    """Spatial (control hint) Mean_raw and Std_raw, each (22, 3) float32, metres, HumanML3D axes."""
    shape = (NUM_JOINTS, 3)
    return (_load("spatial_norm", "Mean_raw.npy", shape), _load("spatial_norm", "Std_raw.npy", shape))
