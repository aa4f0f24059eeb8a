"""How a checkpoint is sampled: the LCM guidance w and timesteps per step count, and the latent tuning penalty
it recommends. A checkpoint's config.json carries them (`sampling`); official checkpoints use the official values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from backend.generation.schedulers import CFG_STEP_MAP, LCM_TIMESTEPS, LCMScheduler

OFFICIAL_CORRELATION_PENALTY = 100.0  # MotionLCM-V2's noise optimiser; a checkpoint may recommend its own
_LEGACY_KEYS = {"scheduler"}  # written by earlier versions (the fixed official noise schedule), never read


def valid_penalty(value: Any) -> bool:
    """The one rule for a latent tuning correlation penalty: a finite number >= 0."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class SamplingConfig:
    cfg_step_map: dict[int, float] = field(default_factory=lambda: dict(CFG_STEP_MAP))
    lcm_timesteps: dict[int, tuple[int, ...]] = field(default_factory=lambda: dict(LCM_TIMESTEPS))
    tuning_penalty: float = OFFICIAL_CORRELATION_PENALTY

    def __post_init__(self) -> None:
        if not valid_penalty(self.tuning_penalty):
            raise ValueError(f"tuning_correlation_penalty must be a number >= 0, got {self.tuning_penalty!r}")

    def lcm_scheduler(self) -> LCMScheduler:
        """The consistency scheduler with these timesteps per step count."""
        return LCMScheduler(timesteps_step_map=self.lcm_timesteps)

    def to_dict(self) -> dict[str, Any]:
        """The config.json `sampling` block."""
        return {"lcm_timesteps": {str(k): [int(t) for t in v] for k, v in self.lcm_timesteps.items()},
                "cfg_step_map": {str(k): float(v) for k, v in self.cfg_step_map.items()},
                "tuning_correlation_penalty": float(self.tuning_penalty)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        """A `sampling` block (absent entries: the official values). Raises ValueError on anything else."""
        unknown = set(data) - {"lcm_timesteps", "cfg_step_map", "tuning_correlation_penalty"} - _LEGACY_KEYS
        if unknown:
            raise ValueError(f"unknown sampling settings: {sorted(unknown)}")
        default = cls()
        return cls(
            cfg_step_map={int(k): float(v) for k, v in data["cfg_step_map"].items()} if "cfg_step_map" in data
            else default.cfg_step_map,
            lcm_timesteps={int(k): tuple(int(t) for t in v) for k, v in data["lcm_timesteps"].items()}
            if "lcm_timesteps" in data else default.lcm_timesteps,
            tuning_penalty=data.get("tuning_correlation_penalty", default.tuning_penalty))
