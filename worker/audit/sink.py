"""``recstop audit sink``: copy the audit stream into the SQL database, exactly once, until stopped.

One step: claim what silent sinks left pending (now and then), else re-read this sink's own
pending entries, else wait for new ones; store the batch in one transaction (``ledger.append``),
acknowledge it only after the commit, then trim the stream below what is not acknowledged. Killed
at any instant, a sink leaves its batch pending: it or another sink stores it later, and the
unique stream id keeps it single. Redis or the database unreachable: the step is retried with
backoff, a log line per failed try. Daily, the sink logs ``audit_digest`` (the day's last hash).
Retention is ``recstop audit retention``'s, under its own role; a sink given ``retention_days``
(``--retention``: SQLite, or one database user for everything) also applies it hourly. The sink
migrates a schema that is behind when its user may; under ``recstop_audit_sink`` it may not, and
waits, saying so, until ``recstop audit migrate`` ran. Event contents are never logged.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

import structlog
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from recstop.worker.audit import ledger
from recstop.worker.audit.chain import day_of
from recstop.worker.audit.event import INVALID, parse_entry
from recstop.worker.audit.roles import OWNER, refused
from recstop.worker.audit.schema import LATEST, migrate
from recstop.worker.audit.stream import AuditStream, Entry
from recstop.worker.model.redaction import Redactor

log = structlog.get_logger("recstop.audit")

#: Longest wait between retries while Redis or the database is unreachable.
MAX_BACKOFF_S: Final = 30.0
#: How often retention runs by default (and once at start).
RETENTION_EVERY_S: Final = 3600.0
#: The fields of a claimed entry that is gone from the stream (``parse_entry`` records it as gone).
GONE: Final[dict[bytes, bytes]] = {}


class SchemaNotReadyError(Exception):
    """The audit schema is missing or older than this code, and the sink's user may not migrate it."""


def fail_fast(client: Redis) -> Redis:
    """``client`` retrying a lost connection once, at once: the sink's own backoff then logs the outage.

    (redis-py's default retries with exponential backoff for tens of seconds, silently.)
    """
    client.set_retry(Retry(NoBackoff(), 1))
    return client


