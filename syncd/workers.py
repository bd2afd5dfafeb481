"""Per target and per container: who follows the containers, and who keeps each one up to date.

- `TargetRuntime` discovers a target's containers (polling, or woken by the transport's change
  feed) and knows which service and mapping own a container path.
- `ContainerWorker` keeps one container up to date: a queue of desired paths, merged while it
  is busy (the newest state of a path wins); it reconciles whenever it cannot trust what it
  believes the container holds, pushes otherwise, and backs off after a failure. What to do
  next is decided by `core.worker.next_step`; how long to back off by `core.worker.retry_delay`.

Neither knows the engine: they reach it through `WorkerHost` (reconcile, push, spawn a task),
which the engine implements and tests can fake.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from syncd.core.backoff import backoff
from syncd.core.manifest import Manifest, Tracked, diff, merge_pending, prune_nested, rewritten_dirs, unlisted_below
from syncd.core.mapping import ResolvedMapping, common_root, local_rel
from syncd.core.packed import compact
from syncd.core.steps import step_name, triggered
from syncd.core.worker import Retry, Step, WorkerState, WorkerView, next_step, retry_delay
from syncd.jobs import BatchJob
from syncd.known import container_key
from syncd.model import Delta, Desired, DestPath, Kind
from syncd.services import ServiceRuntime
from syncd.settings import Settings
from syncd.trace import BatchTrace
from syncd.transports.base import ApplyResult, ContainerRef, Transport, TransportError

log = structlog.get_logger("syncd")

# The answer to a pipelined push: awaiting it finishes the batch (see Transport.apply_start).
PendingAnswer = Callable[[], Awaitable[ApplyResult | None]]


class WorkerHost(Protocol):
    """What workers need from the engine."""

    settings: Settings

    async def reconcile(self, worker: ContainerWorker, jobs: list[BatchJob]) -> None:
        """Compare the container's whole tree with the local one and send the difference."""
        ...

    async def push(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace]) -> PendingAnswer | None:
        """Send `delta`; None once applied, or an awaitable for the answer (pipelined)."""
        ...

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str | None = None) -> None:
        """Run a task in the daemon's task group."""
        ...


@dataclass(frozen=True)
class ContainerStep:
    """Something to do in a container after a push: a `run` step, or a restart."""

    service: str
    span: str  # "run:<name>" or "restart:<service>"
    cmd: str | list[str] | None = None
    restart: str = ""  # "container" | "process"


# --- per container -----------------------------------------------------------------------


