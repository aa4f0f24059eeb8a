"""Animated GIF preview of a motion (a stick figure from a fixed three-quarter camera), viewable without Blender.

Pillow draws it; joints are HumanML3D positions (metres, Y up). Control paths, when given, are drawn
under the figure so a viewer can see how closely the motion follows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .skeleton import PARENTS

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


def render_gif(joints: np.ndarray, path: str | Path, fps: float = 20.0, size: int = 480,
               paths: Sequence[np.ndarray] = (), title: str = "") -> Path:
    """Write an animated GIF of `joints` (T, 22, 3) at `fps` (a frame every 1/fps s; GIF timing is in 10 ms)."""
    joints = np.asarray(joints, dtype=np.float64)
    cam = _camera()
    extra = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in paths]
    ground = np.concatenate([joints.reshape(-1, 3)] + extra) * [1.0, 0.0, 1.0]
    everything = np.concatenate([joints.reshape(-1, 3), ground] + extra)
    flat = everything @ cam.T
    lo, hi = flat.min(0), flat.max(0)
    scale = 0.85 * size / max(float((hi - lo).max()), 1e-6)
    centre = (lo + hi) / 2.0

    def to_px(points: np.ndarray) -> np.ndarray:
        xy = (points @ cam.T - centre) * scale
        return np.stack([size / 2 + xy[..., 0], size / 2 - xy[..., 1]], axis=-1)

    trail = to_px(joints[:, 0] * [1.0, 0.0, 1.0])
    frames = []
    for t in range(joints.shape[0]):
        image = Image.new("RGB", (size, size), (250, 250, 247))
        draw = ImageDraw.Draw(image)
        for p in extra:
            draw.line([tuple(q) for q in to_px(p)], fill=(120, 190, 120), width=2)
        draw.line([tuple(q) for q in trail[: t + 1]], fill=(170, 170, 170), width=1)
        px = to_px(joints[t])
        for child, parent in enumerate(PARENTS):
            if parent < 0:
                continue
            side = "left" if child in _LEFT else "right" if child in _RIGHT else "centre"
            draw.line([tuple(px[parent]), tuple(px[child])], fill=_COLOURS[side], width=4)
        head = px[15]
        draw.ellipse([head[0] - 6, head[1] - 6, head[0] + 6, head[1] + 6], outline=_COLOURS["centre"], width=2)
        if title:
            draw.text((8, 8), f"{title}  [{t + 1}/{joints.shape[0]}]", fill=(30, 30, 30))
        frames.append(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=32))
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000.0 / fps), loop=0,
                   optimize=True)
    return path
