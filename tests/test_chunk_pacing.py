"""A large reconcile's chunks are paced by each chunk's own time on the link (syncd/reconcile.py
`Reconciler.send`): two are in flight, and the older one's answer counts when it came, not when
the next chunk had been written. A recording pusher on a manual clock stands in for a channel of
1 MB/s whose container answers as soon as a chunk is through."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import anyio
import anyio.lowlevel
import pytest

from syncd.known import KnownStore
from syncd.model import Delta, Entry, Kind, LocalFile, Put
from syncd.pack import member_size
from syncd.reconcile import Reconciler
from syncd.scan import HashCache
from syncd.settings import Settings
from syncd.testing import ManualClock
from syncd.transports.base import ApplyResult, TransportError

pytestmark = pytest.mark.anyio

FILE = 10_000  # bytes a file; ~10.75 KB in the stream
RATE = 1e6  # bytes/s the fake channel writes


class Channel:
    """`Pusher.send` for a pipelining transport: writing a chunk takes its bytes / RATE on the
    clock; its answer is there the moment it is written."""

    large = None

    def __init__(self, clock: ManualClock, fail_at: int = -1) -> None:
        self.clock, self.fail_at = clock, fail_at
        self.chunks: list[int] = []

    async def send(self, worker: object, delta: Delta, traces: list, pipelined: bool = False,
                   steps: bool = True) -> object:
        assert pipelined and not steps
        self.chunks.append(len(delta.puts))
        self.clock.advance(sum(member_size(p) for p in delta.puts) / RATE)
        failing = len(self.chunks) == self.fail_at

        async def answer() -> ApplyResult:
            if failing:
                raise TransportError("the container went away", "syncd reconciles")
            return ApplyResult(bytes_sent=0)

        return answer

    async def after_push(self, worker: object, delta: Delta, traces: list) -> None:
        pass


def _setup(tmp_path: Path, fail_at: int = -1) -> tuple[Reconciler, Channel, SimpleNamespace, Delta]:
    clock = ManualClock()
    channel = Channel(clock, fail_at)
    reconciler = Reconciler(HashCache(), KnownStore(tmp_path), channel, clock, Settings(),  # type: ignore[arg-type]
                            lambda: {}, lambda record: None)
    worker = SimpleNamespace(manifest={}, push_waiting=anyio.lowlevel.checkpoint)
    puts = tuple(Put(f"/app/f{i:04d}", LocalFile(f"/src/f{i:04d}", Entry(Kind.FILE, "0" * 40), 0o644, FILE))
                 for i in range(1000))
    return reconciler, channel, worker, Delta((), puts)


async def test_each_chunk_is_paced_by_its_own_time_on_the_link(tmp_path: Path) -> None:
    reconciler, channel, worker, delta = _setup(tmp_path)
    await reconciler.send(worker, delta, [])  # type: ignore[arg-type]
    assert sum(channel.chunks) == 1000
    b = Settings().batches
    steady = int(RATE * b.chunk_s) // member_size(delta.puts[0])  # ~0.5 s of the link: 46 files
    # the first two chunks (both in flight before any answer) are the first budget; from then on
    # each is ~0.5 s of the link. (Timed at the next chunk's end, they swung: 97, 97, 24, 187, 24, 362, ...)
    first = b.chunk_first_bytes // member_size(delta.puts[0])
    assert channel.chunks[:2] == [first, first]
    assert all(n == steady for n in channel.chunks[2:-1]), channel.chunks


async def test_a_chunk_that_failed_fails_the_send_as_itself(tmp_path: Path) -> None:
    reconciler, channel, worker, delta = _setup(tmp_path, fail_at=3)
    with pytest.raises(TransportError, match="went away"):
        await reconciler.send(worker, delta, [])  # type: ignore[arg-type]
    assert len(channel.chunks) <= 4 and sum(channel.chunks) < 1000  # (stopped within two chunks of it)
