"""The README's "In your service" code runs as written against a live stack, and its stops end stopped."""

from __future__ import annotations

import asyncio
import re

import pytest
from support import ROOT, final

from recstop.producers import State

pytestmark = pytest.mark.integration


def readme_blocks(section: str) -> list[str]:
    """The ```python blocks of one ``## `` section of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


def test_the_in_your_service_code_stops_recordings_sync_and_async(
    env, monkeypatch, producer, start_worker, call
):
    """Both README snippets, run as written with the stack's environment: each stop ends ``stopped``."""
    threaded, asynchronous = readme_blocks("In your service")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start_worker()
    service: dict[str, object] = {}
    exec(compile(threaded, "README.md (threads)", "exec"), service)  # noqa: S102 - the README's own code
    first = call()
    task_id = service["stop_card_recording"](first, "order-1")  # type: ignore[operator]
    assert service["stop_card_recording"](first, "order-1") == task_id  # type: ignore[operator]
    assert (final(producer, first).state, final(producer, first).task_id) == (State.STOPPED, task_id)
    service["producer"].close()  # type: ignore[attr-defined]

    aio: dict[str, object] = {}
    exec(compile(asynchronous, "README.md (asyncio)", "exec"), aio)  # noqa: S102 - the README's own code
    second = call()

    async def serve() -> str:
        started = await aio["start_producer"]()  # type: ignore[operator]
        try:
            return await aio["stop_card_recording_async"](started, second, "order-2")  # type: ignore[operator, no-any-return]
        finally:
            await aio["stop_producer"](started)  # type: ignore[operator]

    task_id = asyncio.run(serve())
    assert (final(producer, second).state, final(producer, second).task_id) == (State.STOPPED, task_id)
