"""Reliable fetch against a real Redis: moves, acks, heartbeats and reaping, exactly once."""

from __future__ import annotations

import threading

import pytest

from recstop.worker.broker.heartbeat import Heartbeat
from recstop.worker.state import keys
from recstop.worker.state.inflight import FETCH, Inflight, inflight_messages, sources_key

pytestmark = pytest.mark.integration

LANES = [keys.URGENT_QUEUE, keys.QUEUE]


@pytest.fixture
def client(redis_server):
    """A raw (bytes) client, as kombu's."""
    return redis_server.client(decode=False)


def consumer(client, name, timeout_s=5.0):
    """One consumer's protocol on ``client`` (its fetch script loaded, as the transport does)."""
    inflight = Inflight(client, name, timeout_s=timeout_s)
    inflight.scripts.load(FETCH)
    return inflight


def fetch(inflight, count):
    """Run fetch.lua as the transport sends it, and parse the reply."""
    reply = inflight.client.execute_command(*inflight.fetch_command(LANES, count))
    return inflight.parse_fetched(reply, LANES)


def push(client, lane, *messages):
    """Publish as kombu does: LPUSH, taken from the right."""
    for message in messages:
        client.lpush(lane, message)


def total(client):
    """Every message anywhere: in the lanes and in every in-flight list."""
    return sum(client.llen(lane) for lane in LANES) + len(inflight_messages(client))


def test_fetch_takes_the_urgent_lane_first_and_at_most_count(client):
    """Urgent before routine, oldest first, never more than asked; nothing leaves Redis."""
    push(client, keys.QUEUE, b"r1", b"r2", b"r3")
    push(client, keys.URGENT_QUEUE, b"u1", b"u2")
    a = consumer(client, "a")
    got = fetch(a, 3)
    assert [(f.source, f.message) for f in got] == [
        (keys.URGENT_QUEUE, b"u1"),
        (keys.URGENT_QUEUE, b"u2"),
        (keys.QUEUE, b"r1"),
    ]
    assert total(client) == 5
    assert client.lrange(a.inflight(keys.QUEUE), 0, -1) == [b"r1"]
    assert [f.message for f in fetch(a, 10)] == [b"r2", b"r3"]
    assert fetch(a, 10) == []


def test_ack_removes_exactly_the_message_and_requeue_puts_it_back(client):
    """An ack drops one in-flight item; a requeue moves it to the lane's head or tail, once."""
    push(client, keys.QUEUE, b"m1", b"m2", b"m3")
    a = consumer(client, "a")
    m1, m2 = fetch(a, 2)
    assert a.ack(m1) is True
    assert a.ack(m1) is False
    assert a.requeue(m2, head=True) is True
    assert a.requeue(m2, head=True) is False
    assert client.lrange(keys.QUEUE, 0, -1) == [b"m3", b"m2"]  # m2 is next again
    (m2_again,) = fetch(a, 1)
    assert a.requeue(m2_again, head=False) is True
    assert client.lrange(keys.QUEUE, 0, -1) == [b"m2", b"m3"]  # m2 is last now
    assert total(client) == 2


def test_a_silent_consumer_is_reaped_once_back_to_the_head_in_order(client):
    """A consumer that stopped beating has its messages put back at the head, oldest first."""
    push(client, keys.QUEUE, b"m1", b"m2", b"m3", b"m4")
    dead, live = consumer(client, "dead", timeout_s=1.0), consumer(client, "live", timeout_s=1.0)
    dead.beat()
    held = fetch(dead, 3)
    client.zadd(keys.CONSUMERS, {"dead": 1.0})  # its last heartbeat, long ago
    beat = Heartbeat(live, LANES, interval_s=0.1)
    assert beat.beat_once() == 3
    assert client.lrange(keys.QUEUE, 0, -1) == [b"m4", b"m3", b"m2", b"m1"]  # m1 is next
    assert client.zscore(keys.CONSUMERS, "dead") is None
    assert beat.beat_once() == 0
    assert [dead.ack(f) for f in held] == [False, False, False]  # too late: already handed back
    assert total(client) == 4


