"""The backend's protocol layer (docs/protocol.md): validation, the request queue, cancel, bad input,
the stdio child process and the loopback HTTP transport. The model is a test double except where noted."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from backend.serving import protocol, server
from backend.errors import CheckpointError, InvalidRequest
from backend.generation.fitting import PELVIS_HEIGHT_RANGE
from backend.serving.http_transport import BindRefused, check_bind, make_server
from backend.retarget import default_skeleton, travel_scale
from backend.serving.server import Session
from backend_doubles import FakePipeline, Replies
from conftest import REPO


def generate(request_id="g", **fields):
    return {"id": request_id, "type": "generate", "prompt": "a person walks forward", "frames": 60, **fields}


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("fields, words", [
    ({"prompt": ""}, "prompt must be a non-empty text"),
    ({"prompt": 42}, "prompt must be a non-empty text"),
    ({"prompt": "x" * 1001}, "prompt is too long"),
    ({"frames": 39}, "frames must be an integer between 40 and 2400"),
    ({"frames": 2401}, "frames must be an integer between 40 and 2400 (2.0 to 120 s at 20 fps; above 196"),
    ({"frames": 400, "variations": 2}, "timelines, motions longer than one clip and continuations take variations 1"),
    ({"timeline": [{"prompt": "a man walks", "seconds": 3}, {"prompt": "", "seconds": 2}]},
     "timeline segment 2 has an empty prompt"),
    ({"timeline": [{"prompt": "a man waves", "seconds": 0.5}]}, "timeline segment 1 ('a man waves') lasts 0.5 s"),
    ({"timeline": [{"prompt": "a man walks", "seconds": 100}, {"prompt": "a man runs", "seconds": 30}]},
     "the timeline lasts 130 s; at most 120 s (segment 2 ends past it)"),
    ({"continue_from": [[[0, 0, 0]] * 22]}, "continue_from must be finite joints of shape (T >= 2, 22, 3)"),
    ({"continue_from": [[0, 0, 0]] * 22}, "continue_from must be finite joints of shape (T >= 2, 22, 3)"),
    ({"frames": 60.5}, "frames must be an integer"),
    ({"steps": 3}, "steps must be one of 1, 2, 4"),
    ({"guidance": "high"}, "guidance must be a number"),
    ({"seed": -1}, "seed must be an integer"),
    ({"variations": 0}, "variations must be an integer between 1 and 8"),
    ({"target_fps": 0}, "target_fps must be a number above 0"),
    ({"tuning": -1}, "tuning must be an integer between 0 (off) and 1000"),
    ({"tuning": 2.5}, "tuning must be an integer"),
    ({"tuning": 50}, "tuning fits the motion to its controls"),
    ({"in_place": "yes"}, "in_place must be true or false"),
    ({"controls": {"joint": "pelvis"}}, "controls must be a list"),
    ({"controls": [{"joint": "left_knee", "frames": [0], "positions": [[0, 1, 0]]}]}, "cannot be controlled"),
    ({"controls": [{"joint": "pelvis", "frames": [0, 80], "positions": [[0, 1, 0], [0, 1, 1]]}]}, "out of range"),
    ({"controls": [{"joint": "pelvis", "frames": [0], "positions": [[0, "up", 0]]}]}, "positions"),
    ({"rest_joints": [[0, 0, 0]] * 3}, "rest joints must be finite with shape (22, 3)"),
])
def test_invalid_generate_fields_are_named_in_the_message(fields, words):
    with pytest.raises(InvalidRequest) as caught:
        protocol.parse_generate(generate(**fields))
    assert words in str(caught.value)


def test_valid_generate_accepts_lists_and_array_objects():
    positions = np.array([[0, 0.9, 0], [0, 0.9, 1.5]], dtype=np.float32)
    request = protocol.parse_generate(generate(
        steps=4, guidance=2.5, seed=3, variations=2, target_fps=24, in_place=True, tuning=100,
        controls=[{"joint": 0, "frames": [0, 59], "positions": protocol.encode_array(positions), "strength": 1}]))
    assert (request.steps, request.guidance, request.seed, request.variations) == (4, 2.5, 3, 2)
    assert request.tuning == 100
    assert request.target_fps == 24.0 and request.in_place and not request.foot_lock
    (control,) = request.controls
    assert control.joint == "pelvis" and control.frames.tolist() == [0, 59]
    np.testing.assert_array_equal(control.positions, positions)


def test_array_round_trip_is_little_endian_base64():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    encoded = protocol.encode_array(array)
    assert encoded["dtype"] == "float32" and encoded["shape"] == [2, 3, 4]
    np.testing.assert_array_equal(protocol.decode_array(encoded, "x"), array)
    assert protocol.encode_array(np.arange(3))["dtype"] == "int32"
    with pytest.raises(InvalidRequest, match="does not match dtype"):
        protocol.decode_array({**encoded, "shape": [5]}, "x")


# ---------------------------------------------------------------- session (in process)

@pytest.fixture
def session_and_engine():
    engine = FakePipeline()
    session = Session(lambda: engine)
    yield session, engine
    session.close(timeout=5)


def test_generate_reports_progress_then_one_result(session_and_engine):
    session, engine = session_and_engine
    replies = Replies()
    session.handle(generate(seed=5, variations=2, target_fps=20), replies)
    result = replies.final("g")
    assert result["type"] == "result", result
    stages = [r["stage"] for r in replies.of("g") if r["type"] == "progress"]
    assert stages[:3] == ["queued", "loading", "loading"] and "retargeting" in stages
    assert result["fps"] == 20.0 and result["frame_count"] == 60
    assert [v["seed"] for v in result["variations"]] == [5, 6]
    joints = protocol.decode_array(result["variations"][1]["joints"], "joints")
    assert joints.shape == (60, 22, 3) and protocol.decode_array(result["rest_joints"], "r").shape == (22, 3)
    assert protocol.decode_array(result["variations"][0]["local_quats"], "q").shape == (60, 22, 4)
    assert result["settings"]["seed"] == 5 and result["settings"]["checkpoint"] == "fake-checkpoint"
    assert {"loading", "sampling", "retarget", "total"} <= result["timings"].keys()
    assert engine.calls[0]["prompts"] == ["a person walks forward"] and engine.calls[0]["variations"] == 2
    assert engine.calls[0]["tuning"] == 0
    json.dumps(result)  # the whole reply is plain JSON


def test_generate_passes_tuning_with_its_controls(session_and_engine):
    session, engine = session_and_engine
    replies = Replies()
    control = {"joint": "pelvis", "frames": [0, 59], "positions": [[0, 0.9, 0], [0, 0.9, 2]]}
    session.handle(generate(controls=[control], tuning=120), replies)
    assert replies.final("g")["type"] == "result"
    assert engine.calls[0]["tuning"] == 120 and engine.calls[0]["controls"][0][0].joint == "pelvis"


@pytest.mark.parametrize("fit", [None, True, False])
def test_generate_fits_controls_by_default_and_reports_each_variations_error(session_and_engine, fit):
    """The protocol's default is the CLI's and the add-on's: fit. Every variation says how far its controls
    are, draft and delivered, and a control that cannot be met (a pelvis 3 m up) comes back as a warning."""
    session, engine = session_and_engine
    replies = Replies()
    control = {"joint": "pelvis", "frames": [0, 30, 59], "positions": [[0, 0.9, 0], [0, 3.0, 1], [0, 0.9, 2]]}
    fields = {} if fit is None else {"fit": fit}
    session.handle(generate(controls=[control], variations=2, **fields), replies)
    result = replies.final("g")
    assert engine.calls[0]["fit"] is (fit is not False)
    for variation in result["variations"]:
        report = variation["controls"]
        assert report["fitted"] is (fit is not False) and report["draft"]["pelvis"]["max_m"] > 1.0
        if fit is False:
            assert report["error"] == report["draft"] and report["warnings"] == []
        else:
            # 3.0 m asked; the pelvis tops out at 1.6 m on the model's body, on this one travel_scale times that
            top = PELVIS_HEIGHT_RANGE[1] * travel_scale(default_skeleton())
            assert report["error"]["pelvis"]["max_m"] == pytest.approx(3.0 - top, abs=1e-3)
            assert any("3.00 m above the floor" in w for w in report["warnings"])
    assert engine.calls[0]["control_scale"] == pytest.approx(travel_scale(default_skeleton()))
    json.dumps(result)


def test_generate_rejects_a_fit_that_is_not_a_boolean():
    with pytest.raises(InvalidRequest, match="fit must be true or false"):
        protocol.parse_generate(generate(fit="yes"))


def test_model_loads_once_and_a_failed_load_is_retried():
    loads = []

    def factory():
        loads.append(1)
        if len(loads) == 1:
            raise CheckpointError("checkpoint.safetensors is corrupted")
        return FakePipeline()

    session, replies = Session(factory), Replies()
    try:
        for request_id in ("a", "b", "c"):
            session.handle(generate(request_id), replies)
            replies.final(request_id)
    finally:
        session.close(timeout=5)
    assert replies.final("a")["code"] == "bad_checkpoint" and "corrupted" in replies.final("a")["message"]
    assert replies.final("b")["type"] == replies.final("c")["type"] == "result"
    assert len(loads) == 2


def test_ping_and_cancel_are_answered_while_generating_and_queued_jobs_cancel_at_once():
    gate = threading.Event()
    engine = FakePipeline(gate=gate)
    session, replies = Session(lambda: engine), Replies()
    try:
        session.handle(generate("running"), replies)
        session.handle(generate("queued"), replies)
        assert engine.started.wait(10)
        session.handle({"id": "p", "type": "ping"}, replies)
        ping = replies.final("p")
        assert ping["busy"] and ping["queued"] == 1 and ping["loaded"] and ping["protocol"] == 1
        session.handle({"id": "c1", "type": "cancel", "target": "queued"}, replies)
        assert replies.final("c1")["cancelled"] and replies.final("queued")["code"] == "cancelled"
        session.handle({"id": "c2", "type": "cancel", "target": "running"}, replies)
        assert replies.final("c2")["cancelled"]
        gate.set()
        assert replies.final("running")["code"] == "cancelled"
        session.handle({"id": "c3", "type": "cancel", "target": "running"}, replies)
        assert replies.final("c3")["cancelled"] is False
    finally:
        gate.set()
        session.close(timeout=5)


def test_engine_exceptions_become_error_replies_and_the_worker_survives():
    engine = FakePipeline(fail=RuntimeError("CUDA out of memory"))
    session, replies = Session(lambda: engine), Replies()
    try:
        session.handle(generate("boom"), replies)
        error = replies.final("boom")
        assert error["code"] == "internal" and "CUDA out of memory" in error["message"]
        engine.fail = None
        session.handle(generate("after"), replies)
        assert replies.final("after")["type"] == "result"
    finally:
        session.close(timeout=5)


def test_math_value_errors_become_invalid_request_with_their_message():
    engine = FakePipeline(fail=ValueError("joint 5 coincides with its parent at frame 3"))
    session, replies = Session(lambda: engine), Replies()
    try:
        session.handle(generate("degenerate"), replies)
        error = replies.final("degenerate")
        assert error["code"] == "invalid_request"
        assert error["message"] == "joint 5 coincides with its parent at frame 3"
    finally:
        session.close(timeout=5)


@pytest.mark.parametrize("line, code", [
    (b"{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b'{"type": "ping"}', "bad_request"),
    (b'{"id": 1}', "bad_request"),
    (b'{"id": 1, "type": "dance"}', "unknown_type"),
    (b'{"id": 1, "type": "cancel"}', "invalid_request"),
])
def test_bad_lines_get_specific_error_codes(session_and_engine, line, code):
    session, _ = session_and_engine
    replies = Replies()
    session.handle_line(line, replies)
    (reply,) = replies.items
    assert reply["type"] == "error" and reply["code"] == code and reply["message"].endswith(".")


def test_skeleton_reply_has_a_skinned_mesh_on_the_rest_skeleton(session_and_engine):
    session, _ = session_and_engine
    replies = Replies()
    session.handle({"id": "s", "type": "skeleton"}, replies)
    reply = replies.final("s")
    rest = protocol.decode_array(reply["rest_joints"], "rest")
    mesh = {name: protocol.decode_array(value, name) for name, value in reply["mesh"].items()}
    assert reply["joint_names"][0] == "pelvis" and reply["parents"][:3] == [-1, 0, 0] and rest.shape == (22, 3)
    assert mesh["faces"].dtype == np.int32 and mesh["faces"].max() < len(mesh["vertices"])
    assert mesh["skin_joints"].shape == mesh["skin_weights"].shape and mesh["skin_joints"].max() < 22
    np.testing.assert_allclose(mesh["skin_weights"].sum(axis=1), 1.0, atol=1e-5)
    # The mesh stands on the rest skeleton: feet at the floor, head above the head joint.
    assert abs(mesh["vertices"][:, 1].min() - rest[:, 1].min()) < 0.08
    assert rest[15, 1] < mesh["vertices"][:, 1].max() < rest[15, 1] + 0.3


# ---------------------------------------------------------------- stdio child process

def test_stdio_child_survives_bad_input_and_exits_at_end_of_input():
    lines = [b"garbage", b'{"id": 1, "type": "dance"}', json.dumps(generate(2, frames=5000)).encode(),
             b"", json.dumps(generate(3, prompt="  ")).encode(), b'{"id": 4, "type": "ping"}']
    done = subprocess.run([sys.executable, "-m", "backend.serving.server", "--stdio", "--device", "cpu"], cwd=REPO,
                          input=b"\n".join(lines) + b"\n", capture_output=True, timeout=60)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr.decode()
    assert [(r["id"], r.get("code")) for r in replies] == [
        (None, "bad_json"), (1, "unknown_type"), (2, "invalid_request"), (3, "invalid_request"), (4, None)]
    assert "between 40 and 2400" in replies[2]["message"] and replies[4]["loaded"] is False


def test_an_oversized_line_is_refused_and_skipped(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_LINE_BYTES", 100)
    requests = b'{"id": 1, "type": "ping", "pad": "' + b"x" * 300 + b'"}\n{"id": 2, "type": "ping"}\n'
    replies = io.BytesIO()
    session = Session(FakePipeline)
    server.serve_stdio(session, io.BytesIO(requests), replies)
    answers = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert [(a["id"], a.get("code")) for a in answers] == [(None, "too_large"), (2, None)]


ENGINE_THAT_PRINTS = """
import sys
sys.path.insert(0, "tests")
from backend.serving.server import main
from backend_doubles import FakePipeline

