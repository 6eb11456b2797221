"""One process of the duplicate storm: ``python -m chaos.storm_producer CALLS_FILE REPEATS SEED``.

Reads its settings from the environment (this is an entry point), connects, prints ``ready`` and
waits for a line on stdin (the start signal every storm process gets at once), enqueues every call
``REPEATS`` times in an order shuffled by ``SEED`` with the call's idempotency key, and prints one
JSON line: the task id each call got.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from recstop.producers import Producer

#: The line a storm process prints once connected.
READY: Final = "ready"


def request_id(call_uuid: str) -> str:
    """The idempotency key every storm process uses for a call."""
    return f"storm-{call_uuid}"


def main(argv: Sequence[str]) -> int:
    """Enqueue, then print ``{"task_ids": {call: [ids...]}, "deduplicated": n, "sent": n}``."""
    calls_file, repeats, seed = Path(argv[0]), int(argv[1]), int(argv[2])
    calls = calls_file.read_text(encoding="utf-8").split()
    order = [c for c in calls for _ in range(repeats)]
    random.Random(seed).shuffle(order)
    task_ids: dict[str, set[str]] = {}
    deduplicated = 0
    with Producer.from_env() as producer:
        producer.redis.ping()  # connected: the start signal is all that is left to wait for
        print(READY, flush=True)
        sys.stdin.readline()
        for call_uuid in order:
            handle = producer.stop_recording(call_uuid, request_id=request_id(call_uuid))
            task_ids.setdefault(call_uuid, set()).add(handle.task_id)
            deduplicated += handle.deduplicated
    out = {"task_ids": {c: sorted(ids) for c, ids in task_ids.items()}, "deduplicated": deduplicated}
    print(json.dumps({**out, "sent": len(order)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
