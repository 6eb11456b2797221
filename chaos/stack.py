"""One scenario's private stack: Redis with AOF, the sandbox, worker processes and producers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from harness.procs import RedisServer, WorkerProcess
from harness.sandbox import SandboxProcess
from producers import Producer
from worker.connection import redis_client
from worker.settings import Settings

AUTH_ID: Final = "MA_CHAOS0001"
TOKEN: Final = "tok-Chaos-7c1e55aa90d3"
#: A second account, for scenarios that deactivate one (403) while the other keeps working.
OTHER_AUTH_ID: Final = "SA_CHAOS0002"
OTHER_TOKEN: Final = "tok-Chaos-other-41b2f0"

#: The worker configuration every scenario starts from: short timeouts and backoff, so that a
#: scenario's retries, redeliveries and lock expiries happen within seconds, not minutes.
BASE_ENV: Final = {
    "VOBIZ_AUTH_ID": AUTH_ID,
    "VOBIZ_AUTH_TOKEN": TOKEN,
    "RECSTOP_BACKOFF_BASE_S": "0.2",
    "RECSTOP_BACKOFF_CAP_S": "2",
    "RECSTOP_MAX_ATTEMPTS": "12",
    "RECSTOP_CONNECT_TIMEOUT_S": "1",
    "RECSTOP_READ_TIMEOUT_S": "2",
    "RECSTOP_REDIS_SOCKET_TIMEOUT_S": "2",
    "RECSTOP_CONCURRENCY": "16",
    "RECSTOP_SCHEDULER_POLL_S": "0.05",
    "RECSTOP_VISIBILITY_TIMEOUT_S": "10",
    "RECSTOP_LOG_FORMAT": "json",
    "RECSTOP_LOG_LEVEL": "INFO",
}


class Stack:
    """Everything a scenario runs against, in a temporary directory, torn down on exit."""

    def __init__(
        self,
        name: str,
        *,
        appendfsync: str = "everysec",
        env: Mapping[str, str] | None = None,
        keep_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"recstop-chaos-{name}-"))
        self.keep_dir = keep_dir
        self.redis = RedisServer(self.directory / "redis", appendonly=True, appendfsync=appendfsync)
        self.sandbox = SandboxProcess(
            self.directory / "sandbox.log", {AUTH_ID: TOKEN, OTHER_AUTH_ID: OTHER_TOKEN}, seed=7
        )
        self.extra_env = dict(env or {})
        self.workers: list[WorkerProcess] = []
        self.producers: list[Producer] = []

    def __enter__(self) -> Self:
        self.redis.start()
        self.sandbox.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for producer in self.producers:
            producer.close()
        for worker in self.workers:
            worker.stop(timeout_s=15)
        self.sandbox.stop()
        self.redis.stop()
        if self.keep_dir is not None:
            shutil.copytree(self.directory, self.keep_dir / self.name, dirs_exist_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        """The environment of this stack's workers and producers."""
        return {
            **BASE_ENV,
            "RECSTOP_BROKER_URL": self.redis.url,
            "VOBIZ_API_BASE": self.sandbox.api_base,
            "RECSTOP_CREDENTIALS_FILE": str(self._credentials()),
            **self.extra_env,
        }

    def _credentials(self) -> Path:
        path = self.directory / "credentials.json"
        if not path.exists():
            path.write_text(f'{{"{OTHER_AUTH_ID}": "{OTHER_TOKEN}"}}', encoding="utf-8")
        return path

    def settings(self) -> Settings:
        """The settings a producer of this stack reads."""
        return Settings.from_env(self.env)

    def producer(self) -> Producer:
        """A new producer with its own connections (closed with the stack)."""
        settings = self.settings()
        producer = Producer(settings, redis_client(settings.redis))
        self.producers.append(producer)
        return producer

    def start_worker(self, name: str, *, wait: bool = True, **overrides: str) -> WorkerProcess:
        """Start ``celery -A worker worker`` named ``name``; stopped with the stack."""
        worker = WorkerProcess(
            {**self.env, **overrides},
            self.directory / f"{name}.log",
            name=name,
            redis_url=self.redis.url,
        )
        self.workers.append(worker)
        return worker.start(wait=wait)
