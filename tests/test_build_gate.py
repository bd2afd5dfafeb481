"""The build gate (syncd/builds.py) with a recording release: no containers, no watcher."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from syncd.builds import BuildGate, Late
from syncd.config import BuildStep, Mapping, Service
from syncd.jobs import BatchJob
from syncd.model import Desired, Entry, Kind, LocalFile
from syncd.trace import BatchTrace

pytestmark = pytest.mark.anyio


def _job(n: int, done: list[int]) -> BatchJob:
    return BatchJob(BatchTrace(n, 0.0), lambda j: done.append(j.trace.batch_id))


def _file(path: str) -> LocalFile:
    return LocalFile(path, Entry(Kind.FILE, digest=path))


async def test_changes_arriving_while_the_release_scans_join_the_builds_batch(tmp_path: Path) -> None:
    """A build's outputs raise their own events just after it ends, while the release rescans
    the tree for them. Those batches are held and sent with the build's batch (the one that
    carries the push, the run steps and the restart), not raced to the container beside it."""
    svc = Service(name="api", target="t", sync=[Mapping(src="src", dest="/app")], build=[BuildStep(cmd="true")])
    sent: list[tuple[Desired, list[int]]] = []
    done: list[int] = []
    edit, output_event = _job(1, done), _job(2, done)
    gate: BuildGate

    async def release(service: str, held: Desired, jobs: list[BatchJob], late: Late) -> None:
        # (the engine's rescan happens here: the binary's event arrives meanwhile)
        assert gate.busy
        gate.offer({"/app/bin": _file("/w/bin")}, [], output_event)
        await anyio.sleep(0)
        more, more_jobs = late()
        sent.append(({**held, **more}, [j.trace.batch_id for j in jobs + more_jobs]))

    gate = BuildGate(svc, tmp_path, release)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.run)
        edit.expect()  # (the engine's own hold, as dispatch takes it)
        gate.offer({"/app/main.rs": _file("/w/main.rs")}, [0], edit)
        with anyio.fail_after(30):
            while not sent:
                await anyio.sleep(0.01)
        assert sent == [({"/app/main.rs": _file("/w/main.rs"), "/app/bin": _file("/w/bin")}, [1, 2])]
        assert not gate.busy and gate.held == {} and gate.jobs == []
        assert gate.state == "idle"
        tg.cancel_scope.cancel()
    assert done == [2]  # the gate's holds answered (the edit still has the engine's own)


async def test_a_late_change_that_asks_for_a_build_waits_for_that_build(tmp_path: Path) -> None:
    svc = Service(name="api", target="t", sync=[Mapping(src="src", dest="/app")], build=[BuildStep(cmd="true")])
    sent: list[tuple[Desired, list[int]]] = []
    done: list[int] = []
    edit, another_edit = _job(1, done), _job(2, done)
    gate: BuildGate

    async def release(service: str, held: Desired, jobs: list[BatchJob], late: Late) -> None:
        if not sent:  # the first release: a source edit arrives while it scans
            gate.offer({"/app/lib.rs": _file("/w/lib.rs")}, [0], another_edit)
        more, more_jobs = late()
        sent.append(({**held, **more}, [j.trace.batch_id for j in jobs + more_jobs]))

    gate = BuildGate(svc, tmp_path, release)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.run)
        gate.offer({"/app/main.rs": _file("/w/main.rs")}, [0], edit)
        with anyio.fail_after(30):
            while len(sent) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert sent == [({"/app/main.rs": _file("/w/main.rs")}, [1]), ({"/app/lib.rs": _file("/w/lib.rs")}, [2])]
    assert gate.builds_run == 2
