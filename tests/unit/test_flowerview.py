"""How a stop reads in Flower's task list: the call, a one-line outcome, when it is due."""

from __future__ import annotations

import subprocess
import sys

from celery.events.state import State, Task

from recstop.worker.celeryapp.flowerview import TASKS_COLUMNS, format_task
from recstop.worker.model.errors import RetryScheduled

CALL = "3f2b8c1e-7a4d-4e2b-9c1a-0d9e8f7a6b5c"
KWARGS = f"{{'call_uuid': '{CALL}', 'url': None, 'auth_id': 'MA_X', 'request_id': None, 'not_after': None}}"


def task(**fields: object) -> Task:
    """A task as Flower's event state holds it."""
    fields = {"uuid": "9a7f", "name": "recstop.stop_recording", "kwargs": KWARGS, **fields}
    return Task(cluster_state=State(), **fields)


def shown(one: Task) -> tuple[str, str, str | None]:
    """The call, outcome and due columns of a task, as formatted."""
    done = format_task(one)
    return done.kwargs, done.result, done.eta


def test_each_state_is_one_line_with_the_call_and_when_it_is_due():
    """SUCCESS (this worker's or an older one's dict), FAILURE, RETRY, PENDING, REVOKED, SKIPPED."""
    retry = RetryScheduled.after(2, 503, "Service Unavailable", 1796418000.0)
    cases = {
        "stopped": (task(state="SUCCESS", result="stopped 204, attempt 3"), "stopped 204, attempt 3", None),
        "older worker": (
            task(
                state="SUCCESS",
                result="{'state': 'already_stopped', 'detail': '', 'attempt': 1, 'http_status': 404}",
            ),
            "already stopped 404, attempt 1",
            None,
        ),
        "dead": (
            task(state="FAILURE", exception="StopDead('http_403: Forbidden')"),
            "dead http_403: Forbidden",
            None,
        ),
        "retry": (
            task(state="RETRY", exception=f"Retry(Retry(...), {retry!r}, datetime.datetime(2026, 12, 4))"),
            "attempt 2: HTTP 503: Service Unavailable",
            "2026\u201112\u201104\u00a021:00:00\u00a0UTC",
        ),
        "scheduled": (
            task(state="PENDING", eta="2026-12-04T21:00:00+00:00"),
            "scheduled",
            "2026\u201112\u201104\u00a021:00:00\u00a0UTC",
        ),
        "queued": (task(state="PENDING"), "queued", None),
        "cancelled": (task(state="REVOKED"), "cancelled", None),
        "skipped": (
            task(state="SKIPPED", result="skipped: duplicate_request"),
            "skipped: duplicate_request",
            None,
        ),
    }
    for name, (one, outcome, due) in cases.items():
        assert shown(one) == (CALL, outcome, due), name


def test_a_success_drops_the_retry_text_and_a_replay_names_the_dead_stop():
    """The last retry's exception goes once the stop succeeded; a parent_id reads 'replays <id>'."""
    one = task(
        state="SUCCESS", result="stopped 204, attempt 3", exception="Retry(...)", traceback="Traceback"
    )
    one.parent_id = "443d309f-08d6-42b8-b039-03332b429aaa"
    done = format_task(one)
    assert (done.exception, done.traceback) == (None, None)
    assert done.result == "stopped 204, attempt 3 · replays 443d309f"
    assert one.exception == "Retry(...)"  # Flower's own copy of the task is left as it was


def test_one_recording_shows_its_call_and_the_end_of_its_url_and_other_tasks_are_left_alone():
    """A URL stop shows '<call> …/<last segment>'; a task of another name is not touched."""
    url = "https://media.example.com/accounts/MA_X/recordings/rec-0001.mp3?sig=abc"
    one = task(state="SUCCESS", kwargs=f"{{'call_uuid': '{CALL}', 'url': '{url}'}}", result="stopped 204")
    assert format_task(one).kwargs == f"{CALL} …/rec-0001.mp3"
    cut = task(state="STARTED", kwargs=f"{{'call_uuid': '{CALL}', 'url': 'https://h/very-long...")
    assert format_task(cut).kwargs == CALL  # a repr cut short: the call is still found
    other = Task(uuid="x", name="another.task", kwargs="{'a': 1}", state="SUCCESS", result="42")
    assert format_task(other) is other


def test_celery_flower_gets_recstops_columns_and_formatter_unless_told_otherwise():
    """Loading the app under Flower sets its defaults; a --tasks_columns given on the command line wins."""
    # `celery -A recstop.worker flower` up to where Flower reads its options, then each option read:
    # with no option given, and with --tasks_columns given.
    probe = (
        "import sys; from celery.bin.celery import celery; import flower.command as c\n"
        "def read(*_a, **_k):\n"
        "    c.apply_options('flower', []); o = c.options; print(o.tasks_columns, o.format_task.__module__)\n"
        "    c.apply_options('flower', ['--tasks_columns=name,uuid']); print(c.options.tasks_columns)\n"
        "c.flower.callback = read\n"
        "sys.argv = ['celery', '-A', 'recstop.worker', 'flower']; celery.main()"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [TASKS_COLUMNS, "recstop.worker.celeryapp.flowerview", "name,uuid"]
