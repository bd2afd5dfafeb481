"""The orchestrator: watch -> coalesce -> plan -> per-container workers -> trace.

One anyio task group. Each target has a supervisor that discovers its containers; each
container has a worker with its own queue of desired paths. A worker that falls behind
merges queued batches (the newest state of a path wins), a worker that fails backs off and
reconciles, and neither holds up the other targets.
"""

from __future__ import annotations

import math
import os
from collections import Counter
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog
from anyio.abc import TaskGroup
from pathspec import GitIgnoreSpec

from syncd.builds import BuildGate
from syncd.config import Config, Service
from syncd.core.coalesce import Coalescer
from syncd.core.manifest import Manifest, apply_delta, diff, merge_pending, prune_nested, rewritten_dirs, unlisted_below
from syncd.core.mapping import ResolvedMapping, UnsafePath, common_root, local_rel, most_specific, relative_name
from syncd.core.plan import ServicePlanInput, plan_batch
from syncd.core.steps import step_name, triggered
from syncd.dirlinks import through_link
from syncd.ignore import IgnoreRules
from syncd.known import KnownStore, record_of, resolve
from syncd.memory import give_back
from syncd.model import Batch, Delta, DestPath, Entry, Fallback, Kind, LocalFile, Plan
from syncd.pack import PackReport, pack, stream_size
from syncd.progress import Reporter, tracked
from syncd.scan import HashCache, read_entry, scan_source, walk
from syncd.steps import argv_of
from syncd.trace import BatchTrace, TraceWriter
from syncd.transports.shell import SYMLINK_REMOVED, guard_dirs
from syncd.transports.base import ContainerRef, Transport, TransportError
from syncd.watch import changes, watch_roots

log = structlog.get_logger("syncd")

DISCOVERY_INTERVAL = 2.0
WATCHED_DISCOVERY_INTERVAL = 30.0
# While a target is unavailable (engine or API server away) discovery retries back off only to
# this: one cheap call every few seconds, so a target that returns is used again within it.
UNAVAILABLE_RETRY_MAX = 4.0
EARLY_CUT_MAX = 100  # a watcher batch larger than this is a burst: coalesce it even if it builds
TRIM_AFTER_PATHS = 10_000  # a reconcile this large hands its freed heap back (syncd/memory.py)
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0

Desired = dict[DestPath, LocalFile | None]


@dataclass
class ServiceRuntime:
    cfg: Service
    mappings: tuple[ResolvedMapping, ...]
    rules: IgnoreRules

    def __post_init__(self) -> None:
        self.fallback_spec = GitIgnoreSpec.from_lines(self.cfg.fall_back_on)
        self.triggers = [t for b in self.cfg.build for t in b.trigger]  # paths that set off a build
        self.trigger_spec = GitIgnoreSpec.from_lines(self.triggers)

    @property
    def plan_input(self) -> ServicePlanInput:
        return ServicePlanInput(self.cfg.name, self.cfg.target, self.mappings, tuple(self.cfg.fall_back_on),
                                self.cfg.fallback, tuple(tuple(b.trigger) for b in self.cfg.build))


@dataclass(frozen=True)
class ContainerStep:
    """Something to do in a container after a push: a `run` step, or a restart."""

    service: str
    span: str  # "run:<name>" or "restart:<service>"
    cmd: str | list[str] | None = None
    restart: str = ""  # "container" | "process"


# --- batch bookkeeping -------------------------------------------------------------------


class BatchJob:
    """One batch's trace, completed when every container it was sent to has answered."""

    def __init__(self, trace: BatchTrace, on_done: Callable[[BatchJob], None]):
        self.trace = trace
        self.outstanding = 0
        self._on_done = on_done
        self.done = anyio.Event()

    def expect(self) -> None:
        self.outstanding += 1

    def finish_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0 and not self.done.is_set():
            self._on_done(self)
            self.done.set()


# --- per container -----------------------------------------------------------------------


