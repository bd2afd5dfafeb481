"""A push's large files sent as block deltas against what the container already holds.

Before a push is packed, `LargeFiles.send` takes the files of at least `core.delta.THRESHOLD`
bytes whose container copy syncd knows (its manifest has the digest) and keeps locally (the
`BaseCache`), when the channel is slow enough for a delta to pay (`core.transfer.pays`).
Each is read once (one complete version: a file rewritten meanwhile is sent as read, and its
new version comes with the next batch), encoded in a worker thread, and patched in the
container (`Transport.patch`: base verified, result verified, renamed into place). What the
container refuses — its copy changed behind syncd's back, the base is gone, a corrupt op, a
failed check — goes back into the push's tar: a full send, said once in the log. After a push
lands, the large files it carried whole are kept as the next bases.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import structlog

from syncd.basecache import BaseCache
from syncd.config import Config, DockerTarget, KubernetesTarget
from syncd.core.delta import THRESHOLD, Encoded, encode
from syncd.core.mapping import relative_name
from syncd.core.transfer import (
    CONTAINER_COST,
    DELTA_COST,
    GZIP_COST,
    GZIP_LEVEL,
    PROBE_BYTES,
    PROBE_FOR,
    Cost,
    Setting,
    Throughput,
    pays,
)
from syncd.model import DestPath, Entry, Kind, Put
from syncd.pack import read_stable
from syncd.transports.base import PatchRequest, TransportError, Unsupported
from syncd.transports.patch import patch_args, patch_stream
from syncd.workers import ContainerWorker

log = structlog.get_logger("syncd")


@dataclass(frozen=True, slots=True)
class Policy:
    """A target's `delta` and `compress` settings."""

    delta: Setting = "auto"
    compress: Setting = "auto"


@dataclass
class Patched:
    """What the deltas of one push did: entries now in the container, and the figures its
    push span carries."""

    sent: dict[DestPath, Entry] = field(default_factory=dict)
    files: int = 0
    before: int = 0  # the files' sizes
    after: int = 0  # bytes on the wire
    copied: int = 0
    literal: int = 0
    refused: int = 0

    def detail(self) -> dict[str, int]:
        return {"files": self.files, "before": self.before, "after": self.after, "copied": self.copied,
                "literal": self.literal, "refused": self.refused}


BASES_DIR = "bases"  # in the state directory


def large_files(cfg: Config) -> LargeFiles:
    """The deltas of a config's remote targets, with their bases kept in `.syncd/bases`."""
    policies = {name: Policy(t.delta, t.compress) for name, t in cfg.targets.items()
                if isinstance(t, DockerTarget | KubernetesTarget)}
    return LargeFiles(BaseCache(cfg.state_dir / BASES_DIR), policies)


