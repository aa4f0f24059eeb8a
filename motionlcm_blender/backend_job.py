"""The requests one user action sends to the backend, tracked until each has its final reply (no bpy).

The operator's timer calls `update()`; it never blocks. Replies for ids this job does not own (e.g. a
cancelled earlier job's late reply) are dropped.
"""

from __future__ import annotations

from typing import Any, Protocol


class Client(Protocol):  # the part of client.BackendClient a job needs
    def submit(self, request: dict[str, Any]) -> str: ...
    def poll(self) -> list[dict[str, Any]]: ...
    def cancel(self, job_id: str) -> None: ...


class BackendJob:
    def __init__(self, client: Client, requests: dict[str, dict[str, Any]]) -> None:
        """requests: label -> request body, submitted in order (the backend runs them in order)."""
        self.client = client
        self.results: dict[str, dict[str, Any]] = {}
        self.error: str | None = None
        self.error_code: str | None = None
        self.stage = "starting backend"
        self.fraction = 0.0
        self.cancel_requested = False
        self._labels: dict[str, str] = {}
        for label, request in requests.items():
            self._labels[client.submit(request)] = label

    @property
    def finished(self) -> bool:
        return self.error is not None or len(self.results) == len(self._labels)

    def update(self) -> bool:
        """Consume new replies; True once every request has its result or one failed."""
        for reply in self.client.poll():
            label = self._labels.get(str(reply.get("id")))
            if label is None or label in self.results or self.error is not None:
                continue
            kind = reply.get("type")
            if kind == "progress":
                self.stage = str(reply.get("stage", ""))
                self.fraction = min(max(float(reply.get("fraction", 0.0)), 0.0), 1.0)
            elif kind == "result":
                self.results[label] = reply
            elif kind == "error":
                self.error_code = str(reply.get("code", "error"))
                self.error = str(reply.get("message") or f"The backend failed ({self.error_code}).")
                self._cancel_others()
        return self.finished

    def cancel(self) -> None:
        self.cancel_requested = True
        self._cancel_others()

    def _cancel_others(self) -> None:
        for job_id, label in self._labels.items():
            if label not in self.results:
                self.client.cancel(job_id)
