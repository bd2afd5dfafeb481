"""The benchmarks' in-container observer: it stays alive while its host side lives, however long
it waits for a change, and ends by itself once that side is gone (so a dead benchmark leaves no
loop burning a core in the container)."""

from __future__ import annotations

import signal
import time

from benchmarks.observer import Observer

LINGER = 2  # s; the loop's limit without a line from the host, short for the test


def _observer_loops(container) -> int:  # noqa: ANN001
    """How many observer loops run in the container (`sh -c SCRIPT observer ...`)."""
    out = container.exec_run(["ps", "-o", "args"]).output.decode()
    return sum(1 for line in out.splitlines() if " observer " in line)


def _wait_for(predicate, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_waiting_observer_outlives_its_linger_and_still_sees_the_change(make_container) -> None:  # noqa: ANN001
    c = make_container()
    c.exec_run(["sh", "-c", "echo one > /tmp/watched"])
    with Observer(c.id, "file", "/tmp/watched", linger_s=LINGER) as obs:
        assert obs.wait_content("one", 10) is not None
        time.sleep(LINGER * 2.5)  # only the keep-alive lines stand between the loop and its exit
        assert not obs.ended
        c.exec_run(["sh", "-c", "echo two > /tmp/watched"])
        event = obs.wait_content("two", 10)
        assert event is not None and event.payload == "two"
    assert _wait_for(lambda: _observer_loops(c) == 0, 5), "close() left the loop running"


def test_an_observer_whose_host_side_died_ends_by_itself(make_container) -> None:  # noqa: ANN001
    c = make_container()
    obs = Observer(c.id, "count", "/tmp", 10_000, linger_s=LINGER)
    assert _observer_loops(c) == 1
    obs._closing.set()  # the host side goes quiet: no keep-alive, no "stop" (a crashed benchmark)
    obs._proc.send_signal(signal.SIGKILL)
    obs._proc.wait()
    assert _wait_for(lambda: _observer_loops(c) == 0, LINGER + 10), "the loop outlived its host side"
    obs.close()
