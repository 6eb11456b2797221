"""The documented message for other languages, sent with plain redis-py (no Celery), is executed."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from support import ROOT, deletes, final, in_flight, wait_for

pytestmark = pytest.mark.integration


def readme_message() -> str:
    """The JSON block of docs/other-languages.md."""
    section = (ROOT / "docs" / "other-languages.md").read_text(encoding="utf-8")
    found = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert found, "the section has no JSON block"
    return found.group(1)


def fill(template: str, kwargs: dict[str, object]) -> tuple[str, str]:
    """Fill the placeholders as a Go service would; return (message, task id)."""
    task_id = str(uuid.uuid4())
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    message = (
        template.replace("<TASK_ID>", task_id)
        .replace("<DELIVERY_TAG>", str(uuid.uuid4()))
        .replace("<BASE64_BODY>", base64.b64encode(body.encode()).decode())
    )
    assert "<" not in message, "a placeholder is left"
    json.loads(message)  # what a strict JSON encoder in another language would produce
    return message, task_id


def test_readme_message_lpushed_with_plain_redis_stops_the_recording(
    producer, start_worker, sandbox_client, call, redis_server
):
    """LPUSH of the documented envelope runs the stop; a retry with the same request_id DELETEs no more."""
    start_worker()
    call_uuid = call()
    kwargs = {"call_uuid": call_uuid, "request_id": "go-billing-7"}
    client = redis_server.client()
    message, task_id = fill(readme_message(), kwargs)
    client.lpush("recstop", message)
    record = final(producer, call_uuid)
    assert (record.state, record.task_id, record.request_id) == ("stopped", task_id, "go-billing-7")
    retry, _ = fill(readme_message(), kwargs)
    client.lpush("recstop", retry)
    assert final(producer, call_uuid).task_id == task_id
    wait_for(lambda: client.llen("recstop") + in_flight(client) == 0, what="queue drained")
    assert len(deletes(sandbox_client, call_uuid)) == 1


def test_readme_message_with_bad_kwargs_is_dead_lettered(producer, start_worker, redis_server):
    """The same envelope with a call_uuid that is not UUID-shaped becomes a 'malformed' dead letter."""
    start_worker()
    message, task_id = fill(readme_message(), {"call_uuid": "../Account/MA_OTHER"})
    redis_server.client().lpush("recstop", message)
    entry = wait_for(producer.dead_letters.list, what="a dead letter")[0]
    assert (entry.reason, entry.task_id) == ("malformed", task_id)
