"""Joint trajectory controls -> the ControlNet's normalised hint and hint mask.

A JointControl pins one control joint (pelvis, left_foot, right_foot, head, left_wrist, right_wrist) to given
positions at given model frames (20 fps, 0-based), in metres in HumanML3D axes (Y up, facing +Z at frame 0).

Hints are built the way the official HumanML3D dataset class builds them: for each controlled (frame, joint),
hint = (position - Mean_raw[joint]) / Std_raw[joint] in float32; every other entry is 0; hint_mask is 1 at
controlled (frame, joint) for all of x, y, z; frames past a sample's length are zero padding in both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.errors import InvalidRequest
from backend.motion.skeleton import CONTROL_JOINTS, JOINT_NAMES, NUM_JOINTS

_CONTROL_NAMES = ", ".join(CONTROL_JOINTS)


def _joint_name(joint: str | int) -> str:
    if isinstance(joint, (int, np.integer)) and not isinstance(joint, bool):
        if 0 <= joint < NUM_JOINTS and JOINT_NAMES[joint] in CONTROL_JOINTS:
            return JOINT_NAMES[joint]
    elif isinstance(joint, str) and joint in CONTROL_JOINTS:
        return joint
    raise InvalidRequest(f"joint {joint!r} cannot be controlled; use one of: {_CONTROL_NAMES} "
                         f"(indices {sorted(CONTROL_JOINTS.values())})")


def _frames_array(frames: Any, joint: str) -> np.ndarray:
    try:
        raw = np.asarray(frames)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"control {joint!r}: frames are not a list of integers ({exc})") from exc
    if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.number):
        raise InvalidRequest(f"control {joint!r}: frames must be a non-empty 1-D list of integers, got shape "
                             f"{raw.shape} of {raw.dtype}")
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
        bad = raw[~np.isfinite(raw) | (raw != np.round(raw))][0]
        raise InvalidRequest(f"control {joint!r}: frame {bad.item()!r} is not an integer")
    return raw.astype(np.int64)


def _positions_array(positions: Any, joint: str) -> np.ndarray:
    try:
        pos = np.asarray(positions, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"control {joint!r}: positions are not a list of [x, y, z] numbers ({exc})") from exc
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise InvalidRequest(f"control {joint!r}: positions must have shape (K, 3), got {pos.shape}")
    return pos


@dataclass(eq=False)
class JointControl:
    """Positions (K, 3) float32 metres for `joint` at model frames (K,) int64; stored sorted by frame, without
    repeats. The constructor accepts a joint name or index and lists or arrays."""

    joint: str
    frames: np.ndarray
    positions: np.ndarray

    def __post_init__(self) -> None:
        self.joint = _joint_name(self.joint)
        self.frames = _frames_array(self.frames, self.joint)
        self.positions = _positions_array(self.positions, self.joint)
        self._check()
        order = np.argsort(self.frames, kind="stable")
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = self.frames[order][1:] != self.frames[order][:-1]
        self.frames, self.positions = self.frames[order][keep], self.positions[order][keep]

    @property
    def index(self) -> int:
        return CONTROL_JOINTS[self.joint]

    @classmethod
    def dense(cls, joint: str | int, positions: Any) -> JointControl:
        """A path with one position per frame: positions[t] at frame t, t = 0..T-1."""
        name = _joint_name(joint)
        pos = _positions_array(positions, name)
        return cls(name, np.arange(len(pos)), pos)

    @classmethod
    def waypoints(cls, joint: str | int, points: Mapping[int, Sequence[float]]) -> JointControl:
        """Sparse waypoints {frame: (x, y, z)}."""
        return cls(joint, list(points.keys()), [list(p) for p in points.values()])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JointControl:
        """From {"joint": name or index, "frames": [int, ...], "positions": [[x, y, z], ...]} (request JSON)."""
        if not isinstance(data, Mapping) or set(data) != {"joint", "frames", "positions"}:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise InvalidRequest(f"a control needs exactly the keys 'joint', 'frames', 'positions'; got {got}")
        return cls(data["joint"], data["frames"], data["positions"])

    def to_dict(self) -> dict[str, Any]:
        return {"joint": self.joint, "frames": self.frames.tolist(), "positions": self.positions.tolist()}

    def _check(self, length: int | None = None) -> None:
        """Shape, finiteness, frame range and conflicting repeats; `length` bounds the frames when given."""
        _joint_name(self.joint)
        if len(self.frames) != len(self.positions):
            raise InvalidRequest(f"control {self.joint!r}: {len(self.frames)} frames but {len(self.positions)} "
                                 "positions")
        if not np.all(np.isfinite(self.positions)):
            k = int(np.nonzero(~np.isfinite(self.positions).all(axis=1))[0][0])
            raise InvalidRequest(f"control {self.joint!r}: position {self.positions[k].tolist()} at frame "
                                 f"{int(self.frames[k])} is not finite")
        upper = "" if length is None else f" and < the clip length {length}"
        out = (self.frames < 0) if length is None else (self.frames < 0) | (self.frames >= length)
        if np.any(out):
            raise InvalidRequest(f"control {self.joint!r}: frame {int(self.frames[out][0])} is out of range "
                                 f"(frames must be >= 0{upper})")
        _check_repeats([self])


def _check_repeats(controls: Sequence[JointControl]) -> None:
    if not controls:
        return
    joints = np.concatenate([np.full(len(c.frames), c.index) for c in controls])
    frames = np.concatenate([c.frames for c in controls])
    positions = np.concatenate([c.positions for c in controls])
    order = np.lexsort((frames, joints))
    same_key = (joints[order][1:] == joints[order][:-1]) & (frames[order][1:] == frames[order][:-1])
    differs = same_key & np.any(positions[order][1:] != positions[order][:-1], axis=1)
    if np.any(differs):
        k = int(np.nonzero(differs)[0][0])
        a, b = order[k], order[k + 1]
        raise InvalidRequest(f"control {JOINT_NAMES[joints[a]]!r} has two different positions at frame "
                             f"{frames[a]}: {positions[a].tolist()} and {positions[b].tolist()}")


def scale_controls(controls: Sequence[JointControl], factor: float) -> list[JointControl]:
    """The controls with every position times `factor` (frames kept)."""
    for c in controls:
        if not isinstance(c, JointControl):
            raise InvalidRequest(f"expected JointControl objects, got {type(c).__name__}")
    return [JointControl(c.joint, c.frames, c.positions * np.float32(factor)) for c in controls]


def validate_controls(controls: Sequence[JointControl], length: int) -> None:
    """Raise InvalidRequest for anything build_hint cannot use: not a JointControl, unknown joint, non-finite
    positions, frames outside [0, length), frames/positions count mismatch, or one (frame, joint) given two
    different positions (also across controls of the same joint)."""
    for c in controls:
        if not isinstance(c, JointControl):
            raise InvalidRequest(f"expected JointControl objects, got {type(c).__name__}")
        c._check(length)
    _check_repeats(controls)


def make_hint_mask(frame_sel: torch.Tensor, joint_sel: torch.Tensor, lengths: Any = None) -> torch.Tensor:
    """hint_mask (B, T, 22, 3) float32 from frame_sel (B, T) and joint_sel (B, 22) (bool or 0/1): 1 where both
    select, for x, y, z alike; frames at or past `lengths` (B,) are 0. Batched and differentiation-free."""
    mask = frame_sel.bool()[:, :, None] & joint_sel.bool()[:, None, :]
    if lengths is not None:
        frame = torch.arange(frame_sel.shape[1], device=frame_sel.device)
        valid = frame[None, :] < torch.as_tensor(lengths, device=frame_sel.device)[:, None]
        mask = mask & valid[:, :, None]
    return mask[..., None].expand(*mask.shape, 3).to(torch.float32)


def normalize_hint(positions: torch.Tensor, hint_mask: torch.Tensor, raw_mean: Any, raw_std: Any) -> torch.Tensor:
    """(positions - raw_mean) / raw_std, zero where hint_mask is 0; positions (..., 22, 3) in metres.
    Works on any batch shape and device; the statistics follow positions' device and dtype."""
    mean = torch.as_tensor(raw_mean).to(positions)
    std = torch.as_tensor(raw_std).to(positions)
    return (positions - mean) / std * hint_mask.to(positions)


