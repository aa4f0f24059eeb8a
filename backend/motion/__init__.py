"""Motion and its representations: the `Motion` type (here), the SMPL skeleton constants (skeleton.py), the
HumanML3D features (features.py, humanml3d_skeleton.py), rotations, BVH and the normalisation statistics.

`Motion` is the one type that carries a motion across module boundaries. Joint positions are in HumanML3D space
(metres, Y up, the character faces +Z at frame 0, joint order of `backend.motion.skeleton`).
Conversion to Blender's Z-up happens in the add-on only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.motion.skeleton import FPS, NUM_JOINTS


@dataclass
class Motion:
    joints: np.ndarray  # (T, 22, 3) float32, metres, Y up
    fps: float = FPS
    features: np.ndarray | None = None  # (T, 263) un-normalised HumanML3D features, when known
    meta: dict[str, Any] = field(default_factory=dict)  # prompt, seed, settings, source...
    # (T, 22, 4) local rotations (w, x, y, z) from the rest pose of the default skeleton
    # (backend.retarget.default_skeleton), the root's global: when the engine makes them (the AR engine does);
    # `joints` are then their forward kinematics
    rotations: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.joints = np.asarray(self.joints, dtype=np.float32)
        if self.joints.ndim != 3 or self.joints.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"Motion.joints must have shape (T, {NUM_JOINTS}, 3), got {self.joints.shape}")
        if not self.fps > 0:
            raise ValueError(f"Motion.fps must be positive, got {self.fps}")
        if self.rotations is not None:
            self.rotations = np.asarray(self.rotations, dtype=np.float32)
            if self.rotations.shape != (len(self.joints), NUM_JOINTS, 4):
                raise ValueError(f"Motion.rotations must have shape ({len(self.joints)}, {NUM_JOINTS}, 4), "
                                 f"got {self.rotations.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds (frames / fps)."""
        return self.num_frames / self.fps

    def save_npz(self, path: str | Path) -> None:
        """Write `joints`, `fps`, optional `features` and `rotations`, and JSON `meta` (the format `motionlcm
        generate` writes)."""
        arrays: dict[str, Any] = {"joints": self.joints, "fps": np.float32(self.fps),
                                  "meta": np.array(json.dumps(self.meta))}
        if self.features is not None:
            arrays["features"] = np.asarray(self.features, dtype=np.float32)
        if self.rotations is not None:
            arrays["rotations"] = self.rotations
        np.savez(path, **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> "Motion":
        with np.load(path, allow_pickle=False) as data:
            if "joints" not in data.files:
                raise ValueError(f"{path}: no 'joints' array; expected (T, 22, 3) joint positions in metres")
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            fps = float(data["fps"]) if "fps" in data.files else FPS
            features = data["features"] if "features" in data.files else None
            rotations = data["rotations"] if "rotations" in data.files else None
            return cls(joints=data["joints"], fps=fps, features=features, meta=meta, rotations=rotations)
