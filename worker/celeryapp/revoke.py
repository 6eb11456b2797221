"""Celery's ``revoke`` control command, made durable: it cancels the stop as ``recstop cancel`` does.

``celery control revoke TASK_ID`` and ``app.control.revoke(task_id)`` are broadcast to every
worker; Celery's own handler only remembers the id in that worker's memory (a restart, another
worker or recstop's watchdog would still run the stop, and ``recstop status`` would never know).
This handler, in place of Celery's in recstop's workers only, cancels the run with that task id in Redis
(``StopStore.revoke``): status ``cancelled``, ``task-revoked`` (Flower REVOKED), the result
REVOKED, never a DELETE afterwards, whichever worker or restart sees the message next. A task id no
run has yet (its message still queued) is remembered, and its run is cancelled when admitted.

Each worker that receives the broadcast answers what it found; the first cancels, the others find
it cancelled already. A stop already finished stays what it was (the answer says which). A stop
whose attempt is running is cancelled, but a DELETE already sent cannot be recalled: if it stops
the recording, the stop ends ``stopped``. ``terminate=True`` is ignored: recstop never kills a
thread in the middle of a DELETE (the answer says so). A revoke sent while no worker runs reaches
no one (Celery's broadcast is not stored); ``recstop cancel`` needs no worker.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from celery.utils.functional import maybe_list
from celery.worker.control import Panel, ok
from redis.exceptions import RedisError

from recstop.worker.model.vocabulary import NotFound
from recstop.worker.state.cancels import Cancelled
from recstop.worker.state.store import StopStore

log = structlog.get_logger("recstop.revoke")


def describe(task_id: str, outcome: Cancelled) -> str:
    """One task id's answer, as the revoking client prints it."""
    if outcome.state is NotFound.UNKNOWN:
        return f"{task_id}: revoked (not received yet: cancelled when a worker receives it)"
    if outcome.joiner:
        return (
            f"{task_id}: joined the pending stop of task {outcome.task_id} (another request waits for "
            "it): not cancelled; its result will be that stop's. Revoke that task id to cancel the stop"
        )
    if outcome.cancelled and outcome.running:
        return (
            f"{task_id}: cancelled while its attempt ran (a DELETE already sent cannot be recalled; "
            "recstop status shows the outcome)"
        )
    if outcome.cancelled:
        return f"{task_id}: cancelled"
    if outcome.state is NotFound.FINISHED:
        return f"{task_id}: already finished (a later run of its stop exists), nothing to cancel"
    return f"{task_id}: already {outcome.state}, nothing to cancel"


def revoke(
    state: Any,  # noqa: ANN401 - Celery's control state
    task_id: str | list[str],
    terminate: bool = False,  # noqa: FBT001, FBT002 - Celery passes it by keyword or position
    signal: str | None = None,  # noqa: ARG001 - a terminate signal: never sent
    **_kwargs: object,
) -> dict[str, Any]:
    """Revoke task by task id (or list of ids): recstop cancels each stop durably."""
    store: StopStore = state.consumer.store
    answers = []
    for one in maybe_list(task_id) or []:
        try:
            outcome = store.cancels.revoke(str(one))
        except RedisError as exc:
            log.error("revoke_failed", task_id=str(one), error=type(exc).__name__)  # noqa: TRY400
            return {"error": f"{one}: not revoked, Redis is unavailable ({type(exc).__name__})"}
        log.info("task_revoked", task_id=str(one), state=outcome.state, cancelled=outcome.cancelled)
        answers.append(describe(str(one), outcome))
    if terminate:
        answers.append("terminate ignored: recstop never kills a thread in the middle of a DELETE")
    result: dict[str, Any] = ok("; ".join(answers))
    return result


#: The name of Celery's consumer step that owns the worker's mailbox (``celery.worker.pidbox.Pidbox``).
CONTROL_STEP: Final = "celery.worker.consumer.control.Control"


def install(consumer: Any) -> None:  # noqa: ANN401 - Celery's consumer
    """Answer ``revoke`` with :func:`revoke` in this consumer's mailbox only.

    Celery's mailbox node is built with ``handlers=Panel.data``: the process-wide registry itself,
    shared by every Celery app in the process. The node looks a command up in its own
    ``handlers`` (kombu's ``Node.handle``), so giving this node a copy with recstop's revoke is the
    one hook Celery leaves: Celery's registry, and any other app in the process, keep Celery's revoke.
    """
    step = consumer.blueprint.steps.get(CONTROL_STEP) if consumer.blueprint is not None else None
    node = getattr(getattr(step, "box", None), "node", None)
    if node is None:  # remote control is off (worker_enable_remote_control): no mailbox to answer
        return
    node.handlers = {**Panel.data, "revoke": revoke}
