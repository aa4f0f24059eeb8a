"""HumanML3D-format training data: length filter, caption time windows, crops, control hints.

Randomness per item (caption choice, crop, augmentation, hint joints and frames) comes from a generator seeded
with (seed, epoch, index), so a batch is the same whichever worker loads it and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.motion.features import features_to_joints
from backend.motion.skeleton import CONTROL_JOINTS, FPS, MAX_FRAMES, MIN_FRAMES, NUM_JOINTS

from .augment import Augment, augment
from .text_format import read_caption_file

UNIT_LEN = 4  # crops are multiples of 4 frames, as HumanML3D's evaluators assume


@dataclass(frozen=True)
class ControlSpec:
    """Which hints to make on the fly (the OmniControl/MotionLCM spatial-control recipe)."""

    joints: tuple[int, ...] = (CONTROL_JOINTS["pelvis"],)  # one of these is controlled per sample
    density: str | float | int = "random"  # "random": 1 .. T-1 frames; 1/2/5: that many frames; else % of frames
    all_joints: bool = False  # control every joint in `joints` at once (evaluation of several joints)

    @classmethod
    def pelvis(cls) -> "ControlSpec":
        return cls()

    @classmethod
    def six_joints(cls) -> "ControlSpec":
        return cls(joints=tuple(CONTROL_JOINTS.values()))


def choose_hint_frames(length: int, density: str | float | int, rng: np.random.Generator) -> np.ndarray:
    if density == "random":
        count = int(rng.integers(1, max(length - 1, 1) + 1))
    elif density in (1, 2, 5):
        count = int(density)
    else:
        count = max(1, int(length * float(density) / 100))
    return np.sort(rng.choice(length, size=min(count, length), replace=False))


def make_hint(joints: np.ndarray, spec: ControlSpec, raw_mean: np.ndarray, raw_std: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """joints (T, 22, 3) metres -> normalised hint and 0/1 mask, both (T, 22, 3); zero where uncontrolled."""
    length = joints.shape[0]
    chosen = list(spec.joints) if spec.all_joints else [spec.joints[int(rng.integers(len(spec.joints)))]]
    frames = choose_hint_frames(length, spec.density, rng)
    mask = np.zeros((length, NUM_JOINTS, 3), dtype=np.float32)
    mask[np.ix_(frames, chosen)] = 1.0
    hint = (joints - raw_mean) / raw_std * mask
    return hint.astype(np.float32), mask


class HumanML3D(Dataset):
    def __init__(self, root: str | Path, split: str = "train", *, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None, control: ControlSpec | None = None,
                 raw_mean: np.ndarray | None = None, raw_std: np.ndarray | None = None,
                 min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES, seed: int = 0,
                 augmentation: Augment | None = None) -> None:
        self.root = root = Path(root)
        self.augmentation = augmentation if augmentation is not None and augmentation.active else None
        self.mean = np.load(root / "Mean.npy") if mean is None else mean
        self.std = np.load(root / "Std.npy") if std is None else std
        self.control, self.seed, self.epoch = control, seed, 0
        if control is not None:
            if raw_mean is None or raw_std is None:
                from backend.motion.norm_stats import spatial_mean_std

                raw_mean, raw_std = spatial_mean_std()
            self.raw_mean, self.raw_std = np.asarray(raw_mean), np.asarray(raw_std)
        names = [n.strip() for n in (root / f"{split}.txt").read_text(encoding="utf-8").split() if n.strip()]
        # (name, features, [(caption, "lemma/POS ..." tokens)]); tokens feed the Guo et al. evaluator only
        self.items: list[tuple[str, np.ndarray, list[tuple[str, str]]]] = []
        for name in names:
            vec_path, text_path = root / "new_joint_vecs" / f"{name}.npy", root / "texts" / f"{name}.txt"
            if not vec_path.is_file() or not text_path.is_file():
                continue
            motion = np.load(vec_path).astype(np.float32)
            whole: list[tuple[str, str]] = []
            for entry in read_caption_file(text_path):
                caption = (entry.caption, " ".join(entry.tokens))
                if entry.start == 0.0 and entry.end == 0.0:
                    whole.append(caption)
                    continue
                window = motion[int(entry.start * FPS):int(entry.end * FPS)]  # a caption of a time window
                if min_frames <= len(window) <= max_frames:
                    self.items.append((f"{name}@{entry.start}-{entry.end}", window, [caption]))
            if whole and min_frames <= len(motion) <= max_frames:
                self.items.append((name, motion, whole))
        if not self.items:
            raise ValueError(f"{root}: no usable clips in split {split!r} ({min_frames}..{max_frames} frames)")

    def __len__(self) -> int:
        return len(self.items)

    def clip_lengths(self) -> list[int]:
        """Frames of each item before cropping (for length-bucketed batches)."""
        return [len(motion) for _, motion, _ in self.items]

    def clip_names(self) -> list[str]:
        """Each item's name (for the clip order of train.curriculum)."""
        return [name for name, _, _ in self.items]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        name, motion, captions = self.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        caption, tokens = captions[int(rng.integers(len(captions)))]
        units = len(motion) // UNIT_LEN - (1 if rng.random() < 1 / 3 else 0)  # sometimes one unit shorter
        length = max(units, MIN_FRAMES // UNIT_LEN) * UNIT_LEN
        start = int(rng.integers(0, len(motion) - length + 1))
        crop = motion[start:start + length]
        if self.augmentation is not None:
            crop, (caption, tokens) = augment(crop, (caption, tokens), self.augmentation, rng)
        item = {"name": name, "text": caption, "tokens": tokens, "length": len(crop),  # re-timing changes it
                "motion": torch.from_numpy(((crop - self.mean) / self.std).astype(np.float32))}
        if self.control is not None:
            with torch.no_grad():
                joints = features_to_joints(torch.from_numpy(crop)[None])[0].numpy()
            hint, mask = make_hint(joints, self.control, self.raw_mean, self.raw_std, rng)
            item["hint"], item["hint_mask"] = torch.from_numpy(hint), torch.from_numpy(mask)
        return item


def collate(items: list[dict]) -> dict:
    """Pad to the longest item (zeros); `mask` (B, T) is True on real frames (or tokens, for `codes`)."""
    lengths = torch.tensor([it["length"] for it in items])
    longest = int(lengths.max())
    batch = {"text": [it["text"] for it in items], "tokens": [it["tokens"] for it in items],
             "name": [it["name"] for it in items], "length": lengths,
             "mask": torch.arange(longest)[None, :] < lengths[:, None]}
    for key in ("motion", "codes", "hint", "hint_mask"):
        if key in items[0]:
            first = items[0][key]
            padded = first.new_zeros((len(items), longest, *first.shape[1:]))
            for i, it in enumerate(items):
                padded[i, : it["length"]] = it[key]
            batch[key] = padded
    return batch
