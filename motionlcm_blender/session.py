"""Runtime state shared by the operators and the panel: the backend client, the running generation, the last error.

Kept in Python rather than in scene properties so that progress updates never touch the .blend file
or the undo history. unregister() calls `shutdown()`, which stops the backend process.
"""

from __future__ import annotations

from typing import Any

from .client import BackendClient

_client: BackendClient | None = None
_client_config: dict[str, Any] | None = None
run = None  # the running generation_run.GenerationRun (one at a time), None when idle
last_error = ""
last_info = ""
last_warnings: list[str] = []  # controls the last generation did not meet, shown until the next message
limits: dict[str, Any] | None = None  # the backend's request limits, from its last ping reply


def client_for(config: dict[str, Any]) -> BackendClient:
    """The client for these settings; a changed configuration replaces (and stops) the previous backend."""
    global _client, _client_config, limits
    if _client is None or config != _client_config:
        shutdown_client()
        _client, _client_config = BackendClient.from_config(config), dict(config)
        limits = None  # another backend: its limits come with its first ping reply
    return _client


def set_error(message: str) -> None:
    global last_error, last_info, last_warnings
    last_error, last_info, last_warnings = message, "", []


def set_info(message: str, warnings: list[str] | None = None) -> None:
    global last_error, last_info, last_warnings
    last_error, last_info, last_warnings = "", message, list(warnings or [])


def shutdown_client() -> None:
    global _client, _client_config
    if _client is not None:
        _client.shutdown()
    _client, _client_config = None, None


def shutdown() -> None:
    """Cancel the running generation and stop the backend (add-on disabled or Blender quitting)."""
    if run is not None:
        run.cancel()  # clears `run`
    shutdown_client()
    set_info("")
