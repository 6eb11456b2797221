"""Health of a recstop deployment, as plain functions over Redis (``recstop health``).

Checks: Redis answers (and how fast), at least one worker heartbeats, the dead-letter store is
not piling up, no due stop waits in the schedule longer than it should (the schedulers run), and
how far behind the audit sinks are and whether audit events were dropped (reported always; failed
on only with the ``max_audit_*`` thresholds, which the audit sink's own probe sets).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from recstop.worker.audit.lag import AuditLag, read_lag
from recstop.worker.config.settings import HealthThresholds
from recstop.worker.observability.metrics import split_workers
from recstop.worker.state import keys


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, why, and what it measured."""

    name: str
    ok: bool
    detail: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class HealthReport:
    """Every check; healthy only if all passed."""

    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"healthy": self.healthy, "checks": {c.name: asdict(c) for c in self.checks}}


CHECK_NAMES = ("redis", "workers", "dead_letters", "schedule", "audit")


def check_health(client: Redis, thresholds: HealthThresholds, *, redis_url: str = "") -> HealthReport:
    """Run every check against Redis; an unreachable Redis fails them all, with the reason."""
    started = time.perf_counter()
    try:
        client.ping()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        seconds, micros = client.time()
        now = seconds + micros / 1_000_000
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.WORKERS)
        pipe.zcard(keys.DLQ_INDEX)
        pipe.zrange(keys.SCHEDULE, 0, 0, withscores=True)
        heartbeats, dead_letters, first = pipe.execute()
        lag = read_lag(client)
    except (RedisError, OSError) as exc:
        where = f" at {redis_url}" if redis_url else ""
        reason = f"Redis unreachable{where}: {type(exc).__name__}: {exc}"
        failed = [Check("redis", ok=False, detail=reason, data={})]
        failed += [
            Check(name, ok=False, detail="not checked: Redis unreachable", data={})
            for name in CHECK_NAMES[1:]
        ]
        return HealthReport(tuple(failed))
    redis_check = Check(
        "redis", ok=True, detail=f"PING answered in {latency_ms} ms", data={"latency_ms": latency_ms}
    )
    return HealthReport(
        (
            redis_check,
            _workers(heartbeats, now, thresholds.max_heartbeat_age_s),
            _dead_letters(dead_letters, thresholds.max_dead_letters),
            _schedule(first, now, thresholds.max_overdue_s),
            _audit(lag, thresholds),
        )
    )


def _workers(heartbeats: Mapping[str, str], now: float, max_age_s: float) -> Check:
    live, stale = split_workers(heartbeats, now, max_age_s)
    data = {"live": live, "stale": stale, "max_heartbeat_age_s": max_age_s}
    detail = f"{len(live)} live worker(s)" if live else f"no worker heartbeat younger than {max_age_s:g} s"
    if stale:
        detail += f"; stale (dead): {', '.join(stale)}"
    return Check("workers", ok=bool(live), detail=detail, data=data)


def _dead_letters(count: int, max_count: int) -> Check:
    ok = count <= max_count
    detail = f"{count} dead letter(s), at most {max_count} allowed"
    return Check("dead_letters", ok=ok, detail=detail, data={"count": count, "max": max_count})


def _schedule(first: list[tuple[str, float]], now: float, max_overdue_s: float) -> Check:
    """The oldest schedule entry: overdue by more than ``max_overdue_s`` means no scheduler publishes."""
    overdue_s = max(0.0, now - float(first[0][1])) if first else 0.0
    data: dict[str, Any] = {"oldest_overdue_s": round(overdue_s, 3), "max_overdue_s": max_overdue_s}
    if first and overdue_s > 0:
        data["oldest_key"] = first[0][0]
    if overdue_s > max_overdue_s:
        detail = f"stop {first[0][0]} has been due for {overdue_s:.1f} s (more than {max_overdue_s:g} s)"
        return Check("schedule", ok=False, detail=detail, data=data)
    return Check("schedule", ok=True, detail=f"oldest due entry overdue by {overdue_s:.1f} s", data=data)


def _audit(lag: AuditLag, thresholds: HealthThresholds) -> Check:
    """The audit sinks' lag and drops; a failure only past a threshold that is set."""
    data: dict[str, Any] = {
        **lag.to_dict(),
        "oldest_unacked_age_s": round(lag.oldest_unacked_age_s, 3),
        "max_audit_age_s": thresholds.max_audit_age_s,
        "max_audit_dropped": thresholds.max_audit_dropped,
    }
    if lag.group:
        detail = f"sinks {lag.behind} event(s) behind, oldest {lag.oldest_unacked_age_s:.1f} s"
    else:
        detail = f"no audit sink has read recstop:audit ({lag.length} event(s) waiting)"
    detail += f"; {lag.dropped} dropped unread" if lag.dropped else "; none dropped"
    too_old = thresholds.max_audit_age_s is not None and lag.oldest_unacked_age_s > thresholds.max_audit_age_s
    too_many = thresholds.max_audit_dropped is not None and lag.dropped > thresholds.max_audit_dropped
    if too_old:
        detail += f" (older than {thresholds.max_audit_age_s:g} s: is `recstop audit sink` running?)"
    if too_many:
        detail += f" (more than {thresholds.max_audit_dropped} dropped: the audit trail has a gap)"
    return Check("audit", ok=not (too_old or too_many), detail=detail, data=data)


def render(report: HealthReport) -> str:
    """A human-readable report: one line per check."""
    lines = [f"{'healthy' if report.healthy else 'UNHEALTHY'}"]
    lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name:13} {c.detail}" for c in report.checks]
    return "\n".join(lines) + "\n"
