"""Redis HA on loopback: a master, one replica and three sentinels, each in its own directory."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import redis

from harness.procs import RedisServer, free_port, redis_server_binary, terminate, wait_for

MASTER_NAME: Final = "mymaster"
#: Sentinel timings of the tests: a master is down after 1 s without an answer, a failover is
#: abandoned (and retried) after 5 s.
DOWN_AFTER_MS: Final = 1000
FAILOVER_TIMEOUT_MS: Final = 5000


class SentinelServer:
    """One ``redis-server <conf> --sentinel`` on a free port, with its own (rewritable) config file."""

    def __init__(
        self, directory: Path, master_port: int, *, quorum: int = 2, master_name: str = MASTER_NAME
    ) -> None:
        self.directory = directory
        self.master_port = master_port
        self.quorum = quorum
        self.master_name = master_name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The sentinel.conf this sentinel starts from (it rewrites the file as it learns)."""
        name = self.master_name
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                "protected-mode no",
                f"dir {self.directory}",
                f"logfile {self.directory / 'sentinel.log'}",
                f"sentinel monitor {name} 127.0.0.1 {self.master_port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def start(self) -> SentinelServer:
        """Write the config, start the sentinel and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(self.config(), encoding="utf-8")
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        wait_for(lambda: _pings(client), timeout_s=10, what=f"sentinel on {self.port} to answer")
        return self

    def client(self) -> redis.Redis:
        """A plain client for this sentinel."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)

    def master_address(self) -> tuple[str, int] | None:
        """Where this sentinel says the master is (``SENTINEL GET-MASTER-ADDR-BY-NAME``)."""
        try:
            found = self.client().execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
        except redis.RedisError:
            return None
        return (str(found[0]), int(found[1])) if found else None

    def log_text(self) -> str:
        """The sentinel's log so far."""
        path = self.directory / "sentinel.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the sentinel, SIGKILL if it lingers."""
        terminate(self.proc)
        self.proc = None


class SentinelCluster:
    """A master (AOF on), one replica of it (AOF on) and three sentinels with quorum 2.

    ``url`` is kombu's Sentinel URL for producers and workers (``sentinel://h:p;sentinel://h:p;...``,
    with ``RECSTOP_REDIS_SENTINEL_MASTER`` = :data:`MASTER_NAME`).
    """

    def __init__(
        self,
        directory: Path,
        *,
        sentinels: int = 3,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.master = RedisServer(
            directory / "master", appendonly=True, appendfsync=appendfsync, extra_args=extra_args
        )
        self.replica = RedisServer(
            directory / "replica",
            appendonly=True,
            appendfsync=appendfsync,
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port), *extra_args],
        )
        self.sentinels = [
            SentinelServer(directory / f"sentinel{index + 1}", self.master.port) for index in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """The ``sentinel://`` broker URL naming every sentinel."""
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> SentinelCluster:
        """Start everything; return once the replica is in sync and every sentinel knows the whole set."""
        self.master.start()
        self.replica.start()
        wait_for(self._replica_in_sync, timeout_s=30, interval_s=0.1, what="the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(
            self._sentinels_settled, timeout_s=60, interval_s=0.2, what="the sentinels to see each other"
        )
        return self

    def _replica_in_sync(self) -> bool:
        try:
            info = self.replica.client().info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _sentinels_settled(self) -> bool:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            try:
                client = sentinel.client()
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)  # type: ignore[no-untyped-call]
                peers = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)  # type: ignore[no-untyped-call]
            except redis.RedisError:
                return False
            if len(replicas) < 1 or len(peers) < others:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as a majority of the sentinels report it, else None."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            address = sentinel.master_address()
            if address is not None:
                votes[address[1]] = votes.get(address[1], 0) + 1
        for port, count in votes.items():
            if count * 2 > len(self.sentinels):
                return port
        return None

    def wait_failover(self, old_port: int, timeout_s: float = 60.0) -> float:
        """Wait until a majority of sentinels names a new master that answers as one; return when (epoch)."""

        def promoted() -> float:  # 0.0: not yet
            port = self.master_port()
            if port is None or port == old_port:
                return 0.0
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
            try:
                role = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            except redis.RedisError:
                return 0.0
            finally:
                client.close()
            return time.time() if role and role[0] in (b"master", "master") else 0.0

        promoted_at: float = wait_for(
            promoted, timeout_s=timeout_s, interval_s=0.02, what="sentinels to fail over"
        )
        return promoted_at

    def stop(self) -> None:
        """Stop the sentinels first (no failover while tearing down), then the data nodes."""
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