class LargeFiles:
    def __init__(self, cache: BaseCache, policies: dict[str, Policy]) -> None:
        self.cache = cache
        self.policies = policies  # per target; a target without one never uses deltas
        self.channels: dict[str, Throughput] = {}  # per container (ContainerWorker.key)
        self.gzip_known: dict[str, bool] = {}  # container generation -> has gzip
        self.encoding = Cost(DELTA_COST)  # what encoding a delta costs here, per byte, as measured

    def channel(self, worker: ContainerWorker) -> Throughput:
        return self.channels.setdefault(worker.key, Throughput())

    async def measure(self, worker: ContainerWorker, push_bytes: int) -> None:
        """Before a large push on a channel not yet measured (the first reconcile), measure it
        with a probe, so `auto` can compress that push already."""
        policy = self.policies.get(worker.target.name)
        channel = self.channel(worker)
        if (policy is None or channel.rate is not None or push_bytes < PROBE_FOR
                or "auto" not in (policy.delta, policy.compress)):
            return
        try:
            rate = await worker.target.transport.throughput(worker.ref, PROBE_BYTES)
        except Unsupported:
            self.policies.pop(worker.target.name, None)
            return
        # (A TransportError goes up: the channel broke under this push, which fails like any other.)
        channel.observe(PROBE_BYTES, PROBE_BYTES / rate)

    def wants(self, worker: ContainerWorker) -> bool:
        policy = self.policies.get(worker.target.name)
        return policy is not None and pays(policy.delta, self.channel(worker).rate, self.encoding.per_byte + CONTAINER_COST)

    async def gzip_level(self, worker: ContainerWorker) -> int:
        """The gzip level for this container's bytes now (0: raw): compression must pay on the
        channel and the container must have gzip (asked once per container generation)."""
        policy = self.policies.get(worker.target.name)
        if policy is None or not pays(policy.compress, self.channel(worker).rate, GZIP_COST):
            return 0
        key = f"{worker.key}@{worker.ref.generation}"
        if key not in self.gzip_known:
            try:
                probe = await worker.target.transport.run_step(worker.ref, ["sh", "-c", "command -v gzip"])
            except TransportError:
                return 0  # asked again next time
            self.gzip_known[key] = probe.exit == 0
            if probe.exit != 0:
                log.warning("no gzip in the container; sending raw", container=worker.ref.label,
                            hint="add gzip to the image (busybox has it) for compressed transfers; `syncd doctor` checks")
        return GZIP_LEVEL if self.gzip_known[key] else 0

    def candidates(self, worker: ContainerWorker, puts: Sequence[Put], deletes: Sequence[DestPath]) -> list[Put]:
        """Large files whose container version is known and kept here. (Not below a delete of
        the same push: the delete runs after the patch, in the tar request.)"""
        if worker.manifest is None or not self.wants(worker):
            return []
        found = []
        for put in puts:
            have = worker.manifest.get(put.dest)
            if (put.source.entry.kind is Kind.FILE and put.source.size >= THRESHOLD and have is not None
                    and have.kind is Kind.FILE and self.cache.has(have.digest)
                    and not any(put.dest == d or put.dest.startswith(d + "/") for d in deletes)):
                found.append(put)
        return found

    async def send(self, worker: ContainerWorker, puts: list[Put], deletes: Sequence[DestPath],
                   root: DestPath) -> tuple[list[Put], Patched]:
        """Patch what can be patched; return the puts left for the tar, and what was done."""
        done = Patched()
        chosen = self.candidates(worker, puts, deletes)
        if not chosen:
            return puts, done
        for put in chosen:
            await self._patch_one(worker, put, root, done)
        return [p for p in puts if p.dest not in done.sent], done

    async def _patch_one(self, worker: ContainerWorker, put: Put, root: DestPath, done: Patched) -> bool:
        assert worker.manifest is not None
        have = worker.manifest[put.dest]
        base = await anyio.to_thread.run_sync(self.cache.get, have.digest)
        got = await anyio.to_thread.run_sync(_read, put.source.path)
        if base is None or got is None:
            return False  # evicted base, vanished or torn file: the tar path handles it
        data, st, digest = got
        if digest == have.digest:
            return False
        t0 = time.perf_counter()
        encoded: Encoded = await anyio.to_thread.run_sync(encode, base, data)
        self.encoding.observe(len(data), time.perf_counter() - t0)
        if not encoded.worth_it:
            return False
        mode = stat.S_IMODE(st.st_mode)
        name = relative_name(put.dest, root)
        guard = [name.rsplit("/", 1)[0]] if "/" in name else []
        level = await self.gzip_level(worker)
        args = patch_args(root, name, encoded.block, have.digest, digest, mode, int(st.st_mtime))
        request = PatchRequest(root, name, args, patch_stream(encoded, guard, level))
        try:
            result = await worker.target.transport.patch(worker.ref, request)
        except Unsupported:
            self.policies.pop(worker.target.name, None)
            return False
        done.after += result.bytes_sent
        if not result.applied:
            done.refused += 1
            if "gzip" in result.why:
                self.gzip_known[f"{worker.key}@{worker.ref.generation}"] = False
            log.info("block delta refused; sending the file whole", container=worker.ref.label, file=put.dest,
                     why=result.why)
            return False
        done.files += 1
        done.before += len(data)
        done.copied += encoded.copied_bytes
        done.literal += encoded.literal_bytes
        entry_digest = put.source.entry.digest if put.source.entry.digest == digest else digest
        done.sent[put.dest] = Entry(Kind.FILE, digest=entry_digest, exec=bool(mode & stat.S_IXUSR), size=len(data),
                                    mtime=int(st.st_mtime))
        await anyio.to_thread.run_sync(self.cache.put, digest, data)
        return True

    def keep_sent(self, worker: ContainerWorker, puts: Sequence[Put], sent: dict[DestPath, Entry]) -> list[tuple[str, str]]:
        """The (local path, digest) of large files a push carried whole: the next bases (only
        where deltas pay: on a fast channel keeping them is work for nothing)."""
        if not self.wants(worker):
            return []
        out = []
        for put in puts:
            entry = sent.get(put.dest)
            if entry is not None and entry.kind is Kind.FILE and entry.size >= THRESHOLD and not self.cache.has(entry.digest):
                out.append((put.source.path, entry.digest))
        return out


def _read(path: str) -> tuple[bytes, os.stat_result, str] | None:
    """One complete version of the file and its sha1 (None: vanished, or still changing)."""
    got = read_stable(path)
    if got is None or isinstance(got, str):
        return None
    data, st = got
    return data, st, hashlib.sha1(data).hexdigest()
