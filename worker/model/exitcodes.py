"""The exit codes of ``recstop`` and of ``celery -A recstop.worker``, in one place (docs/cli.md shows them).

Every command exits 0 on success, 1 on a failure (Redis unreachable, nothing to cancel, unhealthy)
and 2 on bad input. ``recstop status`` exits 0 only when the recording is known stopped, and tells
the other states apart by their own codes, so a script can branch on the state without parsing.
"""

from __future__ import annotations

from typing import Final

from recstop.worker.model.vocabulary import State

OK: Final = 0
FAILURE: Final = 1
USAGE: Final = 2
PENDING: Final = 3
DEAD: Final = 4
CANCELLED: Final = 5
UNKNOWN: Final = 6

#: Code → what it means: the table of docs/cli.md.
MEANINGS: Final[dict[int, str]] = {
    OK: "success; for `status`: the recording is stopped (`stopped` or `already_stopped`)",
    FAILURE: "failure: Redis unreachable, nothing to cancel, no such dead letter, unhealthy ...",
    USAGE: "bad input: an unknown option, a malformed call_uuid, URL or time, a bad setting (a wrong Redis "
    "password, Cluster ...), a missing extra",
    PENDING: "`status`: the stop is still to happen (`queued`, `scheduled` or `retrying`)",
    DEAD: "`status`: the stop was given up (`dead`; a dead letter holds it)",
    CANCELLED: "`status`: the stop was cancelled (`cancelled`)",
    UNKNOWN: "`status`: no stop is known for this call (and URL) in the Redis asked",
}

#: The exit code of ``recstop status`` for each state.
STATUS: Final[dict[State, int]] = {
    State.STOPPED: OK,
    State.ALREADY_STOPPED: OK,
    State.QUEUED: PENDING,
    State.SCHEDULED: PENDING,
    State.RETRYING: PENDING,
    State.DEAD: DEAD,
    State.CANCELLED: CANCELLED,
}
