"""Reconcile what the producer accepted with the status records and what the sandbox saw."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from recstop.producers import Producer
from recstop.sandbox import SandboxClient
from recstop.worker.model.status import StatusRecord
from recstop.worker.model.vocabulary import Confirmation, State
from recstop.worker.state.deadletters import DeadLetters

#: DELETE answers the worker counts as "the recording is not recording any more".
SUCCESS_STATUSES: Final = frozenset({204, 404})


@dataclass
class Tally:
    """The verdict on one scenario's stops."""

    sent: int = 0
    stopped: int = 0
    already_stopped: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # "<call_uuid>: why"
    deletes: int = 0
    duplicate_deletes: int = 0
    records: dict[str, StatusRecord] = field(default_factory=dict)

    @property
    def terminal(self) -> int:
        """Stops that reached a terminal state that matches the sandbox."""
        return self.stopped + self.already_stopped + sum(self.dead.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly figures (without the records)."""
        return {
            "sent": self.sent,
            "stopped": self.stopped,
            "already_stopped": self.already_stopped,
            "dead": dict(self.dead),
            "lost": len(self.lost),
            "lost_examples": self.lost[:5],
            "deletes": self.deletes,
            "duplicate_deletes": self.duplicate_deletes,
        }


def deletes_by_call(sandbox: SandboxClient) -> dict[str, list[dict[str, Any]]]:
    """Every DELETE the sandbox logged, grouped by call, in arrival order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in sandbox.requests():
        if entry["method"] == "DELETE" and entry["call_uuid"]:
            grouped[str(entry["call_uuid"])].append(entry)
    return grouped


def after_first_success(entries: list[dict[str, Any]]) -> int:
    """How many DELETEs arrived after the first one answered as a success."""
    for index, entry in enumerate(entries):
        if entry["status"] in SUCCESS_STATUSES:
            return len(entries) - index - 1
    return 0


def wait_terminal(producer: Producer, call_uuids: Iterable[str], timeout_s: float) -> dict[str, StatusRecord]:
    """Poll status records until every stop is terminal or ``timeout_s`` passes; return the last seen."""
    records: dict[str, StatusRecord] = {}
    open_calls = set(call_uuids)
    deadline = time.monotonic() + timeout_s
    while True:
        for call_uuid in list(open_calls):
            record = producer.status(call_uuid)
            if record is not None:
                records[call_uuid] = record
                if not record.state.pending:
                    open_calls.discard(call_uuid)
        if not open_calls or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def reconcile(
    producer: Producer,
    sandbox: SandboxClient,
    call_uuids: Iterable[str],
    *,
    timeout_s: float,
) -> Tally:
    """Wait for the accepted stops to finish, then hold each against the sandbox's log.

    A stop is lost unless it is terminal and the sandbox agrees: ``stopped``/``already_stopped``
    need a DELETE the sandbox answered 204 for that call (the only way its recording stops), and
    ``dead`` needs the dead letter that makes it replayable.
    """
    wanted = list(dict.fromkeys(call_uuids))
    records = wait_terminal(producer, wanted, timeout_s)
    seen = deletes_by_call(sandbox)
    dead_letters = DeadLetters(producer.redis, producer.settings.retention)
    tally = Tally(sent=len(wanted), records=records)
    for call_uuid in wanted:
        entries = seen.get(call_uuid, [])
        tally.deletes += len(entries)
        tally.duplicate_deletes += after_first_success(entries)
        why = _verdict(records.get(call_uuid), entries, dead_letters)
        if why is not None:
            tally.lost.append(f"{call_uuid}: {why}")
        else:
            record = records[call_uuid]
            if record.state is State.STOPPED:
                tally.stopped += 1
            elif record.state is State.ALREADY_STOPPED:
                tally.already_stopped += 1
            else:
                tally.dead[record.dead_reason or "?"] += 1
    return tally


def _verdict(record: StatusRecord | None, entries: list[dict[str, Any]], dlq: DeadLetters) -> str | None:
    """Why this stop counts as lost, or None when its outcome is accounted for."""
    if record is None or record.state.pending:
        return "no status record" if record is None else f"still {record.state} after the deadline"
    stopped_at_sandbox = any(e["status"] == 204 for e in entries)  # noqa: PLR2004
    if record.state in {State.STOPPED, State.ALREADY_STOPPED}:
        return None if stopped_at_sandbox else f"{record.state} but the sandbox never stopped it"
    if record.state is State.DEAD:
        if stopped_at_sandbox:
            return "dead although the sandbox stopped it"
        if not record.dlq_id or dlq.get(record.dlq_id) is None:
            return "dead without a dead letter"
        return None
    return f"ended {record.state}"


def first_success_at(entries: list[dict[str, Any]]) -> float | None:
    """When the first DELETE the sandbox answered as a success arrived (its recording stopped)."""
    return next((float(e["time"]) for e in entries if e["status"] in SUCCESS_STATUSES), None)


def stopped_s(seen: dict[str, list[dict[str, Any]]], calls: Iterable[str], event_at: float) -> float:
    """Seconds from ``event_at`` until the last of ``calls`` had its recording stopped (at the sandbox).

    A call stopped before ``event_at`` counts as 0; a call never stopped makes it infinite.
    """
    worst = 0.0
    for call_uuid in calls:
        at = first_success_at(seen.get(call_uuid, []))
        worst = max(worst, math.inf if at is None else at - event_at)
    return worst


def last_delete_s(seen: dict[str, list[dict[str, Any]]], calls: Iterable[str], event_at: float) -> float:
    """Seconds from ``event_at`` to the last DELETE of any of ``calls`` that arrived after it (0: none)."""
    after = [float(e["time"]) - event_at for c in calls for e in seen.get(c, []) if e["time"] >= event_at]
    return max(after, default=0.0)


def settled_s(records: dict[str, StatusRecord], calls: Iterable[str], event_at: float) -> float:
    """Seconds from ``event_at`` until the last of ``calls`` was terminal in its status record."""
    finished = [records[c].finished_at if c in records else None for c in calls]
    return max((math.inf if f is None else f - event_at for f in finished), default=0.0)


def log_events(records: Iterable[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The log records of one event."""
    return [r for r in records if r.get("event") == event]


def settled(producer: Producer, calls: list[str], timeout_s: float) -> dict[str, StatusRecord]:
    """Wait until no confirmation is pending (or ``timeout_s``); the last records seen."""
    records: dict[str, StatusRecord] = {}
    waiting = set(calls)
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for call_uuid in list(waiting):
            record = producer.status(call_uuid)
            if record is not None:
                records[call_uuid] = record
                if record.confirmation not in (None, Confirmation.PENDING):
                    waiting.discard(call_uuid)
        if waiting:
            time.sleep(0.5)  # polling the records, bounded by the deadline above
    return records
