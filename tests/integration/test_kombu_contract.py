"""recstop's transport against kombu's contract: kombu's own Redis suite, and what that suite leaves out.

kombu's suite (``t/integration/test_redis.py`` of the installed kombu's source distribution,
fetched once into ``.run/kombu-suite/``) runs in a pytest process of its own against private
redis-servers (``harness.kombusuite``). Every test passes, except those that set a transport
option recstop refuses on purpose (docs/architecture.md, "Where recstop differs from kombu"): they
fail with that refusal, which is what they must do.
"""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import closing

import kombu
import pytest
import redis
from support import ROOT, final, in_flight, wait_for

from harness.kombusuite import run_suite
from recstop.worker.broker.options import REFUSED, UnsupportedTransportOptionError
from recstop.worker.broker.transport import Transport
from recstop.worker.run.executor import Executor
from recstop.worker.state import keys
from recstop.worker.state.inflight import Inflight, sources_key

pytestmark = pytest.mark.integration

#: kombu's test classes that configure its ack emulation (``visibility_timeout`` and the unacked
#: keys), which reliable fetch replaces: each of their tests fails with recstop's refusal.
REFUSED_CLASSES = (
    "test_RedisRestoreVisible",
    "test_RedisRestoreBindingLookupFailure",
    "test_RedisRestoreAtShutdown",
)
REFUSAL = "UnsupportedTransportOptionError: recstop's Redis transport does not support the transport option"


def test_kombus_redis_suite_passes_against_recstops_transport(tmp_path):
    """Kombu's Redis suite passes on recstop's transport; tests of refused options fail with the refusal."""
    run = run_suite(tmp_path)
    summary = run.output.strip().splitlines()[-1]
    counted = sum(int(n) for n, _ in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary))
    assert len(run.outcomes) == counted > 100, run.output[-3000:]
    refused = {test for test in run.outcomes if any(f"::{name}::" in test for name in REFUSED_CLASSES)}
    assert refused, "no test of the refused classes ran"
    wrong = {
        test: result.message
        for test, result in run.outcomes.items()
        if (result.outcome, test in refused) != ("passed", False)
        and not (test in refused and result.outcome == "failed" and REFUSAL in result.message)
    }
    assert wrong == {}
    print(f"kombu's suite: {len(run.outcomes)} tests in {run.seconds:.1f} s")


@pytest.fixture
def url(redis_server):
    """The private redis-server's URL."""
    return redis_server.url


def connect(url, **options):
    """A kombu connection on recstop's transport."""
    return kombu.Connection(url, transport=Transport, transport_options=options)


@pytest.mark.parametrize("option", sorted(REFUSED))
def test_a_refused_option_fails_at_channel_creation_naming_the_option(url, option):
    """Kombu's refused options fail before any declare or consume, naming the option and the reason."""
    with (
        connect(url, **{option: False}) as connection,
        pytest.raises(UnsupportedTransportOptionError) as raised,
    ):
        connection.channel()
    assert raised.value.option == option
    assert f"'{option}': {REFUSED[option]}" in str(raised.value)


def test_ack_emulation_on_is_what_recstop_does_and_is_accepted(url):
    """``ack_emulation=True`` (kombu's default) asks for acks, which reliable fetch gives."""
    with connect(url, ack_emulation=True) as connection, closing(connection.SimpleQueue("q")) as queue:
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}


def test_a_get_holds_the_message_in_redis_and_a_requeue_marks_it_redelivered(url, redis_server):
    """``basic_get`` moves the message into the in-flight list; a requeue brings it back marked."""
    client = redis_server.client(decode=False)
    with connect(url) as connection, closing(connection.SimpleQueue("jobs")) as queue:
        queue.put({"n": 1}, headers={"k": "v"})
        message = queue.get_nowait()
        assert (message.headers, client.llen("jobs"), in_flight(client)) == ({"k": "v"}, 0, 1)
        message.requeue()
        assert (client.llen("jobs"), in_flight(client)) == (1, 0)
        again = queue.get_nowait()
        assert again.headers == {"k": "v", "redelivered": True}
        assert again.delivery_info["redelivered"] is True
        again.ack()
        assert (client.llen("jobs"), in_flight(client)) == (0, 0)


