"""Who may do what in Redis: one ACL user per role, built from the key layout (``state.keys``).

``deploy/redis-users.acl`` is :func:`acl_file` with placeholders for the passwords (a unit test
checks the file is what this module generates); ``deploy/redis-acl-render.sh`` renders it with the
passwords' SHA-256 (Redis' ``#<hash>``), so the rendered file holds no password either.

The roles:

==============  =============================================================================
``worker``      the Celery worker: its scheduler, confirmer, Lua scripts, reliable fetch, results,
                Celery's pidbox (``celery control``/``inspect``, mingle) and task events
``producer``    enqueues, cancels, status, dead-letter replay (``producers/``, the ``recstop``
                CLI's producer commands, a Celery ``send_task`` on kombu's Redis transport)
``audit-sink``  ``recstop audit sink``: the audit stream and its consumer group, nothing else
``monitor``     ``recstop metrics``, ``recstop health``, Flower: reads recstop's keys; Flower's
                ``inspect`` publishes on the pidbox and reads its reply list
``replica``     a replica's link to its master (``masteruser``)
``sentinel``    Redis Sentinel watching the servers (``sentinel auth-user``)
``admin``       the operator (``ACL LOAD`` when a password changes); no recstop process uses it
==============  =============================================================================

Redis checks a script's commands and keys against the user that runs it, so a role's commands
include every command of the scripts it runs. Channel patterns are written for the database the
URLs name (``/<db>.``: kombu's fanout channels carry it), 0 unless told.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from recstop.worker.state import keys, taskevents


class Role(StrEnum):
    """An ACL user; its name is the user's name."""

    WORKER = "worker"
    PRODUCER = "producer"
    AUDIT_SINK = "audit-sink"
    MONITOR = "monitor"
    REPLICA = "replica"
    SENTINEL = "sentinel"
    ADMIN = "admin"


#: The roles recstop's own processes run as (the rest are Redis' own, and the operator's).
PROCESS_ROLES: Final = (Role.WORKER, Role.PRODUCER, Role.AUDIT_SINK, Role.MONITOR)


#: The Redis user each ``recstop`` command runs as (``sandbox`` and the audit queries use no Redis).
COMMAND_ROLES: Final[Mapping[str, Role]] = {
    "enqueue": Role.PRODUCER,
    "cancel": Role.PRODUCER,
    "status": Role.PRODUCER,
    "dlq": Role.PRODUCER,
    "health": Role.MONITOR,
    "metrics": Role.MONITOR,
    "audit": Role.AUDIT_SINK,
}


class Access(StrEnum):
    """How a role may touch keys matching a pattern (Redis 7 key permissions)."""

    READ_WRITE = "~"
    READ = "%R~"


@dataclass(frozen=True)
class Keys:
    """Key patterns (globs) and how they may be used."""

    patterns: tuple[str, ...]
    access: Access = Access.READ_WRITE

    def rules(self) -> list[str]:
        """The ACL rules: ``~pattern`` or ``%R~pattern``."""
        return [f"{self.access.value}{pattern}" for pattern in self.patterns]


@dataclass(frozen=True)
class Grant:
    """What one role may do: commands (``+name``, ``+name|sub``), key patterns, channel patterns."""

    commands: tuple[str, ...]
    keys: tuple[Keys, ...] = ()
    channels: tuple[str, ...] = ()

    def rules(self) -> list[str]:
        """The ACL rules after ``on``/password: keys, channels, then commands."""
        out = [rule for group in self.keys for rule in group.rules()]
        out += [f"&{channel}" for channel in self.channels]
        out += [f"+{command}" for command in self.commands]
        return out


# --- key patterns, from the layout -----------------------------------------------------------


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


#: Every key under recstop's prefix (the state store, the in-flight lists, the heartbeats).
OWN_KEYS: Final = f"{keys.PREFIX}:*"


def lane_patterns() -> tuple[str, ...]:
    """Each lane and its priority lists (kombu's ``<queue><sep><priority>``), as globs.

    The priority separator is two control characters; a glob names them with ``?`` so that the
    file stays printable.
    """
    steps = "".join(str(step) for step in keys.PRIORITY_STEPS)
    wild = "?" * len(keys.PRIORITY_SEP)
    return tuple(
        pattern
        for lane in keys.LANES
        for pattern in (_glob_escape(lane), f"{_glob_escape(lane)}{wild}[{steps}]")
    )


