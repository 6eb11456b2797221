"""The urgent-first gate: routine stops pause while an urgent one is in, never for long."""

from __future__ import annotations

import threading
import time

import pytest

from recstop.worker.policy.priority import UrgentFirst


def test_nothing_held_costs_nothing():
    """With no urgent stop in the process a routine step goes straight on."""
    gate = UrgentFirst()
    assert gate.yield_to_urgent() == 0.0
    assert gate.held == 0


def test_routine_step_waits_until_the_urgent_stop_is_released():
    """A routine step started while an urgent stop is held goes on once it is released."""
    gate = UrgentFirst(max_pause_s=30.0)
    gate.hold("tag-1")
    done = threading.Event()
    waited: list[float] = []

    def routine() -> None:
        waited.append(gate.yield_to_urgent())
        done.set()

    threading.Thread(target=routine, daemon=True).start()
    assert not done.wait(0.3), "the routine step went on while the urgent stop was held"
    gate.release("tag-1")
    assert done.wait(5.0)
    assert 0.3 <= waited[0] < 5.0


def test_pause_is_bounded():
    """A hold never released pauses a routine step for ``max_pause_s`` at most."""
    gate = UrgentFirst(max_pause_s=0.05)
    gate.hold("lost")
    started = time.monotonic()
    gate.yield_to_urgent()
    assert 0.04 <= time.monotonic() - started < 2.0


def test_stale_hold_stops_pausing():
    """A hold older than ``stale_after_s`` (its release went missing) no longer pauses anyone."""
    now = [100.0]
    gate = UrgentFirst(max_pause_s=30.0, stale_after_s=30.0, clock=lambda: now[0])
    gate.hold("forgotten")
    assert gate.held == 1
    now[0] += 31.0
    assert gate.held == 0
    started = time.monotonic()
    gate.yield_to_urgent()
    assert time.monotonic() - started < 1.0
    gate.hold("next")  # the stale hold is dropped when the next one comes
    assert gate.held == 1


def test_releases_are_per_key():
    """Two urgent stops in: the gate stays shut until both are released; unknown keys are ignored."""
    gate = UrgentFirst()
    gate.hold("a")
    gate.hold("b")
    gate.release("a")
    gate.release("never-held")
    assert gate.held == 1
    gate.release("b")
    assert gate.held == 0


def test_context_manager_releases_on_error():
    """``urgent()`` releases its hold even when the urgent stop raises."""
    gate = UrgentFirst()
    seen: list[int] = []

    def urgent_stop() -> None:
        with gate.urgent("task-1"):
            seen.append(gate.held)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        urgent_stop()
    assert seen == [1]
    assert gate.held == 0