@dataclass(eq=False)
class ContainerWorker:
    ref: ContainerRef
    target: TargetRuntime
    manifest: Tracked | None = None  # None: unknown, reconcile before anything else
    last_manifest: Manifest = field(default_factory=dict)  # kept when `manifest` is dropped
    unconfirmed: Counter[DestPath] = field(default_factory=Counter)  # sent, answer not in yet
    pending: Desired = field(default_factory=dict)
    jobs: list[BatchJob] = field(default_factory=list)
    inflight: list[BatchJob] = field(default_factory=list)
    failures: int = 0
    permanent: bool = False  # the last failure needs the user to act (TransportError.permanent)
    held_back: set[str] = field(default_factory=set)  # services a reconcile left out (build failed)
    answers_pending: int = 0  # pipelined batches written, answer not yet in
    stale: bool = False  # the container changed under syncd: reconcile at the next round
    state: WorkerState = WorkerState.STARTING
    retry: Retry | None = None  # while backing off
    last_error: str = ""
    bytes_sent: int = 0  # on the wire
    content_sent: int = 0  # the content those bytes carried (more: compression or block deltas saved)
    files_sent: int = 0
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    steps_lock: anyio.Lock = field(default_factory=anyio.Lock)  # run steps of one batch at a time
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _retry: anyio.Event = field(default_factory=anyio.Event)  # set: end the back-off now

    @property
    def host(self) -> WorkerHost:
        return self.target.host

    @property
    def key(self) -> str:
        """Names the container across restarts (known.py records are per container)."""
        return container_key(self.ref.target, self.ref.id)

    @property
    def status_text(self) -> str:
        """The state as `syncd status` shows it ("idle", "retrying in 2.0s", …)."""
        if self.retry is not None and self.state in (WorkerState.RETRYING, WorkerState.WAITING_FOR_FIX):
            return self.retry.describe()
        return self.state.value

    def view(self) -> WorkerView:
        return WorkerView(self.manifest is not None, bool(self.pending or self.jobs), self.answers_pending, self.stale)

    # --- what others ask of it -------------------------------------------------------------

    def submit(self, desired: Desired, job: BatchJob | None) -> None:
        merge_pending(self.pending, desired)
        if job is not None:
            job.expect()
            self.jobs.append(job)
        self._wake.set()

    async def push_waiting(self) -> None:
        """Between two chunks of a long reconcile: send what was submitted meanwhile (an
        editor's save), so it does not wait for the whole tree. On failure it goes back to
        the queue (older than anything submitted since) for the round after the back-off."""
        if not (self.pending or self.jobs) or self.manifest is None:
            return
        desired, self.pending = self.pending, {}
        jobs, self.jobs = self.jobs, []
        try:
            finished = await self._push(desired, jobs)
        except TransportError:
            merge_pending(desired, self.pending)
            self.pending, self.jobs = desired, jobs + self.jobs
            raise
        if finished:
            for job in jobs:
                job.finish_one()

    def confirmed(self) -> Manifest:
        """The manifest without paths whose pipelined batch has not been answered yet:
        only what surely landed may vouch for a quick listing (known.py)."""
        return {d: e for d, e in (self.manifest or {}).items() if self.unconfirmed[d] <= 0}

    def pack_manifest(self) -> None:
        """Keep the manifest in columns (core/packed.py), sharing them with replicas in step."""
        if self.manifest is not None:
            self.manifest = compact(self.manifest, self.host.settings.batches.pack_manifest_above,
                                    like=[w.manifest for w in self.target.workers.values() if w is not self])

    def forget_manifest(self) -> None:
        if self.manifest is not None:
            self.last_manifest = self.confirmed()
        self.manifest = None
        self.unconfirmed.clear()

    def request_reconcile(self) -> None:
        self.forget_manifest()
        self._wake.set()

    def mark_stale(self) -> None:
        """The container changed under syncd (a symlink was in its way): compare the trees at
        the next round, once the batches in flight have landed."""
        self.stale = True
        self._wake.set()

    def retry_now(self) -> None:
        """Cut a back-off short: what it waited for (the API server, the engine) is back."""
        self._retry.set()

    @property
    def backing_off(self) -> bool:
        return self.retry is not None

    def stop(self, reason: str) -> None:
        self.scope.cancel()
        jobs, self.jobs, self.inflight = self.jobs + self.inflight, [], []
        for job in jobs:
            job.trace.errors.append(f"{self.ref.label}: {reason}")
            job.finish_one()

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        with self.scope:
            while True:
                step = next_step(self.view())
                if step in (Step.WAIT_FOR_WORK, Step.WAIT_FOR_ANSWERS):
                    self.state = WorkerState.RECONCILING if step is Step.WAIT_FOR_ANSWERS else \
                        WorkerState.WAITING_FOR_ANSWERS if self.answers_pending else WorkerState.IDLE
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                self._wake = anyio.Event()  # what is submitted from now on is seen after this round
                if not await self._round(step):
                    await self._back_off()

    async def _back_off(self) -> None:
        self.retry = retry_delay(self.failures, self.permanent, self.host.settings.workers)
        self.state = self.retry.state
        self._retry = anyio.Event()
        with anyio.move_on_after(self.retry.delay):
            await self._retry.wait()  # or sooner: retry_now()
        self.retry = None

    async def _round(self, step: Step) -> bool:
        desired, self.pending = self.pending, {}
        jobs, self.jobs = self.jobs, []
        self.inflight = jobs
        try:
            if step is Step.RECONCILE:
                self.stale = False
                self.forget_manifest()
                self.state = WorkerState.RECONCILING
                await self.host.reconcile(self, jobs)  # the whole tree: `desired` is part of it
                finished_here = True
            else:
                self.state = WorkerState.PUSHING
                finished_here = await self._push(desired, jobs)
        except TransportError as e:
            self.inflight = []
            self._failed(e, jobs)
            return False
        if self.manifest is None:
            return False  # a pipelined answer failed meanwhile
        self.pack_manifest()  # (again, once the pushes since the last packing changed an eighth of it)
        self.failures, self.permanent, self.last_error, self.inflight = 0, False, "", []
        if finished_here:
            for job in jobs:
                job.finish_one()
        return True

    async def _push(self, desired: Desired, jobs: list[BatchJob]) -> bool:
        """Send one round. Returns False when the jobs were handed to a pipelined answer
        task (which finishes them), True when they are done here."""
        assert self.manifest is not None
        opened: list[DestPath] = []
        if self.target.reopening:
            desired, opened = self.target.without_open_dirs(desired, self.manifest)
        delta = diff(desired, self.manifest, gone=self.target.gone_below(desired, self.manifest, opened))
        answer = await self.host.push(self, delta, [j.trace for j in jobs])
        if answer is None:
            return True
        self.answers_pending += 1
        self.host.spawn(self._await_answer, answer, jobs)
        return False

    async def _await_answer(self, answer: PendingAnswer, jobs: list[BatchJob]) -> None:
        """The container's answer to a pipelined batch: finish its jobs, or on failure forget
        the (optimistic) manifest so the worker reconciles."""
        try:
            await answer()
        except TransportError as e:
            self._failed(e, jobs)
            self._wake.set()
        else:
            for job in jobs:
                job.finish_one()
        finally:
            self.answers_pending -= 1
            if self.answers_pending == 0:
                self._wake.set()

    def _failed(self, e: TransportError, jobs: list[BatchJob]) -> None:
        self.failures += 1
        self.permanent = e.permanent
        self.forget_manifest()  # the container may hold anything now: compare again
        self.last_error = str(e)
        log.error("push failed", target=self.ref.target, container=self.ref.name, error=e.message, hint=e.hint,
                  **({"retry": "rarely, until fixed"} if e.permanent else {}))
        for job in jobs:
            job.trace.errors.append(f"{self.ref.label}: {e}")
            job.finish_one()


