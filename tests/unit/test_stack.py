"""The harness stack: directory lifecycle, environment, ports, start-up failures and a full run."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from harness.procs import json_lines, pick_port, wait_for
from harness.stack import RedisOptions, SandboxOptions, Stack

AUTH_ID = "MA_STACK0001"
TOKEN = "tok-Stack-1"
OTHER_AUTH_ID = "SA_STACK0002"
OTHER_TOKEN = "tok-Stack-2"
NOWHERE = "redis://127.0.0.1:1/0"


def test_a_temporary_directory_is_removed_and_copied_to_keep_dir(tmp_path):
    """An external Redis and no sandbox start nothing; the temp dir goes, its copy stays."""
    with Stack("tidy", redis=NOWHERE, keep_dir=tmp_path) as stack:
        directory = stack.directory
        (directory / "note.txt").write_text("kept", encoding="utf-8")
        assert stack.exited() == []
    assert not directory.exists()
    assert (tmp_path / "tidy" / "note.txt").read_text(encoding="utf-8") == "kept"


def test_a_given_directory_is_kept(tmp_path):
    """``make run`` passes .run/: the stack never removes it."""
    with Stack("run", redis=NOWHERE, directory=tmp_path / "run") as stack:
        assert stack.directory == tmp_path / "run"
    assert (tmp_path / "run").is_dir()


def test_env_names_redis_the_sandbox_and_the_accounts_then_the_overrides():
    """The first account is the default one; the others go to the credentials file; ``env`` wins."""
    options = SandboxOptions({AUTH_ID: TOKEN, OTHER_AUTH_ID: OTHER_TOKEN}, credentials_file=True)
    stack = Stack("env", redis=NOWHERE, sandbox=options, env={"RECSTOP_CONCURRENCY": "3"})
    try:
        env = stack.env
        assert env["RECSTOP_BROKER_URL"] == NOWHERE
        assert env["VOBIZ_API_BASE"] == stack.sandbox.api_base
        assert (env["VOBIZ_AUTH_ID"], env["VOBIZ_AUTH_TOKEN"]) == (AUTH_ID, TOKEN)
        assert env["RECSTOP_CONCURRENCY"] == "3"
        credentials = json.loads(stack.credentials_path.read_text(encoding="utf-8"))
        assert credentials == {OTHER_AUTH_ID: OTHER_TOKEN}
        assert env["RECSTOP_CREDENTIALS_FILE"] == str(stack.credentials_path)
        settings = stack.settings(RECSTOP_CONCURRENCY="5")
        assert settings.concurrency == 5
    finally:
        stack.stop()
    with pytest.raises(LookupError):
        _ = stack.redis
    with Stack("bare", redis=NOWHERE) as bare, pytest.raises(LookupError):
        _ = bare.sandbox


def test_pick_port_prefers_the_given_port_unless_taken():
    """A free preferred port is used; a taken one falls back to another free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        assert pick_port(taken) != taken
    assert pick_port(taken) == taken
    assert pick_port(None) > 0


@pytest.mark.integration
def test_a_part_that_cannot_start_fails_fast_and_the_stack_is_torn_down():
    """redis-server rejecting its arguments is reported at once, and the directory still goes."""
    stack = Stack("broken", redis=RedisOptions(args=("--no-such-option", "yes")))
    with pytest.raises(AssertionError, match="redis-server exited"), stack:
        pass
    assert not stack.directory.exists()


@pytest.mark.integration
def test_the_whole_stack_stops_a_recording_and_every_process_goes():
    """Redis, sandbox, a worker, Flower and a producer: a stop reaches the API; exit ends them all."""
    with Stack("whole", sandbox=SandboxOptions({AUTH_ID: TOKEN})) as stack:
        (worker,) = stack.start_workers(1, RECSTOP_LOG_FORMAT="json")
        flower = stack.start_flower()
        call = str(uuid.uuid4())
        stack.producer().stop_recording(call)
        client = stack.sandbox.client
        wait_for(
            lambda: any(e["call_uuid"] == call and e["status"] == 204 for e in client.requests()),
            timeout_s=30,
            what="the DELETE at the sandbox",
        )
        assert stack.exited() == []
        procs = [stack.redis.proc, stack.sandbox.proc, worker.proc, flower.proc]
    assert all(proc is not None and proc.poll() is not None for proc in procs)
    assert stack.producers == []
    assert stack.workers == []


@pytest.mark.integration
def test_a_foreground_worker_runs_in_its_own_session_and_shuts_down_once(capfd):
    """`make run`'s worker prints here, yet a Ctrl-C there cannot reach it: one SIGTERM stops it, once."""
    with Stack("foreground") as stack:
        worker = stack.start_worker("fg", foreground=True, RECSTOP_LOG_FORMAT="json")
        assert os.getsid(worker.proc.pid) != os.getsid(0)
        proc = worker.proc
    assert proc.returncode == 0
    assert capfd.readouterr().out.count("Warm shutdown") == 1


def test_json_lines_leaves_a_half_written_line_for_the_next_read():
    """A log read while a line is being written parses the complete lines and waits for the rest."""
    first = json.dumps({"event": "one"}) + "\n"
    second = json.dumps({"event": "two", "exception": "Traceback ..."}) + "\n"
    assert json_lines(first + second[:20]) == [{"event": "one"}]
    assert json_lines(first + second) == [{"event": "one"}, {"event": "two", "exception": "Traceback ..."}]


def test_json_lines_fails_on_a_complete_line_that_is_not_json():
    """A finished line that is not JSON is an unstructured log line: the test fails on it."""
    with pytest.raises(AssertionError, match="not JSON"):
        json_lines('{"event": "one"}\nWarm shutdown (MainProcess)\n')
