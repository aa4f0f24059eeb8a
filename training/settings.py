"""The `train:` settings every stage shares (the YAML configs' `train` block), checked when read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_steps: int = 1000
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA, with loss scaling)
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 1234
    num_workers: int = 0
    threads: int = 0  # torch CPU threads while training (0: leave torch's setting); tiny models run best on 1
    length_buckets: int = 0  # >0: batches of similar clip length, sorted within runs of this many batches
    # [[steps, clips], ...]: until global step `steps`, batches come only from the first `clips` clips of a
    # seeded order (those whose name contains `curriculum_first` first), then from a wider pool, then all.
    curriculum: list = field(default_factory=list)
    curriculum_first: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        settings = cls(**known)
        phases = settings.curriculum
        shaped = all(isinstance(p, (list, tuple)) and len(p) == 2 and all(type(v) is int for v in p) for p in phases)
        ends = [p[0] for p in phases] if shaped else []
        if not shaped or ends != sorted(set(ends)) or any(p[1] < 1 for p in phases):
            raise ValueError(f"curriculum must be [[steps, clips], ...] of integers with rising steps and at least "
                             f"one clip, got {phases}")
        return settings
