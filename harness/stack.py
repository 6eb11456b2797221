"""One local stack: Redis, the Vobiz sandbox, workers, Flower and producers in one directory.

``make run``, the benchmarks and the chaos suite build their processes here. Parts start in the
order redis, sandbox, workers, flower, audit sink, producers; they stop producers first, then the
workers (they finish their DELETEs against a live sandbox and record them in a live Redis), Flower,
the audit sink (it has copied the workers' last events), the sandbox, and Redis last. Every part
runs in a session (and process group) of its own: a terminal's Ctrl-C reaches only the process
that built the stack, which stops the parts in that order (Redis killed first by the terminal
left the worker failing to hand back its messages, and Flower and the sink retrying).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Self

from redis import Redis

from harness.auditsink import AuditSinkProcess
from harness.flower import FlowerProcess
from harness.procs import RedisServer, WorkerProcess, pick_port
from harness.sandbox import SandboxProcess
from recstop.producers import Producer
from recstop.worker.config.settings import Settings
from recstop.worker.state.acl import Role
from recstop.worker.state.redisclient import redis_client

#: How long a started worker may take to heartbeat and log ``worker_ready``.
READY_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class RedisOptions:
    """A private redis-server: persistence, preferred port (free one if taken), extra arguments."""

    appendonly: bool = True
    appendfsync: str = "everysec"
    port: int | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxOptions:
    """The sandbox's accounts (the first is the default one) and how workers learn the others.

    With ``credentials_file`` the accounts after the first go to ``credentials.json`` in the stack's
    directory, named by ``RECSTOP_CREDENTIALS_FILE``; without it only the sandbox knows them.
    """

    accounts: Mapping[str, str] = field(default_factory=dict)
    credentials_file: bool = False
    seed: int | None = None
    port: int | None = None


PRIVATE_REDIS: Final = RedisOptions()


class Stack:
    """Redis, the sandbox, workers, Flower and producers in one directory; a context manager.

    ``redis`` is a private server's options or an external URL; ``sandbox`` None means the workers
    talk to whatever API the environment names. ``env`` overrides what the stack sets. A temporary
    directory is removed on exit (copied to ``keep_dir / name`` first when given); a ``directory``
    that was given is kept.
    """

    temp_prefix: ClassVar[str] = "recstop-"
    worker_stop_s: ClassVar[float] = 20.0
    #: Every worker in a session (and process group) of its own, not only a foreground one.
    worker_sessions: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        redis: RedisOptions | str | Callable[[Role], str] = PRIVATE_REDIS,
        sandbox: SandboxOptions | None = None,
        env: Mapping[str, str] | None = None,
        directory: Path | None = None,
        keep_dir: Path | None = None,
        watch_url: str | None = None,
    ) -> None:
        self.name = name
        #: A plain redis:// URL the harness itself reads through (a worker's readiness), for a broker
        #: URL that redis-py cannot open by itself (``sentinel://``); default the broker URL.
        self.watch_url = watch_url
        self.keep_dir = keep_dir
        self.temporary = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix=f"{self.temp_prefix}{name}-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(env or {})
        # An external Redis: one URL for every part, or each role's (``Callable[[Role], str]``).
        self._redis = self._redis_server(redis) if isinstance(redis, RedisOptions) else None
        self._external: str | Callable[[Role], str] = "" if isinstance(redis, RedisOptions) else redis
        self._sandbox_options = sandbox
        self._sandbox = None if sandbox is None else self._sandbox_process(sandbox)
        self._flower: FlowerProcess | None = None
        self._audit_sink: AuditSinkProcess | None = None
        self.workers: list[WorkerProcess] = []
        self.producers: list[Producer] = []
        #: What Redis refused a part of the stack (read as the stack stops: ``ACL LOG``).
        self.denials: list[str] = []
        self._stopped = False

    def _redis_server(self, options: RedisOptions) -> RedisServer:
        return RedisServer(
            self.directory / "redis",
            appendonly=options.appendonly,
            appendfsync=options.appendfsync,
            extra_args=options.args,
            port=pick_port(options.port),
            log_path=self.directory / "redis.log",
            new_session=True,
            users=True,
        )

    def _sandbox_process(self, options: SandboxOptions) -> SandboxProcess:
        if options.credentials_file:
            extra = dict(list(options.accounts.items())[1:])
            self.credentials_path.write_text(json.dumps(extra), encoding="utf-8")
        return SandboxProcess(
            self.directory / "sandbox.log",
            options.accounts,
            seed=options.seed,
            port=pick_port(options.port),
            new_session=True,
        )

    @property
    def audit_db_path(self) -> Path:
        """The stack's audit database (SQLite), written by its audit sink."""
        return self.directory / "audit.db"

    @property
    def audit_sink(self) -> AuditSinkProcess:
        """The audit sink, once ``start_audit_sink`` ran."""
        if self._audit_sink is None:
            raise LookupError(f"stack {self.name} has no audit sink")
        return self._audit_sink

    @property
    def credentials_path(self) -> Path:
        """Where the extra accounts are written for ``RECSTOP_CREDENTIALS_FILE``."""
        return self.directory / "credentials.json"

    @property
    def redis(self) -> RedisServer:
        """The private redis-server (there is none on an external Redis)."""
        if self._redis is None:
            raise LookupError(f"stack {self.name} uses an external Redis")
        return self._redis

    @property
    def sandbox(self) -> SandboxProcess:
        """The sandbox process (there is none when the stack has no sandbox)."""
        if self._sandbox is None:
            raise LookupError(f"stack {self.name} has no sandbox")
        return self._sandbox

    @property
    def flower(self) -> FlowerProcess:
        """Flower, once ``start_flower`` ran."""
        if self._flower is None:
            raise LookupError(f"stack {self.name} has no flower")
        return self._flower

    @property
    def broker_url(self) -> str:
        """The Redis URL of the harness itself (a private server's ``admin`` user; else the URL given)."""
        return self._redis.url if self._redis is not None else self.url(Role.ADMIN)

    def url(self, role: Role) -> str:
        """The Redis URL of ``role``'s user (an external Redis: its URL, or its URL for ``role``)."""
        if self._redis is not None:
            return self._redis.role_url(role)
        return self._external if isinstance(self._external, str) else self._external(role)

    @property
    def env(self) -> dict[str, str]:
        """A worker's environment: :meth:`env_as` the ``worker`` user."""
        return self.env_as(Role.WORKER)

    def env_as(self, role: Role) -> dict[str, str]:
        """Where Redis (as ``role``'s user) and the API are, the account(s), then the ``env`` overrides."""
        # The audit trail of a local stack: SQLite in its directory (production: PostgreSQL).
        env = {"RECSTOP_BROKER_URL": self.url(role), "RECSTOP_AUDIT_DB": f"sqlite:///{self.audit_db_path}"}
        options = self._sandbox_options
        if self._sandbox is not None and options is not None:
            env["VOBIZ_API_BASE"] = self._sandbox.api_base
            for auth_id, token in list(options.accounts.items())[:1]:
                env.update(VOBIZ_AUTH_ID=auth_id, VOBIZ_AUTH_TOKEN=token)
            if options.credentials_file:
                env["RECSTOP_CREDENTIALS_FILE"] = str(self.credentials_path)
        return {**env, **self.base_env}

    def start(self) -> Self:
        """Start Redis (when private) and the sandbox (when any)."""
        if self._redis is not None:
            self._redis.start()
        if self._sandbox is not None:
            self._sandbox.start()
        return self

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def settings(self, **overrides: str) -> Settings:
        """The settings a producer of this stack reads (the ``producer`` user)."""
        return Settings.from_env({**self.env_as(Role.PRODUCER), **overrides})

    def producer(self, **overrides: str) -> Producer:
        """A new producer with its own connections, closed with the stack."""
        settings = self.settings(**overrides)
        producer = Producer(settings, redis_client(settings.redis))
        self.producers.append(producer)
        return producer

    def client(self, *, decode: bool = False) -> Redis:
        """A plain client of this stack's Redis (the caller closes it)."""
        return Redis.from_url(self.broker_url, decode_responses=decode)

    def start_worker(
        self, name: str, *, wait: bool = True, foreground: bool = False, **overrides: str
    ) -> WorkerProcess:
        """Start worker ``name`` logging to ``<name>.log`` (to this terminal if ``foreground``)."""
        worker = self._spawn_worker(name, overrides, foreground=foreground)
        if wait:
            worker.wait_ready(timeout_s=READY_TIMEOUT_S)
        return worker

    def start_workers(self, count: int, **overrides: str) -> list[WorkerProcess]:
        """Start ``count`` workers named ``w<n>`` at once, then wait until each is ready."""
        first = len(self.workers)
        started = [self._spawn_worker(f"w{first + i}", overrides) for i in range(count)]
        for worker in started:
            worker.wait_ready(timeout_s=READY_TIMEOUT_S)
        return started

    def _spawn_worker(
        self, name: str, overrides: Mapping[str, str], *, foreground: bool = False
    ) -> WorkerProcess:
        log_path = None if foreground else self.directory / f"{name}.log"
        # A foreground worker writes to the terminal but runs in its own session: a Ctrl-C there
        # reaches only the stack, which stops it with one SIGTERM (one warm shutdown, not two).
        worker = WorkerProcess(
            {**self.env, **overrides},
            log_path,
            name=name,
            redis_url=self.watch_url or self.broker_url,
            new_session=foreground or self.worker_sessions,
        )
        self.workers.append(worker)  # stopped with the stack even if it never becomes ready
        return worker.start(wait=False)

    def stop_workers(self) -> None:
        """Stop every worker (SIGTERM, a warm shutdown; SIGKILL after ``worker_stop_s``)."""
        for worker in self.workers:
            worker.stop(timeout_s=self.worker_stop_s)
        self.workers.clear()

    def start_flower(self, *, port: int | None = None) -> FlowerProcess:
        """Start Flower on 127.0.0.1 (``port`` if free), its API open, its log ``flower.log``."""
        self._flower = FlowerProcess(
            self.env_as(Role.MONITOR), self.directory / "flower.log", port=pick_port(port)
        )
        return self._flower.start()

    def start_audit_sink(self, *args: str) -> AuditSinkProcess:
        """Start ``recstop audit sink`` (into ``audit_db_path`` unless ``env`` names another database)."""
        self._audit_sink = AuditSinkProcess(
            self.env_as(Role.AUDIT_SINK), self.directory / "audit-sink.log", args=args
        )
        return self._audit_sink.start()

    def exited(self) -> list[str]:
        """The parts whose process has exited (a crashed or killed one included)."""
        parts: list[tuple[str, bool]] = [(w.name, w.alive) for w in self.workers]
        if self._redis is not None:
            parts.append(("redis", _running(self._redis.proc)))
        if self._sandbox is not None:
            parts.append(("sandbox", _running(self._sandbox.proc)))
        if self._flower is not None:
            parts.append(("flower", _running(self._flower.proc)))
        if self._audit_sink is not None:
            parts.append(("audit-sink", self._audit_sink.alive))
        return [name for name, alive in parts if not alive]

    def stop(self) -> None:
        """Stop producers, workers, flower, audit sink, sandbox, redis (each even if one failed); tidy up."""
        if self._stopped:
            return
        self._stopped = True
        try:
            with contextlib.ExitStack() as steps:  # callbacks run last-in first-out
                if self._redis is not None:
                    steps.callback(self._redis.stop)
                    steps.callback(self._read_denials)  # once every other part has stopped
                if self._sandbox is not None:
                    steps.callback(self._sandbox.stop)
                if self._audit_sink is not None:
                    steps.callback(self._audit_sink.stop)
                if self._flower is not None:
                    steps.callback(self._flower.stop)
                steps.callback(self.stop_workers)
                steps.callback(self._close_producers)
        finally:
            self._tidy()

    def _read_denials(self) -> None:
        """Keep what Redis refused any part (its ``ACL LOG``) in :attr:`denials`, while it still runs."""
        if self._redis is not None and self._redis.proc is not None and self._redis.proc.poll() is None:
            self.denials = [
                f"{entry.get('username')} refused {entry.get('reason')} {entry.get('object')!r}"
                for entry in self._redis.acl_denials()
            ]

    def _close_producers(self) -> None:
        with contextlib.ExitStack() as steps:
            for producer in self.producers:
                steps.callback(producer.close)
        self.producers.clear()

    def _tidy(self) -> None:
        if not self.temporary:
            return
        if self.keep_dir is not None:
            shutil.copytree(self.directory, self.keep_dir / self.name, dirs_exist_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def _running(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is None