#: Celery's result keys (``keys.result_key``) and the channels ``AsyncResult.get`` listens on.
RESULTS: Final = keys.result_key("*")
#: kombu's exchange → queue bindings (``_kombu.binding.<exchange>``, read and declared on publish),
#: the tables it keeps while a queue is bound for good (``_kombu.binding_permanent.<exchange>``) and
#: the deadlines of an expiring queue's (``_kombu.binding_deadlines``: Celery's reply queues).
BINDINGS: Final = "_kombu.binding*"
#: Celery's remote control exchange (``celery.pidbox``, a fanout) and its reply exchange, whose
#: queues are ``<client id>.reply.celery.pidbox`` lists.
PIDBOX: Final = "celery.pidbox"
#: The reply queues, and their priority lists (kombu deletes those with the queue).
REPLY_QUEUES: Final = f"*.reply.{PIDBOX}*"
#: Each worker's own pidbox queue (``<node name>.celery.pidbox``, bound to the fanout), and its
#: priority lists.
NODE_QUEUES: Final = f"*.{PIDBOX}*"
#: Celery's events exchange (a fanout: channels ``/<db>.celeryev/<routing key>``, ``state.taskevents``).
EVENTS: Final = taskevents.EXCHANGE
#: The queue each event receiver declares (``celeryev.<uuid>``: a worker's gossip, Flower) and
#: deletes with its priority lists; the events themselves go through the channels.
EVENT_QUEUES: Final = f"{EVENTS}.*"


def fanout_channel(db: int, exchange: str, routing: str | None = None) -> str:
    """The channel kombu's Redis transport publishes a fanout exchange on: ``/<db>.<exchange>[/<key>]``."""
    base = f"/{db}.{exchange}"
    return base if routing is None else f"{base}/{routing}"


# --- commands --------------------------------------------------------------------------------

#: What every client sends to connect and stay connected (redis-py's hello, its health checks).
CONNECTION: Final = ("ping", "hello", "select", "client|setname", "client|setinfo", "client|id", "echo")
#: Running recstop's Lua scripts: EVALSHA, EVAL when Redis does not know one yet, SCRIPT LOAD after a
#: restart (``NOSCRIPT``).
SCRIPTING: Final = ("evalsha", "eval", "script|load", "script|exists")
#: A pipeline in a transaction (kombu's publish, recstop's batches) and ``WAIT`` for replicas.
TRANSACTIONS: Final = ("multi", "exec", "discard", "watch", "unwatch", "wait")
PUBSUB: Final = ("publish", "subscribe", "unsubscribe", "psubscribe", "punsubscribe")


def grants(db: int = 0) -> dict[Role, Grant]:
    """Every role's grant; channels for database ``db``."""
    lanes = Keys(lane_patterns())
    events = fanout_channel(db, EVENTS, "*")
    # Redis checks a PSUBSCRIBE pattern literally against these: a worker's gossip subscribes to
    # the other workers' events only.
    worker_events = fanout_channel(db, EVENTS, "worker.*")
    pidbox = fanout_channel(db, PIDBOX)
    return {
        Role.WORKER: Grant(
            commands=(
                *CONNECTION, *SCRIPTING, *TRANSACTIONS, *PUBSUB,
                "del", "exists", "expire", "pexpire", "get", "set", "mget", "scan", "type", "ttl", "pttl",
                "hdel", "hget", "hgetall", "hincrby", "hincrbyfloat", "hkeys", "hlen", "hmget", "hset",
                "llen", "lmove", "blmove", "lpush", "lrange", "lrem", "rpop", "brpop", "rpush", "lpop",
                "sadd", "scard", "smembers", "srem",
                "time", "xadd", "xlen", "xtrim",
                "zadd", "zcard", "zcount", "zrange", "zrangebyscore", "zrem", "zremrangebyrank",
                "zremrangebyscore", "zscore",
            ),
            keys=(
                Keys((OWN_KEYS, *lanes.patterns, RESULTS, BINDINGS, REPLY_QUEUES, NODE_QUEUES, EVENT_QUEUES)),
            ),
            channels=(events, worker_events, pidbox, RESULTS),
        ),
        Role.PRODUCER: Grant(
            commands=(
                *CONNECTION, *SCRIPTING, *TRANSACTIONS, "publish", "subscribe", "unsubscribe",
                "del", "exists", "expire", "get", "set", "mget", "type",
                "hdel", "hget", "hgetall", "hincrby", "hkeys", "hlen", "hmget", "hset",
                "llen", "lpush", "lrem", "rpop", "brpop", "pexpire",
                "sadd", "smembers", "srem",
                "time", "xadd", "xlen", "xtrim",
                "zadd", "zcard", "zrange", "zrangebyscore", "zrevrange", "zrem", "zremrangebyrank",
                "zremrangebyscore", "zscore",
            ),
            keys=(
                Keys(
                    (
                        keys.call_key("*"), keys.task_key("*"), keys.revoked_key("*"), keys.SCHEDULE,
                        keys.DLQ_INDEX, keys.DLQ_ENTRIES, keys.METRICS, keys.AUDIT_STREAM,
                        *lanes.patterns, RESULTS, BINDINGS, REPLY_QUEUES,
                    )
                ),
            ),
            # A Celery-native cancel (``AsyncResult.revoke``) is a broadcast on the pidbox.
            channels=(events, pidbox, RESULTS),
        ),
        Role.AUDIT_SINK: Grant(
            commands=(
                *CONNECTION,
                "xreadgroup", "xack", "xautoclaim", "xclaim", "xpending", "xinfo|stream", "xinfo|groups",
                "xinfo|consumers", "xgroup|create", "xgroup|createconsumer", "xgroup|delconsumer",
                "xlen", "xrange", "xtrim", "xdel",
            ),
            keys=(Keys((keys.AUDIT_STREAM,)),),
        ),
        Role.MONITOR: Grant(
            commands=(
                *CONNECTION, *PUBSUB, *TRANSACTIONS, *SCRIPTING,
                "time", "exists", "get", "mget", "type", "ttl", "scan",
                "hget", "hgetall", "hkeys", "hlen", "hmget",
                "llen", "lindex", "lrange", "rpop", "brpop", "lpush", "pexpire", "del",
                "sadd", "smembers", "srem", "zadd", "zrem",
                "zcard", "zcount", "zrange", "zrangebyscore", "zrevrange", "zscore",
                "xlen", "xrange", "xinfo|stream", "xinfo|groups", "xpending",
            ),
            keys=(
                Keys((OWN_KEYS, *lanes.patterns, RESULTS), Access.READ),
                Keys((REPLY_QUEUES, EVENT_QUEUES, BINDINGS)),
            ),
            channels=(events, pidbox),
        ),
        Role.REPLICA: Grant(commands=("psync", "replconf", "ping")),
        Role.SENTINEL: Grant(
            commands=(
                "multi", "slaveof", "replicaof", "ping", "exec", "subscribe", "config|rewrite", "role",
                "publish", "info", "client|setname", "client|kill", "script|kill",
            ),
            channels=("__sentinel__:hello",),
        ),
        Role.ADMIN: Grant(commands=("@all",), keys=(Keys(("*",)),), channels=("*",)),
    }  # fmt: skip


