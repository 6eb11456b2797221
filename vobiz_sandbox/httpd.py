"""The threaded HTTP server underneath the sandbox: tracks, resets and closes connections."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Final

from recstop.sandbox.handler import SandboxHandler
from recstop.sandbox.state import SandboxState

Request = socket.socket | tuple[bytes, socket.socket]
RESET_LINGER: Final = struct.pack("ii", 1, 0)


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server holding the sandbox state and its open connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState, *, verbose: bool) -> None:
        self.state = state
        self.verbose = verbose
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._resets: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        """Bind without the slow reverse-DNS lookup of ``HTTPServer.server_bind``."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Request, client_address: Any) -> None:  # noqa: ANN401
        """Remember the connection, then serve it in its own thread."""
        if isinstance(request, socket.socket):
            with self._lock:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Request) -> None:
        """Close the connection, with a TCP reset if a reset fault asked for one."""
        with self._lock:
            self._open.discard(request)
            reset = request in self._resets
            self._resets.discard(request)
        if reset and isinstance(request, socket.socket):
            request.close()
        else:
            super().shutdown_request(request)

    def reset_on_close(self, connection: socket.socket) -> None:
        """Make closing ``connection`` send RST (SO_LINGER on, timeout 0)."""
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        with self._lock:
            self._resets.add(connection)

    def close_connections(self) -> None:
        """Shut down every open connection so idle keep-alive threads finish."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Request, client_address: Any) -> None:  # noqa: ANN401
        """Stay quiet about clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