def test_a_killed_consumer_of_any_queue_gets_its_messages_back(url, redis_server):
    """A kombu consumer of a queue recstop does not know, SIGKILLed holding a message, loses nothing."""
    client = redis_server.client(decode=False)
    with connect(url) as connection, closing(connection.SimpleQueue("videos")) as queue:
        queue.put({"n": 1})
    holder = subprocess.Popen(  # takes the message, says so, and waits to be killed
        [sys.executable, "-c", HOLDER, url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert (client.llen("videos"), in_flight(client)) == (0, 1)
        holder.kill()
        holder.wait(10)
    finally:
        holder.kill()
    reaper = connect(url, consumer_timeout_s=0.5, consumer_heartbeat_s=0.1)
    with reaper, closing(reaper.SimpleQueue("videos")) as queue:
        message = wait_for(lambda: queue_get(queue), timeout_s=10, what="the killed consumer's message")
        assert message.payload == {"n": 1}
        message.ack()
    assert in_flight(client) == 0
    assert client.keys(f"{keys.PREFIX}:sources:*") == []


HOLDER = """
import sys, time, kombu
from recstop.worker.broker.transport import Transport
from recstop.worker.run.executor import Executor
connection = kombu.Connection(sys.argv[1], transport=Transport)
message = connection.SimpleQueue("videos").get(timeout=5)
print("held", flush=True)
time.sleep(60)
"""


def queue_get(queue):
    """The next message of a SimpleQueue, or None."""
    try:
        return queue.get_nowait()
    except queue.Empty:
        return None


def test_the_global_keyprefix_prefixes_every_key_of_reliable_fetch(url, redis_server):
    """With ``global_keyprefix``, the in-flight list, the sources set and the heartbeats carry it too."""
    client = redis_server.client(decode=True)
    with (
        connect(url, global_keyprefix="tenant:") as connection,
        closing(connection.SimpleQueue("q")) as queue,
    ):
        queue.put({"n": 1})
        message = queue.get_nowait()
        names = set(client.keys("*"))
        consumer = message.delivery_tag.rsplit(":", 1)[0]
        assert {
            "tenant:" + keys.inflight_key(consumer, "q"),
            "tenant:" + sources_key(consumer),
            "tenant:" + keys.CONSUMERS,
        } <= names
        assert [name for name in names if not name.startswith("tenant:")] == []
        message.ack()
    assert client.zscore("tenant:" + keys.CONSUMERS, consumer) is None


def test_publishes_that_wait_for_replicas_are_never_batched(url):
    """With ``wait_replicas``, a batch publishes each message at once and waits: no replica, no publish."""
    with connect(url, wait_replicas=1, wait_timeout_ms=50) as connection:
        producer = connection.Producer()
        assert producer.supports_batch_publish is False
        with producer.batch(), pytest.raises(redis.ConnectionError, match="replica"):
            producer.publish({"n": 1}, routing_key="q", declare=[kombu.Queue("q")])


def test_the_task_acks_its_message_with_the_outcome_through_its_delivery_tag(
    start_worker, producer, call, monkeypatch
):
    """The task finds its in-flight entry by the message's delivery tag: no header is added for it."""
    acks = []
    run = Executor.run

    def recording(self, request, task_id, **options):
        acks.append(options.get("ack"))
        return run(self, request, task_id, **options)

    monkeypatch.setattr(Executor, "run", recording)
    start_worker()
    call_uuid = call()
    task_id = producer.stop_recording(call_uuid).task_id
    assert final(producer, call_uuid).state == "stopped"
    (ack,) = acks
    assert ack is not None
    assert task_id.encode() in ack.message
    assert ack.inflight == keys.inflight_key(ack.consumer, keys.QUEUE)


def test_a_celery_worker_fetches_its_free_prefetch_credit_while_drain_events_takes_one(
    start_worker, monkeypatch, url
):
    """An event loop's fetch asks for the whole free credit (8 threads); kombu's drain_events for one."""
    counts: dict[str, list[int]] = {}
    command = Inflight.fetch_command

    def recording(self, sources, count, popped=()):
        counts.setdefault(sources[-1].split(keys.PRIORITY_SEP)[0], []).append(count)
        return command(self, sources, count, popped)

    monkeypatch.setattr(Inflight, "fetch_command", recording)
    start_worker(RECSTOP_CONCURRENCY="8")
    wait_for(lambda: counts.get(keys.QUEUE), what="the worker's first fetch")
    assert counts[keys.QUEUE][0] == 8
    with connect(url) as connection, closing(connection.SimpleQueue("q")) as queue:
        queue.put({"n": 1})
        queue.put({"n": 2})
        assert queue.get(timeout=5).payload == {"n": 1}
    assert counts["q"] == [1]