@dataclass
class ContainerWorker:
    ref: ContainerRef
    target: TargetRuntime
    manifest: Manifest | None = None  # None: unknown, reconcile before anything else
    last_manifest: Manifest = field(default_factory=dict)  # kept when `manifest` is dropped
    unconfirmed: Counter[DestPath] = field(default_factory=Counter)  # sent, answer not in yet
    pending: Desired = field(default_factory=dict)
    jobs: list[BatchJob] = field(default_factory=list)
    inflight: list[BatchJob] = field(default_factory=list)
    failures: int = 0
    held_back: set[str] = field(default_factory=set)  # services a reconcile left out (build failed)
    answers_pending: int = 0  # pipelined batches written, answer not yet in
    stale: bool = False  # the container changed under syncd: reconcile at the next round
    state: str = "starting"
    last_error: str = ""
    bytes_sent: int = 0
    files_sent: int = 0
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    steps_lock: anyio.Lock = field(default_factory=anyio.Lock)  # run steps of one batch at a time
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _retry: anyio.Event = field(default_factory=anyio.Event)  # set: end the back-off now

    def submit(self, desired: Desired, job: BatchJob | None) -> None:
        merge_pending(self.pending, desired)
        if job is not None:
            job.expect()
            self.jobs.append(job)
        self._wake.set()

    @property
    def key(self) -> str:
        """Names the container across restarts (known.py records are per container)."""
        return f"{self.ref.target}/{self.ref.id}"

    def confirmed(self) -> Manifest:
        """The manifest without paths whose pipelined batch has not been answered yet:
        only what surely landed may vouch for a quick listing (known.py)."""
        return {d: e for d, e in (self.manifest or {}).items() if self.unconfirmed[d] <= 0}

    def forget_manifest(self) -> None:
        if self.manifest is not None:
            self.last_manifest = self.confirmed()
        self.manifest = None
        self.unconfirmed.clear()

    def request_reconcile(self) -> None:
        self.forget_manifest()
        self._wake.set()

    def stop(self, reason: str) -> None:
        self.scope.cancel()
        self._release(reason)

    def _release(self, error: str) -> None:
        jobs, self.jobs, self.inflight = self.jobs + self.inflight, [], []
        for job in jobs:
            job.trace.errors.append(f"{self.ref.label}: {error}")
            job.finish_one()

    async def run(self) -> None:
        with self.scope:
            while True:
                if self.stale and not self.answers_pending:
                    self.stale = False
                    self.forget_manifest()  # reconcile in this round
                if self.manifest is not None and not self.pending and not self.jobs:
                    self.state = "idle" if not self.answers_pending else "waiting for answers"
                    await self._wake.wait()
                self._wake = anyio.Event()
                ok = await self._round()
                if not ok:
                    delay = min(BACKOFF_MAX, BACKOFF_START * 2 ** min(self.failures - 1, 10))
                    self.state = f"retrying in {delay:.1f}s"
                    self._retry = anyio.Event()
                    with anyio.move_on_after(delay):
                        await self._retry.wait()  # or sooner: retry_now()

    def retry_now(self) -> None:
        """Cut a back-off short: what it waited for (the API server, the engine) is back."""
        self._retry.set()

    async def _round(self) -> bool:
        desired, self.pending = self.pending, {}
        jobs, self.jobs = self.jobs, []
        self.inflight = jobs
        engine = self.target.engine
        try:
            if self.manifest is None:
                self.state = "reconciling"
                while self.answers_pending:  # let pipelined batches land first
                    await self._wake.wait()
                    self._wake = anyio.Event()
                await engine.reconcile_container(self, jobs)
                finished_here = True
            else:
                self.state = "pushing"
                finished_here = await self._push(desired, jobs)
        except TransportError as e:
            self.inflight = []
            self._failed(e, jobs)
            return False
        if self.manifest is None:
            return False  # a pipelined answer failed meanwhile
        self.failures = 0
        self.last_error = ""
        self.inflight = []
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
        answer = await self.target.engine.send(self, delta, [j.trace for j in jobs], pipelined=True)
        if answer is None:
            return True
        self.answers_pending += 1
        assert self.target.engine._tg is not None
        self.target.engine._tg.start_soon(self._await_answer, answer, jobs)
        return False

    async def _await_answer(self, answer, jobs: list[BatchJob]) -> None:  # noqa: ANN001
        """The container's answer to a pipelined batch: finish its jobs, or on failure
        forget the (optimistic) manifest so the worker reconciles."""
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
        self.forget_manifest()  # the container may hold anything now: compare again
        self.last_error = str(e)
        self.state = "error"
        log.error("push failed", target=self.ref.target, container=self.ref.name, error=e.message, hint=e.hint)
        for job in jobs:
            job.trace.errors.append(f"{self.ref.label}: {e}")
            job.finish_one()


# --- per target --------------------------------------------------------------------------


def _ignored(found: tuple[ServiceRuntime, ResolvedMapping, Path], kind: Kind) -> bool:
    """Is the local path behind a container path (TargetRuntime.source_of) ignored by its service?"""
    svc, m, local = found
    return svc.rules.ignored(local, kind is Kind.DIR, m.src)


