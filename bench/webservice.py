"""A backend service that enqueues stops: WSGI (gunicorn, ``Producer``) and ASGI (uvicorn, ``AsyncProducer``).

Both read their settings from the environment once (``ProducerSettings.from_env()``) and answer:

- ``GET /ping``: ``pong``, without touching Redis (what a load balancer or another endpoint sees);
- ``POST /stop?call_uuid=...&request_id=...``: enqueue an urgent stop; 200 with the handle as JSON,
  503 with the error's class and text when Redis does not complete the call;
- ``GET /inflight`` (ASGI): how many ``/stop`` requests are waiting on Redis now.

``python -m gunicorn --preload bench.webservice:wsgi_app`` imports the app once in the master and
forks its workers; each builds its producer on its first request (one per process, shared by the
process's request threads).
``python -m uvicorn bench.webservice:asgi_app`` builds the async producer at the lifespan startup,
in the event loop that uses it. :func:`load` drives either over loopback, bounded in count.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from recstop.producers import (
    AsyncProducer,
    BrokerUnavailableError,
    ConfigError,
    InvalidStopRequest,
    Producer,
    ProducerSettings,
    StopHandle,
    async_redis_client,
    redis_client,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _answer(handle: StopHandle, started: float) -> tuple[int, dict[str, Any]]:
    """200 with the handle, and how long the enqueue took inside the service (``enqueue_ms``)."""
    took_ms = (time.perf_counter() - started) * 1000
    body = {"task_id": handle.task_id, "deduplicated": handle.deduplicated, "state": str(handle.state)}
    return 200, {**body, "enqueue_ms": took_ms}


def _refusal(exc: Exception) -> tuple[int, dict[str, Any]]:
    status = 400 if isinstance(exc, InvalidStopRequest) else 503
    return status, {"error": type(exc).__name__, "message": str(exc)}


def _query(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {name: values[0] for name, values in parse_qs(text).items()}


# --- WSGI: threads ---------------------------------------------------------------------------------

_producer: Producer | None = None
_producer_lock = threading.Lock()


def _sync_producer() -> Producer:
    global _producer  # noqa: PLW0603 - one producer per process, built on first use (or --preload)
    with _producer_lock:
        if _producer is None:
            settings = ProducerSettings.from_env()
            _producer = Producer(settings, redis_client(settings.redis))
        return _producer


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI service: one ``Producer`` shared by every request thread of the process."""
    path = environ.get("PATH_INFO", "")
    body: dict[str, Any]
    if path == "/ping":
        status, body = 200, {"pong": True}
    elif path == "/stop":
        args = _query(environ.get("QUERY_STRING", ""))
        producer = _sync_producer()
        try:
            started = time.perf_counter()
            handle = producer.stop_recording(
                args.get("call_uuid", ""), request_id=args.get("request_id"), urgent=True
            )
            status, body = _answer(handle, started)
        except (InvalidStopRequest, BrokerUnavailableError, ConfigError) as exc:
            status, body = _refusal(exc)
    else:
        status, body = 404, {"error": "not found"}
    data = json.dumps(body).encode()
    start_response(
        f"{status} {http.client.responses[status]}",
        [("content-type", "application/json"), ("content-length", str(len(data)))],
    )
    return [data]


# --- ASGI: asyncio ---------------------------------------------------------------------------------


class AsgiService:
    """The ASGI service: one ``AsyncProducer``, created at startup in the server's event loop."""

    def __init__(self) -> None:
        self.producer: AsyncProducer | None = None
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan (startup builds the producer, shutdown closes it) and the three endpoints."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope["path"]
        if path == "/ping":
            await _send_json(send, 200, {"pong": True})
        elif path == "/inflight":
            await _send_json(send, 200, {"inflight": self.inflight})
        elif path == "/stop" and self.producer is not None:
            args = _query(scope.get("query_string", b""))
            self.inflight += 1
            try:
                started = time.perf_counter()
                handle = await self.producer.stop_recording(
                    args.get("call_uuid", ""), request_id=args.get("request_id"), urgent=True
                )
                status, body = _answer(handle, started)
            except (InvalidStopRequest, BrokerUnavailableError, ConfigError) as exc:
                status, body = _refusal(exc)
            finally:
                self.inflight -= 1
            await _send_json(send, status, body)
        else:
            await _send_json(send, 404, {"error": "not found"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                settings = ProducerSettings.from_env()
                self.producer = AsyncProducer(settings, async_redis_client(settings.redis))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.producer is not None:
                    await self.producer.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


asgi_app = AsgiService()


# --- a load generator over loopback ------------------------------------------------------------------


def request(
    port: int, method: str, path: str, *, timeout_s: float = 10.0
) -> tuple[int, dict[str, Any], float]:
    """One request on a fresh connection: status, JSON body, seconds taken."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    started = time.perf_counter()
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
        return response.status, body, time.perf_counter() - started
    finally:
        connection.close()


def load(
    port: int, paths: list[str], *, threads: int, method: str = "POST"
) -> list[tuple[int, float, dict[str, Any]]]:
    """Send each path once from ``threads`` client threads (keep-alive); (status, seconds, body) each."""
    results: list[tuple[int, float, dict[str, Any]]] = []
    lock = threading.Lock()
    queue = list(reversed(paths))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    path = queue.pop()
                started = time.perf_counter()
                connection.request(method, path)
                response = connection.getresponse()
                body = json.loads(response.read() or b"{}")
                took = time.perf_counter() - started
                with lock:
                    results.append((response.status, took, body))
        finally:
            connection.close()

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return results
