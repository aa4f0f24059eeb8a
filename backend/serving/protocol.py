"""The add-on/backend protocol (docs/protocol.md): parsing, validation, reply building, arrays.

Transport-free: `backend.serving.server` moves lines; this module turns them into checked requests and
turns engine results into reply objects. Validation happens here, before a request is queued,
so bad input is answered at once and never reaches the model.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.errors import InvalidRequest, MotionLCMError
from backend.limits import (ENGINES, GUIDANCE, MAX_AR_FRAMES, MAX_PROMPT_CHARS, MAX_TARGET_FPS,
                            MAX_TIMELINE_FRAMES, MAX_TUNING, MAX_VARIATIONS, STEPS)
from backend.motion.skeleton import FPS, MAX_FRAMES, MIN_FRAMES

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024 * 1024
# Answered by the reader thread at once; everything else is queued for the worker.
IMMEDIATE_TYPES = ("ping", "cancel", "shutdown")
QUEUED_TYPES = ("skeleton", "generate")
REQUEST_TYPES = IMMEDIATE_TYPES + QUEUED_TYPES
_DTYPES = {"float32": "<f4", "int32": "<i4"}


class ProtocolError(MotionLCMError):
    """A request that cannot be handled as sent; `code` is one of docs/protocol.md's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(MotionLCMError):
    code = "cancelled"

    def __init__(self, message: str = "Generation cancelled.") -> None:
        super().__init__(message)


# ---------------------------------------------------------------- arrays

def encode_array(array: np.ndarray) -> dict[str, Any]:
    """Reply form of an array: float arrays as float32, integer arrays as int32, little-endian."""
    array = np.asarray(array)
    dtype = "int32" if np.issubdtype(array.dtype, np.integer) else "float32"
    data = np.ascontiguousarray(array, dtype=_DTYPES[dtype])
    return {"dtype": dtype, "shape": list(data.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(value: Any, name: str) -> np.ndarray:
    """A request array: the base64 object form or nested lists of numbers. Raises InvalidRequest naming `name`."""
    if isinstance(value, dict):
        dtype, shape, b64 = value.get("dtype"), value.get("shape"), value.get("b64")
        if dtype not in _DTYPES or not isinstance(shape, list) or not isinstance(b64, str) \
                or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise InvalidRequest(f"{name} must be an array object {{dtype: float32|int32, shape, b64}} "
                                 "or nested lists of numbers.")
        try:
            raw = base64.b64decode(b64, validate=True)
            return np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"{name}: the base64 data does not match dtype {dtype} and shape {shape}.") from exc
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{name} must be nested lists of numbers of a regular shape.") from exc
    if array.dtype == object:
        raise InvalidRequest(f"{name} must be nested lists of numbers of a regular shape.")
    return array


# ---------------------------------------------------------------- framing

def parse_line(line: bytes | str) -> dict[str, Any]:
    """One request line to an object with a valid envelope (`id`, `type`); raises ProtocolError."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError("too_large", f"The request is larger than {MAX_LINE_BYTES // (1024 * 1024)} MiB.")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"The request is not valid JSON: {exc}.") from exc
    if not isinstance(message, dict):
        raise ProtocolError("bad_json", f"A request must be a JSON object, got {type(message).__name__}.")
    return message


def check_envelope(message: dict[str, Any]) -> tuple[str | int, str]:
    """The request's id and type; raises ProtocolError `bad_request` or `unknown_type`."""
    request_id, kind = message.get("id"), message.get("type")
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        raise ProtocolError("bad_request", "Every request needs an \"id\" (a string or an integer).")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "Every request needs a \"type\" (a string).")
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"Unknown request type {kind!r}; known types: {', '.join(REQUEST_TYPES)}.")
    return request_id, kind


def dumps(reply: dict[str, Any]) -> str:
    """One reply line (compact JSON, no trailing newline); NaN is not JSON, so it is refused here."""
    return json.dumps(reply, separators=(",", ":"), allow_nan=False)


def progress(request_id: Any, stage: str, fraction: float) -> dict[str, Any]:
    return {"id": request_id, "type": "progress", "stage": stage, "fraction": float(min(max(fraction, 0.0), 1.0))}


def result(request_id: Any, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "type": "result", **fields}


def error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "type": "error", "code": code, "message": message}


def error_from_exception(request_id: Any, exc: BaseException) -> dict[str, Any]:
    """Known errors keep their code and message; anything else is `internal` (the traceback goes to stderr)."""
    if isinstance(exc, MotionLCMError):
        return error(request_id, exc.code, str(exc))
    return error(request_id, "internal", f"Internal backend error: {type(exc).__name__}: {exc}. "
                                         "See the backend log for details.")


