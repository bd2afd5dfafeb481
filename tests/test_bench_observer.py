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


def test_an_edit_that_landed_unseen_is_measured_again_with_a_new_observer(make_container, tmp_path,  # noqa: ANN001
                                                                            monkeypatch) -> None:  # noqa: ANN001
    """A watch that goes blind (its events never come) must not count an edit that landed as
    missed: the edit is checked in the container, and measured again with a fresh observer. One
    that never landed stays a miss, with what the container held."""
    from benchmarks import common

    c = make_container()
    c.exec_run(["mkdir", "-p", "/tmp/w"])

    def push(local, dest) -> None:  # noqa: ANN001
        c.exec_run(["sh", "-c", f"printf '%s\\n' '{local.read_text().strip()}' > {dest}"])

    blinded: list[str] = []
    real = Observer.wait_content

    def blind_once(self, expected: str, timeout: float):  # noqa: ANN001, ANN202
        if not blinded:
            blinded.append(expected)
            return None  # as a stalled stream would
        return real(self, expected, timeout)

    monkeypatch.setattr(Observer, "wait_content", blind_once)
    monkeypatch.setattr(common, "WARMUP", 0)
    result = common.measure_edits("test", c, tmp_path / "one.txt", "/tmp/w/one.txt", push, 3)
    assert result.attempted == 3 and result.missed == 0 and len(result.samples_ms) == 3 and result.verified
    assert result.observer_restarts == 1 and len(result.misses) == 1 and "arrived unseen" in result.misses[0]

    def lost(local, dest) -> None:  # noqa: ANN001 - a push that silently writes nothing
        return None

    monkeypatch.setattr(common, "EDIT_TIMEOUT", 1.0)
    result = common.measure_edits("test", c, tmp_path / "two.txt", "/tmp/w/two.txt", lost, 1)
    assert result.attempted == 1 and result.missed == 1 and not result.verified
    assert result.misses and "not there" in result.misses[0]
