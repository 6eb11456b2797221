"""``SandboxServer`` (background thread, for tests) and ``serve`` (foreground, until a signal)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Self

from recstop.sandbox.callbacks import CallbackDispatcher
from recstop.sandbox.httpd import SandboxHTTPServer
from recstop.sandbox.state import DEFAULT_CLOCK, DEFAULT_FINALIZE_DELAY_S, SandboxState


class SandboxServer:
    """A real HTTP server imitating the Vobiz recording APIs (start, stop, list), plus its control API.

    ``rate_limit_rps`` (``None``/0 = off) and ``rate_limit_burst`` (``None`` = 50 ms worth) set the
    per-account limit answered with 429, as in :mod:`recstop.sandbox.ratelimit`. ``finalize_delay_s`` is how
    long after a recording ends the Recordings API shows its end (0: at once); ``clock`` is where the
    recordings' time comes from (epoch seconds), before any ``advance_clock`` (see
    :mod:`recstop.sandbox.state`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        accounts: Mapping[str, str] | None = None,
        auto_calls: bool = False,
        nothing_to_stop: str = "404",
        seed: int | None = None,
        rate_limit_rps: float | None = None,
        rate_limit_burst: int | None = None,
        finalize_delay_s: float = DEFAULT_FINALIZE_DELAY_S,
        clock: Callable[[], float] = DEFAULT_CLOCK,
        verbose: bool = False,
    ) -> None:
        self._state = SandboxState(
            auto_calls=auto_calls,
            nothing_to_stop=nothing_to_stop,
            seed=seed,
            rate_limit_rps=rate_limit_rps,
            rate_limit_burst=rate_limit_burst,
            finalize_delay_s=finalize_delay_s,
            clock=clock,
        )
        for auth_id, token in (accounts or {}).items():
            self._state.add_account(auth_id, token)
        self._httpd = SandboxHTTPServer((host, port), self._state, verbose=verbose)
        self._callbacks = CallbackDispatcher(self._state, name=f"vobiz-sandbox-{self.port}")
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def state(self) -> SandboxState:
        """The live in-memory state (accounts, calls, log, faults)."""
        return self._state

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when created with ``port=0``)."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``."""
        host = str(self._httpd.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        """``base_url + "/api/v1"``: where a Vobiz client should point."""
        return f"{self.base_url}/api/v1"

    def start(self) -> Self:
        """Serve in a background daemon thread; returns ``self``."""
        if self._closed:
            raise RuntimeError("a stopped SandboxServer cannot be restarted")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"vobiz-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
            self._callbacks.start()
        return self

    def stop(self) -> None:
        """Stop promptly: end hangs and latency waits, close connections, free the port."""
        if self._closed:
            return
        self._closed = True
        self._httpd.stopping.set()
        self._callbacks.stop()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    accounts: Mapping[str, str] | None = None,
    auto_calls: bool = False,
    nothing_to_stop: str = "404",
    seed: int | None = None,
    rate_limit_rps: float | None = None,
    rate_limit_burst: int | None = None,
    finalize_delay_s: float = DEFAULT_FINALIZE_DELAY_S,
    verbose: bool = False,
) -> None:
    """Run the sandbox in the foreground until SIGINT or SIGTERM; prints one line when ready."""
    stopped = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SandboxServer(
            host,
            port,
            accounts=accounts,
            auto_calls=auto_calls,
            nothing_to_stop=nothing_to_stop,
            seed=seed,
            rate_limit_rps=rate_limit_rps,
            rate_limit_burst=rate_limit_burst,
            finalize_delay_s=finalize_delay_s,
            verbose=verbose,
        ) as server:
            sys.stdout.write(f"vobiz sandbox listening on {server.base_url} (api base {server.api_base})\n")
            sys.stdout.flush()
            stopped.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
