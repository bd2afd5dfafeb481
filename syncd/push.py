"""Sending a Delta to one container, and what follows a push there.

`Pusher.send` packs the delta as a streaming tar (read at pack time: what is on disk wins),
applies it through the transport — pipelined where the transport can (the next batch is packed
while the container applies this one) — records what the container now holds, and accounts the
push on every batch it carried (`pack` and `push:<container>` spans, counters). Then the run
steps and the restart the push sets off run, timed on those batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import structlog

from syncd.clock import Clock
from syncd.core.manifest import apply_delta
from syncd.core.mapping import UnsafePath, relative_name
from syncd.deltas import LargeFiles, Patched
from syncd.model import Delta, DestPath, Kind, Put
from syncd.pack import PackReport, pack, stream_size
from syncd.progress import Reporter, tracked
from syncd.steps import argv_of
from syncd.trace import BatchTrace
from syncd.transports.base import ApplyRequest, ApplyResult, TransportError, Unsupported
from syncd.workers import ContainerStep, ContainerWorker, PendingAnswer

log = structlog.get_logger("syncd")

Spawn = Callable[..., None]  # spawn(async_fn, *args, name=...): run in the daemon's task group


INLINE_PUTS = 16


@dataclass
class _Packed:
    key: tuple
    at: float
    chunks: list[bytes]
    report: PackReport


class SharedPacks:
    """A batch packed once for all of a target's replicas. Every replica gets the same delta
    when a change goes out, and packing reads, hashes and frames each file (~35 ms for 1,000
    small files): ten replicas paid it ten times. A delta up to `limit` bytes is packed whole
    by the first replica to ask; the others, asking within `fresh` seconds with the same puts
    (same paths and the same local versions), reuse those bytes. That is safe: what they send
    is one complete version read at pack time, and a later change brings its own batch.
    Larger deltas (a reconcile) stream as before, packed per container."""

    def __init__(self, clock: Clock, limit: int = 16 << 20, fresh: float = 2.0) -> None:
        self.clock = clock
        self.limit = limit
        self.fresh = fresh
        self._last: dict[str, _Packed] = {}  # target -> its last packed delta
        self._locks: dict[str, anyio.Lock] = {}

    async def packed(self, target: str, puts: Sequence[Put], root: DestPath,
                     size: int | None = None) -> tuple[Iterator[bytes], PackReport] | None:
        """(chunks, report) of the delta (`size`: its stream_size, when known), packed now or
        shared; None: too large, stream it."""
        if (stream_size(puts) if size is None else size) > self.limit:
            return None
        key = (root, tuple((p.dest, p.source.path, p.source.entry, p.source.size, p.source.mtime, p.source.ctime)
                           for p in puts))
        async with self._locks.setdefault(target, anyio.Lock()):
            last = self._last.get(target)
            if last is not None and last.key == key and self.clock.now() - last.at <= self.fresh:
                # (seconds 0: this container's push spent nothing on packing)
                report = replace(last.report, sent=dict(last.report.sent), vanished=list(last.report.vanished),
                                 torn=list(last.report.torn), errors=list(last.report.errors), seconds=0.0, shared=True)
                return iter(last.chunks), report
            report = PackReport()
            if len(puts) <= INLINE_PUTS:  # a thread hop costs more than packing a few files
                chunks = list(pack(puts, root, report))
            else:
                chunks = await anyio.to_thread.run_sync(lambda: list(pack(puts, root, report)))
            report.streamed = False
            self._last[target] = _Packed(key, self.clock.now(), chunks, report)
            return iter(chunks), replace(report, sent=dict(report.sent))


class Pusher:
    def __init__(self, clock: Clock, spawn: Spawn, progress: Reporter | None = None,
                 large: LargeFiles | None = None) -> None:
        self.clock = clock
        self.spawn = spawn
        self.large = large  # block deltas for large files (syncd/deltas.py); None: always whole
        self.progress = progress or Reporter("json")  # the CLI swaps in its own (a bar on a terminal)
        self.packs = SharedPacks(clock)

    async def send(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace],
                   pipelined: bool = False, steps: bool = True) -> PendingAnswer | None:
        """Apply `delta` to the container and record what it now holds.

        `pipelined`: when the transport can, return right after the payload is written with
        an awaitable for the container's answer (the manifest is updated optimistically; a
        failed answer makes the worker reconcile). Else None once applied. `steps=False`: a
        chunk of a larger delta; the caller runs `after_push` for the whole of it."""
        if not delta:
            return None
        assert worker.manifest is not None
        target = worker.target
        root = target.root
        try:
            request_names = ([relative_name(d, root) for d in delta.deletes],
                             [relative_name(p.dest, root) for p in delta.puts])
        except UnsafePath as e:
            raise TransportError(f"refused: {e}") from None
        t0 = self.clock.now()
        puts, patched = list(delta.puts), Patched()
        if self.large is not None:  # large files the container has a version of: block deltas first
            puts, patched = await self.large.send(worker, puts, delta.deletes, root)
            if patched.sent:
                request_names = (request_names[0], [relative_name(p.dest, root) for p in puts])
        if not puts and not delta.deletes:
            if worker.manifest is not None:
                apply_delta(worker.manifest, (), patched.sent)
            report = PackReport(sent=dict(patched.sent), streamed=False)
            self._landed(worker, delta, traces, report, ApplyResult(0), t0, patched)
            await self.after_push(worker, delta, traces)
            return None
        t_tar = self.clock.now()
        size = stream_size(puts)
        # Packed once for all replicas when there are several (see SharedPacks); else streamed.
        shared = await self.packs.packed(target.name, puts, root, size) if len(target.workers) > 1 else None
        if shared is None:
            report = PackReport()
            stream = pack(puts, root, report)
        else:
            stream, report = shared
        report.sent.update(patched.sent)
        level = 0
        if self.large is not None:
            await self.large.measure(worker, size)
            level = await self.large.gzip_level(worker)
        report.method = "gzip" if level else "raw"
        sink = self.progress.sink(worker.ref.label, sum(p.source.entry.kind is Kind.FILE for p in puts), size)
        if sink is not None:
            stream = tracked(stream, report, sink)
        request = ApplyRequest(root, *request_names, stream, gzip=level)
        if pipelined:
            try:
                answer = await target.transport.apply_start(worker.ref, request)
            except Unsupported:
                pass
            else:
                # (A reconcile requested while this was sent forgot the manifest: it lists anew.)
                if worker.manifest is not None:
                    apply_delta(worker.manifest, delta.deletes, report.sent)  # optimistic: see above
                    worker.unconfirmed.update(report.sent.keys())

                async def landed() -> None:
                    result = await answer()
                    worker.unconfirmed.subtract(report.sent.keys())
                    worker.unconfirmed += Counter()  # drop zero counts
                    self._landed(worker, delta, traces, report, result, t0, patched, t_tar, puts)
                    if steps:
                        await self.after_push(worker, delta, traces)

                return landed
        result = await target.transport.apply(worker.ref, request)
        if worker.manifest is not None:  # (None: a reconcile was requested meanwhile)
            apply_delta(worker.manifest, delta.deletes, report.sent)
        self._landed(worker, delta, traces, report, result, t0, patched, t_tar, puts)
        if steps:
            await self.after_push(worker, delta, traces)
        return None

    def _landed(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace], report: PackReport,
                result: ApplyResult, t0: float, patched: Patched, t_tar: float | None = None,
                puts: Sequence[Put] = ()) -> None:
        t1 = self.clock.now()
        self._record(worker, delta, traces, report, result.bytes_sent, t0, t1, patched)
        if self.large is not None and t_tar is not None:
            files = sum(p.source.entry.kind is Kind.FILE for p in puts)
            self.large.channel(worker).observe(result.bytes_sent, t1 - t_tar, files)
            keep = self.large.keep_sent(worker, puts, report.sent)
            if keep:  # the next bases: kept off the push's path
                self.spawn(self._keep, keep)
        if result.removed_symlinks:
            # Planted after syncd's last listing: what it believed was behind them is gone.
            log.warning("symlink in the way removed in the container", container=worker.ref.label,
                        symlinks=list(result.removed_symlinks[:5]),
                        hint="something in the container replaced a synced directory with a symlink; syncd never "
                             "writes through one and reconciles now")
            worker.mark_stale()

    async def _keep(self, files: list[tuple[str, str]]) -> None:
        assert self.large is not None
        for path, digest in files:
            await anyio.to_thread.run_sync(self.large.cache.put_file, path, digest)

    async def after_push(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace]) -> None:
        """Run steps and restarts the push sets off, in order, timed on every batch it carried.
        A failing step is reported (exit code, output tail) and ends its service's steps."""
        steps = worker.target.steps_after(delta)
        if not steps:
            return
        async with worker.steps_lock:
            failed: set[str] = set()
            for step in steps:
                if step.service in failed:
                    continue
                t0 = self.clock.now()
                ok, detail = await self._container_step(worker, step)
                for trace in traces:
                    trace.add(step.span, t0, self.clock.now(), ok=ok, detail=detail)
                    if not ok:
                        trace.errors.append(f"{worker.ref.label}: {step.span} failed: {detail.get('error', '')}")
                if not ok:
                    failed.add(step.service)
                    log.error("step failed", container=worker.ref.label, step=step.span, **detail,
                              hint="fix the command in the config or the container; the next push runs it again")

    async def _container_step(self, worker: ContainerWorker, step: ContainerStep) -> tuple[bool, dict[str, Any]]:
        transport = worker.target.transport
        try:
            if step.restart == "container":
                await transport.restart(worker.ref)
                self.spawn(worker.target.discover)  # a new generation: follow it now, not at the next poll
                return True, {"restart": "container"}
            argv = ["kill", "-HUP", "1"] if step.restart == "process" else argv_of(step.cmd or "")
            result = await transport.run_step(worker.ref, argv)  # the session when there is one
        except TransportError as e:
            return False, {"error": str(e)}
        tail = "\n".join(result.output.strip().splitlines()[-10:])
        detail: dict[str, Any] = {"exit": result.exit, "output": tail}
        if step.restart:
            detail["restart"] = step.restart
        if result.exit != 0:
            detail["error"] = f"exit {result.exit}" + (f": {tail}" if tail else "")
        return result.exit == 0, detail

    @staticmethod
    def _record(worker: ContainerWorker, delta: Delta, traces: list[BatchTrace], report: PackReport,
                bytes_sent: int, t0: float, t1: float, patched: Patched) -> None:
        """Account a landed push: counters, and pack/push spans on every batch it carried.
        The push span says how its bytes travelled: `method` (raw, gzip, delta), the bytes
        before (the files' content) and after (on the wire), and a delta's copy/literal split."""
        files = report.files + patched.files
        wire = bytes_sent + patched.after
        worker.bytes_sent += wire
        worker.content_sent += report.bytes + patched.before
        worker.files_sent += files
        detail: dict[str, Any] = {"files": files, "deletes": len(delta.deletes), "bytes": wire,
                                  "method": "delta" if patched.files else report.method,
                                  "before": report.bytes + patched.before, "after": wire}
        if patched.files or patched.refused:
            detail["delta"] = patched.detail()
        for trace in traces:
            # Packing is interleaved with pushing (streamed): the span shows its own time only.
            trace.add("pack", t0, t0 + report.seconds,
                      detail={"container": worker.ref.label, "files": report.files,
                              "streamed": report.streamed, **({"shared": True} if report.shared else {})})
            trace.add(f"push:{worker.ref.label}", t0, t1, detail=detail)
            for key in ("files", "deletes", "bytes"):
                trace.stats[key] = trace.stats.get(key, 0) + detail[key]
            for dest, path, message in report.errors:
                trace.errors.append(f"{path}: {message} (not sent to {dest})")
        for _dest, path, message in report.errors:
            log.error("cannot read", path=path, error=message, hint="check the file's permissions")
        if report.torn:
            log.info("file changed while sending; will re-send", paths=report.torn[:5])

