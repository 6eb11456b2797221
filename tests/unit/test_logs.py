"""Logging: one JSON pipeline for our lines and the standard library's, with secrets masked."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
import structlog

from recstop.worker.observability.logs import configure_logging, reset_logging


@pytest.fixture
def stream():
    """A captured log stream; logging is reset afterwards."""
    out = io.StringIO()
    configure_logging(log_level="INFO", log_format="json", secrets=["tok-very-secret"], stream=out)
    yield out
    reset_logging()


def lines(stream):
    """Every captured line, parsed as JSON."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_stdlib_lines_are_both_json(stream):
    """A structlog line and a plain logging line (as Celery writes) both come out as JSON."""
    structlog.get_logger("recstop.test").info("ours", n=1)
    logging.getLogger("celery.worker").warning("theirs %s", "formatted")
    ours, theirs = lines(stream)
    assert (ours["event"], ours["n"], ours["level"]) == ("ours", 1, "info")
    assert (theirs["event"], theirs["logger"], theirs["level"]) == (
        "theirs formatted",
        "celery.worker",
        "warning",
    )
    assert ours["timestamp"].endswith("Z")


def test_secrets_are_masked_everywhere(stream):
    """A token in the message, a field, a nested value or an exception text is masked."""
    log = structlog.get_logger("recstop.test")
    log.info("token tok-very-secret", header={"X-Auth-Token": "tok-very-secret"})
    logging.getLogger("other").error("leak %s", "tok-very-secret")
    try:
        raise ValueError("tok-very-secret")  # noqa: TRY301
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert "tok-very-secret" not in text
    assert text.count("***") >= 4


def test_task_lines_carry_every_context_field(stream):
    """Inside a task (task_id bound), missing context fields are present as null."""
    structlog.contextvars.bind_contextvars(task_id="t1", call_uuid="c1")
    try:
        structlog.get_logger("recstop.test").info("attempt")
    finally:
        structlog.contextvars.clear_contextvars()
    [line] = lines(stream)
    assert {k: line[k] for k in ("task_id", "call_uuid", "attempt", "auth_id", "request_id")} == {
        "task_id": "t1",
        "call_uuid": "c1",
        "attempt": None,
        "auth_id": None,
        "request_id": None,
    }


def test_reset_removes_the_handler():
    """reset_logging undoes configure_logging."""
    configure_logging(log_level="INFO", log_format="json", stream=io.StringIO())
    reset_logging()
    assert logging.getLogger().handlers == []


class CountingStream(io.StringIO):
    """A captured stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        """Count the write, keep the text."""
        self.writes += 1
        return super().write(text)


def test_the_background_writer_writes_every_line_whole_in_fewer_writes():
    """With the writer thread, lines of several threads all arrive, whole and in order per thread, batched."""
    out = CountingStream()
    configure_logging(log_level="INFO", log_format="json", stream=out, background=True)
    log = structlog.get_logger("recstop.test")

    def emit(thread: int) -> None:
        for n in range(500):
            log.info("line", thread=thread, n=n)

    workers = [threading.Thread(target=emit, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    reset_logging()  # writes out what is queued
    got = lines(out)
    assert len(got) == 2000
    for t in range(4):
        assert [line["n"] for line in got if line["thread"] == t] == list(range(500))
    assert out.writes < 2000
