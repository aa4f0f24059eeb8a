"""Every limit a generation request must respect, stated once. The protocol validates requests with these, the
pipeline checks its arguments with them, and the server's ping reply sends them (`as_dict`) so that the add-on
validates its panel with the backend's own values (it keeps a copy only to draw the UI before the backend answers;
a test keeps the copy equal)."""

from __future__ import annotations

from typing import Any

from backend.motion.skeleton import FPS, MAX_FRAMES, MIN_FRAMES

MAX_PROMPT_CHARS = 1000
STEPS = (1, 2, 4)  # LCM steps (the official timestep lists)
MAX_VARIATIONS = 8
MAX_TUNING = 1000  # latent tuning iterations; about one decode and its gradient each
GUIDANCE = (1.0, 50.0)  # accepted guidance scale range; None means the checkpoint's own
MAX_TARGET_FPS = 240.0
MIN_SEGMENT_SECONDS = 1.0  # a timeline segment (backend.generation.timeline)
MAX_TIMELINE_SECONDS = 120.0  # a whole timeline, or one prompt generated in segments
MAX_AR_SECONDS = 30.0  # one motion of the AR engine (it makes long motions in one piece)
MAX_AR_FRAMES = int(round(MAX_AR_SECONDS * FPS))
MAX_TIMELINE_FRAMES = int(round(MAX_TIMELINE_SECONDS * FPS))
ENGINES = ("motionlcm", "ar")  # the generation engines a request may name; the first is the default


def as_dict() -> dict[str, Any]:
    """The limits as the ping reply carries them (docs/protocol.md)."""
    return {"min_frames": MIN_FRAMES, "max_frames": MAX_FRAMES, "max_prompt_chars": MAX_PROMPT_CHARS,
            "steps": list(STEPS), "max_variations": MAX_VARIATIONS, "max_tuning": MAX_TUNING,
            "guidance": list(GUIDANCE), "max_target_fps": MAX_TARGET_FPS,
            "min_segment_seconds": MIN_SEGMENT_SECONDS, "max_timeline_seconds": MAX_TIMELINE_SECONDS,
            "max_ar_seconds": MAX_AR_SECONDS, "engines": list(ENGINES)}
