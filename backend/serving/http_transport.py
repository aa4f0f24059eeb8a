"""Loopback HTTP transport for `backend.serving.server --port N` (docs/protocol.md, "Loopback HTTP").

`POST /rpc` with one request object; the response streams the same reply lines as stdio
(newline-delimited JSON) and closes after the final one. Loopback only, unless the operator
passes both --allow-remote and --token; with a token every request must carry it.
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import logging
import queue
import socket
import threading
from typing import Any

from backend.serving import protocol
from backend.errors import MotionLCMError

log = logging.getLogger("motionlcm.server")
RPC_PATH = "/rpc"


class BindRefused(MotionLCMError):
    code = "bind_refused"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: resolve it rather than trust it
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_bind(host: str, allow_remote: bool, token: str | None) -> None:
    """Refuse to expose the backend beyond this machine unless explicitly allowed and protected."""
    if is_loopback(host):
        return
    if not allow_remote or not token:
        raise BindRefused(f"Refusing to listen on {host!r}: it is not a loopback address. Binding beyond this "
                          "machine needs both --allow-remote and --token TOKEN.")
    log.warning("listening on non-loopback address %s; requests must carry the token", host)


def make_handler(session: Any, token: str | None) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close after each response: the end of the body ends the stream

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            log.info("http %s", format % args)

        def _refuse(self, status: int, code: str, message: str) -> None:
            body = (protocol.dumps(protocol.error(None, code, message)) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if token is None:
                return True
            sent = self.headers.get("Authorization", "")
            return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._refuse(405, "bad_method", f"Use POST {RPC_PATH} with a JSON request body.")

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                self._refuse(401, "unauthorized", "Missing or wrong token (send 'Authorization: Bearer TOKEN').")
                return
            # A web page can POST to loopback too: browsers always send Origin with such requests, and
            # cannot send application/json to another origin without a preflight we never answer.
            if "Origin" in self.headers or self.headers.get_content_type() != "application/json":
                self._refuse(403, "forbidden", "Only local programs may call the backend: send "
                             "Content-Type: application/json and no Origin header.")
                return
            if self.path != RPC_PATH:
                self._refuse(404, "not_found", f"Unknown path {self.path!r}; use POST {RPC_PATH}.")
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if not 0 <= length <= protocol.MAX_LINE_BYTES:
                self._refuse(413, "too_large", "The request needs a Content-Length of at most 64 MiB.")
                return
            replies: queue.Queue[dict[str, Any]] = queue.Queue()
            session.handle_line(self.rfile.read(length), replies.put)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.end_headers()
            while True:
                reply = replies.get()
                try:
                    self.wfile.write((protocol.dumps(reply) + "\n").encode())
                    self.wfile.flush()
                except OSError:  # the client hung up; the job itself still finishes or is cancelled
                    return
                if reply["type"] != "progress":
                    return

    return Handler


def make_server(session: Any, host: str, port: int, token: str | None = None,
                allow_remote: bool = False) -> http.server.ThreadingHTTPServer:
    """Bound but not yet serving (port 0 picks a free port: see `server_address`)."""
    check_bind(host, allow_remote, token)
    server_class = http.server.ThreadingHTTPServer
    if ":" in host:  # an IPv6 address such as ::1
        server_class = type("ThreadingHTTPServerV6", (server_class,), {"address_family": socket.AF_INET6})
    try:
        server = server_class((host, port), make_handler(session, token))
    except OSError as exc:  # port in use, address not on this machine...
        raise BindRefused(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
    server.daemon_threads = True
    return server


def serve_http(session: Any, host: str, port: int, token: str | None, allow_remote: bool) -> None:
    """Serve until a `shutdown` request closes the session."""
    server = make_server(session, host, port, token, allow_remote)
    log.info("listening on http://%s:%d%s", host, server.server_address[1], RPC_PATH)
    threading.Thread(target=lambda: (session.closed.wait(), server.shutdown()), daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        session.close(timeout=5.0)
