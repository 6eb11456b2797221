"""Scenario 7: throughput with 1, 2 and 4 worker processes; Redis operations, CPU and memory per stop."""

from __future__ import annotations

import time

from redis import Redis

from bench.profiles import Profile
from bench.report import Report, Row
from bench.scenarios import HARNESS_COMMANDS, call_uuids, recstop_drain
from bench.scenarios.burst import REDIS_CEILING
from bench.stack import BenchStack
from bench.stats import CommandLog
from recstop.worker.model.ids import new_id
from recstop.worker.model.validation import StopRequest
from recstop.worker.model.vocabulary import Origin, Outcome
from recstop.worker.state.attempts import AttemptRecord
from recstop.worker.state.enqueue import NewStop, accepted
from recstop.worker.state.keys import AUDIT_STREAM, QUEUE, call_key, result_key, task_key
from recstop.worker.state.store import StopStore

NAME = "7 scale-out"
#: Stops per enqueue script call while filling Redis for the memory figure.
CHUNK = 200
#: Bytes a finished stop kept before the one-key-per-call schema: 4 keys (status hash, attempts
#: list, call targets set, task index), measured the same way at 50,000 stops.
BEFORE_BYTES = 1_496
#: Requests per stop before reliable fetch (BRPOP, a MULTI/EXEC of unacked bookkeeping, a MULTI/EXEC
#: ack, two scripts, events), measured the same way with 300 stops (ci profile).
BEFORE_REQUESTS = 5.28


def run(report: Report, profile: Profile) -> None:
    """``scale_stops`` per run, API latency as in the burst, on 1, 2 and 4 processes; Redis per stop."""
    n = profile.scale_stops
    ceiling = None
    for processes in profile.scale_processes:
        drain = recstop_drain(
            f"scale-{processes}", n, latency_ms=profile.burst_latency_ms, processes=processes
        )
        report.details[f"scale_{processes}"] = {
            "rate": round(drain.rate, 1),
            "redis_ops_per_stop": round(drain.redis_commands, 1),
            "redis_cpu_us_per_stop": round(drain.redis_cpu_us, 1),
            "worker_cpu_us_per_stop": round(drain.worker_cpu_us, 1),
            "commands": dict(drain.commands),
        }
        if ceiling is None and drain.redis_cpu_us:
            ceiling = 1e6 / drain.redis_cpu_us
        report.add(
            Row(
                NAME,
                f"{processes} worker process(es), {n:,} stops",
                "stops/s",
                round(drain.rate, 1),
                note=f"Redis per stop: {drain.redis_cpu_us:.0f} us CPU, {drain.redis_commands:.1f} commands; "
                f"workers' CPU per stop {drain.worker_cpu_us:.0f} us",
            )
        )
    wire = requests_per_stop(profile)
    report.details["requests_per_stop"] = wire
    report.add(
        Row(
            NAME,
            f"requests sent to Redis per stop, all clients ({profile.scale_stops:,} stops, 1 worker)",
            "requests",
            wire["total"],
            note="script calls count once; "
            + ", ".join(f"{k} {v}" for k, v in wire.items() if k != "total" and v >= 0.05)
            + f"; before reliable fetch: {BEFORE_REQUESTS} (BRPOP, unacked bookkeeping, ack)",
            target="report",
            higher_is_better=False,
        )
    )
    kept = bytes_per_stop(profile.memory_stops)
    report.details["memory"] = kept
    report.add(
        Row(
            NAME,
            f"Redis memory a finished stop keeps for its retention ({profile.memory_stops:,} stops, "
            "the audit outbox drained as a sink does)",
            "bytes",
            kept["bytes_per_stop"],
            note=f"{kept['keys_per_stop']} keys per stop: record {kept['record_bytes']:,.0f} B, "
            f"task index {kept['index_bytes']:,.0f} B (revoke), Celery result {kept['result_bytes']:,.0f} B "
            f"(kept 1 day, not 7); outbox {kept['outbox_bytes_per_stop']:,.0f} B per stop until the sink "
            f"commits; before the one-key schema: {BEFORE_BYTES:,} bytes, 4 keys",
            target="report",
        )
    )
    report.add(
        Row(
            NAME,
            "one Redis core's ceiling, from its CPU per stop (1 process)",
            "stops/s",
            None if ceiling is None else round(ceiling),
            target=f">= {REDIS_CEILING:,}/s",
            met=None if ceiling is None else ceiling >= REDIS_CEILING,
        )
    )


