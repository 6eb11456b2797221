"""Audit events parsed from stream entries, the chain's encoding, and the audit settings."""

from __future__ import annotations

import json

import pytest

from recstop.worker.audit import chain
from recstop.worker.audit.event import COLUMNS, GONE_REASON, INVALID, parse_entry
from recstop.worker.config.settings import Settings
from recstop.worker.model.errors import ConfigError
from recstop.worker.model.redaction import Redactor

CALL = "6b0e1c2d-0000-4000-8000-00000000c0de"
NO_SECRETS = Redactor(())


def entry(data: object) -> dict[bytes, bytes]:
    return {b"e": json.dumps(data).encode()}


def test_a_contract_event_becomes_a_typed_row():
    """Every contract key lands in its column, typed; absent keys are None; unknown keys go to extra."""
    data = {
        "event": "attempt",
        "at": 1764590000.123,
        "call_uuid": CALL.upper(),
        "target": "all",
        "attempt": 2.0,
        "http_status": 503,
        "urgent": True,
        "duration_ms": 12,
        "origin": "celery",
        "shard": 7,
    }
    event = parse_entry("1764590000123-0", entry(data), NO_SECRETS)
    assert (event.event, event.call_uuid, event.attempt, event.http_status) == ("attempt", CALL, 2, 503)
    assert (event.at, event.duration_ms, event.urgent, event.url) == (1764590000.123, 12.0, True, None)
    assert event.extra == '{"shard": 7}'
    assert event.raw is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"event": "attempt", "call_uuid": CALL}).encode(),  # no at
        json.dumps({"event": "attempt", "at": 1.0, "call_uuid": CALL, "attempt": "2"}).encode(),
        json.dumps({"event": "attempt", "at": 1.0, "call_uuid": CALL, "http_status": 2**40}).encode(),
        json.dumps({"event": "attempt", "at": 1.0, "call_uuid": CALL, "error": "a\x00b"}).encode(),
        json.dumps({"event": "Attempt!", "at": 1.0, "call_uuid": CALL}).encode(),
        json.dumps({"event": "attempt", "at": 1.0, "call_uuid": CALL, "due_at": 1e300}).encode(),
        json.dumps({"event": "attempt", "at": 1.0, "call_uuid": CALL, "reason": "\ud800"}).encode(),
        b'{"event": "attempt", "at": NaN, "call_uuid": "' + CALL.encode() + b'"}',
    ],
)
def test_an_entry_off_the_contract_is_kept_as_invalid_with_its_text(raw):
    """Malformed entries are never dropped: event invalid, at the entry's time, raw text, the call if seen."""
    event = parse_entry("1764590000123-4", {b"e": raw}, NO_SECRETS)
    assert event.event == INVALID
    assert event.at == 1764590000.123
    assert event.raw is not None
    assert "\x00" not in event.raw
    assert event.reason
    assert event.call_uuid in (None, CALL)


def test_gone_and_fieldless_entries_are_recorded():
    """A pending entry gone from the stream, or one without ``e``, is a row that says so."""
    gone = parse_entry("5-0", {}, NO_SECRETS)
    assert (gone.event, gone.reason, gone.raw) == (INVALID, GONE_REASON, "")
    other = parse_entry("5-1", {b"x": b"y"}, NO_SECRETS)
    assert (other.event, other.raw) == (INVALID, '{"x": "y"}')


def test_tokens_are_masked_in_every_text():
    """A configured token is masked in the columns, in extra and in the raw text of an invalid entry."""
    redactor = Redactor(["tok-S3cret"])
    data = {"event": "dead", "at": 1.0, "call_uuid": CALL, "error": "bad tok-S3cret", "k": "tok-S3cret"}
    event = parse_entry("1-0", entry(data), redactor)
    assert (event.error, event.extra) == ("bad ***", '{"k": "***"}')
    invalid = parse_entry("1-1", {b"e": b'{"token": "tok-S3cret"'}, redactor)
    assert "tok-S3cret" not in (invalid.raw or "")


def other(value):
    """A different value of the same kind."""
    if value is None:
        return "1"  # reads as a number, a boolean or a text, whichever the column is
    if isinstance(value, bool):
        return not value
    return value + (1 if isinstance(value, int | float) else "x")


def test_the_chain_encoding_is_stable_and_covers_every_column():
    """The same row hashes the same whatever the driver's types; any column change changes the hash."""
    row = dict.fromkeys(COLUMNS) | {"seq": 3, "recorded_at": 10.5, "stream_id": "1-0"}
    row |= {"event": "stopped", "at": 1764590000.0, "attempt": 2, "urgent": True}
    same = {**row, "at": 1764590000, "urgent": 1, "seq": 3.0}
    assert chain.link(chain.GENESIS, row) == chain.link(chain.GENESIS, same)
    for name in (*COLUMNS, "seq", "recorded_at"):
        changed = {**row, name: other(row[name])}
        assert chain.link(chain.GENESIS, changed) != chain.link(chain.GENESIS, row), name
    assert chain.link("a" * 64, row) != chain.link(chain.GENESIS, row)
    assert chain.day_of(1764590000.0) == "2025-12-01"


def test_audit_settings_defaults_parsing_and_masking():
    """Defaults, the URL forms accepted, a refusal that never echoes a password, and a masked repr."""
    audit = Settings.from_env({}).audit
    assert (audit.db_url, audit.retention_days, audit.stream_max) == (
        "sqlite:///.run/audit.db",
        400,
        1_000_000,
    )
    url = "postgresql://auditor:Pw%40rd@db:5432/audit"
    settings = Settings.from_env({"RECSTOP_AUDIT_DB": url, "RECSTOP_AUDIT_RETENTION_DAYS": "30"})
    assert settings.audit.retention_days == 30
    assert "Pw%40rd" not in repr(settings)
    assert settings.audit.safe_url == "postgresql://auditor:***@db:5432/audit"
    assert {"Pw%40rd", "Pw@rd"} <= settings.secrets()
    with pytest.raises(ConfigError, match="RECSTOP_AUDIT_DB") as refused:
        Settings.from_env({"RECSTOP_AUDIT_DB": "mysql://u:Secret@h/db"})
    assert "Secret" not in str(refused.value)
    for bad in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigError, match="RECSTOP_AUDIT_DB"):
            Settings.from_env({"RECSTOP_AUDIT_DB": bad})
