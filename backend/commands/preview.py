"""Previews of a motion viewable without Blender: an animated GIF, or a PNG contact sheet of several motions
(stick figures from a fixed three-quarter camera).

Pillow draws it; joints are HumanML3D positions (metres, Y up). Control paths, when given, are drawn
under the figure so a viewer can see how closely the motion follows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backend.motion.skeleton import PARENTS

_LEFT = {1, 4, 7, 10, 13, 16, 18, 20}
_RIGHT = {2, 5, 8, 11, 14, 17, 19, 21}
_COLOURS = {"left": (214, 96, 77), "right": (67, 147, 195), "centre": (60, 60, 60)}


def _camera(yaw_deg: float = 35.0, pitch_deg: float = 25.0) -> np.ndarray:
    """Rows: image-right and image-up axes of an orthographic camera looking at the origin."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    forward = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up])


class _Stage:
    """A fixed three-quarter orthographic camera framing a whole motion (and its paths), drawing stick figures."""

    def __init__(self, joints: np.ndarray, size: int, paths: Sequence[np.ndarray] = ()) -> None:
        self.joints = np.asarray(joints, dtype=np.float64)
        self.size, self.cam = size, _camera()
        self.paths = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in paths]
        ground = np.concatenate([self.joints.reshape(-1, 3)] + self.paths) * [1.0, 0.0, 1.0]
        flat = np.concatenate([self.joints.reshape(-1, 3), ground] + self.paths) @ self.cam.T
        lo, hi = flat.min(0), flat.max(0)
        self.scale = 0.85 * size / max(float((hi - lo).max()), 1e-6)
        self.centre = (lo + hi) / 2.0
        self.trail = self.to_px(self.joints[:, 0] * [1.0, 0.0, 1.0])

    def to_px(self, points: np.ndarray) -> np.ndarray:
        xy = (points @ self.cam.T - self.centre) * self.scale
        return np.stack([self.size / 2 + xy[..., 0], self.size / 2 - xy[..., 1]], axis=-1)

    def frame(self, t: int, caption: str = "") -> Image.Image:
        image = Image.new("RGB", (self.size, self.size), (250, 250, 247))
        draw = ImageDraw.Draw(image)
        for p in self.paths:
            draw.line([tuple(q) for q in self.to_px(p)], fill=(120, 190, 120), width=2)
        draw.line([tuple(q) for q in self.trail[: t + 1]], fill=(170, 170, 170), width=1)
        px = self.to_px(self.joints[t])
        for child, parent in enumerate(PARENTS):
            if parent < 0:
                continue
            side = "left" if child in _LEFT else "right" if child in _RIGHT else "centre"
            draw.line([tuple(px[parent]), tuple(px[child])], fill=_COLOURS[side], width=4)
        head = px[15]
        draw.ellipse([head[0] - 6, head[1] - 6, head[0] + 6, head[1] + 6], outline=_COLOURS["centre"], width=2)
        if caption:
            draw.text((8, 8), caption, fill=(30, 30, 30))
        return image


def render_gif(joints: np.ndarray, path: str | Path, fps: float = 20.0, size: int = 480,
               paths: Sequence[np.ndarray] = (), title: str = "") -> Path:
    """Write an animated GIF of `joints` (T, 22, 3) at `fps` (a frame every 1/fps s; GIF timing is in 10 ms)."""
    stage = _Stage(joints, size, paths)
    count = stage.joints.shape[0]
    frames = [stage.frame(t, f"{title}  [{t + 1}/{count}]" if title else "").convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=32) for t in range(count)]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000.0 / fps), loop=0,
                   optimize=True)
    return path


def render_contact_sheet(rows: Sequence[tuple[str, np.ndarray]], path: str | Path, frames: int = 6,
                         size: int = 200, fps: float = 20.0) -> Path:
    """A PNG page: one row per (title, joints (T, 22, 3)), `frames` evenly spaced snapshots each, timed in s."""
    if not rows:
        raise ValueError("a contact sheet needs at least one motion")
    label = 18
    sheet = Image.new("RGB", (frames * size, len(rows) * (size + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (title, joints) in enumerate(rows):
        stage = _Stage(joints, size)
        top = r * (size + label)
        draw.text((4, top + 3), title, fill=(20, 20, 20))
        for c, t in enumerate(np.linspace(0, stage.joints.shape[0] - 1, frames).round().astype(int)):
            sheet.paste(stage.frame(int(t), f"{t / fps:.1f} s"), (c * size, top + label))
    path = Path(path)
    sheet.save(path, optimize=True)
    return path
