"""Security: Redis with a password and over TLS; no token leaks; hostile input cannot move the call."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis
from celery import Celery
from conftest import AUTH_ID, TOKEN
from kombu.exceptions import OperationalError
from support import RedisServer, as_role, final, free_port, in_flight, publish_raw, wait_for

from harness.flower import FlowerProcess
from recstop.producers import Producer
from recstop.worker.celeryapp.celeryconf import celery_config
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import BrokerMisconfiguredError, BrokerUnavailableError, InvalidStopRequest
from recstop.worker.state.acl import Role
from recstop.worker.state.keys import QUEUE, TASK_NAME
from recstop.worker.state.redisclient import redis_client

pytestmark = pytest.mark.integration

PASSWORD = "Redis-pw-5e1f0c9d8b7a"
ACL_USER = "recstop"


def expected_path(call_uuid: str, auth_id: str = AUTH_ID) -> str:
    """The one endpoint a stop of ``call_uuid`` may call."""
    return f"/api/v1/Account/{auth_id}/Call/{call_uuid}/Record/"


def exception_text(exc: BaseException) -> str:
    """Everything an exception can show: str, repr and traceback of it and of every exception it hides."""
    parts: list[str] = []
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            break
        parts += [str(current), repr(current), *traceback.format_exception(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def producer_for(env: dict[str, str], **overrides: str) -> Producer:
    """A producer built from the environment, as a service would build one."""
    settings = Settings.from_env({**as_role(env, Role.PRODUCER), **overrides})
    return Producer(settings, redis_client(settings.redis))


def refused(producer, error=BrokerUnavailableError):
    """Enqueue through ``producer`` (closed after); return its ``error`` and seconds taken."""
    started = time.monotonic()
    try:
        with pytest.raises(error) as info:
            producer.stop_recording(str(uuid.uuid4()))
    finally:
        producer.close()
    return info.value, time.monotonic() - started


# --- Redis with a password --------------------------------------------------------------------


class TestPassword:
    """Producers and workers reach a Redis that refuses anonymous clients."""

    @pytest.fixture(params=["acl_user", "requirepass"])
    def redis_server(self, request, tmp_path):
        """A redis-server whose default user is off (an ACL user) or needs ``requirepass``."""
        port = free_port()
        if request.param == "acl_user":
            auth = ["--user", ACL_USER, "on", f">{PASSWORD}", "~*", "&*", "+@all", "--user", "default", "off"]
            url = f"redis://{ACL_USER}:{PASSWORD}@127.0.0.1:{port}/0"
        else:
            auth = ["--requirepass", PASSWORD]
            url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        server = RedisServer(tmp_path / "redis", extra_args=["--port", str(port), *auth], url=url).start()
        yield server
        server.stop()

    def test_stop_goes_through_and_the_password_is_never_logged(
        self, producer, start_worker_process, sandbox_client, call, redis_server
    ):
        """Producer and a worker process stop a recording through a password-only Redis; logs mask it."""
        port = urlsplit(redis_server.url).port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as anonymous:
            anonymous.sendall(b"SET probe 1\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")
        worker = start_worker_process()
        call_uuid = call()
        producer.stop_recording(call_uuid)
        assert final(producer, call_uuid).state == "stopped"
        assert [r["path"] for r in sandbox_client.requests(call_uuid=call_uuid)] == [expected_path(call_uuid)]
        records = worker.log_records()
        [ready] = [r for r in records if r.get("event") == "worker_ready"]
        assert ready["broker"].endswith(f":***@127.0.0.1:{port}/0")
        assert any(
            "**@127.0.0.1" in json.dumps(r) for r in records if r.get("logger", "").startswith("celery")
        )
        assert PASSWORD not in worker.log_text()

    @pytest.mark.parametrize("credentials", ["wrong", "missing"])
    def test_wrong_password_is_a_typed_error_quickly_without_the_password(self, env, credentials):
        """A wrong or missing password → BrokerMisconfiguredError within seconds, no password in its text."""
        url = env["RECSTOP_BROKER_URL"]
        if credentials == "wrong":
            bad = url.replace(PASSWORD, "not-the-Pa55word")
        else:
            bad = "redis://" + url.split("@", 1)[1]
        error, took_s = refused(producer_for(env, RECSTOP_BROKER_URL=bad), BrokerMisconfiguredError)
        assert "authentication failed" in str(error)
        assert took_s < 5.0
        assert isinstance(error.__context__, redis.AuthenticationError)
        text = exception_text(error)
        assert PASSWORD not in text
        assert "not-the-Pa55word" not in text


# --- Redis over TLS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A throw-away CA, a server certificate for 127.0.0.1, a client certificate, and a stranger CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _self_signed_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], usage: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}.{s}" for s in ("crt", "key", "csr", "ext"))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Issue the certificates with the ``openssl`` command line."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _self_signed_ca(directory, "test-ca")
    server = _leaf(directory, "server", ca, "serverAuth")
    client = _leaf(directory, "client", ca, "clientAuth")
    other_ca, _ = _self_signed_ca(directory, "other-ca")
    return Pki(ca[0], *server, *client, other_ca)


def tls_redis(directory: Path, pki: Pki, *, auth_clients: bool) -> RedisServer:
    """A redis-server that speaks TLS only (``--port 0``); its harness URL carries the CA."""
    tls_port = free_port()
    args = [
        "--port", "0", "--tls-port", str(tls_port),
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes" if auth_clients else "no",
    ]  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={quote(str(pki.ca))}"
    if auth_clients:
        url += f"&ssl_certfile={quote(str(pki.client_cert))}&ssl_keyfile={quote(str(pki.client_key))}"
    return RedisServer(directory, extra_args=args, url=url)


def plain_url(server: RedisServer) -> str:
    """The server's ``rediss://`` URL without the harness's query options."""
    return server.url.split("?")[0]


@pytest.fixture
def pki(tmp_path):
    """Certificates for this test."""
    return make_pki(tmp_path / "pki")


class TestTls:
    """Producers and workers over ``rediss://``, verifying the server against the configured CA."""

    @pytest.fixture
    def redis_server(self, tmp_path, pki):
        """A TLS-only redis-server that does not ask clients for certificates."""
        server = tls_redis(tmp_path / "redis", pki, auth_clients=False).start()
        yield server
        server.stop()

    @pytest.fixture
    def env(self, env, redis_server, pki):
        """The stack's environment, with the product's TLS settings in place of the harness URL."""
        return {
            **env,
            "RECSTOP_BROKER_URL": plain_url(redis_server),
            "RECSTOP_REDIS_TLS_CA_FILE": str(pki.ca),
        }

    def test_stop_over_tls(self, producer, start_worker, sandbox_client, call, redis_server, caplog):
        """Producer and real worker stop a recording over rediss:// only; no insecure default is used."""
        assert redis_server.client().config_get("port") == {"port": "0"}
        worker = start_worker()
        call_uuid = call()
        producer.stop_recording(call_uuid)
        assert final(producer, call_uuid).state == "stopped"
        assert [r["path"] for r in sandbox_client.requests(call_uuid=call_uuid)] == [expected_path(call_uuid)]
        # kombu warns when a rediss:// broker comes without ssl options and then skips verification.
        assert "insecure" not in worker.log_text().lower()
        assert "insecure" not in caplog.text.lower()

    @pytest.mark.parametrize("ca", ["system", "other"])
    def test_client_without_the_ca_fails_verification(self, env, pki, ca):
        """Without the right CA (system CAs, or a stranger CA) the producer gets BrokerUnavailableError."""
        overrides = {"RECSTOP_REDIS_TLS_CA_FILE": "" if ca == "system" else str(pki.other_ca)}
        error, took_s = refused(producer_for(env, **overrides))
        assert took_s < 10.0
        assert "certificate verify failed" in str(error.__context__)

    def test_the_broker_connection_verifies_too(self, env, pki, redis_server):
        """The workers' broker connection (kombu: consume, scheduler publishes) checks the CA itself."""
        unverified = Settings.from_env({**env, "RECSTOP_REDIS_TLS_CA_FILE": str(pki.other_ca)})
        app = Celery("tls-check", set_as_current=False)
        app.conf.update(celery_config(unverified))
        policy = {"max_retries": 0}
        try:
            with pytest.raises((OperationalError, redis.ConnectionError), match="certificate verify failed"):
                app.send_task(TASK_NAME, kwargs={}, queue=QUEUE, retry_policy=policy, ignore_result=True)
        finally:
            app.close()
        assert redis_server.client().llen("recstop") == 0

    def test_verification_off_is_explicit(self, env):
        """RECSTOP_REDIS_TLS_CERT_REQS=none connects without a CA (the operator's explicit choice)."""
        with producer_for(env, RECSTOP_REDIS_TLS_CA_FILE="", RECSTOP_REDIS_TLS_CERT_REQS="none") as producer:
            handle = producer.stop_recording(str(uuid.uuid4()))
            assert producer.status(handle.call_uuid).state == "queued"