def factory():
    print("a stray print from the engine")
    return FakePipeline()

sys.exit(main(["--stdio"], engine_factory=factory))
"""


def test_stdio_answers_what_it_read_before_end_of_input_and_keeps_stray_output_off_stdout():
    done = subprocess.run([sys.executable, "-c", ENGINE_THAT_PRINTS], cwd=REPO, input=json.dumps(generate(1)).encode(),
                          capture_output=True, timeout=60)
    replies = [json.loads(line) for line in done.stdout.splitlines()]  # every stdout line is protocol
    assert done.returncode == 0 and replies[-1]["type"] == "result" and replies[-1]["id"] == 1
    assert b"a stray print from the engine" in done.stderr


# ---------------------------------------------------------------- loopback HTTP

def test_non_loopback_bind_needs_allow_remote_and_a_token():
    check_bind("127.0.0.1", allow_remote=False, token=None)
    check_bind("::1", allow_remote=False, token=None)
    for allow_remote, token in ((False, None), (True, None), (False, "secret")):
        with pytest.raises(BindRefused, match="--allow-remote and --token"):
            check_bind("0.0.0.0", allow_remote=allow_remote, token=token)
    check_bind("0.0.0.0", allow_remote=True, token="secret")


def test_motionlcm_serve_subcommand_takes_the_server_options():
    parser = argparse.ArgumentParser(prog="motionlcm")
    server.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "0", "--host", "0.0.0.0", "--device", "cpu"])
    assert args.func is server.run and (args.port, args.device, args.token) == (0, "cpu", None)
    with pytest.raises(BindRefused):
        args.func(args)


def test_cli_refuses_a_public_bind_without_a_token():
    done = subprocess.run([sys.executable, "-m", "backend.serving.server", "--port", "0", "--host", "0.0.0.0"],
                          cwd=REPO, capture_output=True, timeout=60)
    assert done.returncode == 2 and b"not a loopback address" in done.stderr


def _post(port, body, token=None, path="/rpc", **extra_headers):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", **extra_headers}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    response = connection.getresponse()
    replies = [json.loads(line) for line in response.read().splitlines()]
    connection.close()
    return response.status, replies


def test_http_streams_replies_and_rejects_requests_without_the_token():
    session = Session(FakePipeline)
    server = make_server(session, "127.0.0.1", 0, token="s3cret")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, replies = _post(port, {"id": 1, "type": "ping"})
        assert status == 401 and replies[0]["code"] == "unauthorized"
        status, replies = _post(port, {"id": 1, "type": "ping"}, token="wrong")
        assert status == 401
        status, replies = _post(port, {"id": 1, "type": "ping"}, token="s3cret", path="/other")
        assert status == 404 and replies[0]["code"] == "not_found"
        status, replies = _post(port, {"id": 1, "type": "ping"}, token="s3cret", Origin="https://evil.example")
        assert status == 403 and replies[0]["code"] == "forbidden"
        status, replies = _post(port, {"id": 1, "type": "ping"}, token="s3cret", **{"Content-Type": "text/plain"})
        assert status == 403
        status, replies = _post(port, generate("h", frames=3), token="s3cret")
        assert status == 200 and replies[-1]["code"] == "invalid_request"
        status, replies = _post(port, generate("h"), token="s3cret")
        assert status == 200 and replies[0]["type"] == "progress" and replies[-1]["type"] == "result"
        assert replies[-1]["frame_count"] == 60
    finally:
        server.shutdown()
        server.server_close()
        session.close(timeout=5)


def test_ping_sends_the_request_limits(session_and_engine):
    from backend import limits

    session, _engine = session_and_engine
    replies = Replies()
    session.handle({"id": "p", "type": "ping"}, replies)
    reply = replies.final("p")
    assert reply["limits"] == limits.as_dict() and reply["limits"]["max_variations"] == limits.MAX_VARIATIONS
    json.dumps(reply)


# ---------------------------------------------------------------- timelines and continuations

def test_a_timeline_is_one_variation_with_its_segments_at_the_delivered_frame_rate(session_and_engine):
    session, engine = session_and_engine
    replies = Replies()
    timeline = [{"prompt": "a man walks forward", "seconds": 12}, {"prompt": "a man bows", "seconds": 3}]
    session.handle({"id": "t", "type": "generate", "timeline": timeline, "seed": 4, "target_fps": 30.0}, replies)
    result = replies.final("t")
    assert result["type"] == "result", result
    assert result["frame_count"] == 450 and len(result["variations"]) == 1 and result["variations"][0]["seed"] == 4
    assert result["segments"] == [{"prompt": "a man walks forward", "start_frame": 0, "frame_count": 360},
                                  {"prompt": "a man bows", "start_frame": 360, "frame_count": 90}]
    # 12 s is two clips; every clip of a timeline is one generation with its own seed.
    assert [c["prompts"] for c in engine.calls] == [["a man walks forward"]] * 2 + [["a man bows"]]
    assert [c["seed"] for c in engine.calls] == [4, 5, 6] and result["settings"]["seeds"] == [4, 5, 6]
    json.dumps(result)


def test_a_continuation_holds_only_the_new_frames(session_and_engine):
    session, engine = session_and_engine
    replies = Replies()
    previous = np.repeat(default_skeleton().joints[None], 30, axis=0)
    session.handle(generate("c", frames=60, continue_from=protocol.encode_array(previous.astype(np.float32))),
                   replies)
    result = replies.final("c")
    assert result["type"] == "result", result
    assert result["frame_count"] == 60 and result["settings"]["continued"] is True
    assert result["segments"] == [{"prompt": "a person walks forward", "start_frame": 0, "frame_count": 60}]


@pytest.fixture(scope="module")
def shipped_pipeline():
    from backend.generation.pipeline import DEFAULT_CHECKPOINT, MotionLCMPipeline

    if not (DEFAULT_CHECKPOINT / "config.json").is_file():
        pytest.skip("no shipped model")
    return MotionLCMPipeline.from_checkpoint()


def test_continuing_a_characters_motion_is_seamless_in_its_own_space(shipped_pipeline):
    """The add-on's Continue: the character's last frames (its own metres, the default body) go in; the new
    frames, retargeted, go on from the last one with its velocity."""
    from backend.serving import handlers

    skeleton = default_skeleton()
    first = handlers.run_generate(shipped_pipeline, protocol.parse_generate(generate("a", seed=1, frames=120)),
                                  lambda stage, fraction: None, skeleton)  # at 20 fps: the model's frame spacing
    previous = protocol.decode_array(first["variations"][0]["joints"], "joints").astype(np.float64)
    request = protocol.parse_generate(generate("b", prompt="a person waves with the right hand", frames=60, seed=2,
                                               continue_from=protocol.encode_array(previous.astype(np.float32))))
    result = handlers.run_generate(shipped_pipeline, request, lambda stage, fraction: None, skeleton)
    new = protocol.decode_array(result["variations"][0]["joints"], "joints").astype(np.float64)
    assert new.shape == (60, 22, 3)
    # Velocity at the last given frame from the two before it and from the two new frames after it
    # (second-order one-sided differences; both ~ the true velocity where the motion is smooth).
    before = (3 * previous[-1] - 4 * previous[-2] + previous[-3]) * 10
    after = (-3 * previous[-1] + 4 * new[0] - new[1]) * 10
    velocity_change = np.linalg.norm(after - before, axis=-1).max()
    assert velocity_change <= 0.2, velocity_change  # measured 0.08 m/s
    # The first new frame is where the last given frame's motion carries it (1 cm per joint).
    expected = previous[-1] + (previous[-1] - previous[-2]) + (previous[-1] - 2 * previous[-2] + previous[-3])
    assert np.linalg.norm(new[0] - expected, axis=-1).max() <= 0.01
