"""``python -m bench.producer_profile``: where one single enqueue's time goes, and the producer's CPU.

Starts the bench stack's Redis (and sandbox), warms one ``Producer`` up, then from one thread:

1. ``--stops`` enqueues through ``stop_recording``: stops/s, p50/p99, the producer's CPU per enqueue
   (``time.process_time``: user + system of this process) and Redis' (``INFO cpu``);
2. ``--stops`` more, the same steps ``stop_recording`` takes, each timed: the plan (validation,
   the task id, the message and its ``task-sent`` event: ``StopPlan.one``), the argument's JSON,
   the ``EVALSHA`` (redis-py, the round trip and the script), the reply's decoding, the handles;
   and Redis' own time per command (``INFO commandstats``) over those calls;
3. one bulk ``stop_recordings`` of ``--bulk`` stops: stops/s and the producer's CPU per stop.

Compare versions in alternating rounds: the machine's other work moves single figures by 10-20%.
"""

from __future__ import annotations

import argparse
import time

from redis import Redis

from bench.scenarios import call_uuids
from bench.stack import BenchStack
from bench.stats import summary_ms
from recstop.producers import Producer
from recstop.producers.plan import handles
from recstop.worker.state.arguments import encode
from recstop.worker.state.enqueue import ENQUEUE
from recstop.worker.state.scripts import sha1

WARM_UP = 500


def main() -> None:
    """Parse the arguments, run the three measurements, print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--stops", type=int, default=10_000)
    parser.add_argument("--bulk", type=int, default=20_000)
    options = parser.parse_args()
    with BenchStack("producer-profile") as stack:
        producer = stack.producer()
        client = stack.client(decode=True)
        try:
            for call in call_uuids(WARM_UP):
                producer.stop_recording(call)
            _single(producer, client, options.stops)
            _split(producer, client, options.stops)
            _bulk(producer, options.bulk)
        finally:
            client.close()


def _redis_cpu_s(client: Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def _single(producer: Producer, client: Redis, count: int) -> None:
    latencies = []
    redis_before, cpu_before, started = _redis_cpu_s(client), time.process_time(), time.perf_counter()
    for call in call_uuids(count):
        began = time.perf_counter()
        producer.stop_recording(call)
        latencies.append(time.perf_counter() - began)
    wall = time.perf_counter() - started
    cpu, redis_cpu = time.process_time() - cpu_before, _redis_cpu_s(client) - redis_before
    ms = summary_ms(latencies)
    print(
        f"single enqueues: {count / wall:,.0f}/s, p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms; "
        f"CPU per enqueue: producer {cpu / count * 1e6:.0f} us, Redis {redis_cpu / count * 1e6:.0f} us"
    )


def _split(producer: Producer, client: Redis, count: int) -> None:
    plan, redis, sha = producer.plan, producer.redis, sha1(ENQUEUE.name)
    spent = dict.fromkeys(
        ("plan (StopPlan.one)", "argument JSON", "EVALSHA", "reply decoding", "handles"), 0.0
    )
    client.config_resetstat()
    started = time.perf_counter()
    for call in call_uuids(count):
        marks = [time.perf_counter()]
        request, prepared = plan.one(
            call, None, auth_id=None, delay=None, at=None, request_id=None, not_after=None, urgent=False
        )
        marks.append(time.perf_counter())
        argv = (*prepared.keys, encode(prepared.args), *prepared.messages)
        marks.append(time.perf_counter())
        raw = redis.evalsha(sha, len(prepared.keys), *argv)
        marks.append(time.perf_counter())
        replies = ENQUEUE.parse(raw)
        marks.append(time.perf_counter())
        handles([request], replies)
        marks.append(time.perf_counter())
        for name, began, ended in zip(spent, marks, marks[1:], strict=False):
            spent[name] += ended - began
    total = time.perf_counter() - started
    print(f"one enqueue, step by step: {total / count * 1e6:.1f} us ({count / total:,.0f}/s)")
    for name, seconds in spent.items():
        print(f"  {name:22s} {seconds / count * 1e6:7.1f} us")
    stats = client.info("commandstats")
    print("  Redis' time per enqueue, by command (INFO commandstats):")
    for key, value in sorted(stats.items(), key=lambda item: -float(item[1]["usec"])):
        name = key.removeprefix("cmdstat_")
        if name.startswith("config"):
            continue
        print(
            f"    {name:10s} {float(value['usec']) / count:6.1f} us ({int(value['calls']) / count:.2f} calls)"
        )


def _bulk(producer: Producer, count: int) -> None:
    calls = call_uuids(count)
    cpu_before, started = time.process_time(), time.perf_counter()
    producer.stop_recordings(calls)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    print(f"bulk stop_recordings: {count / wall:,.0f}/s; producer CPU per stop {cpu / count * 1e6:.1f} us")


if __name__ == "__main__":
    main()