#: The placeholder of a role's password in the unrendered file.
PLACEHOLDER: Final = "{{password:%s}}"


def placeholder(role: Role) -> str:
    """The text ``deploy/redis-acl-render.sh`` replaces with ``#<sha256 of the role's password>``."""
    return PLACEHOLDER % role.value


def password_env(role: Role) -> str:
    """The variable the render script reads a role's password from (``<name>_FILE``: from a file)."""
    return "RECSTOP_REDIS_PASSWORD_" + role.value.upper().replace("-", "_")


def password_rule(password: str) -> str:
    """The ACL rule of a password: its SHA-256 (``#<hex>``), so a rendered file holds no password."""
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


#: Commands newer than the oldest Redis recstop runs on (7.0): left out for an older server, which
#: would refuse the whole file for a name it does not know. redis-py sends ``CLIENT SETINFO`` on
#: connect and ignores the error of a server without it.
SINCE: Final[Mapping[str, tuple[int, int]]] = {"client|setinfo": (7, 2)}


def user_line(role: Role, grant: Grant, password: str, server: tuple[int, int] | None = None) -> str:
    """One ``user`` line of an ACL file (``server``: the Redis version it is for; None: the newest)."""
    rules = [
        rule
        for rule in grant.rules()
        if server is None or SINCE.get(rule.removeprefix("+"), (0, 0)) <= server
    ]
    return " ".join(["user", role.value, "on", password, "resetkeys", "resetchannels", "-@all", *rules])


#: Redis' ``default`` user: off, and no password, so no client is ever it (a client that gives no
#: user name is refused). Its permissions still matter: Redis 7.0 replays a ``MULTI``/``EXEC`` of
#: the AOF as ``default`` when it loads, and drops every transaction ``default`` may not run, so
#: a restart would lose acknowledged stops (``test_redis_acl`` restarts one). It may run what any
#: role writes; nothing ``@dangerous``.
DEFAULT_OFF: Final = "user default off resetpass ~* &* +@all -@dangerous"


def acl_file(
    passwords: Mapping[Role, str] | None = None, *, db: int = 0, server: tuple[int, int] | None = None
) -> str:
    """The ACL file: the default user off, then one user per role (Redis' ACL files have no comments).

    Without ``passwords`` each user has its placeholder (the shipped template); with them, each
    role given a password gets its hash and the roles without one are left out. ``server``: the
    Redis version (major, minor) the file is for, when older than the newest (:data:`SINCE`).
    """
    found = grants(db)
    lines = [DEFAULT_OFF]
    for role in Role:
        if passwords is None:
            lines.append(user_line(role, found[role], placeholder(role), server))
        elif role in passwords:
            lines.append(user_line(role, found[role], password_rule(passwords[role]), server))
    return "\n".join(lines) + "\n"
