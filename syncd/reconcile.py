"""Reconcile: compare a container's whole tree with the local one and send the difference.

Done at start, whenever a container is new or restarted, after a channel broke, and when the
watcher may have missed events. The local side is scanned (hashes cached by inode, size and
times); the container lists itself — quickly (size + mtime) where syncd's record of what it
last sent there (syncd/known.py) can vouch for a file, hashing in the container only what
that record cannot prove. `compute_reconcile` is the comparison alone: `syncd sync --dry-run`,
`syncd demo` and `syncd doctor` call it without a worker.

A reconcile that found both sides equal keeps their fingerprints (syncd/converged.py); the
first reconcile of a container in a later run asks both sides for theirs and, when both are
unchanged, takes the kept manifest without comparing anything.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.lowlevel
import structlog

from syncd.clock import Clock
from syncd.converged import ConvergedStore
from syncd.core.chunking import chunk_end, next_chunk_bytes
from syncd.core.manifest import Listing, Manifest, diff, share
from syncd.core.mapping import UnsafePath, most_specific
from syncd.core.packed import from_columns
from syncd.known import KnownStore, Record, record_of, resolve
from syncd.memory import give_back
from syncd.model import Delta, Desired, Entry, Kind
from syncd.pack import member_size
from syncd.push import Pusher
from syncd.scan import Fingerprint, HashCache, fingerprint_source, scan_source
from syncd.settings import Settings
from syncd.trace import BatchTrace
from syncd.transports.base import ContainerRef, TransportError
from syncd.workers import ContainerWorker, PendingAnswer, TargetRuntime

log = structlog.get_logger("syncd")


def desired_state(target: TargetRuntime, services: set[str] | None, hashes: HashCache,
                  errors: list[tuple[str, str]], fp: Fingerprint | None = None) -> Desired:
    """Every mapped, non-ignored local path of the target, keyed by container path. Blocking
    (it reads the tree): call it in a worker thread. `fp`: fed as `local_fingerprint` is."""
    desired: Desired = {}
    if fp is not None:
        fp.note(_identity(target))
    for svc in target.services:
        if services is not None and svc.cfg.name not in services:
            continue
        for m in svc.mappings:
            tree = scan_source(m.src, svc.rules, hashes, errors, fp)
            for raw, lf in tree.items():
                if len(svc.mappings) > 1 and most_specific(svc.mappings, raw) is not m:
                    continue  # a more specific mapping sends it
                try:
                    desired[m.dest_of(raw)] = lf
                except UnsafePath:
                    continue
    return desired


def local_fingerprint(target: TargetRuntime) -> str:
    """The fingerprint a whole scan of the target (`desired_state`, every service) would feed,
    from a walk that hashes nothing (~0.5 s at 100,000 files against ~1.3 for a cold scan). Blocking."""
    fp = Fingerprint()
    fp.note(_identity(target))
    for svc in target.services:
        for m in svc.mappings:
            fingerprint_source(m.src, svc.rules, fp)
    return fp.hexdigest()


def _identity(target: TargetRuntime) -> str:
    """What of the configuration a scan and the comparison depend on: the services (mappings,
    ignore rules, owned paths) as configured."""
    return repr([(s.cfg.model_dump_json(), [(str(m.src), m.dest) for m in s.mappings]) for s in target.services])


@dataclass
class Scanned:
    """A scan of a target: the desired state, the paths it could not read, and (a scan of
    every service) its fingerprint."""

    desired: Desired
    errors: list[tuple[str, str]]
    fingerprint: str = ""
    _into_empty: Delta | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def into_empty(self) -> Delta:
        """The delta into a container that holds nothing below the destinations: the same for
        every replica sharing this scan, so computed once (at 100,000 paths ~0.15 s and
        100,000 puts per replica, all but the first spared)."""
        with self._lock:
            if self._into_empty is None:
                self._into_empty = diff(self.desired, {})
            return self._into_empty


@dataclass
class _Shared:
    done: anyio.Event
    result: Any = None


class SharedScans:
    """Reconciles of one target that ask for its tree at the same moment share one scan (and
    one walk for its fingerprint): a target's replicas all reconcile at start (and after an
    engine restart), and each scanning the same 100,000 files would multiply the cost by the
    replica count. A scan that has begun is never joined: it may have read a path before the
    joiner's reason to compare (a lost event, a restarted container) changed it."""

    def __init__(self) -> None:
        self._gathering: dict[tuple[str, str, frozenset[str] | None], _Shared] = {}

    async def desired(self, target: TargetRuntime, services: set[str] | None, hashes: HashCache) -> Scanned:
        def scan() -> Scanned:
            errors: list[tuple[str, str]] = []
            fp = Fingerprint() if services is None else None
            desired = desired_state(target, services, hashes, errors, fp)
            return Scanned(desired, errors, fp.hexdigest() if fp is not None else "")

        key = ("scan", target.name, None if services is None else frozenset(services))
        return cast(Scanned, await self._shared(key, scan))

    async def fingerprint(self, target: TargetRuntime) -> str:
        return cast(str, await self._shared(("fingerprint", target.name, None), lambda: local_fingerprint(target)))

    async def _shared(self, key: tuple[str, str, frozenset[str] | None], work: Callable[[], Any]) -> Any:
        joined = self._gathering.get(key)
        if joined is not None:
            await joined.done.wait()
            if joined.result is not None:
                return joined.result
            return await anyio.to_thread.run_sync(work)  # (it failed: alone)
        shared = self._gathering[key] = _Shared(anyio.Event())
        try:
            await anyio.lowlevel.checkpoint()  # the replicas asking in this same moment join
            del self._gathering[key]
            shared.result = await anyio.to_thread.run_sync(work)
            return shared.result
        finally:
            self._gathering.pop(key, None)
            shared.done.set()


