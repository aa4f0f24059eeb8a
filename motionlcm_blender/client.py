"""BackendClient: the add-on's side of docs/protocol.md. No bpy, no torch; safe to call from the main thread.

The backend runs as a child process, `<python> -m backend.serving.server --stdio ...`, where `<python>` is
the interpreter install.py prepared (its venv has the backend installed with `pip install -e`;
`backend_root`, the repository folder, is also put on PYTHONPATH so a plain checkout works).
A reader thread turns stdout lines into replies (arrays already decoded to numpy) on a queue that
`poll()` drains without blocking; stderr goes to a ring buffer that explains crashes.
Alternatively `url` points at a backend someone started with `--port` (loopback only).

    client = BackendClient(python, backend_root=repo)
    job = client.submit({"type": "generate", "prompt": "a person jumps", "frames": 60})
    ... each timer tick: for reply in client.poll(): ...   # progress..., then result or error
"""

from __future__ import annotations

import collections
import http.client
import ipaddress
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from . import wire

CONFIG_FILE = Path(__file__).with_name("backend_config.json")  # written by install.py into the extension
FINAL_TYPES = ("result", "error")
SHUTDOWN_ID = "client-shutdown"  # our own shutdown request; its reply is not for poll()


class BackendError(RuntimeError):
    """The backend cannot be reached; `code` is `backend_unavailable` (see docs/protocol.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_backend_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """install.py's settings ({"python", "backend_root", "checkpoint", "device", ...}); {} when absent."""
    path = Path(path) if path is not None else CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BackendError("backend_unavailable", f"{path} is unreadable ({exc}); run install.py again.") from exc
    if not isinstance(config, dict):
        raise BackendError("backend_unavailable", f"{path} holds no settings object; run install.py again.")
    return config