def requests_per_stop(profile: Profile) -> dict[str, float]:
    """Requests every client (producer, worker: fetch, scripts, acks, events) sends to Redis per stop."""
    n = profile.scale_stops
    with BenchStack("requests", latency_ms=profile.burst_latency_ms) as stack:
        stack.start_workers(1)
        producer = stack.producer()
        ids = call_uuids(n)
        stack.feed.reset()
        log = CommandLog(stack.redis.url).start()
        producer.stop_recordings(ids)
        stack.feed.wait_ok(set(ids), timeout_s=max(120.0, n / 20))
        stack.wait_drained(timeout_s=60)
        counts = log.stop()
    # The harness's own polls for the drained queues (SCAN, LLEN) are not the stops' requests.
    counts = {k: v for k, v in counts.items() if k not in {*HARNESS_COMMANDS, "total"}}
    counts["total"] = sum(counts.values())
    return {command: round(count / n, 2) for command, count in counts.items()}


def bytes_per_stop(count: int) -> dict[str, float]:
    """What ``count`` finished stops keep in Redis, per stop: ``used_memory`` and key growth.

    The stops go through the store's own scripts (enqueue, begin, finish: stopped after one
    attempt), without workers or HTTP, so the figure is the records alone; their messages are
    dropped from the queue as a worker's ack would.
    """
    with BenchStack("memory") as stack:
        client = stack.client()
        settings = stack.producer().settings
        store = StopStore.for_settings(client, settings)
        before = _memory(client)
        requests = [StopRequest(call, auth_id=stack.env["VOBIZ_AUTH_ID"]) for call in call_uuids(count)]
        for start in range(0, count, CHUNK):
            chunk = requests[start : start + CHUNK]
            stops = [NewStop(r, new_id()) for r in chunk]
            replies = store.enqueues.run(store.enqueues.prepare(stops, urgent=False, origin=Origin.PYTHON))
            client.delete(QUEUE)
            for request, reply in zip(chunk, replies, strict=True):
                task_id = accepted(reply).task_id
                store.attempts.begin(request, task_id, lock_token=f"{task_id}:bench", lock_ttl_ms=30_000)
                attempt = {"attempt": 1, "at": time.time(), "outcome": Outcome.STOPPED, "http_status": 204}
                store.attempts.finish(
                    request,
                    task_id,
                    lock_token=f"{task_id}:bench",
                    outcome=Outcome.STOPPED,
                    record=AttemptRecord(
                        {**attempt, "duration_ms": 101.3}, http_status=204, started_at=time.time()
                    ),
                )
        outbox = int(client.memory_usage(AUDIT_STREAM) or 0)
        client.delete(AUDIT_STREAM)  # what the sink's trim does once it has committed them
        after = _memory(client)
        task_id = accepted(replies[-1]).task_id
        sizes = {
            "record_bytes": client.memory_usage(call_key(requests[-1].call_uuid)) or 0,
            "index_bytes": client.memory_usage(task_key(task_id)) or 0,
            "result_bytes": client.memory_usage(result_key(task_id)) or 0,
        }
    return {
        "stops": count,
        "bytes_per_stop": round((after[0] - before[0]) / count),
        "keys_per_stop": round((after[1] - before[1]) / count, 2),
        "outbox_bytes_per_stop": round(outbox / count),
        **sizes,
    }


def _memory(client: Redis) -> tuple[int, int]:
    """``used_memory`` and the number of keys."""
    return int(client.info("memory")["used_memory"]), int(client.dbsize())