@dataclass
class Comparison:
    """What a reconcile would send: the delta, what the container holds, unreadable local
    paths, and the reconcile's trace so far (scan and manifest spans)."""

    delta: Delta
    remote: Manifest
    errors: list[tuple[str, str]]
    trace: BatchTrace
    local_fingerprint: str = ""  # (a comparison of every service: see syncd/converged.py)


async def compute_reconcile(target: TargetRuntime, ref: ContainerRef, known: Record, hashes: HashCache,
                            clock: Clock, services: set[str] | None = None,
                            scans: SharedScans | None = None,
                            pool: dict[Entry, Entry] | None = None) -> Comparison:
    """Compare the container's tree below the target's destinations with the local one.
    `known`: what syncd last sent there (lets a quick listing stand in for hashes); `scans`:
    share the local scan with the target's other replicas reconciling at the same moment; `pool`: the
    entries of the manifests compared at the same moment, shared (core/manifest.py `share`;
    None: not shared, for a process that does not keep the manifest)."""
    trace = BatchTrace(0, clock.now(), reconcile=True)
    trace.services = [s.cfg.name for s in target.services if services is None or s.cfg.name in services]
    t0 = clock.now()
    # The container lists itself while the local tree is scanned: neither depends on the other
    # (what changes meanwhile on either side arrives as events, sent after this reconcile). At
    # every size: a daemon above 50,000 files used to list after, when its listing's entries,
    # kept as the manifest, stood between the scan's freed objects; packed, they do not (at
    # 100,000 files: converged 7.47 against 7.64 s, idle 104.6 against 104.4 MiB, medians of 3).
    listing: list = []
    began: list[float] = []

    async def list_container() -> None:
        began.append(clock.now())
        try:
            listing.append(await target.transport.manifest(ref, target.dests))
        except BaseException as e:  # re-raised below, as itself (not wrapped in a group)
            listing.append(e)
            if not isinstance(e, Exception):
                raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(list_container)
        scanned = await (scans or SharedScans()).desired(target, services, hashes)
        desired = scanned.desired
        trace.add("scan", t0, clock.now(), detail={"paths": len(desired)})
    errors = list(scanned.errors)
    if isinstance(listing[0], BaseException):
        raise listing[0]
    remote: Manifest = listing[0]
    sizes = {d: lf.size for d, lf in desired.items() if lf is not None and lf.entry.kind is Kind.FILE} if remote else {}
    unsure = resolve(remote, known, sizes)
    if unsure:  # the local size, but the record cannot prove the bytes: hash them in the container
        digests = await target.transport.hash(ref, unsure)
        for dest in unsure:
            e = remote[dest]
            remote[dest] = Entry(Kind.FILE, digests.get(dest, "?"), e.exec, size=e.size, mtime=e.mtime)
    if pool is not None:
        share(remote, desired, pool)
    trace.add(f"manifest:{ref.label}", began[0], clock.now(), detail={"paths": len(remote), "hashed": len(unsure)})
    def compare() -> Delta:
        if not remote:
            return scanned.into_empty()
        return diff(desired, remote, full=True, owned=lambda d: target.owned(d, remote[d].kind, services))

    # (a 100,000-path comparison takes ~0.3 s: off the event loop, as the scan is)
    delta = compare() if len(desired) + len(remote) < 20_000 else await anyio.to_thread.run_sync(compare)
    trace.paths = len(desired)
    return Comparison(delta, remote, errors, trace, scanned.fingerprint)


