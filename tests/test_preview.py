"""Previews viewable without Blender: the GIF and the PNG contact sheet draw the motion they are given."""

from __future__ import annotations

import numpy as np
from PIL import Image

from backend.commands.preview import render_contact_sheet, render_gif
from backend.motion.skeleton import NUM_JOINTS


def _walk(frames: int = 40) -> np.ndarray:
    """A rigid stick figure travelling 2 m along +Z."""
    rest = np.zeros((NUM_JOINTS, 3))
    rest[:, 1] = np.linspace(0.1, 1.7, NUM_JOINTS)
    rest[:, 0] = np.linspace(-0.2, 0.2, NUM_JOINTS)
    return rest[None] + np.linspace(0, 2, frames)[:, None, None] * np.array([0, 0, 1.0])


def test_contact_sheet_has_a_row_per_motion_and_shows_it_moving(tmp_path):
    path = render_contact_sheet([("walk", _walk()), ("stand", _walk()[:1].repeat(40, 0))], tmp_path / "s.png",
                                frames=4, size=100)
    sheet = np.asarray(Image.open(path).convert("L"), dtype=np.int32)
    assert sheet.shape == (2 * (100 + 18), 400)
    walk = [sheet[18:118, c * 100:(c + 1) * 100] for c in range(4)]
    stand = [sheet[136:236, c * 100 + 40:(c + 1) * 100] for c in range(4)]  # right of the time caption
    assert np.abs(walk[0] - walk[3]).sum() > 0  # the figure moved between the first and last snapshot
    assert np.array_equal(stand[1][20:], stand[2][20:])  # a still figure looks the same (caption rows aside)


def test_gif_has_one_frame_per_motion_frame(tmp_path):
    path = render_gif(_walk(12), tmp_path / "w.gif", paths=[_walk(12)[:, 0]], title="walk")
    assert Image.open(path).n_frames == 12
