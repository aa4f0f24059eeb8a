"""The backend process the Blender add-on talks to (docs/protocol.md).

    python -m backend.serving.server --stdio [--checkpoint PATH] [--device cpu|cuda|auto] [--text-encoder PATH]
                             [--smpl-dir PATH [--smpl-gender neutral|male|female]] [--smpl-betas B0,B1,...]
    python -m backend.serving.server --port 8765 [--host 127.0.0.1] [--allow-remote --token T]

One `Session` owns the model and a single worker thread; transports (stdio lines, loopback HTTP)
only move lines in and replies out. stdout carries protocol lines only: in stdio mode the real
stdout is kept for replies and file descriptor 1 is pointed at stderr, so a stray print() or a
C library's output cannot corrupt the stream.
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from backend import __version__, limits

from backend.serving import protocol
from backend.errors import InvalidRequest, MotionLCMError, from_value_error

log = logging.getLogger("motionlcm.server")

Reply = dict[str, Any]
Sink = Callable[[Reply], None]
EngineFactory = Callable[[], Any]  # returns a loaded backend.generation.pipeline.MotionLCMPipeline (or a test double)


@dataclass(frozen=True)
class BodyModel:
    """The body of the `skeleton` reply, and the rest skeleton a generate without `rest_joints` is retargeted to:
    the mannequin on the default skeleton, or the user's SMPL/SMPL-X model in `smpl_dir`; shaped by `betas`."""

    smpl_dir: str | None = None
    gender: str = "neutral"
    betas: tuple[float, ...] = ()


@dataclass
class Job:
    request_id: str | int
    kind: str
    sink: Sink
    request: Any = None  # protocol.GenerateRequest for generate
    cancel: threading.Event = field(default_factory=threading.Event)