def consumer_name() -> str:
    """The consumer name of this process: host and pid (a restarted pod re-reads its own pending entries)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class AuditSink:
    """One sink: a consumer of the audit stream writing to one database engine (run it on any thread)."""

    def __init__(
        self,
        client: Redis,
        engine: Engine,
        *,
        name: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
        claim_idle_s: float = 5.0,
        retention_days: int | None = None,
        retention_every_s: float = RETENTION_EVERY_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.stream = AuditStream(
            client,
            name or consumer_name(),
            count=batch,
            block_ms=block_ms,
            claim_idle_ms=int(claim_idle_s * 1000),
        )
        self.claim_every_s = claim_idle_s
        self.retention_s = None if retention_days is None else retention_days * 86400.0
        self.retention_every_s = retention_every_s
        self.max_backoff_s = max_backoff_s
        self.redactor = redactor or Redactor(())
        self.clock = clock
        self._own_pending = True  # re-read what this name left pending (a restart under the same name)
        self._next_claim = 0.0
        self._next_retention = 0.0
        self._ready = False
        self._day = ""  # the UTC day whose digest this sink last checked for

    @property
    def name(self) -> str:
        """The consumer name of this sink in the group."""
        return self.stream.consumer

    def prepare(self) -> None:
        """Create or migrate the schema and the consumer group (``step`` does it first, until it worked)."""
        try:
            found = migrate(self.engine)  # reads the version only, when the schema is up to date
        except SQLAlchemyError as exc:
            if not refused(exc):
                raise
            raise SchemaNotReadyError(
                f"the audit schema is missing or older than version {LATEST} and this sink's database "
                f"user may not change it: run `recstop audit migrate` as {OWNER.name}"
            ) from exc
        self.stream.ensure_group()
        self._ready = True
        log.info("audit_sink_ready", consumer=self.name, schema_version_found=found)

    def step(self) -> int:
        """One round: maintenance, then one batch read, stored and acknowledged; the entries handled."""
        if not self._ready:
            self.prepare()
        now = time.monotonic()
        entries = self._claimed(now) if now >= self._next_claim else []
        if not entries and self._own_pending:
            entries = self.stream.own_pending()
            self._own_pending = bool(entries)
        fresh = not entries
        if fresh:
            self._maintain()
            entries = self.stream.new()
        if not entries:
            return 0
        self._own_pending = True  # until they are acknowledged: a failure below leaves them pending
        self._store(entries)
        # after a batch of new entries nothing of ours is pending; after old ones, more may be
        self._own_pending = not fresh
        return len(entries)

    def _claimed(self, now: float) -> list[Entry]:
        self._next_claim = now + self.claim_every_s
        claimed = self.stream.claim()
        if claimed.entries or claimed.gone:
            log.warning(
                "audit_claimed", consumer=self.name, entries=len(claimed.entries), gone=len(claimed.gone)
            )
        return claimed.entries + [(stream_id, GONE) for stream_id in claimed.gone]

    def _store(self, entries: list[Entry]) -> None:
        batch = [parse_entry(stream_id, fields, self.redactor) for stream_id, fields in entries]
        result = ledger.append(self.engine, batch, self.clock())
        ids = [stream_id for stream_id, _ in entries]
        self.stream.ack(ids)
        trimmed = self.stream.trim()
        invalid = [item.stream_id for item in batch if item.event == INVALID]
        if invalid:  # ids only: an invalid entry's text may hold anything
            log.warning("audit_invalid_entries", count=len(invalid), stream_ids=invalid[:20])
        log.debug(
            "audit_batch",
            inserted=result.inserted,
            skipped=result.skipped,
            head_seq=result.head_seq,
            first=ids[0],
            last=ids[-1],
            trimmed=trimmed,
        )
        if result.digest is not None:
            _log_digest(result.digest)

    def _maintain(self) -> None:
        """Close a finished day (its digest) and apply the retention when this sink has one, when due."""
        now = self.clock()
        if day_of(now) != self._day:
            digest = ledger.close_day(self.engine, now)
            self._day = day_of(now)
            if digest is not None:
                _log_digest(digest)
        if self.retention_s is not None and time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + self.retention_every_s
            deleted = ledger.prune(self.engine, now - self.retention_s)
            if deleted:
                log.info("audit_retention", deleted=deleted, retention_days=self.retention_s / 86400)

    def run(self, stop: threading.Event) -> None:
        """Run steps until ``stop`` is set; an outage of Redis or the database is waited out with backoff."""
        failures = 0
        log.info("audit_sink_started", consumer=self.name)
        while not stop.is_set():
            try:
                self.step()
            except (RedisError, OSError, SQLAlchemyError, SchemaNotReadyError) as exc:
                failures += 1
                wait = min(self.max_backoff_s, 0.25 * 2 ** min(failures, 10))
                log.warning(
                    _outage(exc),
                    consumer=self.name,
                    error=self.redactor.text(f"{type(exc).__name__}: {exc}")[:500],
                    failures=failures,
                    retry_in_s=wait,
                )
                self._own_pending = True
                stop.wait(wait)
                continue
            if failures:
                log.info("audit_sink_recovered", consumer=self.name, after_failures=failures)
                failures = 0
        log.info("audit_sink_stopped", consumer=self.name)


def _outage(exc: Exception) -> str:
    """The log event of a failed step: what is unavailable."""
    if isinstance(exc, SchemaNotReadyError):
        return "audit_schema_not_ready"
    return (
        "audit_redis_unavailable" if isinstance(exc, RedisError | OSError) else "audit_database_unavailable"
    )


def _log_digest(digest: ledger.Digest) -> None:
    """The anchor of a finished day: its last hash, in the logs (docs/audit.md: anchoring digests)."""
    log.info(
        "audit_digest",
        day=digest.day,
        first_seq=digest.first_seq,
        last_seq=digest.last_seq,
        rows=digest.last_seq - digest.first_seq + 1,
        last_hash=digest.last_hash,
    )
