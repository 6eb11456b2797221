"""Least privilege in Redis: each part runs as its role's user, which is refused what the role must not do."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
import redis
import requests
from support import REDIS_PASSWORDS, RedisServer, cli, final, free_port, metrics_process, terminate, wait_for

from harness.auditsink import AuditSinkProcess
from recstop.producers import Producer
from recstop.worker.config.secrets import mask_url
from recstop.worker.config.settings import Settings
from recstop.worker.state import acl, keys
from recstop.worker.state.acl import Role
from recstop.worker.state.redisclient import redis_client

pytestmark = pytest.mark.integration

CALL = keys.call_key("c0ffee00-0000-4000-8000-000000000000")
#: What each role must be refused: commands no role may run, and its neighbours' keys and moves.
REFUSED = {
    Role.PRODUCER: [
        ("XREADGROUP", "GROUP", keys.AUDIT_GROUP, "c1", "COUNT", "1", "STREAMS", keys.AUDIT_STREAM, ">"),
        ("XACK", keys.AUDIT_STREAM, keys.AUDIT_GROUP, "0-1"),
        ("XGROUP", "DESTROY", keys.AUDIT_STREAM, keys.AUDIT_GROUP),
        ("HSET", keys.WORKERS, "fake@host", "1"),
        ("LMOVE", keys.QUEUE, keys.inflight_key("c1", keys.QUEUE), "RIGHT", "LEFT"),
        ("DEL", keys.CONSUMERS),
        ("EVAL", f"return redis.call('ZADD', '{keys.CONFIRMS}', 0, 'x')", "0"),
    ],
    Role.MONITOR: [
        ("LPUSH", keys.QUEUE, "x"),
        ("SET", CALL, "{}"),
        ("DEL", keys.SCHEDULE),
        ("HINCRBY", keys.METRICS, "stops:stopped", "1"),
        ("XADD", keys.AUDIT_STREAM, "*", "e", "{}"),
        ("EVAL", f"return redis.call('DEL', '{keys.DLQ_INDEX}')", "0"),
        ("XREADGROUP", "GROUP", keys.AUDIT_GROUP, "c1", "COUNT", "1", "STREAMS", keys.AUDIT_STREAM, ">"),
    ],
    Role.AUDIT_SINK: [
        ("LPUSH", keys.QUEUE, "x"),
        ("LLEN", keys.QUEUE),
        ("GET", CALL),
        ("HGETALL", keys.WORKERS),
        ("XADD", keys.AUDIT_STREAM, "*", "e", "{}"),
        ("EVAL", "return 1", "0"),
        ("PUBLISH", "/0.celery.pidbox", "x"),
    ],
    Role.WORKER: [
        ("SET", "somebody-else:key", "1"),
        ("SCRIPT", "FLUSH"),
        ("CLIENT", "KILL", "ID", "1"),
        ("XGROUP", "DESTROY", keys.AUDIT_STREAM, keys.AUDIT_GROUP),
    ],
}
#: What no role a recstop process runs as may run.
NOBODY = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("REPLICAOF", "NO", "ONE"),
    ("SWAPDB", "0", "1"),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "SETUSER", "intruder", "on", ">pw", "+@all", "~*"),
    ("MONITOR",),
    ("BGREWRITEAOF",),
]


def client_as(server: RedisServer, role: Role) -> redis.Redis:
    """A plain client logged in as ``role``."""
    return redis.Redis.from_url(server.role_url(role), decode_responses=True, socket_timeout=5)


@pytest.mark.acl_denials
@pytest.mark.parametrize("role", acl.PROCESS_ROLES)
def test_each_role_is_refused_what_it_must_not_do(redis_server, role):
    """Each role is refused the administrative commands and its neighbours' keys; Redis logs each refusal."""
    client = client_as(redis_server, role)
    attempts = [*NOBODY, *REFUSED[role]]
    try:
        for command in attempts:  # a script's refused command is a script error naming the refusal
            with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions|can't access"):
                client.execute_command(*command)
    finally:
        client.close()
    denials = redis_server.acl_denials()
    assert {entry["username"] for entry in denials} == {role.value}
    assert sum(int(entry["count"]) for entry in denials) == len(attempts)
    assert redis_server.client().ping()  # nothing above reached the server's state


def test_no_role_of_a_process_has_a_dangerous_command(redis_server):
    """No process role may run a command of the server's own @dangerous category, nor any @admin one."""
    admin = redis_server.client()
    dangerous = {str(name).lower() for name in admin.acl_cat("dangerous")} | {
        str(name).lower() for name in admin.acl_cat("admin")
    }
    for role in acl.PROCESS_ROLES:
        rules = admin.acl_getuser(role.value)["commands"]  # ["+ping", "+client|id", ...]
        allowed = {str(word)[1:] for word in rules if str(word).startswith("+")}
        assert len(allowed) > 5, (role, rules)
        assert not {name.split("|")[0] for name in allowed} & dangerous, role