class Session:
    """Queues requests, runs them one at a time on a worker thread, answers ping/cancel/shutdown at once."""

    def __init__(self, engine_factory: EngineFactory, *, checkpoint: str | None = None, device: str = "cpu",
                 body: BodyModel = BodyModel(), ar_factory: EngineFactory | None = None) -> None:
        """`engine_factory` loads the MotionLCM pipeline, `ar_factory` the AR engine's (None: requests for it
        are refused); each loads on its first request."""
        self._factories = {"motionlcm": engine_factory, "ar": ar_factory}
        self._body = body
        self._engines: dict[str, Any] = {}
        self._info = {"checkpoint": checkpoint, "device": device, "text_encoder": None}
        self._queue: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._lock = threading.Condition()
        self.closed = threading.Event()
        self._worker = threading.Thread(target=self._work, name="motionlcm-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ intake (reader threads)

    def handle_line(self, line: bytes | str, sink: Sink) -> None:
        """Never raises: anything wrong with the line becomes an error reply."""
        try:
            message = protocol.parse_line(line)
        except protocol.ProtocolError as exc:
            sink(protocol.error(None, exc.code, str(exc)))
            return
        self.handle(message, sink)

    def handle(self, message: dict[str, Any], sink: Sink) -> None:
        request_id = message.get("id") if isinstance(message.get("id"), (str, int)) else None
        try:
            request_id, kind = protocol.check_envelope(message)
            if kind == "ping":
                sink(protocol.result(request_id, **self._ping()))
            elif kind == "cancel":
                sink(protocol.result(request_id, cancelled=self.cancel(protocol.parse_cancel(message))))
            elif kind == "shutdown":
                self.close()
                sink(protocol.result(request_id))
            else:
                request = protocol.parse_generate(message) if kind == "generate" else None
                self._enqueue(Job(request_id, kind, sink, request))
        except MotionLCMError as exc:
            sink(protocol.error_from_exception(request_id, exc))

    def _ping(self) -> dict[str, Any]:
        with self._lock:
            busy, queued = self._running is not None, len(self._queue)
        return {"protocol": protocol.PROTOCOL_VERSION, "version": __version__, "loaded": "motionlcm" in self._engines,
                **self._info, "busy": busy, "queued": queued, "limits": limits.as_dict()}

    def _enqueue(self, job: Job) -> None:
        if self.closed.is_set():
            raise protocol.Cancelled("The backend is shutting down.")
        job.sink(protocol.progress(job.request_id, "queued", 0.0))  # before the worker can report anything
        with self._lock:
            self._queue.append(job)
            self._lock.notify()

    def cancel(self, target: str | int) -> bool:
        """Drop a queued job at once, or flag the running one to stop at its next stage boundary."""
        with self._lock:
            queued = next((job for job in self._queue if job.request_id == target), None)
            if queued is not None:
                self._queue.remove(queued)
            running = self._running if self._running is not None and self._running.request_id == target else None
            if running is not None:
                running.cancel.set()
        if queued is not None:
            queued.sink(protocol.error_from_exception(queued.request_id, protocol.Cancelled()))
        return queued is not None or running is not None

    def close(self, timeout: float = 0.0) -> None:
        """Cancel everything and stop accepting work; wait up to `timeout` s for the running job to stop."""
        with self._lock:
            self.closed.set()
            dropped = list(self._queue)
            self._queue.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._lock.notify()
        for job in dropped:
            job.sink(protocol.error_from_exception(job.request_id, protocol.Cancelled()))
        self._worker.join(timeout)

    def wait_idle(self) -> None:
        """Block until every queued request is answered (or the session closes)."""
        with self._lock:
            while not self.closed.is_set() and (self._queue or self._running is not None):
                self._lock.wait(0.5)  # `closed` may be set without a notify (a failed write)

    # ------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self.closed.is_set():
                    self._lock.wait()
                if self.closed.is_set():
                    return
                job = self._running = self._queue.popleft()
            try:
                job.sink(self._run(job))
            except Exception as exc:  # the worker must survive anything a request does
                if not isinstance(exc, MotionLCMError):
                    log.error("request %r failed:\n%s", job.request_id, traceback.format_exc())
                if isinstance(exc, ValueError):  # math refusing the request's data (backend.errors)
                    exc = from_value_error(exc)
                job.sink(protocol.error_from_exception(job.request_id, exc))
            finally:
                with self._lock:
                    self._running = None
                    self._lock.notify_all()

    def _run(self, job: Job) -> Reply:
        from backend.serving import handlers  # numpy/torch-heavy; keeps start-up and ping fast

        def report(stage: str, fraction: float) -> None:
            if job.cancel.is_set():
                raise protocol.Cancelled()
            job.sink(protocol.progress(job.request_id, stage, fraction))

        if job.kind == "skeleton":
            return protocol.result(job.request_id, **handlers.skeleton_fields(self._body))
        # Before the model loads, so a bad SMPL folder is reported at once.
        skeleton = job.request.skeleton or handlers.target_body(self._body)[0]
        load_ms = self._load_engine(report, job.request.engine)
        fields = handlers.run_generate(self._engines[job.request.engine], job.request, report, skeleton)
        fields["timings"]["loading"] = load_ms
        if job.request.engine == "motionlcm":  # ping's identifiers are the MotionLCM engine's
            self._info.update({key: fields["settings"][key] for key in ("checkpoint", "text_encoder", "device")
                               if key in fields["settings"]})
        return protocol.result(job.request_id, **fields)

    def _load_engine(self, report: Callable[[str, float], None], engine: str) -> float:
        """Load an engine's model once; a failed load is not cached, so the next request retries."""
        if engine in self._engines:
            return 0.0
        factory = self._factories.get(engine)
        if factory is None:
            raise InvalidRequest(f"this backend has no {engine!r} engine")
        report("loading", 0.0)
        start = time.perf_counter()
        self._engines[engine] = factory()
        report("loading", 1.0)
        return (time.perf_counter() - start) * 1000.0


# ---------------------------------------------------------------- stdio transport

def serve_stdio(session: Session, stdin: Any = None, stdout: Any = None) -> None:
    """Read request lines until end of input or `shutdown`; replies go to `stdout` (binary streams).

    At end of input the requests already read are still answered; `shutdown` cancels them instead."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else _protocol_stdout()
    write_lock = threading.Lock()

    def sink(reply: Reply) -> None:
        data = (protocol.dumps(reply) + "\n").encode("utf-8")
        with write_lock:
            try:
                stdout.write(data)
                stdout.flush()
            except (OSError, ValueError):  # the add-on went away: nobody is left to answer
                session.closed.set()

    while not session.closed.is_set():
        line = stdin.readline(protocol.MAX_LINE_BYTES + 1)
        if not line:
            break
        if len(line) > protocol.MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stdin.readline(protocol.MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # skip the rest of the oversized line
        if line.strip():
            session.handle_line(line, sink)
    session.wait_idle()  # end of input: answer what was asked (after `shutdown` nothing is left)
    session.close(timeout=5.0)


def _protocol_stdout() -> Any:
    """Keep the real stdout for replies and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return replies


# ---------------------------------------------------------------- command line

def default_engine_factory(checkpoint: str | None, device: str, text_encoder: str | None) -> EngineFactory:
    def load() -> Any:
        from backend.generation.pipeline import MotionLCMPipeline  # torch is imported here, not at start-up

        return MotionLCMPipeline.from_checkpoint(checkpoint, device=device, text_encoder=text_encoder)

    return load


def ar_engine_factory(checkpoint: str | None, device: str) -> EngineFactory:
    def load() -> Any:
        from backend.generation.ar_pipeline import ARPipeline

        return ARPipeline.from_checkpoint(checkpoint, device=device)

    return load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="JSON lines on stdin/stdout (default when no --port)")
    transport.add_argument("--port", type=int, help="serve loopback HTTP on this port (POST /rpc)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (needs --token)")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every HTTP request")
    parser.add_argument("--checkpoint", help="checkpoint path (default: the shipped checkpoint)")
    parser.add_argument("--ar-checkpoint", help="the AR engine's checkpoint folder, for requests with engine \"ar\" "
                                                "(default: the shipped one)")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--text-encoder", help="text encoder path (default: the checkpoint's)")
    parser.add_argument("--smpl-dir", help="folder with your SMPL/SMPL-X model files (needs the smplx package): "
                        "the character gets that body and its skeleton instead of the wooden mannequin")
    parser.add_argument("--smpl-gender", default="neutral", choices=("neutral", "male", "female"),
                        help="which model of --smpl-dir (default neutral)")
    parser.add_argument("--smpl-betas", type=_betas, default=(), metavar="B0,B1,...",
                        help="body shape coefficients, comma separated (default: the mean shape)")


def _betas(text: str) -> tuple[float, ...]:
    try:
        betas = tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(value) for value in betas):
        raise argparse.ArgumentTypeError(f"betas must be finite, got {text!r}")
    return betas


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`motionlcm serve`: the same as `python -m backend.serving.server`."""
    parser = subparsers.add_parser("serve", help="run the backend for the Blender add-on (stdio or loopback HTTP)")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, engine_factory: EngineFactory | None = None,
        ar_factory: EngineFactory | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    factory = engine_factory or default_engine_factory(args.checkpoint, args.device, args.text_encoder)
    ar_factory = ar_factory or ar_engine_factory(args.ar_checkpoint, args.device)
    body = BodyModel(args.smpl_dir or None, args.smpl_gender, args.smpl_betas)
    session = Session(factory, checkpoint=args.checkpoint, device=args.device, body=body, ar_factory=ar_factory)
    if args.port is None:
        serve_stdio(session)
    else:
        from backend.serving.http_transport import serve_http

        serve_http(session, args.host, args.port, args.token, args.allow_remote)
    return 0


def main(argv: list[str] | None = None, engine_factory: EngineFactory | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.serving.server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, engine_factory)
    except MotionLCMError as exc:
        print(f"backend.serving.server: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
