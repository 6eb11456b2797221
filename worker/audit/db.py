"""Connecting to the audit database: one SQLAlchemy engine per process, SQLite or PostgreSQL (psycopg 3).

``postgresql://`` (and ``postgres://``) mean psycopg 3. SQLite runs in WAL mode, so readers never
block the sink; a writer's transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's one
write lock at once: writers are serialised before they read the chain head, as ``SELECT ... FOR
UPDATE`` serialises them in PostgreSQL. A reader's transaction (``BEGIN``) reads one snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from recstop.worker.config.secrets import mask_url

#: Seconds a SQLite connection waits for another process's write lock before it fails.
SQLITE_BUSY_S: Final = 30
_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


def driver_url(url: str) -> str:
    """The SQLAlchemy URL of a ``RECSTOP_AUDIT_DB`` value: PostgreSQL through psycopg 3."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def safe_url(url: str) -> str:
    """The URL with its password masked (what logs and messages show)."""
    return mask_url(url)


def audit_engine(url: str, *, writer: bool = True) -> Engine:
    """An engine for the audit database at ``url``; ``writer`` transactions serialise on SQLite's lock."""
    parsed = make_url(driver_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_S})
        _sqlite_transactions(engine, "BEGIN IMMEDIATE" if writer else "BEGIN")
        return engine
    return create_engine(
        parsed,
        hide_parameters=True,  # an error's text never carries event contents
        pool_pre_ping=True,
        pool_size=2,
        connect_args={"connect_timeout": 5, "application_name": "recstop-audit"},
    )


def _sqlite_transactions(engine: Engine, begin: str) -> None:
    """Let SQLAlchemy, not the sqlite3 module, start transactions: with ``begin`` (SQLAlchemy's recipe)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - the DB-API connection
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def is_postgres(engine: Engine) -> bool:
    """Whether the engine talks to PostgreSQL (else SQLite)."""
    return engine.dialect.name == "postgresql"


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one consistent state of the database (REPEATABLE READ in PostgreSQL)."""
    with engine.connect() as plain:
        connection = (
            plain.execution_options(isolation_level="REPEATABLE READ") if is_postgres(engine) else plain
        )
        with connection.begin():
            yield connection
