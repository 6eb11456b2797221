"""Scenario: the shipped Sentinel layout loses a replica, then its master, each during a burst of enqueues.

The layout of ``deploy/`` (docker-compose.yml, kubernetes/redis.yaml): a master, two replicas (AOF on)
and three sentinels with the timings of ``deploy/sentinel.conf``; producers and workers on the
``sentinel://`` URL, every enqueue waiting until one replica holds it (``RECSTOP_REDIS_WAIT_REPLICAS``
as shipped: :data:`LAYOUT`). Part B SIGKILLs a replica during a burst: the other one acknowledges,
so no enqueue is refused; the replica is restarted and rejoins. Part A SIGKILLs the master during a
burst: enqueues are refused until a replica is promoted and the other follows it, then accepted
again. Every stop the producer acknowledged, in either part, must be carried out: 0 lost.

Every node loads recstop's ACL users as the shipped layout does: the replicas follow as ``replica``,
the sentinels watch as ``sentinel``, workers connect as ``worker`` and producers as ``producer``.
Nothing may be refused: every node's ``ACL LOG`` is read before each SIGKILL (a killed node's log
dies with it) and at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Final

import redis

from chaos.inflight import wait_drained
from chaos.load import Load, LoadResult, new_calls
from chaos.overrides import Overrides
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import deletes_by_call, reconcile
from harness.sentinel import MASTER_NAME, SentinelCluster, shipped_replication_args, shipped_timings

#: What the shipped layout sets beyond the defaults (compose's x-recstop-env, the ConfigMap):
#: ``tests/unit/test_deploy.py`` holds both deploy files to these values.
LAYOUT: Final = Overrides(
    {"RECSTOP_REDIS_WAIT_REPLICAS": "1", "RECSTOP_REDIS_SENTINEL_MASTER": MASTER_NAME},
    "the shipped Sentinel layout (deploy/): 2 replicas, 3 sentinels, every enqueue WAITs for 1 replica",
)
REPLICAS: Final = 2
#: The bursts run at this share of the profile's rate: the stops are spread over a few seconds.
BURST_SHARE: Final = 0.5
#: A fault strikes when this share of a burst's stops has been handed out.
FAULT_AT: Final = 0.4
#: How long a failover may take past the sentinels' down-after time (the vote, the promotion).
FAILOVER_MARGIN_S: Final = 10.0
#: How long the lanes and in-flight lists may take to empty once every stop is terminal.
DRAIN_S: Final = 20.0


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Kill a replica during one burst, the master during the next; nothing acknowledged is lost."""
    started = time.monotonic()
    timings = shipped_timings()
    ha_dir = Path(tempfile.mkdtemp(prefix="recstop-chaos-sentinel-"))
    cluster = SentinelCluster(
        ha_dir, replicas=REPLICAS, timings=timings, extra_args=shipped_replication_args(), users=True
    )
    try:
        with Stack(
            "sentinel_failover",
            overrides=LAYOUT,
            keep_dir=keep_dir,
            redis_url=cluster.role_url,
            watch_url=cluster.master.url,
        ) as stack:
            cluster.start(settle=False)  # the sentinels learn of each other while the workers start
            stack.sandbox.client.set_faults([], latency_ms=20)
            workers = stack.start_workers(2)
            cluster.wait_settled()
            rate_per_s = profile.rate_per_s * BURST_SHARE
            part_b = _replica_loss(stack, cluster, profile.sentinel_stops, rate_per_s)
            part_a = _master_loss(stack, cluster, profile.sentinel_stops, rate_per_s)
            accepted = [a.call_uuid for a in (*part_b.sent.accepted, *part_a.sent.accepted)]
            tally = reconcile(stack.producer(), stack.sandbox.client, accepted, timeout_s=180)
            deletes = [e["time"] for es in deletes_by_call(stack.sandbox.client).values() for e in es]
            alive = all(w.alive for w in workers)
            master = _client(cluster, cluster.master_port())
            leftovers = wait_drained(master, timeout_s=DRAIN_S)
            master.close()
        denials = {*part_b.denials, *part_a.denials, *cluster.acl_denials()}  # the stack has stopped
    finally:
        cluster.stop()
        if keep_dir is not None:
            shutil.copytree(ha_dir, keep_dir / "sentinel_failover" / "ha", dirs_exist_ok=True)
        shutil.rmtree(ha_dir, ignore_errors=True)
    result = ScenarioResult("Sentinel: replica SIGKILL, then master SIGKILL", tally)
    result.note_overrides(LAYOUT)
    figures: dict[str, object] = {
        **part_b.figures(),
        **part_a.figures(),
        "sentinel_timings_ms": {
            "down_after": timings.down_after_ms,
            "failover_timeout": timings.failover_timeout_ms,
        },
    }
    worker_s = min((t - part_a.promoted_at for t in deletes if t >= part_a.promoted_at), default=None)
    figures["worker_first_delete_after_promotion_s"] = None if worker_s is None else round(worker_s, 2)
    last_s = max((r.finished_at or 0.0 for r in tally.records.values()), default=0.0) - part_a.crashed_at
    result.recovery_s = last_s if tally.records else None
    result.recovery_note = "master SIGKILL to the last stop done"
    result.figures.update(figures)
    sent = len(part_b.calls) + len(part_a.calls)
    result.check_accepted(len(accepted), sent)
    result.check_all_stopped()
    result.check(
        "a replica's loss refused no enqueue",
        part_b.sent.refused == 0 and not part_b.sent.errors,
        f"{part_b.sent.refused} refused while replica {part_b.victim} was down",
    )
    bound_s = timings.down_after_ms / 1000 + FAILOVER_MARGIN_S
    result.check(
        "the sentinels promoted a replica",
        part_a.failover_s <= bound_s,
        f"{part_a.failover_s:.2f} s after the SIGKILL (bound {bound_s:g} s)",
    )
    refused_s = part_a.refused_s
    result.check(
        "enqueues accepted again after the failover",
        refused_s is not None and refused_s <= bound_s + FAILOVER_MARGIN_S,
        f"refused for {refused_s} s ({part_a.sent.refused} refusals), first acceptance after "
        f"{part_a.resumed_s} s",
    )
    result.check(
        "the other replica follows the new master",
        part_a.followers >= 1,
        f"{part_a.followers} replica(s) in sync with it",
    )
    result.check(
        "workers carried on through the new master",
        alive and worker_s is not None,
        f"first DELETE {figures['worker_first_delete_after_promotion_s']} s after the promotion",
    )
    result.check("lanes and in-flight lists drained", leftovers == 0, f"{leftovers} left")
    result.check(
        "Redis refused no part (every node's ACL LOG)",
        not denials,
        f"{len(denials)} refusal(s): {sorted(denials)[:3]}",
    )
    result.elapsed_s = time.monotonic() - started
    return result