class _Landing:
    """A chunk in flight, awaited from the moment it is sent: when its answer came is the end
    of its time on the link. (Awaited only when the next chunk had been written, the chunk
    before it seemed to take as long as that chunk's writing: budgets swung between ~1,000 and
    ~60,000 files at a 100,000-file start-up, an edit waited ~3 s behind the big ones, and the
    push spans ended seconds late.)"""

    def __init__(self, answer: PendingAnswer, sent: int, began: float) -> None:
        self.answer, self.sent, self.began = answer, sent, began
        self.done = anyio.Event()
        self.at = 0.0
        self.error: BaseException | None = None

    async def wait(self, clock: Clock) -> None:
        try:
            await self.answer()
        except Exception as e:  # (raised where the chunks are sent, when this one's turn comes)
            self.error = e
        finally:
            self.at = clock.now()
            self.done.set()


class Reconciler:
    """A worker's reconcile: compare, send, remember what was sent, record the trace."""

    def __init__(self, hashes: HashCache, known: KnownStore, pusher: Pusher, clock: Clock, settings: Settings,
                 held: Callable[[], dict[str, str]], emit: Callable[[dict], None],
                 hashes_file: Path | None = None, converged: ConvergedStore | None = None) -> None:
        self.hashes = hashes
        self.hashes_file = hashes_file  # where the hash cache is kept across runs (None: not kept)
        self.known = known
        self.converged = converged  # proofs that both sides are as a reconcile left them (None: not kept)
        self._proofs: set[str] = set()  # containers whose kept proof a push must drop (see `pushed`)
        self.pusher = pusher
        self.clock = clock
        self.settings = settings
        self._held = held  # services whose last build failed -> why (left out, see below)
        self._emit = emit  # a finished record: trace file, metrics, status page
        self.scans = SharedScans()
        self._pool: dict[Entry, Entry] = {}  # entries of the manifests being compared now (shared)
        self._comparing = 0

    def known_of(self, worker: ContainerWorker) -> Record:
        """What syncd last sent to the container: its saved record, updated by this run's own
        last listing of it."""
        return {**self.known.load(worker.key), **record_of(worker.last_manifest)}

    async def reconcile(self, worker: ContainerWorker, jobs: list, services: set[str] | None = None) -> bool:
        """Compare the whole local tree with the container and push the difference. Services
        whose build failed are held: left out, and reconciled once a build succeeds (the
        engine asks for it). False: some local paths could not be read."""
        target = worker.target
        names = {s.cfg.name for s in target.services}
        held = {n: why for n, why in self._held().items() if n in names}
        if held:
            services = (services if services is not None else names) - set(held)
            worker.held_back |= set(held)
        # (the record is read on the loop and dropped with the comparison: loading it in a
        # thread, or keeping it for the push, left the idle daemon 20-40 MiB bigger at 100k files)
        as_saved = not worker.last_manifest  # (else known_of adds this run's own listing to the file's)
        # (the first reconcile of a container in this run, of every service: a later one follows
        # this run's own pushes, which the kept proof does not know)
        whole = services is None and not held and self.converged is not None
        if whole and as_saved and await self._unchanged(worker):
            return True
        self._comparing += 1
        known = self.known_of(worker)
        try:
            found = await compute_reconcile(target, worker.ref, known, self.hashes, self.clock,
                                            services, self.scans,
                                            self._pool if self.settings.batches.share_manifests else None)
        finally:
            self._comparing -= 1
            if not self._comparing:
                self._pool = {}
        # Nothing to send and the record proves every file: it is already true as saved
        # (rewriting 100,000 entries costs ~0.1 s per container; keeping it, measured since the
        # daemon fixed the mmap threshold, leaves its idle memory as it was).
        record_holds = (as_saved and not found.delta.puts and not found.delta.deletes
                        and record_of(found.remote) == known)
        del known
        trace = found.trace
        for name, why in held.items():
            trace.errors.append(f"service '{name}': build {why}; held: nothing of it sent to {worker.ref.label} "
                                "until a build succeeds")
        for path, message in found.errors:
            trace.errors.append(f"{path}: {message}")
            log.error("cannot read", path=path, error=message, hint="check the file's permissions")
        worker.manifest = found.remote
        try:
            await self.send(worker, found.delta, [trace] + [j.trace for j in jobs])
        except TransportError:
            worker.forget_manifest()
            raise
        if worker.manifest is not None and record_holds:
            self.known.touch(worker.key)
        elif worker.manifest is not None:  # (None: another reconcile was asked for meanwhile)
            # (written in a thread: ~0.2 s at 100,000 files, which the replicas still pushing
            # would otherwise wait for on the event loop)
            await anyio.to_thread.run_sync(self.known.save, worker.key, record_of(worker.manifest))
        worker.pack_manifest()  # (before the trim below: the listing's dict and entries go)
        if whole:
            self._keep_proof(worker, found)
        puts, deletes, listed, complete = len(found.delta.puts), len(found.delta.deletes), len(found.remote), not found.errors
        del found  # (the listing as a dict, the scan behind the delta: gone before the trim below)
        record = trace.finish(self.clock.now())
        self._emit(record)
        log.info("reconciled", container=worker.ref.label, puts=puts, deletes=deletes, ms=record["spans"][-1]["ms"])
        await self.save_hashes(self.settings.batches.save_hashes_after)
        if puts + listed >= self.settings.batches.trim_after_paths:
            await give_back()
        return complete

    async def _unchanged(self, worker: ContainerWorker) -> bool:
        """Both sides as the kept proof says (syncd/converged.py): the kept manifest becomes
        the worker's, and the reconcile's record says so. False: compare."""
        assert self.converged is not None
        target, t0 = worker.target, self.clock.now()
        kept = self.converged.load(worker.key)
        if kept is None:
            return False
        remote: list[str] = []

        async def ask_container() -> None:
            try:
                remote.append(await target.transport.fingerprint(worker.ref, target.dests))
            except TransportError:
                remote.append("")  # (the comparison will say what is wrong)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask_container)
            local = await self.scans.fingerprint(target)
            t_local = self.clock.now()
        if (local, remote[0]) != (kept.local, kept.remote):
            log.info("changed since the last reconcile: comparing", container=worker.ref.label,
                     local=local != kept.local, container_side=remote[0] != kept.remote)
            return False
        # (shared with the replicas in step now, not at load: they load theirs at the same moment)
        worker.manifest = from_columns(kept.manifest.columns(), [w.manifest for w in target.workers.values()
                                                                 if w is not worker])
        self._proofs.add(worker.key)
        self.known.touch(worker.key)
        trace = BatchTrace(0, t0, reconcile=True)
        trace.services = [s.cfg.name for s in target.services]
        trace.paths = len(kept.manifest)
        trace.add("fingerprint", t0, t_local, detail={"paths": len(kept.manifest)})
        trace.add(f"manifest:{worker.ref.label}", t0, self.clock.now(),
                  detail={"paths": len(kept.manifest), "hashed": 0, "unchanged": True})
        record = trace.finish(self.clock.now())
        self._emit(record)
        log.info("reconciled", container=worker.ref.label, puts=0, deletes=0, ms=record["spans"][-1]["ms"],
                 unchanged="both sides as the last reconcile left them")
        if len(kept.manifest) >= self.settings.batches.trim_after_paths:
            await give_back()  # (the walk's entries are gone: their heap pages go back too)
        return True

    def _keep_proof(self, worker: ContainerWorker, found: Comparison) -> None:
        """After a reconcile of every service: keep the proof when it found both sides equal
        and nothing unreadable, else drop an older one (it no longer holds)."""
        assert self.converged is not None
        listed = found.remote.fingerprint if isinstance(found.remote, Listing) else ""
        equal = not found.delta.puts and not found.delta.deletes and not found.errors
        if equal and listed and found.local_fingerprint and worker.manifest is not None:
            self.converged.save(worker.key, found.local_fingerprint, listed, worker.manifest)
            self._proofs.add(worker.key)
        else:
            self._proofs.discard(worker.key)
            self.converged.forget(worker.key)

    def pushed(self, worker: ContainerWorker) -> None:
        """`worker`'s container changed (a push): its kept proof no longer holds. Dropped at
        once (one unlink a run), so a restart does not walk both trees for nothing first."""
        if worker.key in self._proofs and self.converged is not None:
            self._proofs.discard(worker.key)
            self.converged.forget(worker.key)

    async def send(self, worker: ContainerWorker, delta: Delta, traces: list[BatchTrace]) -> None:
        """Send the reconcile's delta: a large one in chunks (deletes with the first; sizes from
        core/chunking.py), with what was submitted meanwhile sent between two chunks
        (`worker.push_waiting`), so a single-file edit does not wait for the whole tree. Two
        chunks are in flight where the transport pipelines (one crosses the link while the
        answer to the one before comes back: no idle round trip per chunk), so an edit waits
        for at most two. The steps and restarts the delta sets off run once, at the end."""
        b = self.settings.batches
        sizes = [member_size(p) for p in delta.puts]
        budget = b.chunk_first_bytes
        if sum(sizes) <= budget:
            await self.pusher.send(worker, delta, traces)
            return
        if self.pusher.large is not None:  # a channel not yet measured: measured for the whole delta,
            await self.pusher.large.measure(worker, sum(sizes))  # so `auto` compresses its first chunk too
        start, deletes = 0, delta.deletes
        inflight: deque[_Landing] = deque()
        last_landed = 0.0

        async def land_oldest() -> int:
            nonlocal last_landed
            landing = inflight.popleft()
            await landing.done.wait()
            if landing.error is not None:
                raise landing.error
            # this chunk's own time on the link: since it began, or since the one before landed
            took, last_landed = landing.at - max(landing.began, last_landed), landing.at
            return next_chunk_bytes(landing.sent, took, b.chunk_s, b.chunk_min_bytes, b.chunk_max_bytes)

        failed: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            try:
                while start < len(sizes) and worker.manifest is not None:  # (None: a reconcile was asked for anew)
                    end = chunk_end(sizes, start, budget)
                    sent, t0 = sum(sizes[start:end]), self.clock.now()
                    answer = await self.pusher.send(worker, Delta(deletes, delta.puts[start:end]), traces,
                                                    pipelined=True, steps=False)
                    if answer is None:  # applied already (a transport that does not pipeline)
                        budget = next_chunk_bytes(sent, self.clock.now() - t0, b.chunk_s, b.chunk_min_bytes,
                                                  b.chunk_max_bytes)
                    else:
                        landing = _Landing(answer, sent, t0)
                        tg.start_soon(landing.wait, self.clock)
                        inflight.append(landing)
                        if len(inflight) >= 2:
                            budget = await land_oldest()
                    start, deletes = end, ()
                    if start < len(sizes) and worker.manifest is not None:
                        await worker.push_waiting()
                while inflight:
                    await land_oldest()
            except BaseException as e:  # re-raised below, as itself (not wrapped in a group)
                failed.append(e)
                tg.cancel_scope.cancel()
        if failed:
            raise failed[0]
        if worker.manifest is not None:
            await self.pusher.after_push(worker, delta, traces)

    async def save_hashes(self, at_least: int = 1) -> None:
        """Keep the hash cache for the next run once it holds `at_least` new digests (after a
        big reconcile at once: a daemon that is killed keeps what its start-up hashed)."""
        if self.hashes_file is not None and self.hashes.fresh >= at_least:
            await anyio.to_thread.run_sync(self.hashes.save, self.hashes_file, self.hashes.snapshot())
