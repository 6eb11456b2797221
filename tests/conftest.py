"""Fixtures: each test gets its own redis-server and sandbox, and workers in-process or as processes.

``start_worker`` runs recstop's worker (Celery's consumer, the task, the executor, the scheduler)
on a thread of the test process; ``start_worker_process`` runs ``celery -A recstop.worker worker`` as a
process, for what only a process shows (signals, crashes, the command line, Flower).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import REDIS_PASSWORDS, InProcessWorker, LogCapture, RedisServer, WorkerProcess, as_role

from harness.postgres import PostgresServer
from recstop.producers import Producer
from recstop.sandbox import SandboxClient, SandboxServer
from recstop.worker.config.settings import Settings
from recstop.worker.state.acl import Role
from recstop.worker.state.redisclient import redis_client

AUTH_ID = "MA_TESTACCT01"
TOKEN = "tok-Sekr3t-9f8e7d6c5b4a"
OTHER_AUTH_ID = "SA_SUBACCT02"
OTHER_TOKEN = "tok-Other-0a1b2c3d4e5f"


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, with recstop's ACL users; no user refused anything.

    Every part of the stack connects as its role's user (``state.acl``): a command, key or channel
    a part uses and its role lacks is refused, and fails the test here, at teardown, unless the test
    is marked ``acl_denials`` (it provokes refusals on purpose).
    """
    server = RedisServer(tmp_path / "redis", users=True).start()
    yield server
    try:
        if server.proc is not None and request.node.get_closest_marker("acl_denials") is None:
            denials = [_denial(entry) for entry in server.acl_denials()]
            assert not denials, f"Redis refused a part of the stack (ACL LOG): {denials}"
    finally:
        server.stop()


def _denial(entry: dict[str, object]) -> str:
    return f"{entry.get('username')} {entry.get('reason')} {entry.get('context')} {entry.get('object')}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL per test process (initdb in a temp dir, a free port), started on first use."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``RECSTOP_AUDIT_DB`` of an empty audit database: a SQLite file, or a fresh database on ``postgres``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"audit_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A real Vobiz sandbox HTTP server on loopback, knowing the test account."""
    with SandboxServer(accounts={AUTH_ID: TOKEN}) as server:
        yield server


@pytest.fixture
def sandbox_client(sandbox: SandboxServer) -> Iterator[SandboxClient]:
    """A control client for the sandbox."""
    with SandboxClient(sandbox.base_url) as client:
        yield client


@pytest.fixture
def env(redis_server: RedisServer, sandbox: SandboxServer) -> dict[str, str]:
    """Environment for workers (the ``worker`` user): fast retries, short timeouts, JSON logs.

    A producer, the CLI, the sink or a monitor gets the same with its own user (``as_role``, ``cli``).
    """
    return {
        "RECSTOP_BROKER_URL": redis_server.role_url(Role.WORKER),
        "VOBIZ_API_BASE": sandbox.api_base,
        "VOBIZ_AUTH_ID": AUTH_ID,
        "VOBIZ_AUTH_TOKEN": TOKEN,
        "RECSTOP_BACKOFF_BASE_S": "0.2",
        "RECSTOP_BACKOFF_CAP_S": "2",
        "RECSTOP_MAX_ATTEMPTS": "6",
        "RECSTOP_CONNECT_TIMEOUT_S": "1",
        "RECSTOP_READ_TIMEOUT_S": "2",
        "RECSTOP_CONCURRENCY": "8",
        "RECSTOP_SCHEDULER_POLL_S": "0.05",
        "RECSTOP_LOG_FORMAT": "json",
        # Confirmation (on by default) looks recordings up after each stop, in the background: it is
        # tested on its own (test_confirmation.py), by the quick start and under the chaos suite's
        # shipped defaults; the behaviour tests of everything else count their requests without it.
        "RECSTOP_CONFIRM": "false",
    }


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log line of this test's process, as JSON (in-process workers log here)."""
    capture = LogCapture(secrets=(TOKEN, OTHER_TOKEN))
    yield capture
    capture.close()
    leaked = [role for role, password in REDIS_PASSWORDS.items() if password in capture.text()]
    assert not leaked, f"a log line shows the Redis password of {leaked}"


@pytest.fixture
def start_worker(env: dict[str, str], logs: LogCapture) -> Iterator[Callable[..., InProcessWorker]]:
    """Start a recstop worker in this process (one at a time); it is stopped at the end of the test."""
    started: list[InProcessWorker] = []

    def start(name: str | None = None, **overrides: str) -> InProcessWorker:
        worker_name = name or f"w{len(started) + 1}"
        worker = InProcessWorker(Settings.from_env({**env, **overrides}), logs, name=worker_name)
        started.append(worker)
        return worker.start()

    yield start
    for worker in reversed(started):
        worker.stop()


@pytest.fixture
def start_worker_process(
    env: dict[str, str], tmp_path: Path, redis_server: RedisServer
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``celery -A recstop.worker worker`` processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str | None = None, wait: bool = True, **overrides: str) -> WorkerProcess:
        worker_name = name or f"p{len(started) + 1}"
        proc = WorkerProcess(
            {**env, **overrides},
            tmp_path / f"{worker_name}.log",
            name=worker_name,
            redis_url=redis_server.url,
        )
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    """The settings a producer on this test's stack reads (the ``producer`` user)."""
    return Settings.from_env(as_role(env, Role.PRODUCER))


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    """A Python producer connected to the test's Redis."""
    with Producer(settings, redis_client(settings.redis)) as prod:
        yield prod


@pytest.fixture
def call(sandbox_client: SandboxClient) -> Callable[..., str]:
    """Create a live call with one recording on the sandbox; returns its call_uuid."""

    def make(recordings: int = 1) -> str:
        call_uuid = sandbox_client.create_call(AUTH_ID, str(uuid.uuid4()))
        for _ in range(recordings):
            sandbox_client.start_recording(call_uuid)
        return call_uuid

    return make


def pytest_terminal_summary(terminalreporter):
    """After a run that included the chaos scenarios, print their table as ``make chaos`` does."""
    module = sys.modules.get("test_chaos_short")
    results = getattr(module, "RESULTS", None)
    if results:
        from chaos.report import table  # noqa: PLC0415 - only when the chaos tests ran

        terminalreporter.write_sep("=", "chaos (short profile)")
        terminalreporter.write_line(table(results))
