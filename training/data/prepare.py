"""`motionlcm-data prepare`: a folder of BVH files or (T, 22, 3) joint arrays -> a HumanML3D-format root.

Output layout (what `training.data.dataset.HumanML3D` reads):
    ROOT/new_joint_vecs/NAME.npy  (T-1, 263) float32 features (un-normalised)
    ROOT/new_joints/NAME.npy      (T-1, 22, 3) float32 joints decoded from those features
    ROOT/texts/NAME.txt           caption#tokens#0.0#0.0 lines
    ROOT/Mean.npy, ROOT/Std.npy   feature statistics over the train split (HumanML3D's grouping)
    ROOT/vector_272/NAME.npy      (T-1, 272) float32, with --format both (backend.motion.rep272), and
    ROOT/Mean_272.npy, ROOT/Std_272.npy  its per-feature statistics over the train split
    ROOT/{train,val,test,all}.txt split lists
    ROOT/report.json, ROOT/report.txt  every clip skipped and why
    ROOT/dataset.json             source, mapping, licence (copied into trained checkpoints' licence note)
Every clip goes through the engine's own HumanML3D processing (`backend.motion.features.joints_to_features`)
after resampling to 20 fps and scaling to metres, so training sees exactly what inference decodes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backend.motion.features import features_to_joints, joints_to_features
from backend.motion.skeleton import FPS, MAX_FRAMES, MIN_FRAMES

from .caption_sources import CaptionSource
from .mapping import IDENTITY, JointMapping
from .rep272_data import joints_to_272, mean_std_272
from .stats import feature_mean_std
from .text_format import format_caption_line


@dataclass
class PrepareReport:
    prepared: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # source file -> reason
    notes: dict[str, str] = field(default_factory=dict)  # source file -> remark (e.g. split into parts)

    def summary(self) -> str:
        lines = [f"prepared {len(self.prepared)} clips, skipped {len(self.skipped)} files"]
        lines += [f"  skipped {name}: {why}" for name, why in sorted(self.skipped.items())]
        lines += [f"  note {name}: {what}" for name, what in sorted(self.notes.items())]
        return "\n".join(lines)


def resample(joints: np.ndarray, src_fps: float, dst_fps: float = FPS) -> np.ndarray:
    """Linear resampling of (T, J, 3) positions over the same duration."""
    if abs(src_fps - dst_fps) < 1e-3:
        return joints
    duration = (joints.shape[0] - 1) / src_fps
    times = np.arange(int(np.floor(duration * dst_fps + 1e-6)) + 1) / dst_fps
    src = times * src_fps
    lo = np.clip(np.floor(src).astype(int), 0, joints.shape[0] - 1)
    hi = np.clip(lo + 1, 0, joints.shape[0] - 1)
    frac = (src - lo)[:, None, None]
    return (1.0 - frac) * joints[lo] + frac * joints[hi]


def load_source_joints(path: Path, mapping: JointMapping, npy_fps: float) -> np.ndarray:
    """(T, 22, 3) metres at 20 fps from a BVH file (through `mapping`) or a `.npy` joint array."""
    if path.suffix.lower() == ".bvh":
        from backend.motion.bvh import read_bvh

        bvh = read_bvh(path)
        joints, fps = mapping.apply(bvh.names, bvh.global_positions()), bvh.fps
    else:
        array = np.load(path, allow_pickle=False)
        if array.ndim != 3 or array.shape[1:] != (22, 3):
            raise ValueError(f"expected a (T, 22, 3) joint array, got {array.shape}")
        joints, fps = IDENTITY.apply(list(IDENTITY.joints), array.astype(np.float64)) * mapping.scale, npy_fps
    if not np.isfinite(joints).all():
        raise ValueError("non-finite joint positions")
    return resample(joints, fps)


def split_long(joints: np.ndarray) -> list[np.ndarray]:
    """Clips longer than the trained range become equal consecutive parts that fit it
    (a part of n joint frames gives n - 1 feature frames)."""
    frames = joints.shape[0] - 1
    parts = int(np.ceil(frames / MAX_FRAMES))
    if parts <= 1:
        return [joints]
    bounds = np.linspace(0, frames, parts + 1).round().astype(int)
    return [joints[a:b + 1] for a, b in zip(bounds[:-1], bounds[1:])]


def _convert(path: Path, joints: np.ndarray, captions: CaptionSource,
             part: int | None) -> tuple[str, np.ndarray, np.ndarray, list[str]]:
    """One clip (or part) -> (name, features, decoded joints, captions)."""
    features = joints_to_features(joints.astype(np.float32))
    if not np.isfinite(features).all():
        raise ValueError("features are not finite (degenerate skeleton?)")
    decoded = features_to_joints(features).astype(np.float32)
    name = path.stem if part is None else f"{path.stem}__part{part}"
    return name, features.astype(np.float32), decoded, captions.captions(path, decoded)


def make_splits(names: list[str], seed: int, val: float, test: float,
                held_out: set[str] = frozenset()) -> dict[str, list[str]]:
    """Random clip-level split (HumanML3D uses 80/5/15); parts of one source clip stay together. Clips named in
    `held_out` (whole source clips) form the `heldout` split and no other: never trained on, validated or
    tested with, nor counted in the normalisation statistics."""
    groups = sorted({name.split("__part")[0] for name in names} - set(held_out))
    random.Random(seed).shuffle(groups)
    n_val, n_test = int(round(len(groups) * val)), int(round(len(groups) * test))
    if len(groups) >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    chosen = {"val": set(groups[:n_val]), "test": set(groups[n_val:n_val + n_test])}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": [], "heldout": []}
    for name in sorted(names):
        group = name.split("__part")[0]
        key = "heldout" if group in held_out else "val" if group in chosen["val"] \
            else "test" if group in chosen["test"] else "train"
        splits[key].append(name)
    splits["all"] = sorted(names)
    return splits


def prepare(sources: Sequence[tuple[str | Path, CaptionSource]], out: str | Path, mapping: JointMapping, *,
            npy_fps: float = FPS, seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.15,
            held_out_styles: Sequence[str] = (), licence: str = "unknown", progress: bool = True,
            with_272: bool = False) -> PrepareReport:
    """Convert every clip under each source folder (with that folder's captions) into one dataset at `out`.
    Clips whose style label is in `held_out_styles` go to the `heldout` split only (caption sources with
    labels: `bandai` and labels.csv); clip names must be unique across sources. `with_272`: also the 272-dim
    representation of every clip (`vector_272/`, `Mean_272.npy`, `Std_272.npy`; training.data.rep272_data)."""
    out = Path(out)
    for sub in ("new_joint_vecs", "new_joints", "texts") + (("vector_272",) if with_272 else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = []
    for source, captions in sources:
        source = Path(source)
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".bvh", ".npy") and p.is_file())
        if not files:
            raise ValueError(f"no .bvh or .npy files under {source}")
        jobs += [(source, captions, path) for path in files]
    stems = [path.stem for _, _, path in jobs]
    if len(set(stems)) != len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"clip names repeat across sources: {', '.join(twice[:5])}")
    report, held_out = PrepareReport(), set()
    iterator = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="prepare", unit="clip")
    for source, captions, path in iterator:
        rel = str(path.relative_to(source))
        try:
            joints = load_source_joints(path, mapping, npy_fps)
        except Exception as exc:  # any unreadable file is reported, never fatal
            report.skipped[rel] = f"unreadable: {exc}"
            continue
        if joints.shape[0] - 1 < MIN_FRAMES:
            report.skipped[rel] = f"too short: {joints.shape[0] - 1} frames at 20 fps (minimum {MIN_FRAMES})"
            continue
        if not captions.has(path):
            report.skipped[rel] = "no captions"
            continue
        label = captions.label(path) if hasattr(captions, "label") else None
        if label is not None and label[1] in held_out_styles:
            held_out.add(path.stem)
        parts = split_long(joints)
        try:
            converted = [_convert(path, part, captions, k if len(parts) > 1 else None) for k, part in enumerate(parts)]
        except Exception as exc:  # e.g. a degenerate skeleton: reported, and no part of the clip is kept
            report.skipped[rel] = f"conversion failed: {exc}"
            held_out.discard(path.stem)
            continue
        if len(parts) > 1:
            report.notes[rel] = f"{joints.shape[0] - 1} frames: split into {len(parts)} parts"
        for name, features, decoded, texts in converted:
            np.save(out / "new_joint_vecs" / f"{name}.npy", features)
            np.save(out / "new_joints" / f"{name}.npy", decoded)
            if with_272:
                np.save(out / "vector_272" / f"{name}.npy", joints_to_272(decoded))
            (out / "texts" / f"{name}.txt").write_text(
                "\n".join(format_caption_line(t) for t in texts) + "\n", encoding="utf-8")
            report.prepared.append(name)
    if not report.prepared:
        _write_report(out, report)
        raise ValueError(f"no usable clips under {', '.join(str(s) for s, _ in sources)}:\n{report.summary()}")
    splits = make_splits(report.prepared, seed, val_fraction, test_fraction, held_out)
    if held_out_styles and not splits["train"]:
        raise ValueError("every clip has a held-out style: nothing is left to train on")
    for split, names in splits.items():
        (out / f"{split}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    train = [np.load(out / "new_joint_vecs" / f"{n}.npy") for n in splits["train"] or splits["all"]]
    mean, std = feature_mean_std(train)
    np.save(out / "Mean.npy", mean)
    np.save(out / "Std.npy", std)
    if with_272:
        mean, std = mean_std_272([np.load(out / "vector_272" / f"{n}.npy") for n in splits["train"] or splits["all"]])
        np.save(out / "Mean_272.npy", mean)
        np.save(out / "Std_272.npy", std)
    (out / "dataset.json").write_text(json.dumps({
        "source": [str(s) for s, _ in sources], "clips": len(report.prepared), "skipped": len(report.skipped),
        "seed": seed, "held_out_styles": list(held_out_styles), "held_out_clips": len(splits["heldout"]),
        "mapping_scale": mapping.scale, "licence": licence,
        "formats": ["263", "272"] if with_272 else ["263"]}, indent=1), encoding="utf-8")
    _write_report(out, report)
    return report


def _write_report(out: Path, report: PrepareReport) -> None:
    (out / "report.json").write_text(json.dumps({"prepared": report.prepared, "skipped": report.skipped,
                                                 "notes": report.notes}, indent=1), encoding="utf-8")
    (out / "report.txt").write_text(report.summary() + "\n", encoding="utf-8")
