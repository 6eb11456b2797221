"""Redis HA on loopback: a master, its replicas and three sentinels, each in its own directory."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

import redis

from harness.procs import REDIS_PASSWORDS, RedisServer, free_port, redis_server_binary, terminate, wait_for
from recstop.worker.state.acl import Role

#: The master name the sentinels monitor, as deploy/sentinel.conf names it.
MASTER_NAME: Final = "recstop"
#: Sentinel timings of the tests: a master is down after 1 s without an answer, a failover is
#: abandoned (and retried) after 5 s.
DOWN_AFTER_MS: Final = 1000
FAILOVER_TIMEOUT_MS: Final = 5000
DEPLOY: Final = Path(__file__).resolve().parents[1] / "deploy"
#: The sentinel.conf the deploy files ship (its timings are the layout's, see ``shipped_timings``).
SHIPPED_SENTINEL_CONF: Final = DEPLOY / "sentinel.conf"
#: The redis.conf every node of the layout loads (its replication lines: ``shipped_replication_args``).
SHIPPED_REDIS_CONF: Final = DEPLOY / "redis.conf"


@dataclass(frozen=True)
class SentinelTimings:
    """How soon sentinels call a master down, and how long a failover may take before it is retried."""

    down_after_ms: int = DOWN_AFTER_MS
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS


def shipped_timings(path: Path = SHIPPED_SENTINEL_CONF) -> SentinelTimings:
    """The timings ``deploy/sentinel.conf`` ships (``down-after-milliseconds``, ``failover-timeout``)."""
    found: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "sentinel":  # noqa: PLR2004 - sentinel <option> <name> <value>
            found[words[1]] = int(words[3]) if words[3].isdigit() else 0
    return SentinelTimings(found["down-after-milliseconds"], found["failover-timeout"])


def shipped_replication_args(path: Path = SHIPPED_REDIS_CONF) -> list[str]:
    """The ``repl-*`` lines of ``deploy/redis.conf`` as redis-server arguments (``--repl-... value``)."""
    args: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("repl-"):
            name, value = line.split(None, 1)
            args += [f"--{name}", value.strip()]
    return args


class SentinelServer:
    """One ``redis-server <conf> --sentinel`` on a free port, with its own (rewritable) config file."""

    def __init__(
        self,
        directory: Path,
        master_port: int,
        *,
        quorum: int = 2,
        master_name: str = MASTER_NAME,
        timings: SentinelTimings = SentinelTimings(),
        users: bool = False,
    ) -> None:
        self.directory = directory
        #: With ``users`` it watches the nodes as the ACL user ``sentinel`` (``auth-user``, ``auth-pass``).
        self.users = users
        self.master_port = master_port
        self.quorum = quorum
        self.master_name = master_name
        self.timings = timings
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
                f"sentinel down-after-milliseconds {name} {self.timings.down_after_ms}",
                f"sentinel failover-timeout {name} {self.timings.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                *(
                    [
                        f"sentinel auth-user {name} {Role.SENTINEL.value}",
                        f"sentinel auth-pass {name} {REDIS_PASSWORDS[Role.SENTINEL]}",
                    ]
                    if self.users
                    else []
                ),
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


class LinkProxy:
    """A TCP relay in front of the master, to make its replica fall behind as over a bad network.

    Everything reaches the master through it (sentinels, clients and the replica alike: a replica
    pointed elsewhere than the address the sentinels know gets reconfigured by them). ``freeze``
    stops relaying the master's stream on replication connections only (those that sent ``PSYNC``
    or ``REPLCONF``): the master keeps acknowledging its clients and the stream piles up in the
    relay. ``cut`` then drops every connection with what it holds, as a partition does. (A
    SIGSTOPped replica does not lag on loopback: the kernel keeps receiving for it.)
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._generation = 0  # bumped by ``cut``: relays of older connections drop what they hold
        self._sockets: list[socket.socket] = []
        self._replication: set[int] = set()  # ids of downstream sockets that carry replication
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, name="link-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [downstream, upstream]
                generation = self._generation
            for source, sink, from_master in ((upstream, downstream, True), (downstream, upstream, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_master, generation), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_master: bool, generation: int) -> None:  # noqa: FBT001
        link = id(sink if from_master else source)
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not from_master and (b"PSYNC" in data.upper() or b"REPLCONF" in data.upper()):
                    self._replication.add(link)
                if from_master and link in self._replication:
                    self._flowing.wait()  # frozen: hold this chunk and read no more
                if generation != self._generation:
                    break  # cut while held: the chunk is dropped
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()

    def freeze(self) -> None:
        """Stop relaying the master's stream to the replica."""
        self._flowing.clear()

    def cut(self) -> None:
        """Drop every relayed connection and what it buffered; new ones are relayed again."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._generation += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._flowing.set()

    def close(self) -> None:
        """Stop listening and drop everything."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()