def test_many_reapers_at_once_hand_each_message_back_exactly_once(redis_server):
    """Eight live consumers reaping the same dead one at the same moment requeue each message once."""
    client = redis_server.client(decode=False)
    push(client, keys.QUEUE, *(f"m{i}".encode() for i in range(50)))
    dead = consumer(client, "dead")
    fetch(dead, 50)
    client.zadd(keys.CONSUMERS, {"dead": 1.0})
    reapers = [
        Heartbeat(consumer(redis_server.client(decode=False), f"live{i}"), LANES, interval_s=1)
        for i in range(8)
    ]
    barrier = threading.Barrier(len(reapers))
    counts: list[int] = []

    def reap(beat):
        barrier.wait(5)
        counts.append(beat.beat_once())

    threads = [threading.Thread(target=reap, args=(beat,)) for beat in reapers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(counts) == [0] * 7 + [50]
    assert client.llen(keys.QUEUE) == 50
    assert sorted(client.lrange(keys.QUEUE, 0, -1)) == sorted(f"m{i}".encode() for i in range(50))


def test_a_consumer_that_keeps_beating_is_never_reaped(client):
    """However long it holds a message, a beating consumer keeps it: reapers find nothing."""
    push(client, keys.QUEUE, b"slow")
    slow, other = consumer(client, "slow", timeout_s=0.3), consumer(client, "other", timeout_s=0.3)
    beating = Heartbeat(slow, LANES, interval_s=0.05).start()
    try:
        fetch(slow, 1)
        reaper = Heartbeat(other, LANES, interval_s=0.05)
        stop = threading.Event()
        # Reap for three timeouts while the slow consumer holds its message.
        requeued = 0
        for _ in range(18):
            requeued += reaper.beat_once()
            stop.wait(0.05)
        assert requeued == 0
        assert client.lrange(slow.inflight(keys.QUEUE), 0, -1) == [b"slow"]
    finally:
        beating.stop()


def test_release_hands_back_everything_and_leaves_the_consumer_set(client):
    """At shutdown a consumer puts what it holds back at the head and removes its heartbeat."""
    push(client, keys.URGENT_QUEUE, b"u1")
    push(client, keys.QUEUE, b"r1", b"r2")
    a = consumer(client, "a")
    a.beat()
    fetch(a, 3)
    assert a.release(LANES) == 3
    assert client.lrange(keys.URGENT_QUEUE, 0, -1) == [b"u1"]
    assert client.lrange(keys.QUEUE, 0, -1) == [b"r2", b"r1"]
    assert client.zscore(keys.CONSUMERS, "a") is None
    assert inflight_messages(client) == []


def test_a_silent_consumer_of_any_queue_is_reaped_through_its_sources_set(client):
    """The fetch names each list it moves from; a reaper finds them all, whatever the queues are called."""
    videos, urgent_videos = "videos", f"videos{keys.PRIORITY_SEP}3"
    push(client, videos, b"v1", b"v2")
    push(client, urgent_videos, b"p1")
    dead = consumer(client, "dead", timeout_s=1.0)
    dead.beat()
    assert len(dead.fetch([urgent_videos, videos], 3)) == 3
    assert client.smembers(sources_key("dead")) == {videos.encode(), urgent_videos.encode()}
    client.zadd(keys.CONSUMERS, {"dead": 1.0})
    assert Heartbeat(consumer(client, "live", timeout_s=1.0), LANES, interval_s=1).beat_once() == 3
    assert client.lrange(videos, 0, -1) == [b"v2", b"v1"]  # v1 is next again
    assert client.lrange(urgent_videos, 0, -1) == [b"p1"]
    assert (client.exists(sources_key("dead")), client.zscore(keys.CONSUMERS, "dead")) == (0, None)
    assert inflight_messages(client) == []


def test_a_queue_consumed_without_acks_is_popped_into_no_inflight_list(client):
    """Popped sources (no_ack) lose their message at once, as kombu's BRPOP, and are named nowhere."""
    push(client, "replies", b"r1")
    push(client, keys.QUEUE, b"m1")
    a = consumer(client, "a")
    got = a.fetch(["replies", keys.QUEUE], 2, popped={"replies"})
    assert [(f.message, f.popped) for f in got] == [(b"r1", True), (b"m1", False)]
    assert inflight_messages(client) == [b"m1"]
    assert client.smembers(sources_key("a")) == {keys.QUEUE.encode()}


def test_every_key_carries_kombus_global_keyprefix(client):
    """With a key prefix, the lists, the in-flight lists, the sources set and the heartbeats all carry it."""
    push(client, "tenant:jobs", b"m1")
    a = Inflight(client, "a", timeout_s=1.0, prefix="tenant:")
    a.beat()
    (m1,) = a.fetch(["jobs"], 1)
    assert (m1.source, m1.inflight) == ("tenant:jobs", "tenant:" + keys.inflight_key("a", "jobs"))
    assert sorted(client.keys("*")) == sorted(
        [m1.inflight.encode(), b"tenant:" + sources_key("a").encode(), b"tenant:" + keys.CONSUMERS.encode()]
    )
    client.zadd("tenant:" + keys.CONSUMERS, {"a": 1.0})
    reaper = Inflight(client, "b", timeout_s=1.0, prefix="tenant:")
    assert Heartbeat(reaper, [], interval_s=1).beat_once() == 1
    assert client.lrange("tenant:jobs", 0, -1) == [b"m1"]


def test_a_requeue_can_put_back_the_message_marked(client):
    """A requeue removes exactly the fetched bytes and pushes what it is given in their place."""
    push(client, keys.QUEUE, b"m1")
    a = consumer(client, "a")
    (m1,) = fetch(a, 1)
    assert a.requeue(m1, head=True, back=b"m1-marked") is True
    assert client.lrange(keys.QUEUE, 0, -1) == [b"m1-marked"]
    assert a.requeue(m1, head=True, back=b"again") is False
    assert inflight_messages(client) == []
