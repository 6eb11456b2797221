"""The whole Redis key layout in one place; every script gets its keys from here, through ``KEYS``.

Every key recstop writes starts with ``recstop:``; the Celery queues (``recstop``,
``recstop.urgent``) and kombu's bindings (``_kombu.binding.*``) sit beside them in the same
database.

A message is always in exactly one list: a lane, or the in-flight list of the consumer that
fetched it (:func:`inflight_key`), which its ack removes it from. A consumer that stops
heartbeating (``CONSUMERS``) has its in-flight messages moved back to the head of their lanes by
any live consumer (``worker/fetch.py``).

A *stop* is one call and one recording URL, or ``all`` of the call's recordings: its *target*
is ``all`` or ``url-<hash of the URL>``, and ``<call_uuid>/<target>`` names it in the schedule.

Per call, one string key holds every stop of the call (:func:`call_key`): a JSON object, target →
stop record. Folding a stop's records into one key is what makes a finished stop cheap to keep
for its retention, and lets a stop-all settle the call's single-recording stops inside one key.
A stop record has these fields (absent when unset; times are epoch seconds of Redis' clock):

==================  ===============================================================================
``call_uuid``       the call, as the producer spelled it
``url``             the recording URL (absent: every recording of the call)
``auth_id``         the account; ``request_id``: the producer's idempotency key
``task_id``         the Celery task id of the current run (a new run gets a new one)
``state``           ``worker.outcome.State``: scheduled, queued, retrying, stopped, already_stopped,
                    dead, cancelled
``phase``           where a pending run is: ``waiting`` (in the schedule until ``due_at``) or
                    ``ready`` (its message is published, or about to be); absent once terminal
``urgent``          true when the run is on the urgent lane
``attempts``        API calls of this run; ``log``: one entry per attempt (last 200), each
                    ``{attempt, at, outcome, http_status, error, duration_ms[, retry_in_s,
                    retry_after_s]}``
``enqueued_at``     when the run was created; ``due_at``: when it is (or was) due;
                    ``not_after``: when it is given up (``dead``, reason ``deadline``)
``first_attempt_at``, ``last_attempt_at``, ``finished_at``
``last_http_status``, ``last_error``: what the last attempt got
``dead_reason``     why it is dead (``http_403``, ``attempts_exhausted``, ``deadline``,
                    ``unknown_account`` ...); ``dlq_id``: its dead letter (kept on a later run, so
                    that run's success removes it)
``settled_by``      the task id of the stop-all that settled this single-recording stop
``watch_at``        when the watchdog fires: the schedule score that, reached while the run is still
                    ``ready``, means its message was lost and must be published again
``republished``     how often the watchdog fired for this run (each firing doubles the next wait)
``lock``            the token of the worker calling the API now; ``lock_until``: when that lock
                    expires; ``lock_consumer``: the worker connection holding it (a lock whose
                    holder was reaped as dead is over at once)
``done``            ``[[task_id, state], ...]``: the last finished runs, so that a message of an
                    earlier run delivered again is recognised and never calls the API twice
``joined``          task ids of Celery messages that joined this pending run (last 16): their
                    results are written with the run's (``worker/results.py``)
``replayed_from``   the dead run a replay (``recstop dlq replay``) started from: ``{dlq_id, task_id,
                    reason, dead_at, attempts, attempts_before, attempt_log}``
                    (``model.status.ReplayedFrom``; ``attempts_before`` counts every earlier run's)
``confirmation``    after a successful stop, whether Vobiz confirms its recordings ended
                    (``model.vocabulary.Confirmation``); ``confirm_until``: the lookups' deadline;
                    ``confirm_lookups``: lookups made; ``confirm_reason``, ``confirm_error``: why
                    unconfirmed; ``recordings``: the covered recordings as the Recordings API
                    reported them (``model.recording.Recording``); ``ended_after_ms``: the latest
                    end, less when the stop was due; ``confirmed_at``
``keep_until``      when the record may go; the key expires with its last record
==================  ===============================================================================
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Final

PREFIX: Final = "recstop"
#: The routine lane: the Celery queue every producer publishes to by default (kombu's list name).
QUEUE: Final = "recstop"
#: The urgent lane: workers always take from it first (see ``broker.channel.Channel``).
URGENT_QUEUE: Final = "recstop.urgent"
#: Every lane, in the order workers take from them.
LANES: Final = (URGENT_QUEUE, QUEUE)
TASK_NAME: Final = "recstop.stop_recording"
#: kombu's Redis transport keeps messages of priority 3, 6 and 9 in lists of their own, named
#: ``<queue><PRIORITY_SEP><priority>`` (its ``sep``); recstop's producers never set a priority.
PRIORITY_SEP: Final = "\x06\x16"
PRIORITY_STEPS: Final = (3, 6, 9)

#: zset: ``<call_uuid>/<target>`` → when the scheduler next acts on it: a delayed stop's due time,
#: a retry's, a lease while it is being published, or the watchdog of a published stop.
SCHEDULE: Final = f"{PREFIX}:schedule"
#: zset: ``<call_uuid>/<target>`` → when a stopped stop's recordings are looked up next (their
#: confirmation, ``run.confirmer``), or the lease of the worker looking them up now.
CONFIRMS: Final = f"{PREFIX}:confirm"
#: zset: dead-letter id → when it was dead-lettered (the store's order and age bound).
DLQ_INDEX: Final = f"{PREFIX}:dlq"
#: hash: dead-letter id → the dead letter as JSON (``state.deadletters.DeadLetter``).
DLQ_ENTRIES: Final = f"{PREFIX}:dlq:entries"
#: hash: worker name → its last heartbeat (epoch seconds).
WORKERS: Final = f"{PREFIX}:workers"
#: zset: consumer id → its last heartbeat (Redis time). One consumer per worker connection.
CONSUMERS: Final = f"{PREFIX}:consumers"
#: hash: cumulative counters shared by every worker process (``recstop metrics`` exports them),
#: counted by the script that records what they count, so a count is exact: the fields are
#: :class:`Counter` and the per-label fields built by :func:`counter`.
METRICS: Final = f"{PREFIX}:metrics"
#: Held a moment by the worker announcing the waiting stops to a monitor that connected
#: (``celeryapp.announce``): one worker announces per connect, not every worker.
ANNOUNCING: Final = f"{PREFIX}:announcing"
ALL_TARGET: Final = "all"
#: The separator of a schedule member: ``<call_uuid>/<target>``.
MEMBER_SEP: Final = "/"


class Counter(StrEnum):
    """The fields of :data:`METRICS`; a family's field is ``<family>:<label>`` (:func:`counter`)."""

    STOPS = "stops"  # stops:<state> for stopped, already_stopped, cancelled, superseded; stops:retried
    RETRIED = "retried"  # the label of stops:retried: a stop moved to State.RETRYING
    DEAD = "dead"  # dead:<reason>
    REJECTED = "rejected"  # rejected:<reason>: messages refused before they became a stop
    SETTLED = "settled"  # URL stops settled by a stop-all
    LATENCY_SUM = "latency_sum"  # latency_sum:<status>, seconds (``none``: no response)
    # latency_bucket:<status>:<le>, non-cumulative: each attempt counted once, in its bucket, so the
    # histogram's count and the attempts total are sums of these (observability/counters.py)
    LATENCY_BUCKET = "latency_bucket"
    RATE_LIMITED = "rate_limited"  # 429 answers
    RETRY_AFTER = "retry_after"  # Retry-After waits honoured, capped
    RETRY_AFTER_SECONDS = "retry_after_seconds"
    WATCHDOG_REPUBLISHES = "watchdog_republishes"
    AUDIT_DROPPED = "audit:dropped"  # audit events trimmed before a sink read them
    LOOKUPS = "lookups"  # lookups of a call's recordings (each may read several pages)
    CONFIRMATIONS = "confirmations"  # confirmations:<confirmation>: settled confirmations
    UNCONFIRMED = "unconfirmed"  # unconfirmed:<reason>
    ENDED_AFTER_COUNT = "ended_after_count"  # recordings whose end Vobiz reported after a stop
    ENDED_AFTER_SUM = "ended_after_sum"  # seconds from the stop being due to the recording's end
    ENDED_AFTER_BUCKET = "ended_after_bucket"  # ended_after_bucket:<le> (non-cumulative)
    NO_STATUS = "none"  # the status label of an attempt that got no response


