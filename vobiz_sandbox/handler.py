"""The HTTP handler: reads each request, injects latency and faults, logs it, answers it."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Final, Protocol, cast

from recstop.sandbox import api, control
from recstop.sandbox.bodies import Reply, default_code, phrase, v2_error
from recstop.sandbox.faults import FaultRule
from recstop.sandbox.requestlog import LoggedRequest
from recstop.sandbox.state import Auth, SandboxState

MAX_BODY: Final = 1 << 20
MAX_LOGGED_BODY: Final = 16 << 10
CONTROL_PREFIX: Final = "/_sandbox/"


class UnreadableBodyError(Exception):
    """A request body that cannot be read: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SandboxHost(Protocol):
    """What the handler needs from its server."""

    state: SandboxState
    verbose: bool
    stopping: threading.Event

    def reset_on_close(self, connection: socket.socket) -> None:
        """Make closing ``connection`` send a TCP reset."""


class SandboxHandler(BaseHTTPRequestHandler):
    """Serves the imitated Vobiz API and the ``/_sandbox/`` control API over HTTP/1.1."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # answer even garbage request lines with a status line
    server_version = "VobizSandbox/1.0"
    disable_nagle_algorithm = True
    raw_path = ""

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    @property
    def _host(self) -> SandboxHost:
        return cast("SandboxHost", self.server)

    def parse_request(self) -> bool:
        """Parse as usual, but keep the request target exactly as sent (no ``//`` folding)."""
        parsed = super().parse_request()
        if parsed:
            words = self.requestline.split()
            self.raw_path = words[1] if len(words) >= 2 else self.path  # noqa: PLR2004
        return parsed

    def version_string(self) -> str:
        """Name the server in the ``Server`` header."""
        return self.server_version

    def _dispatch(self) -> None:
        received, started = time.time(), time.monotonic()
        try:
            body = self._read_body()
        except UnreadableBodyError as error:
            self.send_error(error.status, error.message)
            return
        if body is None:
            return
        if self.raw_path.startswith(CONTROL_PREFIX):
            self._send(control.handle(self._host.state, self.command, self.raw_path, body))
        else:
            self._serve_api(received, started, body)

    def _serve_api(self, received: float, started: float, body: bytes) -> None:
        host, state = self._host, self._host.state
        target = api.route(state, self.command, self.raw_path)
        header_id, token = self.headers.get("X-Auth-ID"), self.headers.get("X-Auth-Token")

        def log(status: int | None, fault: FaultRule | None, reply: Reply | None = None) -> None:
            header, in_body = _retry_after(reply)
            entry = LoggedRequest(
                time=received,
                method=self.command,
                path=self.raw_path,
                auth_id_header=header_id,
                token_ok=state.authenticate(header_id, token) is not Auth.INVALID,
                body=_loggable(body),
                call_uuid=target.call_uuid,
                status=status,
                fault=None if fault is None else fault.kind,
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                retry_after=header,
                retry_after_body=in_body,
                endpoint=target.endpoint,
                answer=None if fault is None else fault.answer,
            )
            state.log(entry)

        if state.latency_ms:
            host.stopping.wait(state.latency_ms / 1000)
        rule = state.pick_fault(target.call_uuid, target.endpoint)
        if rule is not None and rule.kind == "latency":
            host.stopping.wait(rule.latency_ms / 1000)
        if rule is not None and rule.kind in {"hang", "reset"}:
            log(None, rule)
            self.close_connection = True
            if rule.kind == "hang":
                host.stopping.wait(rule.hang_s)
            else:
                host.reset_on_close(self.connection)
            return
        if rule is not None and rule.kind == "status":
            reply = rule.reply()
        else:
            reply = api.handle(
                state,
                self.command,
                target,
                body,
                header_id=header_id,
                token=token,
                content_type=self.headers.get("Content-Type"),
                answer=None if rule is None else rule.answer,
            )
        log(reply.status, rule, reply)
        self._send(reply)

    def _read_body(self) -> bytes | None:
        """Read the body (by Content-Length, or chunked); ``None`` if the client went away."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        declared = self.headers.get("Content-Length", "0").strip()
        if not declared.isdigit():
            raise UnreadableBodyError(400, "Invalid Content-Length header.")
        if int(declared) > MAX_BODY:
            raise UnreadableBodyError(413, "Request body too large.")
        data = self.rfile.read(int(declared))
        if len(data) < int(declared):  # the client went away mid-body
            self.close_connection = True
            return None
        return data

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise UnreadableBodyError(400, "Invalid chunked body.") from None
            if size == 0:
                break
            total += size
            if size < 0 or total > MAX_BODY:
                raise UnreadableBodyError(413, "Request body too large.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        while self.rfile.readline(1024).strip():  # trailer fields, up to the blank line
            pass
        return b"".join(chunks)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol errors (bad request line, unknown method ...) in the v2 JSON shape."""
        del explain
        self.close_connection = True
        self._send(v2_error(code, default_code(code), message or phrase(code)), close=True)

    def _send(self, reply: Reply, *, close: bool = False) -> None:
        payload = reply.payload()
        data = payload or b""
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
            if payload is not None:
                self.send_header("Content-Type", reply.content_type)
            if reply.status not in (204, 304):  # these never carry a length
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Access log to stderr, only when the server is verbose."""
        if self._host.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def _retry_after(reply: Reply | None) -> tuple[str | None, object]:
    """The Retry-After header and the body's ``details.retryAfter`` of an answer, if present."""
    if reply is None:
        return None, None
    header = next((value for name, value in reply.headers if name.lower() == "retry-after"), None)
    body = reply.body if isinstance(reply.body, dict) else {}
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    return header, details.get("retryAfter") if isinstance(details, dict) else None


def _loggable(body: bytes) -> object:
    """Return the body as parsed JSON if it is JSON, else as text, else ``None``."""
    if not body:
        return None
    text = body[:MAX_LOGGED_BODY].decode("utf-8", "replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text