# ---------------------------------------------------------------- generate

@dataclass
class GenerateRequest:
    prompt: str
    frames: int
    controls: list = field(default_factory=list)  # list[backend.generation.controls.JointControl]
    steps: int = 1
    guidance: float | None = None
    seed: int | None = None
    variations: int = 1
    tuning: int = 0  # consistency latent tuning iterations (backend.generation.latent_tuning) before fitting; 0 = none
    # Bend the motion onto its controls (backend.generation.fitting); false: the draft, the ControlNet alone.
    fit: bool = True
    target_fps: float | None = None
    in_place: bool = False
    foot_lock: bool = False
    skeleton: Any = None  # backend.retarget.rest_pose.RestSkeleton; None = the default rest skeleton
    # A timeline (backend.generation.timeline.Segment list): set for `timeline` requests and for `frames` above one
    # clip; `prompt` is then the first segment's and `frames` the total.
    segments: list | None = None
    previous: np.ndarray | None = None  # (T, 22, 3) joints to continue (`continue_from`), in the target's space
    engine: str = ENGINES[0]  # "motionlcm", or "ar": the MotionMillion engine (prompt and duration only)
    temperature: float | None = None  # the AR engine's sampling; None: the checkpoint's
    top_k: int | None = None

    @property
    def is_timeline(self) -> bool:
        return self.segments is not None or self.previous is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bool(message: dict[str, Any], name: str, default: bool = False) -> bool:
    value = message.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false, got {value!r}.")
    return value


def _prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("prompt must be a non-empty text describing the motion, "
                             f"got {value!r}.")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt is too long ({len(value)} characters; at most {MAX_PROMPT_CHARS}).")
    return value.strip()


def _frames(value: Any, longest: int = MAX_TIMELINE_FRAMES, engine: str = "") -> int:
    if not _is_int(value) or not MIN_FRAMES <= value <= longest:
        segments = f"; above {MAX_FRAMES} generated in segments" if longest > MAX_FRAMES else ""
        raise InvalidRequest(f"frames must be an integer between {MIN_FRAMES} and {longest}{engine} "
                             f"({MIN_FRAMES / FPS:.1f} to {longest / FPS:g} s at {FPS:g} fps{segments}), "
                             f"got {value!r}.")
    return value


def _ar_request(message: dict[str, Any]) -> tuple[str, int, float | None, int | None]:
    """(prompt, frames, temperature, top_k) of an `engine: "ar"` request, which takes no MotionLCM-only field."""
    given = [name for name in ("controls", "timeline", "continue_from") if message.get(name) not in (None, [])]
    given += [name for name, default in (("tuning", 0), ("steps", 1)) if message.get(name, default) != default]
    if given:
        raise InvalidRequest(f"{', '.join(given)} belong to the MotionLCM engine; the AR engine takes a prompt and "
                             "frames only (trajectory controls are not part of it).")
    frames = _frames(message.get("frames"), MAX_AR_FRAMES, " for the AR engine")
    temperature, top_k = message.get("temperature"), message.get("top_k")
    if temperature is not None and not (_is_number(temperature) and 0 < temperature <= 10):
        raise InvalidRequest(f"temperature must be a number above 0 and at most 10, or null, got {temperature!r}.")
    if top_k is not None and not (_is_int(top_k) and top_k >= 1):
        raise InvalidRequest(f"top_k must be a positive integer, or null for no limit, got {top_k!r}.")
    return _prompt(message.get("prompt")), frames, None if temperature is None else float(temperature), top_k


def _timeline(message: dict[str, Any]) -> tuple[list | None, np.ndarray | None, str, int]:
    """(segments, joints to continue, prompt, frames) of a request: a `timeline`, or one `prompt` over `frames`
    (segments when longer than a clip), optionally continuing `continue_from`."""
    previous = None
    if message.get("continue_from") is not None:
        previous = decode_array(message["continue_from"], "continue_from").astype(np.float64)
        if previous.ndim != 3 or previous.shape[1:] != (22, 3) or len(previous) < 2 \
                or not np.isfinite(previous).all():
            raise InvalidRequest(f"continue_from must be finite joints of shape (T >= 2, 22, 3), got shape "
                                 f"{list(previous.shape)}.")
    if message.get("timeline") is not None:
        from backend.generation.timeline import parse_segments  # imports torch: only timelines pay for it

        segments = parse_segments(message["timeline"])
        return segments, previous, segments[0].prompt, sum(s.frames for s in segments)
    prompt, frames = _prompt(message.get("prompt")), _frames(message.get("frames"))
    if frames <= MAX_FRAMES and previous is None:
        return None, None, prompt, frames
    from backend.generation.timeline import Segment

    return [Segment(prompt, frames)], previous, prompt, frames


