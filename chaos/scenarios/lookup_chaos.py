"""The Recordings API fails half its answers while stops flow: nothing lost, every confirmation settles.

Each stop is stopped as usual (its DELETE is never faulted here); then its confirmation looks the
call's recordings up while half the lookups fail (503 or a reset), so lookups are retried with
their backoff. At the end every stop is stopped, and its confirmation is ``confirmed`` or
``unconfirmed`` with a reason: none left pending, and a failing lookup never touched a stop.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Final

from chaos.load import Load, new_calls
from chaos.profiles import Profile
from chaos.report import ScenarioResult
from chaos.stack import Stack
from chaos.verify import reconcile, settled
from recstop.worker.model.vocabulary import Confirmation

#: Half the Recordings API's answers fail: 503s and connection resets.
FAULTS: Final = [
    {"kind": "status", "status": 503, "probability": 0.3, "endpoint": "recordings"},
    {"kind": "reset", "probability": 0.3, "endpoint": "recordings"},
]
#: How long every stop may take to settle, and then its confirmation (within its deadline).
SETTLE_S: Final = 120.0


def run(profile: Profile, keep_dir: Path | None = None) -> ScenarioResult:
    """Stops at a steady rate while the Recordings API fails half its answers."""
    started = time.monotonic()
    overrides = profile.lookups
    with Stack("lookup_chaos", overrides=overrides, keep_dir=keep_dir) as stack:
        client = stack.sandbox.client
        client.set_faults(FAULTS, seed=11)
        stack.start_workers(2)
        calls = new_calls(profile.lookup_stops)
        sent = Load(stack.producer, calls, rate_per_s=profile.rate_per_s).start().wait()
        tally = reconcile(stack.producer(), client, calls, timeout_s=SETTLE_S)
        settle_s = stack.settings().confirm.deadline_s + SETTLE_S
        records = settled(stack.producer(), calls, timeout_s=settle_s)
        looked = client.requests(endpoint="recordings")
    confirmations = Counter(str(r.confirmation) for r in records.values())
    reasons = Counter(
        r.confirm_reason for r in records.values() if r.confirmation == Confirmation.UNCONFIRMED
    )
    failed = sum(1 for entry in looked if entry["status"] != 200)  # noqa: PLR2004
    result = ScenarioResult("Recordings API failing half its answers", tally)
    result.note_overrides(overrides)
    result.figures.update(
        lookups=len(looked), failed_lookups=failed, confirmations=dict(confirmations), reasons=dict(reasons)
    )
    result.check_accepted(len(sent.accepted), len(calls))
    result.check_all_stopped()
    result.check("lookups failed as asked", failed > len(looked) // 4, f"{failed} of {len(looked)} lookups")
    pending = [c for c in calls if records.get(c) is None or records[c].confirmation in (None, "pending")]
    result.check("every confirmation settled", not pending, f"{len(pending)} still pending")
    unexplained = [r for r in records.values() if r.confirmation == "unconfirmed" and not r.confirm_reason]
    result.check("every unconfirmed stop says why", not unexplained, f"{dict(reasons)}")
    result.elapsed_s = time.monotonic() - started
    return result
