"""Joint mappings from a source skeleton onto the 22 SMPL joints of HumanML3D.

A mapping gives, for each SMPL joint, one source joint name or two names plus a fraction to
interpolate between them (for skeletons whose spine has fewer joints than SMPL's), and the scale
from source units to metres. JSON form (`mapping.json`):

    {"scale": 0.01,
     "joints": {"pelvis": "Hips", "spine1": ["Hips", "Spine", 0.7], ...}}

where ["A", "B", t] means A + t * (B - A). All 22 SMPL joints must be mapped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.retarget.bandai import BANDAI_TO_SMPL, bandai_positions_to_smpl
from backend.motion.skeleton import JOINT_NAMES

JointSource = tuple[str, str, float]  # (from, to, fraction); a single joint is (name, name, 0.0)


@dataclass(frozen=True)
class JointMapping:
    scale: float  # source units -> metres
    joints: dict[str, JointSource]

    def source_names(self) -> set[str]:
        return {name for a, b, _ in self.joints.values() for name in (a, b)}

    def apply(self, names: list[str], positions: np.ndarray) -> np.ndarray:
        """(T, J, 3) source global positions -> (T, 22, 3) SMPL joints in metres."""
        index = {name: i for i, name in enumerate(names)}
        missing = sorted(self.source_names() - index.keys())
        if missing:
            raise ValueError(f"the skeleton lacks joints the mapping needs: {', '.join(missing)}")
        out = np.empty((positions.shape[0], len(JOINT_NAMES), 3), dtype=np.float64)
        for j, smpl_name in enumerate(JOINT_NAMES):
            a, b, t = self.joints[smpl_name]
            out[:, j] = (1.0 - t) * positions[:, index[a]] + t * positions[:, index[b]]
        return out * self.scale


def _entry(value: object, smpl_name: str) -> JointSource:
    if isinstance(value, str):
        return (value, value, 0.0)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, str) for v in value[:2]):
        return (value[0], value[1], float(value[2]))
    raise ValueError(f"mapping for {smpl_name!r} must be a joint name or [from, to, fraction], got {value!r}")


def mapping_from_dict(data: dict) -> JointMapping:
    joints = data.get("joints", {})
    missing = [name for name in JOINT_NAMES if name not in joints]
    if missing:
        raise ValueError(f"mapping does not cover SMPL joints: {', '.join(missing)}")
    unknown = sorted(set(joints) - set(JOINT_NAMES))
    if unknown:
        raise ValueError(f"mapping names unknown SMPL joints: {', '.join(unknown)}")
    return JointMapping(scale=float(data.get("scale", 1.0)),
                        joints={name: _entry(joints[name], name) for name in JOINT_NAMES})


@dataclass(frozen=True)
class BandaiMapping:
    """Bandai-Namco Research Motiondataset 1 and 2 (cm, Y up; "_L" is the character's left). Their spine has
    fewer joints and other branch points than SMPL's, so SMPL's pelvis, spine and collars are placed by
    `backend.retarget.bandai`, the single source of this mapping (the retargeting tests use it too)."""

    scale: float = 0.01

    def source_names(self) -> set[str]:
        return set(BANDAI_TO_SMPL.values()) | {"UpperLeg_L", "UpperLeg_R", "Spine", "Chest", "Neck",
                                               "Shoulder_L", "Shoulder_R"}

    def apply(self, names: list[str], positions: np.ndarray) -> np.ndarray:
        """(T, J, 3) Bandai global positions in cm -> (T, 22, 3) SMPL joints in metres."""
        index = {name: i for i, name in enumerate(names)}
        missing = sorted(self.source_names() - index.keys())
        if missing:
            raise ValueError(f"the skeleton lacks joints the mapping needs: {', '.join(missing)}")
        return bandai_positions_to_smpl({name: positions[:, index[name]] * self.scale
                                         for name in self.source_names()})


BANDAI = BandaiMapping()

# Joint arrays already in SMPL order and metres (the `.npy` input).
IDENTITY = mapping_from_dict({"scale": 1.0, "joints": {name: name for name in JOINT_NAMES}})

PRESETS = {"bandai": BANDAI, "smpl": IDENTITY}


def load_mapping(spec: str | Path) -> JointMapping | BandaiMapping:
    """A preset name (`bandai`, `smpl`) or the path of a mapping JSON file."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"mapping {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    return mapping_from_dict(json.loads(path.read_text(encoding="utf-8")))