@dataclass
class TargetRuntime:
    name: str
    transport: Transport
    services: list[ServiceRuntime]
    engine: Engine
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
                if dest == m.dest or dest.startswith(m.dest + "/"):
                    if best is None or len(m.dest) > len(best[1].dest):
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

    def without_open_dirs(self, desired: Desired, remote: Manifest) -> tuple[Desired, list[DestPath]]:
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

    def gone_below(self, desired: Desired, remote: Manifest, opened: list[DestPath] | None = None) -> list[DestPath]:
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
        touched: dict[str, list[str]] = {}
        for dest in [*delta.deletes, *(p.dest for p in delta.puts)]:
            found = self.source_of(dest)
            if found is None:
                continue
            svc, _, local = found
            touched.setdefault(svc.cfg.name, []).append(local_rel(local, self.engine.cfg.root))
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

    async def supervise(self, tg: TaskGroup) -> None:
        """Follow the target's containers: poll, or wake at once on the transport's own
        change feed (a pod watch); back off while the target keeps failing."""
        failures = 0
        wait_changed = getattr(self.transport, "wait_changed", None)
        # With a change feed (a pod watch) the poll is only a safety net: keep it rare, it
        # costs the API server a LIST each time.
        every = WATCHED_DISCOVERY_INTERVAL if wait_changed is not None else DISCOVERY_INTERVAL
        fed = False
        while True:
            workers = await self.discover(tg)
            if fed:
                # The change feed answered (e.g. the pod watch reconnected after an API-server
                # outage): containers backing off from that outage may retry now.
                for worker in workers:
                    if worker.state.startswith("retrying"):
                        worker.retry_now()
            failures = failures + 1 if self.error else 0
            interval = every if not failures else min(UNAVAILABLE_RETRY_MAX, DISCOVERY_INTERVAL * 2 ** (failures - 1))
            fed = False
            with anyio.move_on_after(interval):
                if wait_changed is not None:
                    await wait_changed()
                    fed = True
                else:
                    await anyio.sleep(math.inf)

    async def discover(self, tg: TaskGroup) -> list[ContainerWorker]:
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
                tg.start_soon(worker.run, name=f"worker {ref.label}")
        return list(self.workers.values())


# --- the engine --------------------------------------------------------------------------


