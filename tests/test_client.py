"""The add-on's BackendClient against the real backend child process (no model needed here), the loopback
HTTP mode, and the wire format shared with backend.serving.protocol."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from backend.serving import protocol
from backend.serving.http_transport import make_server
from backend.serving.server import Session
from backend_doubles import FakePipeline
from conftest import REPO
from motionlcm_blender import wire
from motionlcm_blender.client import BackendClient, BackendError, read_backend_config


def wait_final(client: BackendClient, job_id: str, timeout: float = 60.0) -> tuple[dict, list[dict]]:
    """Poll like the add-on's timer does; returns the final reply and everything seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += client.poll()
        finals = [r for r in seen if r["id"] == job_id and r["type"] in ("result", "error")]
        if finals:
            return finals[0], seen
        time.sleep(0.02)
    raise AssertionError(f"no final reply for {job_id} within {timeout} s: {seen}\n{client.stderr_tail()}")


@pytest.fixture
def client():
    backend = BackendClient(sys.executable, backend_root=str(REPO), server_args=["--device", "cpu"])
    yield backend
    backend.shutdown()


def test_wire_and_backend_encodings_agree():
    array = np.random.default_rng(0).normal(size=(5, 22, 4)).astype(np.float32)
    np.testing.assert_array_equal(wire.decode_array(protocol.encode_array(array)), array)
    np.testing.assert_array_equal(protocol.decode_array(wire.encode_array(array), "a"), array)
    flat, shape = wire.decode_flat(protocol.encode_array(np.arange(6, dtype=np.int32).reshape(2, 3)))
    assert list(flat) == [0, 1, 2, 3, 4, 5] and shape == (2, 3)
    reply = wire.decode_arrays({"id": 1, "variations": [{"joints": protocol.encode_array(array)}]})
    assert reply["variations"][0]["joints"].shape == (5, 22, 4) and reply["id"] == 1


def test_missing_interpreter_raises_a_clear_error():
    client = BackendClient("/nonexistent/python3", backend_root=str(REPO))
    with pytest.raises(BackendError, match="interpreter '/nonexistent/python3' was not found") as caught:
        client.submit({"type": "ping"})
    assert caught.value.code == "backend_unavailable" and not client.alive


def test_replies_flow_through_the_child_and_bad_input_gets_error_replies(client):
    ping = client.submit({"type": "ping"})
    reply, _ = wait_final(client, ping)
    assert reply["type"] == "result" and reply["protocol"] == 1 and client.alive
    bad = client.submit({"type": "generate", "prompt": "a person waves", "frames": 5000})
    reply, _ = wait_final(client, bad)
    assert reply["code"] == "invalid_request" and "between 40 and 2400" in reply["message"]
    unknown = client.submit({"type": "teleport"})
    assert wait_final(client, unknown)[0]["code"] == "unknown_type"


def test_a_killed_backend_reports_its_pending_job_and_the_next_submit_restarts_it(client):
    wait_final(client, client.submit({"type": "ping"}))
    first_pid = client.pid
    job = client.submit({"type": "skeleton"})
    os.kill(first_pid, signal.SIGKILL)
    reply, _ = wait_final(client, job)
    assert reply["code"] == "backend_crashed" and "stopped unexpectedly" in reply["message"]
    assert not client.alive
    reply, _ = wait_final(client, client.submit({"type": "ping"}))
    assert reply["type"] == "result" and client.pid != first_pid


def test_cancel_drops_a_queued_job_and_a_bad_checkpoint_is_reported(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    client = BackendClient(sys.executable, backend_root=str(REPO),
                           server_args=["--device", "cpu", "--checkpoint", str(missing)])
    try:
        loading = client.submit({"type": "generate", "prompt": "a person sits down", "frames": 80})
        queued = client.submit({"type": "skeleton"})
        client.cancel(queued)  # the first request is still importing torch and loading
        cancelled, seen_first = wait_final(client, queued)
        reply, seen_later = wait_final(client, loading)
    finally:
        client.shutdown()
    assert cancelled["code"] == "cancelled"
    assert reply["code"] == "bad_checkpoint" and str(missing) in reply["message"]
    # the cancel request's own reply is not for poll()
    assert {r["id"] for r in seen_first + seen_later} == {loading, queued}


def test_a_backend_that_cannot_start_explains_why(tmp_path):
    # An interpreter without site-packages (where an editable install of the project would be found) and a
    # backend_root without the `backend` package: the child cannot import the backend.
    python = tmp_path / "python_without_site"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    client = BackendClient(str(python), backend_root=str(tmp_path))
    try:
        reply, _ = wait_final(client, client.submit({"type": "ping"}))
    finally:
        client.shutdown()
    assert reply["code"] == "backend_crashed" and "No module named 'backend'" in reply["message"]


def test_shutdown_stops_the_child(client):
    wait_final(client, client.submit({"type": "ping"}))
    popen = client._child.popen
    client.shutdown()
    assert popen.wait(5) == 0 and not client.alive


def test_http_mode_talks_to_a_loopback_server_with_its_token():
    session = Session(FakePipeline)
    server = make_server(session, "127.0.0.1", 0, token="t0k")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = BackendClient(url=url, token="t0k")
        reply, seen = wait_final(good, good.submit({"type": "generate", "prompt": "a person hops", "frames": 40}))
        assert reply["type"] == "result" and reply["variations"][0]["joints"].shape == (40, 22, 3)
        assert any(r["type"] == "progress" for r in seen)
        bad = BackendClient(url=url, token="nope")
        reply, _ = wait_final(bad, bad.submit({"type": "ping"}))
        assert reply["code"] == "unauthorized"
    finally:
        server.shutdown()
        server.server_close()
        session.close(timeout=5)


def test_http_mode_refuses_non_loopback_urls():
    with pytest.raises(BackendError, match="on this machine"):
        BackendClient(url="http://192.168.1.20:8765")


def test_config_file_gives_the_interpreter_and_server_arguments(tmp_path):
    path = tmp_path / "backend_config.json"
    assert read_backend_config(path) == {}
    path.write_text(json.dumps({"python": sys.executable, "backend_root": str(REPO), "device": "cpu",
                                "checkpoint": "/models/m.safetensors"}))
    client = BackendClient.from_config(read_backend_config(path))
    assert client.python == sys.executable and client.backend_root == str(REPO)
    assert client.server_args == ["--device", "cpu", "--checkpoint", "/models/m.safetensors"]
    path.write_text("{truncated")
    with pytest.raises(BackendError, match="run install.py again"):
        read_backend_config(path)
    with pytest.raises(BackendError, match="No backend interpreter is configured"):
        BackendClient.from_config({}).submit({"type": "ping"})
