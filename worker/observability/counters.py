"""The Prometheus families of the counters in ``recstop:metrics``, counted by the scripts themselves.

Every count is made by the Lua script that records what it counts (``state/lua/*.lua``), under the
fields ``state.keys.Counter`` names; this module only turns a scrape's copy of the hash into
families: stop outcomes, attempts, rejections, the API latency histogram, and the confirmation of
stopped recordings (lookups, confirmations, and how long a recording ran on after its stop).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from recstop.worker.model.vocabulary import Confirmation, Sidelined, State
from recstop.worker.state import keys

#: The ``outcome`` labels of ``recstop_stops_total`` counted as ``stops:<label>`` (dead has a reason).
_OUTCOMES: Final = (
    State.STOPPED,
    State.ALREADY_STOPPED,
    keys.Counter.RETRIED,
    State.CANCELLED,
    Sidelined.SUPERSEDED,
)
#: The ``outcome`` label of single-recording stops a stop-all settled.
SETTLED_LABEL: Final = "settled_by_stop_all"


def counter_families(raw: Mapping[str, str]) -> Iterator[Metric]:
    """The counter and histogram families from the fields of ``recstop:metrics``."""
    stops = CounterMetricFamily(
        "recstop_stops",
        "Recorded stop outcomes; reason is set for outcome=dead only.",
        labels=["outcome", "reason"],
    )
    for outcome in _OUTCOMES:
        stops.add_metric([outcome, ""], float(raw.get(keys.counter(keys.Counter.STOPS, outcome), 0)))
    stops.add_metric([SETTLED_LABEL, ""], float(raw.get(keys.Counter.SETTLED, 0)))
    for field, reason in _labelled(raw, keys.Counter.DEAD):
        stops.add_metric([State.DEAD, reason], float(raw[field]))
    yield stops
    attempts = sum(sum(by_le.values()) for by_le in _latency_buckets(raw).values())
    yield counter_metric("recstop_attempts", "API calls made (attempts recorded).", attempts)
    rejected = CounterMetricFamily(
        "recstop_messages_rejected",
        "Messages dead-lettered before they became a stop (malformed, poison), by reason.",
        labels=["reason"],
    )
    for field, reason in _labelled(raw, keys.Counter.REJECTED):
        rejected.add_metric([reason], float(raw[field]))
    yield rejected
    yield counter_metric(
        "recstop_watchdog_republishes",
        "Stops published again because their watchdog fired (a message lost on its way to a worker).",
        float(raw.get(keys.Counter.WATCHDOG_REPUBLISHES, 0)),
    )
    yield counter_metric(
        "recstop_rate_limited", "429 answers from the API.", float(raw.get(keys.Counter.RATE_LIMITED, 0))
    )
    yield counter_metric(
        "recstop_retry_after_waits",
        "Answers with a Retry-After (header or body) that set a wait.",
        float(raw.get(keys.Counter.RETRY_AFTER, 0)),
    )
    yield counter_metric(
        "recstop_retry_after_wait_seconds",
        "Seconds of Retry-After waits honoured (each capped at RECSTOP_RETRY_AFTER_CAP_S).",
        float(raw.get(keys.Counter.RETRY_AFTER_SECONDS, 0)),
    )
    yield _latency(raw)
    yield from _confirmations(raw)


def counter_metric(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter family of one unlabelled value."""
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _latency(raw: Mapping[str, str]) -> HistogramMetricFamily:
    """The API latency histogram by HTTP status (``none``: timeout or connection error)."""
    family = HistogramMetricFamily(
        "recstop_api_request_duration_seconds",
        "Duration of DELETE calls to the Vobiz API, by HTTP status.",
        labels=["status"],
    )
    for status, by_le in sorted(_latency_buckets(raw).items()):
        cumulative, buckets = 0.0, []
        for bound in keys.LATENCY_BUCKETS:
            cumulative += by_le.get(keys.bucket_label(bound), 0.0)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(by_le.values())))
        family.add_metric(
            [status], buckets, float(raw.get(keys.counter(keys.Counter.LATENCY_SUM, status), 0))
        )
    return family


def _latency_buckets(raw: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Attempts by status and bucket label, as ``finish.lua`` counts them (one field per attempt).

    Each attempt is counted once, in its bucket: the histogram's count and the attempts total are
    their sums (a field per total would cost every attempt two more commands in Redis).
    """
    found: dict[str, dict[str, float]] = {}
    for field, label in _labelled(raw, keys.Counter.LATENCY_BUCKET):
        status, _, le = label.rpartition(keys.COUNTER_SEP)
        found.setdefault(status, {})[le] = float(raw[field])
    return found


def _confirmations(raw: Mapping[str, str]) -> Iterator[Metric]:
    """Lookups of stopped stops' recordings, their confirmations, and how long recordings ran on."""
    yield counter_metric(
        "recstop_recording_lookups",
        "Lookups of a stopped call's recordings in the Recordings API (each may read several pages).",
        float(raw.get(keys.Counter.LOOKUPS, 0)),
    )
    settled = CounterMetricFamily(
        "recstop_confirmations",
        "Stops whose recordings' confirmation settled: confirmed, unconfirmed (with its reason) or "
        "nothing_listed.",
        labels=["confirmation", "reason"],
    )
    for field, confirmation in _labelled(raw, keys.Counter.CONFIRMATIONS):
        if confirmation != Confirmation.UNCONFIRMED:
            settled.add_metric([confirmation, ""], float(raw[field]))
    for field, reason in _labelled(raw, keys.Counter.UNCONFIRMED):
        settled.add_metric([Confirmation.UNCONFIRMED, reason], float(raw[field]))
    yield settled
    ended = HistogramMetricFamily(
        "recstop_recording_ended_after_seconds",
        "How long a recording kept running after its stop was due, by its end as Vobiz reports it.",
    )
    cumulative, buckets = 0.0, []
    for bound in keys.ENDED_AFTER_BUCKETS:
        cumulative += float(
            raw.get(keys.counter(keys.Counter.ENDED_AFTER_BUCKET, keys.bucket_label(bound)), 0)
        )
        buckets.append((str(bound), cumulative))
    buckets.append(("+Inf", float(raw.get(keys.Counter.ENDED_AFTER_COUNT, 0))))
    ended.add_metric([], buckets, float(raw.get(keys.Counter.ENDED_AFTER_SUM, 0)))
    yield ended


def _labelled(raw: Mapping[str, str], family: keys.Counter) -> list[tuple[str, str]]:
    """The fields of one counter family, with their label, in label order."""
    found = ((field, keys.counter_label(field, family)) for field in raw)
    return sorted(((field, label) for field, label in found if label is not None), key=lambda pair: pair[1])