#: The separator of a counter family and its label.
COUNTER_SEP: Final = ":"
#: Upper bounds (seconds) of the API latency histogram: the ``<le>`` labels of ``latency_bucket``.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


#: Upper bounds (seconds) of the histogram of how long a recording ran on after its stop was due.
ENDED_AFTER_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def bucket_label(bound: float) -> str:
    """A bucket's label as the scripts count it: ``0.1``, ``1``, ``15``."""
    return f"{bound:g}"


def counter(family: Counter, *labels: str) -> str:
    """A labelled counter field: ``dead:http_403``, ``latency_bucket:204:0.1``."""
    return COUNTER_SEP.join((family.value, *labels))


def counter_label(field: str, family: Counter) -> str | None:
    """The label of a field of ``family`` (``http_403`` of ``dead:http_403``), else None."""
    prefix = family.value + COUNTER_SEP
    return field.removeprefix(prefix) if field.startswith(prefix) else None


def target_of(url: str | None) -> str:
    """The per-call part of a stop: ``all`` or a short hash of the recording URL."""
    if url is None:
        return ALL_TARGET
    return "url-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:24]


def member(call_uuid: str, target: str) -> str:
    """A stop's name in the schedule: ``<call_uuid>/<target>`` (call_uuid lower-cased)."""
    return f"{call_uuid.lower()}{MEMBER_SEP}{target}"


