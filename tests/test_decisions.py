"""Decisions as data, tested on plain values: no threads, files or sleeps."""

from __future__ import annotations

import pytest

from syncd.core.backoff import backoff
from syncd.core.coalesce import Coalescer
from syncd.core.worker import Step, WorkerState, WorkerView, next_step, retry_delay
from syncd.settings import WorkerSettings
from syncd.testing import ManualClock


@pytest.mark.parametrize(("view", "step"), [
    (WorkerView(manifest_known=False, has_work=False, answers_pending=0, stale=False), Step.RECONCILE),
    (WorkerView(manifest_known=False, has_work=True, answers_pending=0, stale=False), Step.RECONCILE),
    (WorkerView(manifest_known=False, has_work=True, answers_pending=2, stale=False), Step.WAIT_FOR_ANSWERS),
    (WorkerView(manifest_known=True, has_work=False, answers_pending=0, stale=True), Step.RECONCILE),
    (WorkerView(manifest_known=True, has_work=True, answers_pending=1, stale=True), Step.WAIT_FOR_ANSWERS),
    (WorkerView(manifest_known=True, has_work=False, answers_pending=1, stale=False), Step.WAIT_FOR_WORK),
    (WorkerView(manifest_known=True, has_work=True, answers_pending=3, stale=False), Step.PUSH),
    (WorkerView(manifest_known=True, has_work=False, answers_pending=0, stale=False), Step.WAIT_FOR_WORK),
])
def test_next_step(view: WorkerView, step: Step) -> None:
    assert next_step(view) is step


def test_back_off_doubles_to_its_cap_and_a_permanent_error_waits_for_a_fix() -> None:
    s = WorkerSettings(backoff_start=0.5, backoff_max=30.0, permanent_retry=60.0)
    delays = [retry_delay(n, False, s).delay for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay(3, False, s).state is WorkerState.RETRYING
    assert retry_delay(3, False, s).describe() == "retrying in 2.0s"
    permanent = retry_delay(1, True, s)
    assert permanent.state is WorkerState.WAITING_FOR_FIX and permanent.delay == 60.0
    assert permanent.describe() == "waiting for a fix (retrying every 60s)"
    assert backoff(0, 1, 10) == 0 and backoff(1_000, 1, 10) == 10


def test_coalescing_on_a_manual_clock() -> None:
    """The quiet period and the longest wait, with time moved by hand."""
    clock = ManualClock()
    c = Coalescer(debounce=0.02, max_wait=2.0)
    c.add({"/a"}, clock.now())
    assert c.deadline() == pytest.approx(clock.now() + 0.02)
    for _ in range(150):  # a change every 15 ms: never 20 ms of quiet
        clock.advance(0.015)
        c.add({f"/b{_}"}, clock.now())
        if c.deadline() is not None and c.deadline() <= clock.now():
            break
    assert c.deadline() <= clock.now() + 0.02
    clock.advance(2.0)
    batch = c.cut(clock.now())
    assert batch is not None and "/a" in batch.paths and len(batch.paths) > 100
    assert c.deadline() is None


def test_a_small_change_after_calm_is_cut_at_once_a_burst_waits_for_quiet() -> None:
    clock = ManualClock()
    c = Coalescer(debounce=0.02, max_wait=2.0, small=20)
    c.add({"/src/a.rs"}, clock.now())  # an editor's save, nothing before it
    assert c.deadline() == clock.now()
    first = c.cut(clock.now())
    assert first is not None and first.early and first.paths == {"/src/a.rs"}
    # a burst: the next set arrives within the quiet period of the last one -> quiet applies
    clock.advance(0.005)
    c.add({"/src/b.rs"}, clock.now())
    assert c.deadline() == pytest.approx(clock.now() + 0.02)
    clock.advance(0.01)
    c.add({"/src/c.rs"}, clock.now())
    clock.advance(0.02)
    second = c.cut(clock.now())
    assert second is not None and not second.early and second.paths == {"/src/b.rs", "/src/c.rs"}
    # a large set after calm: a checkout, not a save -> quiet applies
    clock.advance(1.0)
    c.add({f"/src/f{i}" for i in range(500)}, clock.now())
    assert c.deadline() == pytest.approx(clock.now() + 0.02)
    clock.advance(0.02)
    assert c.cut(clock.now()) is not None
    # calm again: a small change goes at once
    clock.advance(1.0)
    c.add({"/src/d.rs"}, clock.now())
    assert c.deadline() == clock.now()
    # (off by default: small=0 keeps the old behaviour)
    plain = Coalescer(debounce=0.02, max_wait=2.0)
    plain.add({"/x"}, 0.0)
    assert plain.deadline() == pytest.approx(0.02)
