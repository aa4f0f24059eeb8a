"""Array encoding of the add-on/backend protocol (docs/protocol.md, "Arrays"), add-on side.

An array travels as {"dtype": "float32"|"int32", "shape": [...], "b64": base64 of little-endian
C-order bytes}. Blender bundles numpy, so decoding gives numpy arrays; `decode_flat` needs no
numpy and gives an `array.array` that `foreach_set` takes directly.
"""

from __future__ import annotations

import array
import base64
import sys
from typing import Any

_TYPECODES = {"float32": "f", "int32": "i"}


def is_array(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() >= {"dtype", "shape", "b64"}


def decode_flat(value: dict) -> tuple[array.array, tuple[int, ...]]:
    """Flat values in C order, and the shape."""
    flat = array.array(_TYPECODES[value["dtype"]])
    flat.frombytes(base64.b64decode(value["b64"]))
    if sys.byteorder == "big":
        flat.byteswap()
    return flat, tuple(value["shape"])


def decode_array(value: dict):
    """A numpy array of the given dtype and shape."""
    import numpy as np

    dtype = {"float32": "<f4", "int32": "<i4"}[value["dtype"]]
    # astype to the native byte order also copies, so the result is writable
    return np.frombuffer(base64.b64decode(value["b64"]), dtype=dtype).reshape(value["shape"]).astype(dtype[1:])


def decode_arrays(message: Any) -> Any:
    """A copy of a reply with every array object (at any depth) replaced by a numpy array."""
    if is_array(message):
        return decode_array(message)
    if isinstance(message, dict):
        return {key: decode_arrays(item) for key, item in message.items()}
    if isinstance(message, list):
        return [decode_arrays(item) for item in message]
    return message


def encode_array(values: Any, dtype: str = "float32") -> dict:
    """Array object from a numpy array or nested lists (without numpy, send plain nested lists instead)."""
    import numpy as np

    data = np.ascontiguousarray(values, dtype={"float32": "<f4", "int32": "<i4"}[dtype])
    return {"dtype": dtype, "shape": list(data.shape), "b64": base64.b64encode(data.tobytes()).decode("ascii")}
