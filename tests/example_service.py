"""A small service on recstop's public API, as a backend team writes it: ``mypy --strict`` clean.

``python example_service.py sync|async CALL_UUID`` stops every recording of the call (urgent lane),
retrying as the error contract says, and prints ``<task_id> <state>``. ``test_wheel.py`` runs it in
a bare install of the wheel and type-checks it against the wheel and the editable install.
"""

from __future__ import annotations

import asyncio
import sys

from recstop.producers import (
    AsyncProducer,
    BrokerMisconfiguredError,
    InvalidStopRequest,
    Producer,
    ProducerSettings,
    State,
    StatusRecord,
    StopHandle,
    StopNotStoredError,
    StopOutcomeUnknownError,
    async_redis_client,
    redis_client,
)

ATTEMPTS = 3


def stop_now(producer: Producer, call_uuid: str, request_id: str) -> StopHandle:
    """Stop the call's recordings; a retry keeps the request_id, so a stored stop is never doubled."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return producer.stop_recording(call_uuid, request_id=request_id, urgent=True)
        except (StopNotStoredError, StopOutcomeUnknownError):
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def stop_now_async(producer: AsyncProducer, call_uuid: str, request_id: str) -> StopHandle:
    """The same, from a coroutine: the event loop keeps serving while Redis answers (or does not)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await producer.stop_recording(call_uuid, request_id=request_id, urgent=True)
        except (StopNotStoredError, StopOutcomeUnknownError):
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def stopped(record: StatusRecord | None) -> bool:
    """Whether the recording is known stopped."""
    return record is not None and record.state in {State.STOPPED, State.ALREADY_STOPPED}


async def _async_main(settings: ProducerSettings, call_uuid: str) -> StopHandle:
    async with AsyncProducer(settings, async_redis_client(settings.redis)) as producer:
        return await stop_now_async(producer, call_uuid, f"example-{call_uuid}")


def main(argv: list[str]) -> int:
    """Stop one call's recordings; exit 2 on bad input or a misconfigured Redis."""
    mode, call_uuid = argv[1], argv[2]
    settings = ProducerSettings.from_env()
    try:
        if mode == "async":
            handle = asyncio.run(_async_main(settings, call_uuid))
        else:
            with Producer(settings, redis_client(settings.redis)) as producer:
                handle = stop_now(producer, call_uuid, f"example-{call_uuid}")
                stopped(producer.status(call_uuid))
    except (InvalidStopRequest, BrokerMisconfiguredError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    state: State = handle.state
    sys.stdout.write(f"{handle.task_id} {state.value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