# --- per target --------------------------------------------------------------------------


def _ignored(found: tuple[ServiceRuntime, ResolvedMapping, Path], kind: Kind) -> bool:
    """Is the local path behind a container path (TargetRuntime.source_of) ignored by its service?"""
    svc, m, local = found
    return svc.rules.ignored(local, kind is Kind.DIR, m.src)


@dataclass(eq=False)
class TargetRuntime:
    name: str
    transport: Transport
    services: list[ServiceRuntime]
    host: WorkerHost
    config_root: Path  # run-step triggers are relative to the config file's directory
    workers: dict[str, ContainerWorker] = field(default_factory=dict)
    error: str = ""

    @property
    def mappings(self) -> list[ResolvedMapping]:
        return [m for s in self.services for m in s.mappings]

    @property
    def dests(self) -> list[DestPath]:
        return sorted({m.dest for m in self.mappings})

    @property
    def root(self) -> DestPath:
        return common_root(self.dests)

    def owner(self, dest: DestPath, services: set[str] | None = None) -> tuple[ServiceRuntime, ResolvedMapping] | None:
        """The service and mapping that manage container path `dest` (most specific dest)."""
        best: tuple[ServiceRuntime, ResolvedMapping] | None = None
        for svc in self.services:
            for m in svc.mappings:
                if (dest == m.dest or dest.startswith(m.dest + "/")) and (best is None or len(m.dest) > len(best[1].dest)):
                    best = (svc, m)
        if best is not None and services is not None and best[0].cfg.name not in services:
            return None
        return best

    def source_of(self, dest: DestPath, services: set[str] | None = None) -> tuple[ServiceRuntime, ResolvedMapping, Path] | None:
        """The service and mapping that manage `dest`, and the local path it mirrors."""
        found = self.owner(dest, services)
        if found is None:
            return None
        svc, m = found
        return svc, m, (m.src / os.path.relpath(dest, m.dest) if dest != m.dest else m.src)

    def owned(self, dest: DestPath, kind: Kind, services: set[str] | None = None) -> bool:
        """Does syncd manage this container path? (Inside a destination, not ignored.)"""
        found = self.source_of(dest, services)
        return found is not None and not _ignored(found, kind)

    @property
    def reopening(self) -> bool:
        """Does a .dockerignore leave an ignored directory open (paths re-included below it)?"""
        return any(s.rules.reopens for s in self.services)

    def _open_dir(self, dest: DestPath) -> bool:
        found = self.source_of(dest)
        return found is not None and found[0].rules.open_below(found[2], found[1].src)

    def without_open_dirs(self, desired: Desired, remote: Tracked) -> tuple[Desired, list[DestPath]]:
        """`desired` less the ignored directories below which paths may be re-included (a
        batch brings them, see plan_batch), and those the container has: syncd neither sends
        nor deletes them, it checks what it owns below them (gone_below). A gone path the
        container holds as a file is deleted only if syncd owns it."""
        drop: list[DestPath] = []
        opened: list[DestPath] = []
        for dest, lf in desired.items():
            if lf is not None and lf.entry.kind is not Kind.DIR:
                continue
            held = remote.get(dest)
            if lf is None and held is not None and held.kind is not Kind.DIR:
                if not self.owned(dest, held.kind):
                    drop.append(dest)
            elif self._open_dir(dest):
                drop.append(dest)
                if held is not None and held.kind is Kind.DIR:
                    opened.append(dest)
        if not drop:
            return desired, opened
        kept = dict(desired)
        for dest in drop:
            del kept[dest]
        return kept, opened

    def gone_below(self, desired: Desired, remote: Tracked, opened: list[DestPath] | None = None) -> list[DestPath]:
        """Container paths below a directory `desired` describes whole (see
        core.manifest.rewritten_dirs), or below an `opened` one (without_open_dirs), whose
        local source no longer exists. The local check keeps what another mapping places
        inside that directory, and ignored paths are not syncd's to delete."""
        gone: list[DestPath] = []
        settled = ""  # a directory decided whole (not syncd's, or gone): what is below it is too
        dirs = prune_nested([*rewritten_dirs(desired, remote), *(opened or ())])
        for dest in sorted(unlisted_below(dirs, desired, remote)):
            if settled and dest.startswith(settled):
                continue  # (only a shortcut: a sibling sorting in between just costs a check)
            kind = remote[dest].kind
            found = self.source_of(dest)
            if found is None or _ignored(found, kind):
                if kind is Kind.DIR and (found is None or not found[0].rules.open_below(found[2], found[1].src)):
                    settled = dest + "/"
            elif not os.path.lexists(found[2]):
                gone.append(dest)
                settled = dest + "/"
        return gone

    def steps_after(self, delta: Delta) -> list[ContainerStep]:
        """The run steps (and restarts) a push sets off: per service, in config order, those
        whose `trigger` matches a local path the push changed in the container."""
        if not any(svc.cfg.run or svc.cfg.restart != "none" for svc in self.services):
            return []  # (nothing to set off: spare mapping every path of a 100,000-file reconcile)
        touched: dict[str, list[str]] = {}
        for dest in [*delta.deletes, *(p.dest for p in delta.puts)]:
            found = self.source_of(dest)
            if found is None:
                continue
            svc, _, local = found
            touched.setdefault(svc.cfg.name, []).append(local_rel(local, self.config_root))
        steps: list[ContainerStep] = []
        for svc in self.services:
            rels = touched.get(svc.cfg.name)
            if not rels:
                continue
            runs = svc.cfg.run
            for i, step in enumerate(runs):
                if triggered(step.trigger, rels):
                    name = step_name(svc.cfg.name, step.name, i, len(runs))
                    steps.append(ContainerStep(svc.cfg.name, f"run:{name}", step.cmd))
            if svc.cfg.restart != "none":
                steps.append(ContainerStep(svc.cfg.name, f"restart:{svc.cfg.name}", restart=svc.cfg.restart))
        return steps

    # --- following the containers ------------------------------------------------------------

    async def supervise(self) -> None:
        """Follow the target's containers: poll, or wake at once on the transport's own
        change feed (a pod watch); back off while the target keeps failing."""
        d = self.host.settings.discovery
        failures = 0
        # With a change feed the poll is only a safety net: keep it rare, a LIST costs the API server.
        every = d.watched_interval if self.transport.has_change_feed else d.interval
        fed = False
        while True:
            workers = await self.discover()
            if fed:
                # The change feed answered (e.g. the pod watch reconnected after an API-server
                # outage): containers backing off from that outage may retry now.
                for worker in workers:
                    if worker.backing_off:
                        worker.retry_now()
            failures = failures + 1 if self.error else 0
            interval = backoff(failures, d.interval, d.unavailable_retry_max) if failures else every
            fed = False
            with anyio.move_on_after(interval):
                if self.transport.has_change_feed:
                    await self.transport.wait_changed()
                    fed = True
                else:
                    await anyio.sleep(math.inf)

    async def discover(self) -> list[ContainerWorker]:
        try:
            refs = await self.transport.containers()
        except TransportError as e:
            if str(e) != self.error:
                log.error("target unavailable", target=self.name, error=e.message, hint=e.hint)
            self.error = str(e)
            for worker in list(self.workers.values()):
                worker.stop(e.message)
            self.workers.clear()
            return []
        if self.error:
            log.info("target available", target=self.name, containers=[r.name for r in refs])
        self.error = ""
        live = {r.id: r for r in refs}
        carried: dict[str, Manifest] = {}
        for cid, worker in list(self.workers.items()):
            ref = live.get(cid)
            if ref is None or ref.generation != worker.ref.generation:
                why = "container is gone" if ref is None else "container restarted"
                log.info(why, target=self.name, container=worker.ref.name)
                # A restarted container keeps its filesystem: what surely landed still vouches
                # for the quick listing of its reconcile (two same-size versions written in the
                # same second are only told apart by this record).
                carried[cid] = worker.confirmed() if worker.manifest is not None else worker.last_manifest
                worker.stop(why)
                del self.workers[cid]
        for ref in refs:
            if ref.id not in self.workers:
                worker = ContainerWorker(ref, self, last_manifest=carried.get(ref.id, {}))
                self.workers[ref.id] = worker
                self.host.spawn(worker.run, name=f"worker {ref.label}")
        return list(self.workers.values())

    def status(self) -> dict[str, dict]:
        """Each container as `syncd status` shows it."""
        return {
            w.ref.name: {
                "id": w.ref.id,
                "state": w.status_text,
                "channel": self.transport.mode(w.ref),
                "error": w.last_error,
                "files_sent": w.files_sent,
                "bytes_sent": w.bytes_sent,
                "content_sent": w.content_sent,
                "tracked_paths": len(w.manifest or {}),
                "queued_paths": len(w.pending),
            }
            for w in self.workers.values()
        }