class _Child:
    """One backend process and what belongs to it: replies still owed, its last stderr lines."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pending: set[str] = set()
        self.stderr: collections.deque[str] = collections.deque(maxlen=200)
        self.stopping = False
        self.finished = False  # its stdout reached end: nothing more will be answered
        self.lock = threading.Lock()
        self.stderr_reader: threading.Thread | None = None


class BackendClient:
    def __init__(self, python: str | None = None, *, backend_root: str | None = None,
                 server_args: list[str] | tuple[str, ...] = (), url: str | None = None,
                 token: str | None = None) -> None:
        if (python is None) == (url is None):
            raise ValueError("give either the backend interpreter `python` or a loopback `url`")
        self.python, self.backend_root, self.server_args = python, backend_root, list(server_args)
        self._http = _loopback_address(url) if url is not None else None
        self.token = token
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._child: _Child | None = None
        self._internal: set[str] = set()  # ids of our own cancel requests, whose replies nobody wants
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BackendClient":
        """From read_backend_config()'s keys (the add-on preferences may override any of them)."""
        if config.get("url"):
            return cls(url=config["url"], token=config.get("token"))
        args = ["--device", config.get("device") or "auto"]
        for key, flag in (("checkpoint", "--checkpoint"), ("text_encoder", "--text-encoder")):
            if config.get(key):
                args += [flag, str(config[key])]
        if config.get("smpl_dir"):  # the user's SMPL/SMPL-X body instead of the mannequin
            args += ["--smpl-dir", str(config["smpl_dir"]), "--smpl-gender", config.get("smpl_gender") or "neutral"]
        return cls(config.get("python") or "", backend_root=config.get("backend_root"), server_args=args)

    # ------------------------------------------------------------ public API

    @property
    def alive(self) -> bool:
        if self._http is not None:
            return True  # someone else runs it; failures show up as error replies
        return self._child is not None and self._child.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._child.popen.pid if self.alive and self._child is not None else None

    def submit(self, request: dict[str, Any]) -> str:
        """Send a request (an id is assigned when it has none); returns its id. Starts the backend if needed.

        Raises BackendError when the backend cannot be started."""
        job_id = str(request.get("id") or f"job-{next(self._ids)}")
        message = {**request, "id": job_id}
        if self._http is not None:
            threading.Thread(target=self._http_exchange, args=(message, True), daemon=True).start()
            return job_id
        with self._lock:
            if not self.alive:
                self._start()
            self._send(message)
        return job_id

    def poll(self) -> list[dict[str, Any]]:
        """All replies that arrived since the last call, in order; never blocks."""
        replies = []
        while True:
            try:
                replies.append(self._replies.get_nowait())
            except queue.Empty:
                return replies

    def cancel(self, job_id: str) -> None:
        """Ask the backend to stop `job_id`; its final reply will be a `cancelled` error (or its result, if late)."""
        message = {"id": f"cancel-{next(self._ids)}", "type": "cancel", "target": job_id}
        self._internal.add(message["id"])
        if self._http is not None:
            threading.Thread(target=self._http_exchange, args=(message, False), daemon=True).start()
            return
        with self._lock:
            if self.alive:
                self._send(message)

    def restart(self) -> None:
        with self._lock:
            self._stop()
            if self._http is None:
                self._start()

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the child: a `shutdown` request, then kill after `timeout` s. Pending jobs end `cancelled`."""
        with self._lock:
            self._stop(timeout)

    def stderr_tail(self, lines: int = 20) -> str:
        child = self._child
        return "\n".join(list(child.stderr)[-lines:]) if child is not None else ""

    # ------------------------------------------------------------ child process

    def _start(self) -> None:
        python = self.python
        fix = "Run install.py, or set the backend Python in the MotionLCM add-on preferences."
        if not python:
            raise BackendError("backend_unavailable", f"No backend interpreter is configured. {fix}")
        if not (shutil.which(python) or os.access(python, os.X_OK)):
            raise BackendError("backend_unavailable", f"The backend interpreter {python!r} was not found. {fix}")
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if self.backend_root:
            env["PYTHONPATH"] = str(self.backend_root)
        try:
            popen = subprocess.Popen(
                [python, "-m", "backend.serving.server", "--stdio", *self.server_args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.backend_root or None,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as exc:
            raise BackendError("backend_unavailable", f"Could not start the backend with {python!r}: {exc}.") from exc
        child = self._child = _Child(popen)
        child.stderr_reader = threading.Thread(target=self._read_stderr, args=(child,), daemon=True)
        child.stderr_reader.start()
        threading.Thread(target=self._read_stdout, args=(child,), name="motionlcm-client-reader", daemon=True).start()

    def _send(self, message: dict[str, Any]) -> None:
        """Write one request; if the child is gone, the job gets its `backend_crashed` reply via the queue."""
        child = self._child
        owes_reply = message["id"] not in self._internal
        with child.lock:
            gone = child.finished
            if owes_reply and not gone:
                child.pending.add(message["id"])
        if gone:
            self._report_lost(child, [message["id"]] if owes_reply else [])
            return
        try:
            child.popen.stdin.write((json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8"))
            child.popen.stdin.flush()
        except OSError:
            pass  # it died since we looked: its reader reports what it owed

    def _stop(self, timeout: float = 3.0) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.stopping = True
        try:
            child.popen.stdin.write(json.dumps({"id": SHUTDOWN_ID, "type": "shutdown"}).encode() + b"\n")
            child.popen.stdin.close()
            child.popen.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            child.popen.kill()
            child.popen.wait()

    def _read_stdout(self, child: _Child) -> None:
        for raw in child.popen.stdout:
            try:
                reply = json.loads(raw)
            except ValueError:
                child.stderr.append(f"[not protocol] {raw[:200]!r}")
                continue
            self._deliver(reply, child.pending)
        child.popen.wait()
        with child.lock:
            child.finished = True
            lost, child.pending = sorted(child.pending), set()
        self._report_lost(child, lost)

    def _report_lost(self, child: _Child, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if child.stopping:
                self._replies.put({"id": job_id, "type": "error", "code": "cancelled",
                                   "message": "The backend was stopped before the request finished."})
                continue
            child.popen.wait()
            child.stderr_reader.join(2.0)  # its last words explain the crash
            tail = "\n".join(list(child.stderr)[-12:]) or "(no output)"
            self._replies.put({"id": job_id, "type": "error", "code": "backend_crashed",
                               "message": f"The MotionLCM backend stopped unexpectedly (exit status "
                                          f"{child.popen.returncode}). It will be restarted on the next request. "
                                          f"Its last output:\n{tail}"})

    def _read_stderr(self, child: _Child) -> None:
        for raw in child.popen.stderr:
            child.stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _deliver(self, reply: dict[str, Any], pending: set[str]) -> None:
        job_id = reply.get("id")
        final = reply.get("type") in FINAL_TYPES
        if job_id in self._internal or job_id == SHUTDOWN_ID:
            if final:
                self._internal.discard(job_id)
            return
        if final:
            pending.discard(job_id)
        self._replies.put(wire.decode_arrays(reply))

    # ------------------------------------------------------------ loopback HTTP

    def _http_exchange(self, message: dict[str, Any], report_failure: bool) -> None:
        host, port = self._http
        owed = {message["id"]}
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            connection = http.client.HTTPConnection(host, port, timeout=600)
            connection.request("POST", "/rpc", body=json.dumps(message).encode("utf-8"), headers=headers)
            response = connection.getresponse()
            for raw in response:
                reply = json.loads(raw)
                if reply.get("id") is None:  # refused before it was read (e.g. unauthorized)
                    reply["id"] = message["id"]
                self._deliver(reply, owed)
            connection.close()
            failure = "the connection closed before the final reply"
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failure = str(exc)
        if owed and report_failure:
            self._replies.put({"id": message["id"], "type": "error", "code": "backend_unavailable",
                               "message": f"No answer from the backend at http://{host}:{port}: {failure}."})


def _loopback_address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise BackendError("backend_unavailable", f"The backend URL must be http:// on this machine "
                           f"(127.0.0.1 or localhost), got {url!r}.")
    return host, parts.port or 80
