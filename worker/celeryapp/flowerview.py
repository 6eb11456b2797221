"""Flower's task list, readable at a glance: the call, the state, a one-line outcome, when it is due.

Flower shows the task events' raw fields: the kwargs dict (its call_uuid cut off in a narrow
column), a result dict cut mid-way, ``Retry(...)`` and ``StopDead(...)`` reprs, and the last
retry's text still beside a stop that succeeded. :func:`format_task` is Flower's ``format_task``
option for recstop's stops: for each row of the task list (and the task's page) it shows

- **kwargs**: the call (``8a1bae09-...-7b15c498ac0c``, and ``…/rec-1.mp3`` for one recording);
- **result**: what happened, in one line: ``stopped 204, attempt 3``, ``dead http_403: ...``,
  ``attempt 2: HTTP 503: ...`` (RETRY), ``scheduled``, ``cancelled``, ``skipped: duplicate``;
  a replay adds ``replays <dead task id>`` (its ``parent_id``, which Flower's task page links);
- **eta**: when it is due (a scheduled stop's time, a retry's next attempt), else nothing;
- **exception** on a stop that succeeded: nothing (Flower keeps the last retry's otherwise).

:func:`install_defaults` makes these and :data:`TASKS_COLUMNS` Flower's defaults whenever
``celery -A recstop.worker flower`` loads the app (``worker/celery.py``), however it is started:
a ``--tasks_columns``, ``FLOWER_TASKS_COLUMNS`` or a ``--conf`` file still override them. The
search box keeps searching the raw fields (a call_uuid finds its stops).
"""

from __future__ import annotations

import ast
import copy
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from recstop.worker.model.errors import RETRY_TEXT
from recstop.worker.model.vocabulary import CeleryState
from recstop.worker.state.keys import TASK_NAME

#: The columns of Flower's task list, in order: the call (kwargs, as formatted here), the state,
#: the outcome (result), when it is due (eta), then when it was received, its id, the worker.
#: At 1600 px the first four always show; the rest scroll.
TASKS_COLUMNS: Final = "kwargs,state,result,eta,received,uuid,worker,retries,runtime"
#: The longest outcome and error text shown in a row (the task's page shows the same). The task
#: list's Result column shows about 50 characters (Flower's CSS: 400 px), so outcomes say what
#: happened in their first words: an API's long error text is cut there.
OUTCOME_CHARS: Final = 72
#: How many characters of a URL's last segment name a recording beside its call.
URL_TAIL_CHARS: Final = 24
#: How much of the dead stop's task id a replay's row shows (its page links the whole id).
REPLAY_ID_CHARS: Final = 8
#: What keeps a due time on one line in Flower's ETA column, which wraps at spaces and hyphens.
NBSP: Final = "\u00a0"
NB_HYPHEN: Final = "\u2011"
_CALL_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REPR: Final = re.compile(r"(?P<cls>\w+)\((?P<args>.*)\)", re.DOTALL)


def format_task(task: Any) -> Any:  # noqa: ANN401 - a celery.events.state.Task (Flower passes a copy)
    """Flower's ``format_task``: a stop's row (and page) as the module's docstring says."""
    if getattr(task, "name", None) not in (None, TASK_NAME):
        return task
    task = copy.copy(task)
    state = str(getattr(task, "state", "") or "")
    retry = RETRY_TEXT.search(str(task.exception or "")) if state == CeleryState.RETRY else None
    task.kwargs = call_of(task.kwargs)
    task.result = _outcome(task, state, retry)
    task.eta = _due(task, state, retry)
    if state == CeleryState.SUCCESS:
        task.exception = None  # a retry's text left over from before the success
        task.traceback = None
    return task


def call_of(kwargs: object) -> str:
    """The call a stop's kwargs name (``<call_uuid>`` or ``<call_uuid> …/<last URL segment>``)."""
    text = str(kwargs or "")
    try:
        parsed = ast.literal_eval(text) if isinstance(kwargs, str) else kwargs
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        parsed = None
    if isinstance(parsed, Mapping) and isinstance(parsed.get("call_uuid"), str):
        call, url = str(parsed["call_uuid"]), parsed.get("url")
    else:  # not a dict (a repr cut short): the first UUID in it is the call
        found = _CALL_UUID.search(text)
        return found.group(0) if found else _short(text)
    if not isinstance(url, str) or not url:
        return call
    tail = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or url
    return f"{call} …/{_short(tail, URL_TAIL_CHARS)}"