class _Part:
    """One burst and its fault: what was sent, and when things happened (epoch seconds)."""

    def __init__(self, calls: list[str], sent: LoadResult, fault_at: float) -> None:
        self.calls = calls
        self.sent = sent
        self.crashed_at = fault_at
        self.victim = ""
        self.promoted_at = fault_at
        self.followers = 0
        self.failover_s = 0.0
        #: What the nodes refused until the fault (``ACL LOG``, read before the SIGKILL).
        self.denials: list[str] = []

    @property
    def refused_s(self) -> float | None:
        """From the first refusal after the fault to the first acceptance after it (0.0: none refused)."""
        window = self.sent.refused_window(self.crashed_at)
        return 0.0 if window is None else round(window[1] - window[0], 2)

    @property
    def resumed_s(self) -> float | None:
        """From the fault to the first acceptance after the first refusal (or after the fault)."""
        window = self.sent.refused_window(self.crashed_at)
        after = self.crashed_at if window is None else window[0]
        first = next((t for t in self.sent.accept_times() if t > after), None)
        return None if first is None else round(first - self.crashed_at, 2)

    def figures(self) -> dict[str, object]:
        """The part's figures, for the JSON report."""
        common: dict[str, object] = {
            "stops": len(self.calls),
            "accepted": len(self.sent.accepted),
            "refused_enqueues": self.sent.refused,
        }
        if not self.failover_s:
            return {"replica_kill": common}
        return {
            "master_kill": common
            | {
                "failover_s": round(self.failover_s, 2),
                "enqueues_refused_for_s": self.refused_s,
                "first_accept_after_kill_s": self.resumed_s,
            }
        }


def _replica_loss(stack: Stack, cluster: SentinelCluster, stops: int, rate_per_s: float) -> _Part:
    """Part B: SIGKILL a replica mid-burst; afterwards start it again and wait until it has caught up."""
    calls = new_calls(stops)
    load = Load(stack.producer, calls, rate_per_s=rate_per_s, give_up_s=60).start()
    load.wait_progress(int(len(calls) * FAULT_AT))
    victim = cluster.replicas[-1]
    denials = cluster.acl_denials()
    victim.crash()
    killed_at = time.time()
    part = _Part(calls, load.wait(timeout_s=120), killed_at)
    part.victim = str(victim.port)
    part.denials = denials
    cluster.restart_as_replica(victim)
    return part


def _master_loss(stack: Stack, cluster: SentinelCluster, stops: int, rate_per_s: float) -> _Part:
    """Part A: SIGKILL the master mid-burst; measure the failover and how long enqueues were refused."""
    calls = new_calls(stops)
    load = Load(stack.producer, calls, rate_per_s=rate_per_s, give_up_s=120).start()
    load.wait_progress(int(len(calls) * FAULT_AT))
    old = cluster.master
    denials = cluster.acl_denials()
    old.crash()
    crashed_at = time.time()
    promoted_at = cluster.wait_failover(old.port)
    part = _Part(calls, load.wait(timeout_s=180), crashed_at)
    part.promoted_at = promoted_at
    part.failover_s = promoted_at - crashed_at
    part.followers = _followers(cluster, cluster.master_port())
    part.denials = denials
    return part


def _client(cluster: SentinelCluster, port: int | None) -> redis.Redis:
    if port is None:
        raise AssertionError("no master the sentinels agree on")
    return cluster.node_client(port)


def _followers(cluster: SentinelCluster, port: int | None) -> int:
    """Replicas whose link to the master at ``port`` is up (``INFO replication`` of the master)."""
    client = _client(cluster, port)
    with contextlib.closing(client):
        info = client.info("replication")
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