def denormalize_hint(hint: torch.Tensor, hint_mask: torch.Tensor, raw_mean: Any, raw_std: Any) -> torch.Tensor:
    """Positions in metres at controlled entries (0 elsewhere): the inverse of normalize_hint."""
    mean = torch.as_tensor(raw_mean).to(hint)
    std = torch.as_tensor(raw_std).to(hint)
    return (hint * std + mean) * hint_mask.to(hint)


def build_hint(controls_per_sample: Sequence[Sequence[JointControl]], lengths: Sequence[int], raw_mean: Any,
               raw_std: Any, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(hint, hint_mask), each (B, T, 22, 3) float32 on the CPU, T = max_len or max(lengths).
    raw_mean/raw_std: (22, 3) spatial statistics (backend.motion.norm_stats.spatial_mean_std() or a checkpoint's)."""
    if len(controls_per_sample) != len(lengths) or not lengths:
        raise InvalidRequest(f"{len(controls_per_sample)} control lists for {len(lengths)} lengths")
    for n in lengths:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidRequest(f"length {n!r} is not a positive number of frames")
    longest = int(max(lengths))
    if max_len is None:
        max_len = longest
    elif max_len < longest:
        raise InvalidRequest(f"max_len {max_len} is shorter than the longest sample ({longest} frames)")
    for s in (raw_mean, raw_std):
        if tuple(np.shape(s)) != (NUM_JOINTS, 3):
            raise ValueError(f"spatial statistics must be ({NUM_JOINTS}, 3), got {tuple(np.shape(s))}")
    positions = torch.zeros(len(lengths), max_len, NUM_JOINTS, 3)
    mask = torch.zeros_like(positions)
    for b, (controls, n) in enumerate(zip(controls_per_sample, lengths)):
        validate_controls(controls, int(n))
        for c in controls:
            frames = torch.from_numpy(c.frames)
            positions[b, frames, c.index] = torch.from_numpy(c.positions)
            mask[b, frames, c.index] = 1.0
    return normalize_hint(positions, mask, raw_mean, raw_std), mask


def _resample_path(path: np.ndarray, length: int) -> np.ndarray:
    """A dense path of K >= 2 points spread evenly over frames [0, length-1], linearly interpolated at every frame."""
    source_t = np.linspace(0.0, length - 1, len(path))
    frames_t = np.arange(length, dtype=np.float64)
    return np.stack([np.interp(frames_t, source_t, path[:, k].astype(np.float64)) for k in range(3)], axis=1)


def _from_array(joint: str, array: np.ndarray, length: int) -> JointControl:
    if array.ndim == 2 and array.shape[1] == 3:
        if len(array) < 2 and length != len(array):
            raise InvalidRequest(f"a dense path needs at least 2 points to span {length} frames; give waypoints "
                                 "as [frame, x, y, z] rows instead")
        if not np.all(np.isfinite(array)):
            raise InvalidRequest("the path contains NaN or infinite values")
        path = array if len(array) == length else _resample_path(array, length)
        return JointControl(joint, np.arange(length), path)
    if array.ndim == 2 and array.shape[1] == 4:
        return JointControl(joint, array[:, 0], array[:, 1:])
    raise InvalidRequest(f"expected a (K, 3) dense path or (K, 4) [frame, x, y, z] waypoints, got shape "
                         f"{array.shape}")


def _read_control(joint: str, path: Path, length: int) -> JointControl:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"not a readable numeric .npy array ({exc})") from exc
        if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
            raise InvalidRequest(f"holds {array.dtype} values, not numbers")
        return _from_array(joint, array, length)
    if suffix != ".json":
        raise InvalidRequest(f"unsupported file type {path.suffix!r}; use .npy or .json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"not valid JSON ({exc})") from exc
    if isinstance(data, dict):
        if not {"frames", "positions"} <= set(data) <= {"joint", "frames", "positions"}:
            raise InvalidRequest('expected {"frames": [...], "positions": [[x, y, z], ...]}, got keys '
                                 f"{sorted(data)}")
        if data.get("joint", joint) != joint:
            raise InvalidRequest(f"the file is for joint {data['joint']!r}")
        return JointControl(joint, data["frames"], data["positions"])
    if isinstance(data, list):
        try:
            array = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"expected a list of [x, y, z] numbers ({exc})") from exc
        if array.ndim != 2 or array.shape[1] != 3:
            raise InvalidRequest(f"expected a list of [x, y, z] points, got shape {array.shape}")
        return _from_array(joint, array, length)
    raise InvalidRequest(f"expected a JSON object or a list of [x, y, z], got {type(data).__name__}")


def load_control_file(joint: str | int, path: str | Path, length: int) -> JointControl:
    """Read a control for `joint` over a clip of `length` model frames (20 fps). Positions are metres in
    HumanML3D axes (Y up, the character faces +Z at frame 0). Formats:

    - `.npy` float array (K, 3): a dense path spanning the whole clip. If K == length, row t is frame t;
      otherwise the K points are spread evenly in time over frames 0..length-1 and linearly interpolated at
      every frame (K >= 2).
    - `.npy` array (K, 4): waypoints, rows [frame, x, y, z] with integer frames in [0, length).
    - `.json` object {"frames": [f, ...], "positions": [[x, y, z], ...]}: waypoints (an optional "joint" key
      must name the same joint).
    - `.json` list [[x, y, z], ...]: a dense path, as for the (K, 3) `.npy`.
    Anything else raises InvalidRequest naming the file.
    """
    name = _joint_name(joint)
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"control file {str(path)!r} for {name!r} does not exist")
    try:
        control = _read_control(name, path, length)
        validate_controls([control], length)
    except InvalidRequest as exc:
        raise InvalidRequest(f"control file {str(path)!r} for {name!r}: {exc}") from exc
    return control


def parse_control_arg(arg: str) -> tuple[str, Path]:
    """'pelvis=path/to/file.json' (the CLI's --control value) -> ('pelvis', Path('path/to/file.json'))."""
    joint, sep, path = arg.partition("=")
    if not sep or not joint.strip() or not path.strip():
        raise InvalidRequest(f"--control {arg!r} must look like JOINT=FILE, e.g. pelvis=path.json; joints: "
                             f"{_CONTROL_NAMES}")
    return _joint_name(joint.strip()), Path(path.strip())
