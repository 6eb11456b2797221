"""A throwaway PostgreSQL for tests and benchmarks: its own directory, port and socket; never the machine's.

``PostgresServer().start()`` runs ``initdb`` (trust authentication, no fsync) in a fresh temporary
directory and ``pg_ctl start`` on a free port, listening on 127.0.0.1 and a socket in that
directory only, and waits until it accepts connections. ``stop`` is ``pg_ctl stop -m immediate``
and removes the directory. PostgreSQL refuses to run as root: as root, the server runs as the
``postgres`` user (else ``nobody``), which then owns the directory. The binaries come from PATH,
else from the newest ``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import psycopg
from psycopg import sql

from harness.procs import free_port, wait_for

SUPERUSER: Final = "postgres"
#: Server settings for a disposable database: fast, small, nothing kept through a power loss.
_SERVER_OPTIONS: Final = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c shared_buffers=32MB -c max_connections=60 -c max_wal_size=256MB"
)


def postgres_binary(name: str) -> str:
    """A PostgreSQL program (``initdb``, ``pg_ctl``, ``pg_dump`` ...): from PATH, else Debian's layout."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for directory in versions:
        if (directory / name).exists():
            return str(directory / name)
    raise FileNotFoundError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when this process is root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


class PostgresServer:
    """A private PostgreSQL server; ``url(database)`` names its databases for SQLAlchemy (psycopg 3)."""

    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="recstop-pg-")) if directory is None else directory
        self.port = free_port() if port is None else port
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._user = _run_as()

    def _run(self, *argv: str) -> None:
        """Run a PostgreSQL program (as the server's user); fail with its own words."""
        user = None if self._user is None else self._user.pw_uid
        group = None if self._user is None else self._user.pw_gid
        done = subprocess.run(  # noqa: PLW1510 - checked below, with the output in the message
            argv, user=user, group=group, capture_output=True, text=True, timeout=120, cwd=self.directory
        )
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-2000:]
            raise RuntimeError(f"{Path(argv[0]).name} {argv[1]} failed with {done.returncode}: {said}")

    def start(self, timeout_s: float = 30.0) -> Self:
        """Run initdb (once) and start the server; return when it accepts connections (or fail)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        if not self.data.exists():
            initdb = postgres_binary("initdb")
            self._run(
                initdb, "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "-N"
            )
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 {_SERVER_OPTIONS}"
        pg_ctl = postgres_binary("pg_ctl")
        self._run(pg_ctl, "start", "-W", "-D", str(self.data), "-l", str(self.log_path), "-o", options)
        wait_for(self._accepts, timeout_s=timeout_s, interval_s=0.1, what=self._not_ready)
        return self

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _not_ready(self) -> str:
        log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return f"PostgreSQL on port {self.port} to accept connections; its log:\n{log}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string to ``database`` (psycopg, ``psql``)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """The ``postgresql://`` URL of ``database`` as ``user`` (what ``RECSTOP_AUDIT_DB`` takes)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, *args: str) -> str:
        """``psql`` as the superuser on ``database``, stopping at the first error; its output."""
        argv = [postgres_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"psql {' '.join(args)} failed with {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def dump(self, database: str) -> str:
        """``pg_dump`` of ``database``: schema and every row, as SQL text."""
        argv = [
            postgres_binary("pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            database,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout

    def stop(self, *, keep: bool = False) -> None:
        """``pg_ctl stop -m immediate``; removes the directory unless ``keep`` (``start`` then resumes)."""
        if self.data.exists():
            with contextlib.suppress(RuntimeError):  # not running
                self._run(postgres_binary("pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