def test_a_stop_goes_through_every_part_each_as_its_own_user(
    redis_server, env, start_worker_process, call, tmp_path
):
    """Producer, worker, sink, health, metrics each connect as their role: the stop is done, audited, seen."""
    worker = start_worker_process()
    database = tmp_path / "audit.db"
    sink = AuditSinkProcess(
        {
            **env,
            "RECSTOP_BROKER_URL": redis_server.role_url(Role.AUDIT_SINK),
            "RECSTOP_AUDIT_DB": f"sqlite:///{database}",
        },
        tmp_path / "sink.log",
        args=["--batch", "50"],
    ).start(wait=False)
    port = free_port()
    metrics = metrics_process(redis_server.role_url(Role.MONITOR), port)
    try:
        producer_settings = Settings.from_env(
            {**env, "RECSTOP_BROKER_URL": redis_server.role_url(Role.PRODUCER)}
        )
        call_uuid = call()
        with Producer(producer_settings, redis_client(producer_settings.redis)) as producer:
            producer.stop_recording(call_uuid)
            assert final(producer, call_uuid).state == "stopped"
            producer_users = {line.split(" user=")[1].split()[0] for line in client_list(redis_server)}
        assert Role.PRODUCER.value in producer_users
        wait_for(lambda: stopped_rows(database, call_uuid), timeout_s=30, what="the sink to copy the stop")
        health = cli(env, "health", "--json")
        assert health.returncode == 0, health.stdout + health.stderr
        assert json.loads(health.stdout)["redis"] == mask_url(redis_server.role_url(Role.MONITOR))
        scrape = wait_for(lambda: scraped(port), timeout_s=30, what="recstop metrics to serve")
        assert 'recstop_stops_total{outcome="stopped",reason=""} 1.0' in scrape
        assert "recstop_redis_up 1.0" in scrape
        users = {line.split(" user=")[1].split()[0] for line in client_list(redis_server)}
        assert {Role.WORKER.value, Role.AUDIT_SINK.value, Role.MONITOR.value} <= users
    finally:
        terminate(metrics)
        sink.stop()
        worker.stop()
    assert redis_server.acl_denials() == []
    logs = worker.log_text() + sink.log_text()
    assert not [role for role, password in REDIS_PASSWORDS.items() if password in logs]


def stopped_rows(database: Path, call_uuid: str) -> bool:
    """Whether the audit database holds the stop's ``stopped`` event."""
    if not database.exists():
        return False
    with sqlite3.connect(database) as db:
        try:
            rows = db.execute(
                "SELECT count(*) FROM audit_events WHERE call_uuid = ? AND event = 'stopped'", (call_uuid,)
            ).fetchone()
        except sqlite3.OperationalError:  # the sink has not made its tables yet
            return False
    return bool(rows[0])


def scraped(port: int) -> str:
    """The exporter's /metrics text, or "" while it does not answer."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return ""


def client_list(server: RedisServer) -> list[str]:
    """``CLIENT LIST``, one line per connection."""
    admin = server.client()
    try:
        return str(admin.execute_command("CLIENT", "LIST")).splitlines()
    finally:
        admin.close()


def test_a_restart_loads_every_transaction_the_role_users_wrote_to_the_aof(tmp_path):
    """Default user off: a restart replays the worker's MULTI/EXEC and scripts from the AOF, nothing lost."""
    server = RedisServer(tmp_path / "redis", appendonly=True, appendfsync="always", users=True).start()
    try:
        worker = client_as(server, Role.WORKER)
        with worker.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.QUEUE, "m1")
            pipe.set(CALL, "{}")
            pipe.execute()
        worker.eval(
            f"redis.call('LPUSH', '{keys.QUEUE}', 'm2') redis.call('ZADD', '{keys.SCHEDULE}', 1, 'x')", 0
        )
        worker.close()
        server.stop()
        server.start()
        worker = client_as(server, Role.WORKER)
        assert worker.lrange(keys.QUEUE, 0, -1) == ["m2", "m1"]
        assert worker.get(CALL) == "{}"
        assert worker.zscore(keys.SCHEDULE, "x") == 1.0
        worker.close()
        log = server.log_path.read_text(encoding="utf-8")
        assert "NOPERM" not in log
        assert "CRITICAL" not in log
    finally:
        server.stop()


@pytest.mark.acl_denials
def test_a_wrong_password_is_refused_and_never_shown(redis_server, env):
    """A producer with a wrong password is refused; the error names the user, masks the password."""
    wrong = "Wr0ng-pa55word-xyz"
    url = redis_server.role_url(Role.PRODUCER).replace(REDIS_PASSWORDS[Role.PRODUCER], wrong)
    result = cli({**env, "RECSTOP_BROKER_URL": url}, "status", str(uuid.uuid4()))
    assert result.returncode != 0
    assert wrong not in result.stdout + result.stderr
    assert "producer:***@" in result.stdout + result.stderr
    assert [entry["reason"] for entry in redis_server.acl_denials()] == ["auth"]


def test_a_replica_follows_its_master_as_the_replica_user(tmp_path):
    """A replica authenticating as ``replica`` (PSYNC, REPLCONF, PING only) copies the master's writes."""
    master = RedisServer(tmp_path / "master", users=True).start()
    link = ["--replicaof", "127.0.0.1", str(master.port), "--masteruser", Role.REPLICA.value]
    link += ["--masterauth", REDIS_PASSWORDS[Role.REPLICA]]
    replica = RedisServer(tmp_path / "replica", users=True, extra_args=link).start()
    try:
        worker = client_as(master, Role.WORKER)
        worker.lpush(keys.QUEUE, "m1")
        monitor = client_as(replica, Role.MONITOR)
        wait_for(lambda: monitor.llen(keys.QUEUE) == 1, timeout_s=20, what="the replica to copy the write")
        worker.close()
        monitor.close()
        assert master.acl_denials() == []
        assert replica.acl_denials() == []
    finally:
        replica.stop()
        master.stop()