def _outcome(task: Any, state: str, retry: re.Match[str] | None) -> str:  # noqa: ANN401
    """What happened to the stop, in one line; a replay says which dead stop it replays."""
    if state == CeleryState.SUCCESS:
        text = _success(task.result)
    elif state == CeleryState.FAILURE:
        text = "dead " + (_call_args(task.exception) or "")
    elif state == CeleryState.RETRY:
        text = f"attempt {retry['attempt']}: {retry['why']}" if retry else "retry"
    elif state == CeleryState.PENDING:
        text = "scheduled" if task.eta else "queued"
    elif state == CeleryState.REVOKED:
        text = "cancelled"
    elif state == CeleryState.SKIPPED:  # the event's reason, in its result: ``skipped: duplicate``
        text = str(task.result or "skipped").strip("'\"")
    elif state == "STARTED":
        text = "attempt running"
    else:
        text = state.lower()
    text = _short(text)
    parent = getattr(task, "parent_id", None)
    if parent and parent != task.uuid:  # the search box finds the dead stop by this part of its id
        text += f" · replays {str(parent)[:REPLAY_ID_CHARS]}"
    return text


def _success(result: object) -> str:
    """``stopped 204, attempt 3``: the task's own line, or the same read from an older worker's dict."""
    text = str(result or "")
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip("'\"") or "stopped"
    if not isinstance(parsed, Mapping):
        return str(parsed)
    words = "stopped" if parsed.get("state") == "stopped" else "already stopped"
    status = f" {parsed['http_status']}" if parsed.get("http_status") else ""
    attempt = f", attempt {parsed['attempt']}" if parsed.get("attempt") else ""
    return f"{words}{status}{attempt}"


def _due(task: Any, state: str, retry: re.Match[str] | None) -> str | None:  # noqa: ANN401
    """When the stop is due: a waiting stop's ETA, a retry's next attempt; nothing once it ran."""
    if state == CeleryState.RETRY and retry is not None:
        return _when(retry["due"])
    if state == CeleryState.PENDING and task.eta:
        return _when(str(task.eta))
    return None


def _when(iso_time: str) -> str:
    """``2026-12-04 21:05:03 UTC`` from an ISO-8601 time (as it came when it is not one), unbroken.

    Flower's ETA column wraps its text: non-breaking spaces and hyphens keep the time on one line.
    """
    try:
        moment = datetime.fromisoformat(iso_time)
    except ValueError:
        return iso_time
    text = (
        moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if moment.utcoffset() is not None
        else (moment.strftime("%Y-%m-%d %H:%M:%S"))
    )
    return text.replace(" ", NBSP).replace("-", NB_HYPHEN)


def _call_args(text: str) -> str | None:
    """The message of an exception's repr (``StopDead('http_403: Forbidden')`` → ``http_403: Forbidden``)."""
    found = _REPR.fullmatch(text.strip())
    if found is None:
        return text or None
    try:
        args = ast.literal_eval(f"({found['args']},)")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return found["args"]
    inner = [a for a in args if isinstance(a, str)]
    if not inner and args and isinstance(args[-1], str | BaseException):
        return str(args[-1])
    return inner[-1] if inner else text


def _short(text: str, limit: int = OUTCOME_CHARS) -> str:
    """One line of at most ``limit`` characters (cut with an ellipsis)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def install_defaults() -> None:
    """Make :data:`TASKS_COLUMNS` and :func:`format_task` Flower's defaults, in a Flower process.

    Flower reads its options from its command line, ``FLOWER_*`` variables and a ``--conf`` file,
    all after the app is loaded (``celery -A recstop.worker flower``): values set here are the
    defaults those override. Elsewhere (a worker, a producer) Flower's options are not loaded and
    this does nothing.
    """
    options_module = sys.modules.get("flower.options")
    if options_module is None:
        return
    options = options_module.options
    options.tasks_columns = TASKS_COLUMNS
    options.format_task = format_task