def test_mutual_tls_client_certificate(tmp_path, pki, env):
    """A Redis that requires client certificates accepts the configured one and refuses a client without."""
    server = tls_redis(tmp_path / "mtls", pki, auth_clients=True).start()
    try:
        tls_env = {**env, "RECSTOP_BROKER_URL": plain_url(server), "RECSTOP_REDIS_TLS_CA_FILE": str(pki.ca)}
        with producer_for(
            tls_env,
            RECSTOP_REDIS_TLS_CERT_FILE=str(pki.client_cert),
            RECSTOP_REDIS_TLS_KEY_FILE=str(pki.client_key),
        ) as producer:
            assert producer.stop_recording(str(uuid.uuid4())).state == "queued"
        assert server.client().llen("recstop") == 1
        with producer_for(tls_env) as producer, pytest.raises(BrokerUnavailableError):
            producer.stop_recording(str(uuid.uuid4()))
        assert server.client().llen("recstop") == 1
    finally:
        server.stop()


# --- The token leaks nowhere --------------------------------------------------------------------


@pytest.fixture
def flower(env, tmp_path):
    """Flower on a free port, watching this test's Redis (not started yet)."""
    proc = FlowerProcess(env, tmp_path / "flower.log")
    yield proc
    proc.stop()


_READERS = {
    "string": lambda c, k: [c.get(k) or b""],
    "hash": lambda c, k: [x for pair in c.hgetall(k).items() for x in pair],
    "list": lambda c, k: c.lrange(k, 0, -1),
    "set": lambda c, k: list(c.smembers(k)),
    "zset": lambda c, k: c.zrange(k, 0, -1),
    "stream": lambda c, k: [x for i, f in c.xrange(k) for x in (i, *f.keys(), *f.values())],
    "none": lambda _c, _k: [],  # the key expired between SCAN and TYPE
}


