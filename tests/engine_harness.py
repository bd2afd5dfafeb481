"""Running the real engine (real watcher, real transports) inside a test's event loop."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from syncd.config import Config, load_config
from syncd.engine import Engine
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.trace import TraceWriter, read_trace
from syncd.transports import make_transports
from syncd.transports.base import Transport


def write_config(root: Path, text: str) -> Config:
    (root / "syncd.toml").write_text(text)
    return load_config(root / "syncd.toml")


def trace_records(path: Path) -> list[dict]:
    """A trace file's records so far, its rotated files included (no file yet: none)."""
    try:
        return read_trace(path)
    except FileNotFoundError:
        return []


async def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition (not a sleep standing in for synchronisation): fail with `what`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.01)


@asynccontextmanager
async def running(cfg: Config, wait_idle: bool = True, wrap: Callable[[Transport], Transport] | None = None,
                  settings: Settings = DEFAULT_SETTINGS, transports: dict[str, Transport] | None = None
                  ) -> AsyncIterator[Engine]:
    """The engine as the daemon runs it. `wrap`: put each transport in a RecordingTransport (or
    any wrapper); `transports`: use these instead of the config's (e.g. MemoryTransport)."""
    transports = transports or make_transports(cfg, settings)
    if wrap is not None:
        transports = {name: wrap(t) for name, t in transports.items()}
    engine = Engine(cfg, transports, TraceWriter(cfg.resolve(cfg.daemon.trace)), settings=settings)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, stop)
        await engine.started.wait()
        if wait_idle:
            await wait_until(engine.idle, what="initial reconcile")
        try:
            yield engine
        finally:
            stop.set()


_marker_seq = 0


async def settle(engine: Engine, src: Path, timeout: float = 30.0) -> None:
    """Wait until everything written so far has been applied everywhere.

    Writes a marker file last: inotify delivers events in order, so once every container
    holds the marker's content and the engine is idle, all earlier changes were applied."""
    global _marker_seq
    _marker_seq += 1
    body = f"settle {_marker_seq} {time.time()}".encode()
    (src / ".settle-marker").write_bytes(body)
    digest = hashlib.sha1(body).hexdigest()

    def done() -> bool:
        if not all(t.workers for t in engine.targets.values()):
            return False  # a target without a running container has not converged
        workers = [w for t in engine.targets.values() for w in t.workers.values()]
        if not engine.idle():
            return False
        for w in workers:
            hits = [e for d, e in (w.manifest or {}).items() if d.endswith("/.settle-marker")]
            if not hits or hits[0].digest != digest:
                return False
        return True

    try:
        await wait_until(done, timeout, "the marker to reach every container")
    except AssertionError as e:
        raise AssertionError(f"{e} ({_not_settled(engine, digest)})") from None


def _not_settled(engine: Engine, digest: str) -> str:
    """What keeps the engine from being settled, for the failure message."""
    why = []
    if engine.coalescer.deadline() is not None:
        why.append(f"a batch is open ({engine.coalescer.pending} paths)")
    if engine.jobs_open:
        why.append(f"{len(engine.jobs_open)} batch(es) unfinished: "
                   + ", ".join(f"#{j.trace.batch_id} owes {j.outstanding}" for j in list(engine.jobs_open)[:5]))
    for name, g in engine.gates.items():
        if g.running or g.wanted:
            why.append(f"build {name}: {g.state}")
    for t in engine.targets.values():
        if not t.workers:
            why.append(f"target {t.name}: no container ({t.error})")
        for w in t.workers.values():
            hits = [(d, e.digest[:8]) for d, e in (w.manifest or {}).items() if d.endswith("/.settle-marker")]
            why.append(f"{w.ref.label}: {w.status_text}, {len(w.pending)} pending, {len(w.jobs)} jobs, "
                       f"manifest {'unknown' if w.manifest is None else len(w.manifest)}, markers {hits[:3]} "
                       f"(want {digest[:8]})")
    return "; ".join(why) or "nothing: it settled just after the deadline"
