"""The orchestrator: watch -> coalesce -> plan -> builds -> per-container workers -> trace.

One anyio task group. The engine owns the watcher and the batch loop, turns each cut batch into
a plan (syncd/batches.py), hands each service's share to its build gate (syncd/builds.py) or
straight to the workers of its target (syncd/workers.py), runs fallbacks, and finishes each
batch's trace record once every container it went to has answered. What a worker does with a
push or a reconcile lives in syncd/push.py and syncd/reconcile.py; the engine gives workers
those (it is their `WorkerHost`). docs/ARCHITECTURE.md draws the whole pipeline.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from syncd import batches
from syncd.builds import BuildGate, Late
from syncd.clock import SYSTEM_CLOCK, Clock
from syncd.config import Config
from syncd.converged import ConvergedStore
from syncd.core.coalesce import Coalescer
from syncd.core.mapping import local_rel
from syncd.core.paths import accepts, sets_off_a_build, watch_sources
from syncd.deltas import large_files
from syncd.ignore import IgnoreRules
from syncd.jobs import BatchJob
from syncd.known import KnownStore, record_of
from syncd.model import Batch, Delta, Desired, Fallback
from syncd.progress import Reporter
from syncd.push import Pusher
from syncd.reconcile import Reconciler, desired_state
from syncd.scan import HashCache
from syncd.services import service_runtimes
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.trace import BatchTrace, TraceWriter
from syncd.transports.base import Transport, TransportError
from syncd.watch import changes, watch_roots
from syncd.workers import ContainerWorker, PendingAnswer, TargetRuntime

log = structlog.get_logger("syncd")
HASHES_FILE = "hashes"  # in the state directory: the local hash cache (syncd/scan.py)


class Engine:
    def __init__(self, cfg: Config, transports: dict[str, Transport], trace: TraceWriter | None = None,
                 settings: Settings = DEFAULT_SETTINGS, clock: Clock = SYSTEM_CLOCK) -> None:
        self.cfg = cfg
        self.settings = settings
        self.clock = clock
        self.transports = transports
        self.trace = trace or TraceWriter(None)
        self.hashes = HashCache.load(cfg.state_dir / HASHES_FILE)  # kept across runs: a restart hashes nothing
        self.known = KnownStore(cfg.state_dir)
        self.services = service_runtimes(cfg)
        self.gates = {s.name: BuildGate(s, cfg.root, self.release) for s in cfg.services if s.build}
        self._root = str(cfg.root)
        self.targets: dict[str, TargetRuntime] = {
            name: TargetRuntime(name, transports[name], [s for s in self.services if s.cfg.target == name], self, cfg.root)
            for name in sorted({s.cfg.target for s in self.services if s.mappings})  # (a fallback-only service syncs nothing)
        }
        self.coalescer = Coalescer(cfg.daemon.debounce_ms / 1000, cfg.daemon.max_batch_wait_ms / 1000,
                                   small=settings.batches.small_batch)
        self.pusher = Pusher(clock, self.spawn, large=large_files(cfg))
        self.reconciler = Reconciler(self.hashes, self.known, self.pusher, clock, settings, self.held_services,
                                     self._emit, cfg.state_dir / HASHES_FILE, ConvergedStore(cfg.state_dir))
        self._events = anyio.Event()
        self.jobs_open: set[BatchJob] = set()
        self.batches_done = 0
        self.started = anyio.Event()
        self._tg: TaskGroup | None = None
        self.on_record: list[Callable[[dict], None]] = []  # every finished record (API, metrics, OpenTelemetry)
        self.build_first = True  # run every build once before the first sync (`--no-build`: off)
        self.paused = anyio.Event()  # set: running; cleared: paused (see pause())
        self.paused.set()
        self.started_at = clock.now()

    @property
    def progress(self) -> Reporter:
        return self.pusher.progress

    @progress.setter
    def progress(self, reporter: Reporter) -> None:  # the CLI swaps in a bar on a terminal
        self.pusher.progress = reporter

    # --- what workers ask of the engine (WorkerHost) ------------------------------------------

    async def reconcile(self, worker: ContainerWorker, jobs: list[BatchJob]) -> None:
        await self.reconciler.reconcile(worker, jobs)

    async def push(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace]) -> PendingAnswer | None:
        self.reconciler.pushed(worker)
        return await self.pusher.send(worker, delta, traces, pipelined=True)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None) -> None:
        assert self._tg is not None, "the engine is not running"
        self._tg.start_soon(fn, *args, name=name)

    # --- watching ------------------------------------------------------------------------------

    def accept(self, path: str, is_dir: bool) -> bool:
        """Should an event on `path` wake the pipeline? (see core.paths.accepts)"""
        if IgnoreRules.is_ignore_file(path):
            for svc in self.services:
                svc.rules.invalidate()
            self.coalescer.request_reconcile(self.clock.now())  # newly un-ignored files must arrive
        return accepts(self.services, path, is_dir, self._root)

    def watch_paths(self) -> list[Path]:
        return watch_roots(watch_sources(self.services, self.cfg.resolve))

    def note_changes(self, paths: set[str], now: float | None = None) -> None:
        self.coalescer.add(paths, self.clock.now() if now is None else now)
        if self.gates and sets_off_a_build(self.services, self._build_idle, paths, self._root,
                                           self.settings.batches.early_cut_max):
            self.coalescer.hurry()
        self._events.set()

    def _build_idle(self, service: str) -> bool:
        return service in self.gates and not self.gates[service].busy

    async def _watch_loop(self, stop: anyio.Event) -> None:
        roots = self.watch_paths()
        log.info("watching", roots=[local_rel(r, self.cfg.root) for r in roots])
        async for paths in changes(roots, self.accept, stop, self.cfg.daemon.max_batch_wait_ms, on_lost=self.events_lost,
                                   settings=self.settings.watch):
            self.note_changes(paths)

    def events_lost(self, reason: str) -> None:
        """The watcher may have missed events (queue overflow, watcher re-created): the next
        batch compares whole trees."""
        self.coalescer.request_reconcile(self.clock.now())
        self._events.set()

    # --- control (the API and CLI) ---------------------------------------------------------------

    def pause(self) -> None:
        """Stop cutting batches: changes keep accumulating (nothing is lost) until resume."""
        if not self.paused.is_set():
            return
        self.paused = anyio.Event()  # cleared: the batch loop waits on it
        log.info("paused", hint="`syncd resume` (or POST /api/resume) sends what changed meanwhile")

    def resume(self) -> None:
        if not self.paused.is_set():
            self.paused.set()
            log.info("resumed", queued=self.coalescer.pending)

    def resync(self, target: str | None = None) -> int:
        """Compare trees again (every container, or a target's): returns how many."""
        workers = [w for name, t in self.targets.items() if target in (None, name) for w in t.workers.values()]
        for worker in workers:
            worker.request_reconcile()
        log.info("resync requested", target=target or "all", containers=len(workers))
        return len(workers)

    # --- batches ---------------------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while True:
            await self.paused.wait()
            deadline = self.coalescer.deadline()
            if deadline is None:
                await self._events.wait()
                self._events = anyio.Event()
                continue
            delay = deadline - self.clock.now()
            if delay > 0:
                with anyio.move_on_after(delay):  # new changes may move the deadline (hurry)
                    await self._events.wait()
                if self._events.is_set():
                    self._events = anyio.Event()
                continue
            batch = self.coalescer.cut(self.clock.now())
            if batch is not None:
                await self.process(batch)

    async def process(self, batch: Batch) -> BatchJob:
        """Plan a cut batch and dispatch it: fallbacks run, shares with builds wait in their
        gate, the rest goes to the workers. The returned job finishes when all have answered."""
        if batch.reconcile:
            for target in self.targets.values():
                for worker in target.workers.values():
                    worker.request_reconcile()
        t_plan = self.clock.now()
        errors: list[tuple[str, str]] = []
        plan, detect = await anyio.to_thread.run_sync(batches.plan, batch, self.services, self.cfg.root, self.hashes, errors)
        t_planned = self.clock.now()
        trace = BatchTrace(batch.id, detect if detect is not None else batch.first_event, paths=len(batch.paths))
        trace.reconcile = batch.reconcile
        trace.services = [*plan.services, *(fb.service for fb in plan.fallbacks)]
        if detect is not None:
            trace.add("detect", detect, batch.first_event)
        trace.add("coalesce", batch.first_event, batch.cut,
                  detail={"events_until": batch.last_event, **({"early": True} if batch.early else {})})
        trace.add("plan", t_plan, t_planned, detail={"targets": sorted(plan.targets), "skipped": len(plan.skipped)})
        for path, message in errors:
            trace.errors.append(f"{path}: {message}")
            log.error("cannot read", path=path, error=message, hint="check the file's permissions")
        job = BatchJob(trace, self._finish)
        self.jobs_open.add(job)
        job.expect()  # held until dispatch is complete
        for fb in plan.fallbacks:
            log.warning("fallback", service=fb.service, reason=fb.reason, command=fb.command)
            if fb.command is None:
                trace.errors.append(f"service '{fb.service}' needs a full rebuild: {fb.reason} (set `fallback` to run one)")
                continue
            job.expect()
            if self._tg is not None:
                self._tg.start_soon(self._run_fallback, fb, job)
            else:
                await self._run_fallback(fb, job)
        direct: dict[str, Desired] = {}
        for share in plan.services.values():
            gate = self.gates.get(share.service)
            if gate is not None and (share.builds or gate.busy):
                gate.offer(share.desired, share.builds, job)  # sent when its build succeeds
            elif share.desired:
                direct.setdefault(share.target, {}).update(share.desired)
        for name, desired in direct.items():
            self._submit(name, desired, [job])
        job.finish_one()
        return job

    def _submit(self, target_name: str, desired: Desired, jobs: list[BatchJob]) -> None:
        target = self.targets[target_name]
        if not target.workers:
            why = target.error or "no running container"
            for job in jobs:
                job.trace.errors.append(f"{target_name}: not synced: {why} (reconciled when it is back)")
        for worker in target.workers.values():
            for i, job in enumerate(jobs):
                worker.submit(desired if i == 0 else {}, job)

    def _finish(self, job: BatchJob) -> None:
        self.jobs_open.discard(job)
        record = job.trace.finish(self.clock.now())
        self.batches_done += 1
        self._emit(record)
        total = record["spans"][-1]
        log.info("batch", id=record["batch"], ok=record["ok"], ms=total["ms"],
                 **{k: v for k, v in (total["detail"] or {}).items() if v},
                 **({"errors": record["errors"]} if record["errors"] else {}))

    def _emit(self, record: dict) -> None:
        self.trace.write(record)
        for callback in self.on_record:
            callback(record)

    # --- builds and fallbacks ------------------------------------------------------------------

    def held_services(self) -> dict[str, str]:
        """Services whose last build failed -> why: a reconcile leaves their container paths
        as they are (nothing sent, nothing deleted) until a build succeeds."""
        return {name: g.failed.summary() for name, g in self.gates.items() if g.failed is not None}

    async def release(self, service: str, held: Desired, jobs: list[BatchJob], late: Late) -> None:
        """After a good build: send the service's held changes and what the build wrote (its
        outputs are mapped paths; a rescan finds them even before their events arrive), with
        what arrived during the rescan (`late`: those events, mostly)."""
        svc = self.cfg.service(service)
        target = self.targets[svc.target]
        errors: list[tuple[str, str]] = []
        t0 = self.clock.now()
        fresh = await anyio.to_thread.run_sync(desired_state, target, {service}, self.hashes, errors)
        for job in jobs:
            job.trace.add("scan", t0, self.clock.now(), detail={"service": service, "paths": len(fresh), "after": "build"})
        more, more_jobs = late()
        self._submit(svc.target, {**held, **fresh, **more}, jobs + more_jobs)
        for worker in target.workers.values():
            if service in worker.held_back:  # a reconcile left it out: compare it whole now (deletes too)
                worker.held_back.discard(service)
                worker.request_reconcile()

    async def build_all(self, services: set[str] | None = None) -> bool:
        """Every build step of every service (of `services`), services in parallel; before
        the first sync, so containers never receive stale build outputs. True: all built."""
        ok = True

        async def one(gate: BuildGate) -> None:
            nonlocal ok
            results = await gate.build(list(range(len(gate.svc.build))))
            if not all(r.ok for r in results):
                gate.failed = next(r for r in results if not r.ok)
                ok = False

        async with anyio.create_task_group() as tg:
            for name, gate in self.gates.items():
                if services is None or name in services:
                    tg.start_soon(one, gate)
        return ok

    async def _run_fallback(self, fb: Fallback, job: BatchJob) -> None:
        """Run a service's `fallback` command locally (string: `sh -c`; list: argv), timed."""
        argv = ["sh", "-c", fb.command] if isinstance(fb.command, str) else list(fb.command or [])
        t0 = self.clock.now()
        detail: dict = {"reason": fb.reason, "command": fb.command}
        try:
            result = await anyio.run_process(argv, cwd=self.cfg.root, check=False, stderr=subprocess.STDOUT)
            output = result.stdout.decode("utf-8", "replace").strip()
            detail.update(exit=result.returncode, output="\n".join(output.splitlines()[-10:]))
            ok = result.returncode == 0
        except OSError as e:
            ok = False
            detail.update(exit=None, output=f"cannot run {argv[0]!r}: {e.strerror}")
        job.trace.add(f"fallback:{fb.service}", t0, self.clock.now(), ok=ok, detail=detail)
        if ok:
            log.info("fallback done", service=fb.service, ms=round((self.clock.now() - t0) * 1000, 1))
            # The rebuild may replace the container (then the new one is reconciled when it
            # shows up) or not: either way, compare trees so the held-back edits arrive.
            target = self.targets.get(self.cfg.service(fb.service).target)
            for worker in target.workers.values() if target is not None else ():
                worker.request_reconcile()
            gate = self.gates.get(fb.service)
            if gate is not None:  # the held-back edits may need a build too
                gate.offer({}, range(len(gate.svc.build)), None)
        else:
            job.trace.errors.append(f"fallback for '{fb.service}' failed: {detail['output'] or 'exit ' + str(detail['exit'])}")
            log.error("fallback failed", service=fb.service, exit=detail["exit"], output=detail["output"],
                      hint="fix the `fallback` command in the config or run it by hand")
        job.finish_one()

    # --- entry points ------------------------------------------------------------------------------

    async def sync_once(self, services: set[str] | None = None) -> bool:
        """One reconcile of every container of every target (of `services`). True: converged.
        Builds run first; a service whose build fails is not synced (its container keeps the
        last good state)."""
        ok = True
        if self.gates and self.build_first:
            ok = await self.build_all(services)

        async def one(worker: ContainerWorker) -> None:
            nonlocal ok
            try:
                ok &= await self.reconciler.reconcile(worker, [], services)
            except TransportError as e:
                log.error("sync failed", container=worker.ref.label, error=e.message, hint=e.hint)
                ok = False

        async with anyio.create_task_group() as tg:
            self._tg = tg
            for target in self.targets.values():
                if services is not None and not any(s.cfg.name in services for s in target.services):
                    continue
                try:
                    refs = await target.transport.containers()
                except TransportError as e:
                    log.error("target unavailable", target=target.name, error=e.message, hint=e.hint)
                    ok = False
                    continue
                for ref in refs:
                    tg.start_soon(one, ContainerWorker(ref, target))
        self._tg = None
        await self.reconciler.save_hashes()
        return ok

    async def run(self, stop: anyio.Event) -> None:
        """The daemon: start workers (each reconciles first), watch, and sync until `stop`."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.gates and self.build_first:
                log.info("building before the first sync", services=sorted(self.gates))
                await self.build_all()
            for gate in self.gates.values():
                tg.start_soon(gate.run)
            for target in self.targets.values():
                await target.discover()
                tg.start_soon(target.supervise)
            tg.start_soon(self._batch_loop)
            tg.start_soon(self._watch_loop, stop)
            self.started.set()
            await stop.wait()
            tg.cancel_scope.cancel()
        for target in self.targets.values():
            for worker in target.workers.values():
                if worker.manifest is not None:
                    self.known.save(worker.key, record_of(worker.confirmed()))
        await self.close()
        with anyio.CancelScope(shield=True):
            await self.reconciler.save_hashes()

    async def close(self) -> None:
        """Close every target's sessions and feeds (their containers' `sh` loops end)."""
        for target in self.targets.values():
            await target.transport.close()

    def idle(self) -> bool:
        """Nothing queued, nothing in flight, every container up to date."""
        if self.coalescer.deadline() is not None or self.jobs_open:
            return False
        if any(g.running or g.wanted for g in self.gates.values()):
            return False
        return all(w.state == "idle" and not w.pending for t in self.targets.values() for w in t.workers.values())

    def status(self, last: int = 20) -> dict:
        """What the daemon is doing, as plain data (the control API serves it as JSON)."""
        records = self.trace.records
        return {
            "config": str(self.cfg.file),
            "started": self.started_at,
            "paused": not self.paused.is_set(),
            "idle": self.idle(),
            "targets": {
                name: {"kind": self.cfg.targets[name].kind, "services": [s.cfg.name for s in t.services],
                       "error": t.error, "containers": t.status()}
                for name, t in self.targets.items()
            },
            "builds": {name: g.state for name, g in self.gates.items()},
            "pending_paths": self.coalescer.pending,
            "batches": self.batches_done,
            "recent": records[-last:],
            "errors": [e for r in records[-last:] for e in r["errors"]][-last:],
        }