def stop_key(call_uuid: str, url: str | None) -> str:
    """The schedule member of the stop of ``call_uuid`` and ``url`` (None: every recording)."""
    return member(call_uuid, target_of(url))


def split_member(name: str) -> tuple[str, str]:
    """A schedule member's call_uuid and target."""
    call_uuid, _, target = name.partition(MEMBER_SEP)
    return call_uuid, target


def call_key(call_uuid: str) -> str:
    """string: every stop record of a call, as JSON (target → record; fields above)."""
    return f"{PREFIX}:call:{call_uuid.lower()}"


def call_key_of(name: str) -> str:
    """The call key of a schedule member ``<call_uuid>/<target>``."""
    return call_key(split_member(name)[0])


def lane_lists(lane: str) -> tuple[str, ...]:
    """Every list a lane's messages may be in: the lane, then its priority lists."""
    return (lane, *(f"{lane}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS))


def inflight_key(consumer: str, source: str) -> str:
    """list: the messages ``consumer`` fetched from the list ``source`` (a lane) and has not acked."""
    return f"{PREFIX}:inflight:{consumer}:{source}"


def inflight_consumer(key: str, source: str) -> str:
    """The consumer of an in-flight list (``recstop:inflight:<consumer>:<source>``)."""
    return key.removeprefix(f"{PREFIX}:inflight:").removesuffix(f":{source}")


#: The pattern every in-flight list matches (``SCAN``).
INFLIGHT_MATCH: Final = f"{PREFIX}:inflight:*"
#: Keys a ``SCAN`` step looks at (Redis' default, 10, takes a step per 10 keys: 300,000 steps over
#: the keys of 100,000 stops).
SCAN_COUNT: Final = 1000


def task_key(task_id: str) -> str:
    """string: the schedule member (``<call_uuid>/<target>``) of the run with this task id.

    Kept as long as its record; a revoke (``celery control revoke``) finds its stop through it.
    """
    return f"{PREFIX}:task:{task_id}"


def revoked_key(task_id: str) -> str:
    """string: a revoke of a task id no run has yet (its message still queued).

    The run it would start is cancelled at once when a worker admits it. Kept ``retention_s``.
    """
    return f"{PREFIX}:revoked:{task_id}"


def result_key(task_id: str) -> str:
    """string: the task's result as Celery's Redis result backend keeps it (``AsyncResult`` reads it).

    Celery's own name, not under ``recstop:``; written by the script that records the outcome.
    """
    return f"celery-task-meta-{task_id}"


def rate_key(auth_id: str) -> str:
    """hash: the shared rate limiter of one account (tat, rate, penalized_at, blocked_until)."""
    return f"{PREFIX}:rate:{auth_id}"


#: stream: the audit outbox. Every script that records an event in a stop's life appends it here in
#: the same script (one field ``e``: the event as JSON, ``worker/audit/event.py``); ``recstop audit
#: sink`` copies it to SQL and trims it below what is committed.
AUDIT_STREAM: Final = f"{PREFIX}:audit"
#: The consumer group of the audit sinks on :data:`AUDIT_STREAM`.
AUDIT_GROUP: Final = "sinks"