class Engine:
    def __init__(self, cfg: Config, transports: dict[str, Transport], trace: TraceWriter | None = None):
        self.cfg = cfg
        self.transports = transports
        self.trace = trace or TraceWriter(None)
        self.hashes = HashCache()
        self.known = KnownStore(cfg.state_dir)
        self.services: list[ServiceRuntime] = []
        for svc in cfg.services:
            mappings = tuple(
                ResolvedMapping(cfg.resolve(m.src), m.dest, svc.name, svc.target) for m in svc.sync
            )
            self.services.append(ServiceRuntime(svc, mappings, IgnoreRules(cfg.root, svc.ignore)))
        self.gates = {s.name: BuildGate(s, cfg.root, self.release) for s in cfg.services if s.build}
        self._rules = {s.cfg.name: s.rules for s in self.services}
        self._root = str(cfg.root)
        self._rules_target = {s.cfg.name: s.cfg.target for s in self.services}
        self.targets: dict[str, TargetRuntime] = {}
        for name in sorted({s.cfg.target for s in self.services}):
            self.targets[name] = TargetRuntime(name, transports[name], [s for s in self.services if s.cfg.target == name], self)
        self.coalescer = Coalescer(cfg.daemon.debounce_ms / 1000, cfg.daemon.max_batch_wait_ms / 1000)
        self._events = anyio.Event()
        self.jobs_open: set[BatchJob] = set()
        self.batches_done = 0
        self.started = anyio.Event()
        self._tg: TaskGroup | None = None
        self.on_record: list[Callable[[dict], None]] = []
        self.build_first = True  # run every build once before the first sync (`--no-build`: off)
        self.progress = Reporter("json")  # the CLI swaps in its own (a bar on a terminal)
        self.paused = anyio.Event()  # set: running; cleared: paused (see pause())
        self.paused.set()
        self.started_at = time.time()

    # --- watching ------------------------------------------------------------------------

    def accept(self, path: str, is_dir: bool) -> bool:
        """Should an event on `path` wake the pipeline? (Mapped and not ignored, or a fallback.)"""
        if IgnoreRules.is_ignore_file(path):
            for svc in self.services:
                svc.rules.invalidate()
            self.coalescer.request_reconcile(time.time())  # newly un-ignored files must arrive
        rel = None
        for svc in self.services:
            m = most_specific(svc.mappings, path)
            if m is not None and (not svc.rules.ignored(path, is_dir, m.src) or self._reopened(svc, path, is_dir, m.src)):
                return True
            if svc.cfg.fall_back_on or svc.triggers:
                # Runs for every event under a watched build tree (cargo writes hundreds into
                # target/ per build): string paths and one combined glob set keep it cheap.
                rel = rel or local_rel(path, self.cfg.root)
                if svc.cfg.fall_back_on and svc.fallback_spec.match_file(rel):
                    return True
                if svc.triggers and svc.trigger_spec.match_file(rel) and not svc.rules.ignored(path, is_dir, self._root):
                    return True
        return False

    @staticmethod
    def _reopened(svc: ServiceRuntime, path: str, is_dir: bool, src: Path) -> bool:
        """An ignored directory below which a .dockerignore re-includes paths (made, moved in,
        or gone: a path that is no more may have been one): what is below it must be seen."""
        return svc.rules.reopens and (is_dir or not os.path.lexists(path)) and svc.rules.open_below(path, src)

    def watch_paths(self) -> list[Path]:
        paths = [m.src for s in self.services for m in s.mappings]
        for svc in self.services:
            for pattern in svc.cfg.fall_back_on + [t for b in svc.cfg.build for t in b.trigger]:
                static = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
                paths.append(self.cfg.resolve(static or "."))
        return watch_roots(paths)

    def note_changes(self, paths: set[str], now: float | None = None) -> None:
        self.coalescer.add(paths, time.time() if now is None else now)
        if self._sets_off_a_build(paths):
            self.coalescer.hurry()
        self._events.set()

    def _sets_off_a_build(self, paths: set[str]) -> bool:
        """Does a change set off the build of a service whose builds are idle? Then its batch
        is cut at once: the watcher already waited for its own quiet step (5 ms), and the
        debounce would only delay the build. A change that arrives a moment later simply asks
        for one follow-up build. (Bursts of more than EARLY_CUT_MAX paths coalesce as usual.)"""
        if not self.gates or len(paths) > EARLY_CUT_MAX:
            return False
        for svc in self.services:
            gate = self.gates.get(svc.cfg.name)
            if gate is None or gate.busy or not svc.triggers:
                continue
            for path in paths:
                rel = local_rel(path, self.cfg.root)
                if (svc.trigger_spec.match_file(rel)
                        and not (svc.cfg.fall_back_on and svc.fallback_spec.match_file(rel))
                        and not svc.rules.ignored(path, os.path.isdir(path), self._root)):
                    return True
        return False

    async def _watch_loop(self, stop: anyio.Event) -> None:
        roots = self.watch_paths()
        log.info("watching", roots=[local_rel(r, self.cfg.root) for r in roots])
        async for paths in changes(roots, self.accept, stop, self.cfg.daemon.max_batch_wait_ms, on_lost=self.events_lost):
            self.note_changes(paths)

    def events_lost(self, reason: str) -> None:
        """The watcher may have missed events (queue overflow, watcher re-created): the next
        batch compares whole trees."""
        self.coalescer.request_reconcile(time.time())
        self._events.set()

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

    async def _batch_loop(self) -> None:
        while True:
            await self.paused.wait()
            deadline = self.coalescer.deadline()
            if deadline is None:
                await self._events.wait()
                self._events = anyio.Event()
                continue
            delay = deadline - time.time()
            if delay > 0:
                with anyio.move_on_after(delay):  # new changes may move the deadline (hurry)
                    await self._events.wait()
                if self._events.is_set():
                    self._events = anyio.Event()
                continue
            batch = self.coalescer.cut(time.time())
            if batch is not None:
                await self.process(batch)

    # --- one batch -----------------------------------------------------------------------

    def _expand(self, paths: frozenset[str], errors: list[tuple[str, str]]) -> dict[str, LocalFile | None]:
        """Each changed path as it is now; a directory brings everything below it."""
        local: dict[str, LocalFile | None] = {}
        memo: dict[str, str | None] = {}
        for raw in sorted(self._not_through_links(paths, memo)):
            try:
                lf = read_entry(raw, self.hashes)
            except OSError as e:
                errors.append((raw, e.strerror or str(e)))
                continue
            local[raw] = lf
            if lf is not None and lf.entry.kind is Kind.DIR:
                for svc in self.services:
                    m = most_specific(svc.mappings, Path(raw))
                    if m is None:
                        continue
                    for child in walk(raw, str(m.src), svc.rules.ignored, self.hashes, errors, svc.rules.open_below):
                        local[child.path] = child
        return local

    def _not_through_links(self, paths: frozenset[str], memo: dict[str, str | None]) -> set[str]:
        """The paths, each one reached through a symlinked directory below its mapping's src
        replaced by that symlink: syncd syncs the link, never what it points to."""
        out: set[str] = set()
        for raw in paths:
            link = None
            for svc in self.services:
                m = most_specific(svc.mappings, raw)
                if m is not None:
                    link = through_link(raw, str(m.src), memo)
                    if link is not None:
                        break
            out.add(link or raw)
        return out

    def plan(self, batch: Batch, errors: list[tuple[str, str]]) -> Plan:
        local = self._expand(batch.paths, errors)
        return plan_batch(
            batch.id,
            local,
            [s.plan_input for s in self.services],
            self.cfg.root,
            lambda service, path, is_dir, src: self._rules[service].ignored(path, is_dir, src),
            lambda service, path, src: self._rules[service].open_below(path, src),
        )

    def _detect_start(self, batch: Batch, plan: Plan) -> float | None:
        """The earliest change behind the batch, from inode change times (a write, rename or
        chmod sets it; DESIGN says mtime, which misses renames). Times older than a second
        (files inside a moved tree) say nothing about detection delay and are left out."""
        times = [
            lf.ctime
            for tp in plan.targets.values()
            for lf in tp.desired.values()
            if lf is not None and lf.entry.kind is not Kind.DIR and batch.first_event - 1.0 < lf.ctime <= batch.first_event
        ]
        return min(times) if times else None

    async def process(self, batch: Batch) -> BatchJob:
        if batch.reconcile:
            for target in self.targets.values():
                for worker in target.workers.values():
                    worker.request_reconcile()
        t_plan = time.time()
        errors: list[tuple[str, str]] = []
        plan = await anyio.to_thread.run_sync(self.plan, batch, errors)
        t_planned = time.time()
        detect = self._detect_start(batch, plan)
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

    async def release(self, service: str, held: Desired, jobs: list[BatchJob]) -> None:
        """After a good build: send the service's held changes and what the build wrote (its
        outputs are mapped paths; a rescan finds them even before their events arrive)."""
        svc = self.cfg.service(service)
        target = self.targets[svc.target]
        errors: list[tuple[str, str]] = []
        t0 = time.time()
        fresh = await anyio.to_thread.run_sync(self.desired_state, target, {service}, errors)
        for job in jobs:
            job.trace.add("scan", t0, time.time(), detail={"service": service, "paths": len(fresh), "after": "build"})
        self._submit(svc.target, {**held, **fresh}, jobs)
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
        t0 = time.time()
        detail: dict = {"reason": fb.reason, "command": fb.command}
        try:
            result = await anyio.run_process(argv, cwd=self.cfg.root, check=False, stderr=subprocess.STDOUT)
            output = result.stdout.decode("utf-8", "replace").strip()
            detail.update(exit=result.returncode, output="\n".join(output.splitlines()[-10:]))
            ok = result.returncode == 0
        except OSError as e:
            ok, output = False, ""
            detail.update(exit=None, output=f"cannot run {argv[0]!r}: {e.strerror}")
        job.trace.add(f"fallback:{fb.service}", t0, time.time(), ok=ok, detail=detail)
        if ok:
            log.info("fallback done", service=fb.service, ms=round((time.time() - t0) * 1000, 1))
            # The rebuild may replace the container (then the new one is reconciled when it
            # shows up) or not: either way, compare trees so the held-back edits arrive.
            target = self.targets[self._rules_target[fb.service]]
            for worker in target.workers.values():
                worker.request_reconcile()
            gate = self.gates.get(fb.service)
            if gate is not None:  # the held-back edits may need a build too
                gate.offer({}, range(len(gate.svc.build)), None)
        else:
            job.trace.errors.append(f"fallback for '{fb.service}' failed: {detail['output'] or 'exit ' + str(detail['exit'])}")
            log.error("fallback failed", service=fb.service, exit=detail["exit"], output=detail["output"],
                      hint="fix the `fallback` command in the config or run it by hand")
        job.finish_one()

    def _finish(self, job: BatchJob) -> None:
        self.jobs_open.discard(job)
        record = job.trace.finish(time.time())
        self.batches_done += 1
        self.trace.write(record)
        for callback in self.on_record:
            callback(record)
        total = record["spans"][-1]
        log.info(
            "batch",
            id=record["batch"],
            ok=record["ok"],
            ms=total["ms"],
            **{k: v for k, v in (total["detail"] or {}).items() if v},
            **({"errors": record["errors"]} if record["errors"] else {}),
        )

    # --- sending to one container ---------------------------------------------------------

    async def send(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace], pipelined: bool = False):  # noqa: ANN201
        """Apply `delta` to the container and record what it now holds.

        `pipelined`: when the transport can, return right after the payload is written with
        an awaitable for the container's answer (the manifest is updated optimistically;
        a failed answer makes the worker reconcile). Else None once applied."""
        if not delta:
            return None
        assert worker.manifest is not None
        target = worker.target
        root = target.root
        try:
            deletes = [relative_name(d, root) for d in delta.deletes]
            guard = guard_dirs(deletes, (relative_name(p.dest, root) for p in delta.puts))
        except UnsafePath as e:
            raise TransportError(f"refused: {e}") from None
        report = PackReport()
        t0 = time.time()
        stream = pack(delta.puts, root, report)
        sink = self.progress.sink(worker.ref.label, sum(p.source.entry.kind is Kind.FILE for p in delta.puts),
                                  stream_size(delta.puts))
        if sink is not None:
            stream = tracked(stream, report, sink)
        start = getattr(target.transport, "apply_start", None) if pipelined else None
        answer = await start(worker.ref, root, deletes, stream, guard) if start else None
        if answer is not None:
            # (A reconcile requested while this was sent forgot the manifest: it lists anew.)
            if worker.manifest is not None:
                apply_delta(worker.manifest, delta.deletes, report.sent)  # optimistic: see above
                worker.unconfirmed.update(report.sent.keys())

            async def landed() -> None:
                result = await answer()
                worker.unconfirmed.subtract(report.sent.keys())
                worker.unconfirmed += Counter()  # drop zero counts
                self._record_push(worker, delta, traces, report, result.bytes_sent, t0, time.time())
                self._check_guard(worker, result.output)
                await self.after_push(worker, delta, traces)

            return landed
        result = await target.transport.apply(worker.ref, root, deletes, stream, guard)
        t1 = time.time()
        if worker.manifest is not None:  # (None: a reconcile was requested meanwhile)
            apply_delta(worker.manifest, delta.deletes, report.sent)
        self._record_push(worker, delta, traces, report, result.bytes_sent, t0, t1)
        self._check_guard(worker, result.output)
        await self.after_push(worker, delta, traces)
        return None

    def _check_guard(self, worker: ContainerWorker, output: str) -> None:
        """The container removed a symlink that was in the way (planted after syncd's last
        listing): what syncd believed was behind it is gone, so compare the trees again."""
        if SYMLINK_REMOVED in output:
            removed = [line for line in output.splitlines() if SYMLINK_REMOVED in line]
            log.warning("symlink in the way removed in the container", container=worker.ref.label, lines=removed[:5],
                        hint="something in the container replaced a synced directory with a symlink; syncd never "
                             "writes through one and reconciles now")
            worker.stale = True
            worker._wake.set()  # noqa: SLF001

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
                t0 = time.time()
                ok, detail = await self._container_step(worker, step)
                for trace in traces:
                    trace.add(step.span, t0, time.time(), ok=ok, detail=detail)
                    if not ok:
                        trace.errors.append(f"{worker.ref.label}: {step.span} failed: {detail.get('error', '')}")
                if not ok:
                    failed.add(step.service)
                    log.error("step failed", container=worker.ref.label, step=step.span, **detail,
                              hint="fix the command in the config or the container; the next push runs it again")

    async def _container_step(self, worker: ContainerWorker, step: ContainerStep) -> tuple[bool, dict]:
        transport = worker.target.transport
        try:
            if step.restart == "container":
                await transport.restart(worker.ref)  # type: ignore[attr-defined]
                if self._tg is not None:  # a new generation: follow it now, not at the next poll
                    self._tg.start_soon(worker.target.discover, self._tg)
                return True, {"restart": "container"}
            argv = ["kill", "-HUP", "1"] if step.restart == "process" else argv_of(step.cmd or "")
            run = getattr(transport, "run_step", transport.run)  # the session when there is one
            result = await run(worker.ref, argv)
        except TransportError as e:
            return False, {"error": str(e)}
        tail = "\n".join(result.output.strip().splitlines()[-10:])
        detail: dict = {"exit": result.exit, "output": tail}
        if step.restart:
            detail["restart"] = step.restart
        if result.exit != 0:
            detail["error"] = f"exit {result.exit}" + (f": {tail}" if tail else "")
        return result.exit == 0, detail

    def _record_push(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace], report: PackReport,
                     bytes_sent: int, t0: float, t1: float) -> None:
        """Account a landed push: counters, and pack/push spans on every batch it carried."""
        worker.bytes_sent += bytes_sent
        worker.files_sent += report.files
        detail = {"files": report.files, "deletes": len(delta.deletes), "bytes": bytes_sent}
        for trace in traces:
            # Packing is interleaved with pushing (streamed): the span shows its own time only.
            trace.add("pack", t0, t0 + report.seconds, detail={"container": worker.ref.label, "files": report.files, "streamed": True})
            trace.add(f"push:{worker.ref.label}", t0, t1, detail=detail)
            for key, value in detail.items():
                trace.stats[key] = trace.stats.get(key, 0) + value
            for dest, path, message in report.errors:
                trace.errors.append(f"{path}: {message} (not sent to {dest})")
        for dest, path, message in report.errors:
            log.error("cannot read", path=path, error=message, hint="check the file's permissions")
        if report.torn:
            log.info("file changed while sending; will re-send", paths=report.torn[:5])

    # --- reconcile -------------------------------------------------------------------------

    def desired_state(self, target: TargetRuntime, services: set[str] | None, errors: list[tuple[str, str]]) -> Desired:
        """Every mapped, non-ignored local path of the target, keyed by container path."""
        desired: Desired = {}
        for svc in target.services:
            if services is not None and svc.cfg.name not in services:
                continue
            for m in svc.mappings:
                tree = scan_source(m.src, svc.rules.ignored, self.hashes, errors, svc.rules.open_below)
                for raw, lf in tree.items():
                    if len(svc.mappings) > 1 and most_specific(svc.mappings, raw) is not m:
                        continue  # a more specific mapping sends it
                    try:
                        desired[m.dest_of(raw)] = lf
                    except UnsafePath:
                        continue
        return desired

    async def compute_reconcile(
        self, worker: ContainerWorker, services: set[str] | None = None
    ) -> tuple[Delta, Manifest, list[tuple[str, str]], BatchTrace]:
        target = worker.target
        trace = BatchTrace(0, time.time(), reconcile=True)
        trace.services = [s.cfg.name for s in target.services if services is None or s.cfg.name in services]
        t0 = time.time()
        errors: list[tuple[str, str]] = []
        desired = await anyio.to_thread.run_sync(self.desired_state, target, services, errors)
        t1 = time.time()
        trace.add("scan", t0, t1, detail={"paths": len(desired)})
        remote = await target.transport.manifest(worker.ref, target.dests)
        hashed = await self._resolve_quick(worker, desired, remote)
        t2 = time.time()
        trace.add(f"manifest:{worker.ref.label}", t1, t2, detail={"paths": len(remote), "hashed": hashed})
        delta = diff(desired, remote, full=True, owned=lambda d: target.owned(d, remote[d].kind, services))
        trace.paths = len(desired)
        return delta, remote, errors, trace

    async def _resolve_quick(self, worker: ContainerWorker, desired: Desired, remote: Manifest) -> int:
        """Digests for quick-listed files (see syncd/known.py); hash the unprovable ones of
        the local size in the container. Returns how many files were hashed."""
        known = {**self.known.load(worker.key), **record_of(worker.last_manifest)}
        sizes = {d: lf.size for d, lf in desired.items() if lf is not None and lf.entry.kind is Kind.FILE}
        unsure = resolve(remote, known, sizes)
        if unsure:
            digests = await worker.target.transport.hash(worker.ref, unsure)  # type: ignore[attr-defined]
            for dest in unsure:
                e = remote[dest]
                remote[dest] = Entry(Kind.FILE, digests.get(dest, "?"), e.exec, size=e.size, mtime=e.mtime)
        return len(unsure)

    def held_services(self) -> dict[str, str]:
        """Services whose last build failed -> why: a reconcile leaves their container paths
        as they are (nothing sent, nothing deleted) until a build succeeds."""
        return {name: g.failed.summary() for name, g in self.gates.items() if g.failed is not None}

    async def reconcile_container(self, worker: ContainerWorker, jobs: list[BatchJob], services: set[str] | None = None) -> bool:
        """Compare the whole local tree with the container and push the difference. Services
        whose build failed are held: left out, and reconciled once a build succeeds."""
        held = {n: why for n, why in self.held_services().items() if n in {s.cfg.name for s in worker.target.services}}
        if held:
            services = (services if services is not None else {s.cfg.name for s in worker.target.services}) - set(held)
            worker.held_back |= set(held)
        delta, remote, errors, trace = await self.compute_reconcile(worker, services)
        for name, why in held.items():
            trace.errors.append(f"service '{name}': build {why}; held: nothing of it sent to {worker.ref.label} "
                                "until a build succeeds")
        for path, message in errors:
            trace.errors.append(f"{path}: {message}")
            log.error("cannot read", path=path, error=message, hint="check the file's permissions")
        worker.manifest = remote
        try:
            await self.send(worker, delta, [trace] + [j.trace for j in jobs])
        except TransportError:
            worker.forget_manifest()
            raise
        if worker.manifest is not None:  # (None: another reconcile was asked for meanwhile)
            self.known.save(worker.key, record_of(worker.manifest))
        record = trace.finish(time.time())
        self.trace.write(record)
        for callback in self.on_record:
            callback(record)
        log.info(
            "reconciled",
            container=worker.ref.label,
            puts=len(delta.puts),
            deletes=len(delta.deletes),
            ms=record["spans"][-1]["ms"],
        )
        if len(delta.puts) + len(remote) >= TRIM_AFTER_PATHS:
            await give_back()
        return not errors

    # --- entry points ------------------------------------------------------------------------

    async def sync_once(self, services: set[str] | None = None) -> bool:
        """One reconcile of every container of every target (of `services`). True: converged.
        Builds run first; a service whose build fails is not synced (its container keeps the
        last good state)."""
        ok = True
        if self.gates and self.build_first:
            ok = await self.build_all(services)
            broken = {name for name, g in self.gates.items() if g.failed is not None}
            if broken:
                services = (services if services is not None else {s.name for s in self.cfg.services}) - broken
        async with anyio.create_task_group() as tg:
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
                    worker = ContainerWorker(ref, target)

                    async def one(w: ContainerWorker = worker) -> None:
                        nonlocal ok
                        try:
                            ok &= await self.reconcile_container(w, [], services)
                        except TransportError as e:
                            log.error("sync failed", container=w.ref.label, error=e.message, hint=e.hint)
                            ok = False

                    tg.start_soon(one)
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
                await target.discover(tg)
                tg.start_soon(target.supervise, tg)
            tg.start_soon(self._batch_loop)
            tg.start_soon(self._watch_loop, stop)
            self.started.set()
            await stop.wait()
            tg.cancel_scope.cancel()
        for target in self.targets.values():
            for worker in target.workers.values():
                if worker.manifest is not None:
                    self.known.save(worker.key, record_of(worker.confirmed()))
            await target.transport.close()

    def idle(self) -> bool:
        """Nothing queued, nothing in flight, every container up to date."""
        if self.coalescer.deadline() is not None or self.jobs_open:
            return False
        if any(g.running or g.wanted for g in self.gates.values()):
            return False
        return all(
            w.state == "idle" and not w.pending for t in self.targets.values() for w in t.workers.values()
        )

    def status(self, last: int = 20) -> dict:
        """What the daemon is doing, as plain data (the control API serves it as JSON)."""
        records = self.trace.records
        return {
            "config": str(self.cfg.file),
            "started": self.started_at,
            "paused": not self.paused.is_set(),
            "idle": self.idle(),
            "targets": {
                name: {
                    "kind": self.cfg.targets[name].kind,
                    "services": [s.cfg.name for s in t.services],
                    "error": t.error,
                    "containers": {
                        w.ref.name: {
                            "id": w.ref.id,
                            "state": w.state,
                            "channel": _channel_mode(t.transport, w.ref),
                            "error": w.last_error,
                            "files_sent": w.files_sent,
                            "bytes_sent": w.bytes_sent,
                            "tracked_paths": len(w.manifest or {}),
                            "queued_paths": len(w.pending),
                        }
                        for w in t.workers.values()
                    },
                }
                for name, t in self.targets.items()
            },
            "builds": {name: g.state for name, g in self.gates.items()},
            "pending_paths": self.coalescer.pending,
            "batches": self.batches_done,
            "recent": records[-last:],
            "errors": [e for r in records[-last:] for e in r["errors"]][-last:],
        }



def _channel_mode(transport: Transport, ref: ContainerRef) -> str:
    """How batches reach the container: "session", or "per-exec (why)"."""
    mode = getattr(transport, "mode", None)
    return mode(ref) if mode is not None else "direct"
