"""Runtime state shared by the operators and the panel: the backend client, the running job, the last error.

Kept in Python rather than in scene properties so that progress updates never touch the .blend file
or the undo history. unregister() calls `shutdown()`, which stops the backend process.
"""

from __future__ import annotations

from typing import Any

from .backend_job import BackendJob
from .client import BackendClient

_client: BackendClient | None = None
_client_config: dict[str, Any] | None = None
job: BackendJob | None = None
timer = None  # the running operator's window timer (bpy.types.Timer), removed on finish or unregister
last_error = ""
last_info = ""


def client_for(config: dict[str, Any]) -> BackendClient:
    """The client for these settings; a changed configuration replaces (and stops) the previous backend."""
    global _client, _client_config
    if _client is None or config != _client_config:
        shutdown_client()
        _client, _client_config = BackendClient.from_config(config), dict(config)
    return _client


def set_error(message: str) -> None:
    global last_error, last_info
    last_error, last_info = message, ""


def set_info(message: str) -> None:
    global last_error, last_info
    last_error, last_info = "", message


def shutdown_client() -> None:
    global _client, _client_config
    if _client is not None:
        _client.shutdown()
    _client, _client_config = None, None


def shutdown() -> None:
    """Forget the running job and stop the backend (add-on disabled or Blender quitting)."""
    global job
    if job is not None:
        job.cancel()
        job = None
    shutdown_client()
    set_info("")