def _controls(value: Any, frames: int) -> list:
    if value is None or value == []:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"controls must be a list of {{joint, frames, positions}} objects, got {value!r}.")
    # Imports torch: only requests with controls pay for it.
    from backend.generation.controls import JointControl, validate_controls

    controls = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"controls[{i}] must be an object {{joint, frames, positions}}.")
        # Other keys are ignored (forward compatibility), like everywhere in the protocol.
        fields = {key: item.get(key) for key in ("joint", "frames", "positions")}
        if fields["positions"] is not None:
            fields["positions"] = decode_array(fields["positions"], f"controls[{i}].positions")
        try:
            controls.append(JointControl.from_dict(fields))
        except InvalidRequest as exc:
            raise InvalidRequest(f"controls[{i}]: {exc}.") from exc
    try:
        validate_controls(controls, frames)
    except InvalidRequest as exc:
        raise InvalidRequest(f"controls: {exc}.") from exc
    return controls


def parse_generate(message: dict[str, Any]) -> GenerateRequest:
    """Validate a `generate` request; raises InvalidRequest naming the field and the accepted values."""
    engine = message.get("engine", ENGINES[0])
    if engine not in ENGINES:
        raise InvalidRequest(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    temperature = top_k = None
    if engine == "ar":
        segments, previous = None, None
        prompt, frames, temperature, top_k = _ar_request(message)
    elif message.get("temperature") is not None or message.get("top_k") is not None:
        raise InvalidRequest('temperature and top_k belong to the AR engine (engine: "ar").')
    else:
        segments, previous, prompt, frames = _timeline(message)
    steps = message.get("steps", 1)
    if steps not in STEPS or not _is_int(steps):
        raise InvalidRequest(f"steps must be one of {', '.join(map(str, STEPS))}, got {steps!r}.")
    guidance = message.get("guidance")
    low, high = GUIDANCE
    if guidance is not None and not (_is_number(guidance) and low <= guidance <= high):
        raise InvalidRequest(f"guidance must be a number between {low:g} and {high:g}, or null for the default, "
                             f"got {guidance!r}.")
    seed = message.get("seed")
    if seed is not None and not (_is_int(seed) and 0 <= seed < 2**32):
        raise InvalidRequest(f"seed must be an integer between 0 and 4294967295, or null for random, got {seed!r}.")
    variations = message.get("variations", 1)
    if not (_is_int(variations) and 1 <= variations <= MAX_VARIATIONS):
        raise InvalidRequest(f"variations must be an integer between 1 and {MAX_VARIATIONS}, got {variations!r}.")
    tuning = message.get("tuning", 0)
    if not (_is_int(tuning) and 0 <= tuning <= MAX_TUNING):
        raise InvalidRequest(f"tuning must be an integer between 0 (off) and {MAX_TUNING} iterations, got {tuning!r}.")
    if tuning and not message.get("controls"):
        raise InvalidRequest("tuning fits the motion to its controls: add a control or set tuning to 0.")
    if segments is not None and (variations != 1 or tuning):
        raise InvalidRequest("timelines, motions longer than one clip and continuations take variations 1 and "
                             "tuning 0.")
    target_fps = message.get("target_fps")
    if target_fps is not None and not (_is_number(target_fps) and 0 < target_fps <= MAX_TARGET_FPS):
        raise InvalidRequest(f"target_fps must be a number above 0 and at most {MAX_TARGET_FPS:g}, "
                             f"or null for {FPS:g}, got {target_fps!r}.")
    skeleton = None
    if message.get("rest_joints") is not None:
        from backend.retarget.rest_pose import RestSkeleton  # validates shape, finiteness, bone lengths

        skeleton = RestSkeleton(decode_array(message["rest_joints"], "rest_joints"))
    return GenerateRequest(
        prompt=prompt, frames=frames, controls=_controls(message.get("controls"), frames), steps=steps,
        guidance=None if guidance is None else float(guidance), seed=seed, variations=variations, tuning=tuning,
        target_fps=None if target_fps is None else float(target_fps),
        in_place=_bool(message, "in_place"), foot_lock=_bool(message, "foot_lock"), skeleton=skeleton,
        fit=_bool(message, "fit", default=True), segments=segments, previous=previous, engine=engine,
        temperature=temperature, top_k=top_k)


def parse_cancel(message: dict[str, Any]) -> str | int:
    target = message.get("target")
    if not isinstance(target, (str, int)) or isinstance(target, bool):
        raise InvalidRequest("cancel needs a \"target\": the id of the request to cancel.")
    return target
