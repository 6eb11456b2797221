"""The one outcome vocabulary, from the API's answer to the status record.

An attempt comes to an :class:`Outcome` (``worker.classify`` decides it from the response, or from
the timeout or reset that took its place); the executor hands that word to ``finish.lua``, which
counts it in the metrics and moves the stop to its :class:`State`. The same strings are used by the
Lua scripts (``lua/common.lua``), the attempt log (``outcome``) and ``recstop status``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal


class Outcome(StrEnum):
    """What one attempt came to."""

    STOPPED = "stopped"  # 2xx: the recording is stopped
    ALREADY_STOPPED = "already_stopped"  # nothing was recording, or the call is gone
    RETRY = "retry"  # transient (429, 5xx, timeout, reset): try again after a backoff
    DEAD = "dead"  # permanent (4xx): trying again cannot help

    @property
    def succeeded(self) -> bool:
        """The recording is not being recorded any more, by this attempt or before it."""
        return self in {Outcome.STOPPED, Outcome.ALREADY_STOPPED}


class State(StrEnum):
    """Where a stop stands: the ``state`` of its status record."""

    SCHEDULED = "scheduled"  # waiting in the schedule for its due time
    QUEUED = "queued"  # its message is on a queue, or being run
    RETRYING = "retrying"  # an attempt failed; the next one waits in the schedule
    STOPPED = "stopped"
    ALREADY_STOPPED = "already_stopped"
    DEAD = "dead"  # given up: a dead letter holds it, with the reason
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """Still going to be attempted."""
        return self in PENDING


PENDING: Final = frozenset({State.SCHEDULED, State.QUEUED, State.RETRYING})

#: What a task run reports besides a state: it did nothing (a duplicate message, a stop already
#: pending under another task id ...), or the stop it ran was taken over by a newer run meanwhile.
Skipped = Literal["skipped", "superseded"]
