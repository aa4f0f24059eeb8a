"""BVH motion files: a general reader (any skeleton) and a writer for root translation + local rotations.

Conventions (the same both ways):
- A joint's local transform is ``T(translation) @ R(rotation)``; its translation is its ``OFFSET`` unless the joint has
  position channels, whose values replace the matching offset components (the convention of Blender's importer for the
  root and of mocap files such as Bandai-Namco's, which repeat the offset in every joint's position channels).
- Rotation channels compose in the listed order as intrinsic rotations: ``Zrotation Xrotation Yrotation`` means
  ``R = Rz @ Rx @ Ry`` (column vectors, a child's point ``p`` maps to ``R @ p`` in its parent's frame), in degrees.
- Units are the file's own; readers scale if they need to (``global_positions(scale=0.01)`` for centimetre files).
- End sites have no channels; they are kept as per-joint offsets so a written file round-trips and bones get tails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from backend.errors import InvalidRequest

_POSITION = ("Xposition", "Yposition", "Zposition")
_ROTATION = ("Xrotation", "Yrotation", "Zrotation")


@dataclass
class Bvh:
    """A parsed BVH file: hierarchy in file (depth-first) order, so every parent precedes its children."""

    names: list[str]
    parents: list[int]  # -1 for a root
    offsets: np.ndarray  # (J, 3) float64, file units
    channels: list[tuple[str, ...]]  # per joint, e.g. ("Xposition", ..., "Zrotation", "Xrotation", "Yrotation")
    frame_time: float  # seconds per frame
    motion: np.ndarray  # (F, C) float64, raw channel values in file order
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)  # joint index -> end-site offset (3,)

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    def _columns(self) -> list[int]:
        starts = np.cumsum([0] + [len(c) for c in self.channels])
        return [int(s) for s in starts[:-1]]

    def local_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame local translations (F, J, 3) and rotation matrices (F, J, 3, 3)."""
        frames, joints = self.num_frames, len(self.names)
        trans = np.broadcast_to(self.offsets, (frames, joints, 3)).copy()
        rots = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
        for j, (start, chans) in enumerate(zip(self._columns(), self.channels)):
            rot_axes = ""
            rot_cols = []
            for k, ch in enumerate(chans):
                if ch in _POSITION:
                    trans[:, j, _POSITION.index(ch)] = self.motion[:, start + k]
                else:
                    rot_axes += ch[0].upper()
                    rot_cols.append(start + k)
            if rot_axes:
                euler = self.motion[:, rot_cols]
                rots[:, j] = Rotation.from_euler(rot_axes, euler, degrees=True).as_matrix().reshape(frames, 3, 3)
        return trans, rots

    def global_transforms(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: global joint positions (F, J, 3) times `scale`, and global rotations (F, J, 3, 3)."""
        trans, rots = self.local_transforms()
        pos = np.empty_like(trans)
        grot = np.empty_like(rots)
        for j, p in enumerate(self.parents):
            if p < 0:
                pos[:, j], grot[:, j] = trans[:, j], rots[:, j]
            else:
                pos[:, j] = pos[:, p] + np.einsum("fab,fb->fa", grot[:, p], trans[:, j])
                grot[:, j] = grot[:, p] @ rots[:, j]
        return pos * scale, grot

    def global_positions(self, scale: float = 1.0) -> np.ndarray:
        """Global joint positions (F, J, 3), in file units times `scale`."""
        return self.global_transforms(scale)[0]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise InvalidRequest(f"BVH has no joint named {name!r}; joints: {', '.join(self.names)}") from None


def parse_bvh(text: str, source: str = "<text>") -> Bvh:
    """Parse BVH text. Raises InvalidRequest naming `source` and the problem for malformed files."""
    head, sep, body = text.partition("MOTION")
    if not sep or "HIERARCHY" not in head:
        raise InvalidRequest(f"{source}: not a BVH file (needs HIERARCHY and MOTION sections)")
    tokens = re.findall(r"[{}]|[^\s{}]+", head.split("HIERARCHY", 1)[1])
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    end_sites: dict[int, np.ndarray] = {}
    stack: list[int] = []  # joint index per open brace; -2 marks an end site
    pending: int | None = None
    i = 0
    try:
        while i < len(tokens):
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                parent = stack[-1] if stack else -1
                if tok == "JOINT" and parent < 0:
                    raise InvalidRequest(f"{source}: JOINT {tokens[i + 1]!r} outside any joint")
                names.append(tokens[i + 1])
                parents.append(parent)
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                pending = len(names) - 1
                i += 2
            elif tok == "End":
                pending = -2
                i += 2  # "End Site"
            elif tok == "{":
                if pending is None:
                    raise InvalidRequest(f"{source}: unexpected '{{' in hierarchy")
                stack.append(pending)
                pending = None
                i += 1
            elif tok == "}":
                stack.pop()
                i += 1
            elif tok == "OFFSET":
                vec = [float(v) for v in tokens[i + 1:i + 4]]
                if stack[-1] == -2:
                    end_sites[stack[-2]] = np.array(vec)
                else:
                    offsets[stack[-1]] = vec
                i += 4
            elif tok == "CHANNELS":
                n = int(tokens[i + 1])
                chans = tuple(tokens[i + 2:i + 2 + n])
                bad = [c for c in chans if c not in _POSITION + _ROTATION]
                if bad or len(chans) != n:
                    raise InvalidRequest(f"{source}: bad CHANNELS for joint {names[stack[-1]]!r}: {chans}")
                channels[stack[-1]] = chans
                i += 2 + n
            else:
                raise InvalidRequest(f"{source}: unexpected token {tok!r} in hierarchy")
    except (IndexError, ValueError) as exc:
        raise InvalidRequest(f"{source}: malformed hierarchy ({exc})") from None
    if not names or stack:
        raise InvalidRequest(f"{source}: empty or unbalanced hierarchy")

    m = re.match(r"\s*Frames:\s*(\d+)\s*Frame Time:\s*([-+0-9.eE]+)", body)
    if not m:
        raise InvalidRequest(f"{source}: MOTION section lacks 'Frames:' and 'Frame Time:'")
    num_frames, frame_time = int(m.group(1)), float(m.group(2))
    if not frame_time > 0:
        raise InvalidRequest(f"{source}: Frame Time must be positive, got {frame_time}")
    num_channels = sum(len(c) for c in channels)
    values = np.array(body[m.end():].split(), dtype=np.float64)
    if values.size < num_frames * num_channels:
        raise InvalidRequest(f"{source}: {num_frames} frames of {num_channels} channels declared, "
                             f"only {values.size} values present")
    motion = values[:num_frames * num_channels].reshape(num_frames, num_channels)
    return Bvh(names, parents, np.array(offsets, dtype=np.float64), channels, frame_time, motion, end_sites)


def read_bvh(path: str | Path) -> Bvh:
    """Read a BVH file from disk."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InvalidRequest(f"cannot read BVH {path}: {exc.strerror}") from None
    return parse_bvh(text, str(path))


def format_bvh(names: list[str] | tuple[str, ...], parents: list[int] | tuple[int, ...], offsets: np.ndarray,
               root_positions: np.ndarray, local_quats: np.ndarray, frame_time: float,
               end_sites: dict[int, np.ndarray] | None = None, rotation_order: str = "ZXY") -> str:
    """BVH text for one root with position channels and rotation channels on every joint.

    `offsets` (J, 3): rest offsets from the parent (the root's is its rest position); `root_positions` (F, 3) the root's
    absolute position per frame; `local_quats` (F, J, 4) local rotations (w, x, y, z) relative to the rest pose.
    Parents must precede children. `end_sites` maps a leaf joint to its end-site offset (zero when missing).
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    root_positions = np.asarray(root_positions, dtype=np.float64)
    local_quats = np.asarray(local_quats, dtype=np.float64)
    joints = len(names)
    frames = local_quats.shape[0]
    if (len(parents) != joints or offsets.shape != (joints, 3) or local_quats.shape[1:] != (joints, 4)
            or root_positions.shape != (frames, 3)):
        raise ValueError("format_bvh: names, parents, offsets (J,3), local_quats (F,J,4) and root_positions (F,3)"
                         " must agree")
    if parents[0] != -1 or any(p < 0 or p >= j for j, p in enumerate(parents) if j > 0):
        raise ValueError("format_bvh: joint 0 must be the only root and every parent must precede its child")
    order = rotation_order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"rotation_order must be a permutation of XYZ, got {rotation_order!r}")
    if not (np.isfinite(local_quats).all() and np.isfinite(root_positions).all()):
        raise ValueError("format_bvh: rotations and positions must be finite")
    end_sites = end_sites or {}
    children: list[list[int]] = [[] for _ in range(joints)]
    for j, p in enumerate(parents[1:], start=1):
        children[p].append(j)
    rot_channels = " ".join(f"{a}rotation" for a in order)
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {names[j]}")
        lines.append(pad + "{")
        lines.append(pad + "\tOFFSET " + " ".join(f"{v:.6f}" for v in offsets[j]))
        lines.append(pad + (f"\tCHANNELS 6 Xposition Yposition Zposition {rot_channels}" if j == 0
                            else f"\tCHANNELS 3 {rot_channels}"))
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            tip = np.asarray(end_sites.get(j, np.zeros(3)), dtype=np.float64)
            lines.extend([pad + "\tEnd Site", pad + "\t{",
                          pad + "\t\tOFFSET " + " ".join(f"{v:.6f}" for v in tip), pad + "\t}"])
        lines.append(pad + "}")

    emit(0, 0)
    # Depth-first order of the file, which the motion columns must follow.
    dfs: list[int] = []
    todo = [0]
    while todo:
        j = todo.pop()
        dfs.append(j)
        todo.extend(reversed(children[j]))
    quats = local_quats[:, dfs].reshape(-1, 4)
    euler = Rotation.from_quat(quats[:, [1, 2, 3, 0]]).as_euler(order, degrees=True).reshape(frames, joints * 3)
    euler = np.unwrap(euler, period=360.0, axis=0)  # continuous curves for editors; same rotations
    table = np.concatenate([root_positions, euler], axis=1)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time:.8f}"]
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in table)
    return "\n".join(lines) + "\n" + body + ("\n" if frames else "")


def write_bvh(path: str | Path, names: list[str] | tuple[str, ...], parents: list[int] | tuple[int, ...],
              offsets: np.ndarray, root_positions: np.ndarray, local_quats: np.ndarray, frame_time: float,
              end_sites: dict[int, np.ndarray] | None = None, rotation_order: str = "ZXY") -> None:
    """Write `format_bvh(...)` of the same arguments to `path`."""
    text = format_bvh(names, parents, offsets, root_positions, local_quats, frame_time, end_sites, rotation_order)
    Path(path).write_text(text, encoding="utf-8")