class SentinelCluster:
    """A master (AOF on), ``replicas`` replicas of it (AOF on) and three sentinels with quorum 2.

    ``url`` is kombu's Sentinel URL for producers and workers (``sentinel://h:p;sentinel://h:p;...``,
    with ``RECSTOP_REDIS_SENTINEL_MASTER`` = :data:`MASTER_NAME`). With ``users`` every node loads
    recstop's ACL users (``RedisServer(users=True)``, the default user off) as the shipped layout
    does: a replica follows its master as ``replica``, a sentinel watches the nodes as ``sentinel``,
    and each part connects as its role's user (:meth:`role_url`); :meth:`acl_denials` reads every
    node's ``ACL LOG``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        sentinels: int = 3,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
        relayed_replica: bool = False,
        replicas: int = 1,
        timings: SentinelTimings = SentinelTimings(),
        users: bool = False,
    ) -> None:
        self.directory = directory
        self.users = users
        self.master = RedisServer(
            directory / "master",
            appendonly=True,
            appendfsync=appendfsync,
            extra_args=[*self._replication_auth(), *extra_args],
            users=users,
        )
        #: With ``relayed_replica``, the master is known (to sentinels, clients and the replica) by
        #: this relay's port, so that its replication link can be stalled (``freeze``/``cut``).
        self.link = LinkProxy(self.master.port) if relayed_replica else None
        upstream = self.link.port if self.link is not None else self.master.port
        #: Every replica; ``replica`` is the first (the one that sits behind the relay, if any).
        self.replicas = [
            RedisServer(
                directory / ("replica" if index == 0 else f"replica{index + 1}"),
                appendonly=True,
                appendfsync=appendfsync,
                extra_args=[
                    "--replicaof",
                    "127.0.0.1",
                    str(upstream),
                    *self._replication_auth(),
                    *extra_args,
                ],
                users=users,
            )
            for index in range(replicas)
        ]
        self.replica = self.replicas[0]
        self.sentinels = [
            SentinelServer(directory / f"sentinel{index + 1}", upstream, timings=timings, users=users)
            for index in range(sentinels)
        ]

    def _replication_auth(self) -> list[str]:
        """How a node follows a master (any node may become a replica): as the ``replica`` user."""
        if not self.users:
            return []
        return ["--masteruser", Role.REPLICA.value, "--masterauth", REDIS_PASSWORDS[Role.REPLICA]]

    @property
    def url(self) -> str:
        """The ``sentinel://`` broker URL naming every sentinel (with users: the ``admin`` user's)."""
        return self.role_url(Role.ADMIN)

    def role_url(self, role: Role) -> str:
        """The ``sentinel://`` URL of ``role``'s user: every sentinel, the user and password in each."""
        userinfo = f"{quote(role.value)}:{quote(REDIS_PASSWORDS[role])}@" if self.users else ""
        return ";".join(f"sentinel://{userinfo}127.0.0.1:{s.port}" for s in self.sentinels)

    def node_client(self, port: int) -> redis.Redis:
        """A client of the node on ``port`` (with users: as ``admin``, the harness's inspection)."""
        if self.users:
            return redis.Redis(
                host="127.0.0.1",
                port=port,
                username=Role.ADMIN.value,
                password=REDIS_PASSWORDS[Role.ADMIN],
                decode_responses=True,
                socket_timeout=2,
            )
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)

    def acl_denials(self) -> list[str]:
        """What any running node refused some user (its ``ACL LOG``), one line each."""
        found: list[str] = []
        for node in (self.master, *self.replicas):
            if node.proc is not None and node.proc.poll() is None:
                found += [
                    f"{node.port}: {e.get('username')} refused {e.get('reason')} {e.get('object')!r}"
                    for e in node.acl_denials()
                ]
        return found

    def start(self, *, settle: bool = True) -> SentinelCluster:
        """Start everything; return once the replicas are in sync and (``settle``) the sentinels know all.

        Without ``settle`` the sentinels already name the master; :meth:`wait_settled` waits for the rest.
        """
        self.master.start()
        for replica in self.replicas:
            replica.start()
        wait_for(self._replicas_in_sync, timeout_s=30, interval_s=0.1, what="the replicas to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        if settle:
            self.wait_settled()
        return self

    def wait_settled(self) -> None:
        """Wait until every sentinel knows every replica and the other sentinels."""
        wait_for(
            self._sentinels_settled, timeout_s=60, interval_s=0.2, what="the sentinels to see each other"
        )

    def _replicas_in_sync(self) -> bool:
        return all(_in_sync(replica) for replica in self.replicas)

    def _sentinels_settled(self) -> bool:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            try:
                client = sentinel.client()
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)  # type: ignore[no-untyped-call]
                peers = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)  # type: ignore[no-untyped-call]
            except redis.RedisError:
                return False
            if len(replicas) < len(self.replicas) or len(peers) < others:
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
            client = self.node_client(port)
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

    def restart_as_replica(self, node: RedisServer, timeout_s: float = 60.0) -> float:
        """Start a crashed node again; wait until the sentinels made it a synced replica; return when."""
        node.start()

        def synced() -> float:  # 0.0: not yet
            try:
                info = node.client().info("replication")
            except redis.RedisError:
                return 0.0
            return (
                time.time() if info.get("role") == "slave" and info.get("master_link_status") == "up" else 0.0
            )

        synced_at: float = wait_for(
            synced, timeout_s=timeout_s, interval_s=0.05, what="the old master to rejoin"
        )
        return synced_at

    def stop(self) -> None:
        """Stop the sentinels first (no failover while tearing down), then the data nodes."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for replica in self.replicas:
            replica.stop()
        self.master.stop()
        if self.link is not None:
            self.link.close()


def _in_sync(replica: RedisServer) -> bool:
    try:
        info = replica.client().info("replication")
    except redis.RedisError:
        return False
    return info.get("master_link_status") == "up"


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