def redis_dump(client: redis.Redis) -> dict[bytes, tuple[str, list[bytes]]]:
    """Every key in the database with its type and every field, member and value it holds."""
    out: dict[bytes, tuple[str, list[bytes]]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        assert kind in _READERS, f"unexpected Redis type {kind} for {key!r}"
        out[key] = (kind, _READERS[kind](client, key))
    return out


def assert_no_token_in_redis(client: redis.Redis, seen: dict[bytes, str]) -> None:
    """Fail if any key or value holds the token; remember which keys (and types) were scanned."""
    for key, (kind, values) in redis_dump(client).items():
        seen[key] = kind
        assert TOKEN.encode() not in key, key
        assert all(TOKEN.encode() not in value for value in values), key


def test_token_appears_nowhere(producer, start_worker, sandbox_client, call, redis_server, flower, env):
    """Success, retries, 401/403 dead letters and a malformed message: no token in Redis, logs, Flower."""
    client = redis_server.client(decode=False)
    seen: dict[bytes, str] = {}
    ok, retried, slow, forbidden, unauthorized = (call() for _ in range(5))
    sandbox_client.set_faults(
        [
            {"kind": "status", "status": 503, "times": 2, "call_uuid": retried},
            {"kind": "latency", "latency_ms": 1500, "call_uuid": slow},
            {"kind": "status", "status": 403, "call_uuid": forbidden},
            {"kind": "status", "status": 401, "call_uuid": unauthorized},
        ]
    )
    # Queued before any worker runs: the queue list itself is scanned.
    producer.stop_recording(ok, request_id="sec-ok")
    producer.stop_recording(retried)
    assert client.llen("recstop") == 2
    assert_no_token_in_redis(client, seen)

    flower.start()
    worker = start_worker()
    hostname = wait_for(
        lambda: next((w for w in json.loads(flower.get("/workers?json=1"))["data"]), None),
        timeout_s=20,
        what="flower to receive the worker's events",
    )["hostname"]
    assert hostname.startswith("w1@")
    watched = [
        producer.stop_recording(slow).task_id,
        producer.stop_recording(forbidden).task_id,
        producer.stop_recording(unauthorized).task_id,
        publish_raw(
            redis_server.role_url(Role.PRODUCER), {"call_uuid": "../../etc/passwd", "auth_id": AUTH_ID}
        ),
    ]
    # While the slow stop is in flight its message sits in the worker's in-flight list: scan then too.
    wait_for(
        lambda: (
            in_flight(client) > 0
            and assert_no_token_in_redis(client, seen) is None
            and any(key.startswith(b"recstop:inflight:") for key in seen)
        ),
        timeout_s=10,
        what="a scan while a message is in flight",
    )

    states = {c: final(producer, c).state for c in (ok, retried, slow, forbidden, unauthorized)}
    assert states == {
        ok: "stopped",
        retried: "stopped",
        slow: "stopped",
        forbidden: "dead",
        unauthorized: "dead",
    }
    assert producer.status(retried).attempts == 3
    entries = wait_for(
        lambda: (found := producer.dead_letters.list()) and len(found) == 3 and found,
        what="three dead letters",
    )
    assert sorted(e.reason for e in entries) == ["http_401", "http_403", "malformed"]
    assert TOKEN not in json.dumps([e.to_dict() for e in entries])
    assert_no_token_in_redis(client, seen)
    assert {"string", "list", "hash", "set", "zset"} <= set(seen.values())
    assert {b"recstop", b"recstop:consumers", b"_kombu.binding.recstop"} <= set(seen)
    assert any(key.startswith(b"recstop:inflight:") for key in seen)

    wait_for(
        lambda: sum(r.get("event") == "attempt" for r in worker.log_records()) == 7,
        what="one attempt line per attempt (1 + 3 + 1 + 1 + 1)",
    )
    assert TOKEN not in worker.log_text()

    tasks = wait_for(
        lambda: (found := json.loads(flower.get("/api/tasks"))) and set(watched) <= set(found) and found,
        timeout_s=20,
        what="flower to list the tasks",
    )
    assert slow in tasks[watched[0]]["kwargs"]
    assert "../../etc/passwd" in tasks[watched[3]]["kwargs"]
    assert TOKEN not in flower.get("/api/tasks")
    for task_id in watched:
        assert TOKEN not in flower.get(f"/api/task/info/{task_id}")
    assert TOKEN not in flower.log_text()

    unreachable = producer_for(env, RECSTOP_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    errors: list[BaseException] = []
    for attempt in (
        lambda: producer.stop_recording("../" + ok),
        lambda: producer.stop_recording(ok, auth_id="MA_NOBODY99"),
        lambda: producer.stop_recording(ok, "javascript:alert(1)"),
        lambda: producer.stop_recording(ok, delay=1, at="2030-01-01T00:00:00Z"),
        lambda: unreachable.stop_recording(ok),
        lambda: unreachable.status(ok),
    ):
        with pytest.raises((InvalidStopRequest, BrokerUnavailableError)) as info:
            attempt()
        errors.append(info.value)
    unreachable.close()
    assert [type(e).__name__ for e in errors[-2:]] == ["StopNotStoredError"] * 2
    assert all(TOKEN not in exception_text(e) for e in errors)


def test_token_sent_by_a_careless_raw_producer_stays_out_of_flower(
    producer, start_worker, redis_server, flower, call
):
    """A raw message that carries the token itself: Flower, the logs and the dead letter mask it."""
    flower.start()
    worker = start_worker()
    probes: list[str] = []

    def flower_listens() -> bool:
        """A probe stop Flower lists: it receives task events (those sent before it listened are gone)."""
        if probes and set(probes) & json.loads(flower.get("/api/tasks")).keys():
            return True
        probes.append(producer.stop_recording(call()).task_id)
        return False

    wait_for(flower_listens, timeout_s=30, interval_s=0.5, what="flower to list a probe stop")
    leaky = publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": call(), "auth_token": TOKEN})
    with_repr = publish_raw(
        redis_server.role_url(Role.PRODUCER), {"call_uuid": call(), "note": f"token={TOKEN}"}
    )
    entries = wait_for(
        lambda: (found := producer.dead_letters.list()) and len(found) == 2 and found,
        what="both messages dead-lettered",
    )
    assert {e.task_id for e in entries} == {leaky, with_repr}
    assert TOKEN not in json.dumps([e.to_dict() for e in entries])
    both = {leaky, with_repr}
    tasks = wait_for(
        lambda: (found := json.loads(flower.get("/api/tasks"))) and both <= found.keys() and found,
        timeout_s=20,
        what="flower to list both tasks",
    )
    assert "auth_token" in tasks[leaky]["kwargs"]
    for task_id in (leaky, with_repr):
        assert TOKEN not in flower.get(f"/api/task/info/{task_id}")
    assert TOKEN not in worker.log_text()


# --- Hostile input cannot change the endpoint ---------------------------------------------------


def hostile_call_uuids(good: str) -> list[object]:
    """call_uuid values that try to leave or bend the path."""
    return [
        f"../{good}",
        f"{good}/../../../Account/MA_OTHER0001/Call/{good}",
        f"{good}/..",
        f"%2e%2e%2f{good}",
        f"{good}%2f..%2f..",
        f"{good}?x=1",
        f"{good}#frag",
        f"{good}\r\nX-Injected: 1",
        f"{good}\n",
        f"{good}\x00",
        f" {good}",
        good.replace("-", "\u2011", 1),  # non-breaking hyphen
        chr(ord(good[0]) + 0xFEE0) + good[1:],  # full-width first character
        good * 40,
        "",
        123,
        [good],
    ]


def hostile_urls() -> list[object]:
    """Recording URLs that are not http(s), carry control characters, or are too long."""
    return [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/plain,x",
        "ftp://h.example/rec.mp3",
        "//evil.example/rec.mp3",
        "https:rec.mp3",
        "https://h.example/rec.mp3\r\nX-Injected: 1",
        "https://h.example/a b.mp3",
        "https://h.example/" + "a" * 3000,
        42,
    ]


def hostile_auth_ids() -> list[object]:
    """auth_id values that try to reach another account's path."""
    return [
        "MA_X/../../Account/MA_OTHER",
        f"{AUTH_ID}/../MA_OTHER0001",
        f"../{AUTH_ID}",
        f"{AUTH_ID}%2f..%2fMA_OTHER0001",
        f"{AUTH_ID}?x=1",
        f"{AUTH_ID}#x",
        f"{AUTH_ID}\r\nX-Auth-ID: MA_OTHER0001",
        f"{AUTH_ID}\n",
        "\uff2d" + AUTH_ID[1:],  # full-width M
        "M\u0410" + AUTH_ID[2:],  # Cyrillic A
        AUTH_ID.lower(),
        "MA_" + "A" * 41,
        "MA_" + "A" * 10_000,
        "",
        7,
    ]


def hostile_messages(good: str) -> list[dict[str, object]]:
    """Task kwargs, each with exactly one hostile field (the others are the good stop's)."""
    return (
        [{"call_uuid": value, "auth_id": AUTH_ID} for value in hostile_call_uuids(good)]
        + [{"call_uuid": good, "url": value, "auth_id": AUTH_ID} for value in hostile_urls()]
        + [{"call_uuid": good, "auth_id": value} for value in hostile_auth_ids()]
    )


def test_producer_rejects_every_hostile_value(producer, redis_server):
    """Producer.stop_recording raises InvalidStopRequest for each hostile field; nothing is stored."""
    good = str(uuid.uuid4())
    accepted = []
    for kwargs in hostile_messages(good):
        try:
            producer.stop_recording(**kwargs)
        except InvalidStopRequest:
            continue
        accepted.append(kwargs)
    assert accepted == []
    assert redis_server.client().dbsize() == 0


def test_hostile_messages_never_change_the_endpoint(
    producer, start_worker, sandbox_client, call, redis_server
):
    """Raw hostile messages are dead-lettered as malformed; the API sees exactly the good stop's path."""
    start_worker()
    good = call()
    hostile = {
        publish_raw(redis_server.role_url(Role.PRODUCER), kwargs): kwargs for kwargs in hostile_messages(good)
    }
    other_account = publish_raw(
        redis_server.role_url(Role.PRODUCER), {"call_uuid": str(uuid.uuid4()), "auth_id": "MA_OTHER0001"}
    )
    publish_raw(redis_server.role_url(Role.PRODUCER), {"call_uuid": good, "auth_id": AUTH_ID})
    assert final(producer, good).state == "stopped"

    def dead_by_task():
        found = {e.task_id: e for e in producer.dead_letters.list(limit=1000)}
        return found if set(hostile) | {other_account} <= set(found) else None

    entries = wait_for(dead_by_task, timeout_s=30, what="every hostile message to be dead-lettered")
    wrong = {
        tid: (entries[tid].reason, kwargs)
        for tid, kwargs in hostile.items()
        if entries[tid].reason != "malformed"
    }
    assert wrong == {}
    assert entries[other_account].reason == "unknown_account"
    received = [(r["method"], r["path"]) for r in sandbox_client.requests()]
    assert received == [("DELETE", expected_path(good))]
