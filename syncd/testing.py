"""Test helpers that ship with syncd (as structlog ships `structlog.testing`): a clock the test
moves, an in-memory container runtime, and a transport that records every call and plays
scripted failures. syncd's own tests use them; so can tests of tools built on syncd.

    transport = RecordingTransport(MemoryTransport("web"))
    transport.fail_next("apply", TransportError("disk full"))
    engine = Engine(cfg, {"web": transport})
    ...
    assert transport.calls_to("apply") == 2
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncd.core.manifest import Listing, Manifest
from syncd.model import DestPath, Entry, Kind
from syncd.transports.base import (
    ApplyRequest,
    ApplyResult,
    CommandResult,
    ContainerRef,
    PatchRequest,
    PatchResult,
    PendingApply,
    Transport,
    TransportError,
    Unsupported,
)


class ManualClock:
    """A Clock that moves only when told to (`advance`)."""

    def __init__(self, now: float = 1_800_000_000.0, monotonic: float = 1000.0) -> None:
        self._now = now
        self._mono = monotonic

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


# --- an in-memory container runtime ---------------------------------------------------------------


@dataclass
class MemoryContainer:
    """A container's filesystem as data: path -> file bytes (+ exec bit), directories, links."""

    ref: ContainerRef
    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    links: dict[str, str] = field(default_factory=dict)

    def entry(self, path: str) -> Entry | None:
        if path in self.dirs:
            return Entry(Kind.DIR)
        if path in self.links:
            return Entry(Kind.LINK, link=self.links[path])
        if path in self.files:
            data, exe = self.files[path]
            return Entry(Kind.FILE, hashlib.sha1(data).hexdigest(), exe)
        return None

    def remove(self, path: str) -> None:
        """`rm -rf path`."""
        prefix = path.rstrip("/") + "/"
        for table in (self.files, self.links):
            for p in [p for p in table if p == path or p.startswith(prefix)]:
                del table[p]
        self.dirs -= {d for d in self.dirs if d == path or d.startswith(prefix)}

    def mkdirs(self, path: str) -> None:
        while path not in ("", "/") and path not in self.dirs:
            self.remove(path)  # a file or link in the way of a directory
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def tree(self, top: str) -> dict[str, Entry]:
        """Every path below `top` (and `top`) -> Entry."""
        prefix = top.rstrip("/") + "/"
        out = {}
        for p in [*self.dirs, *self.files, *self.links]:
            if p == top or p.startswith(prefix):
                e = self.entry(p)
                if e is not None:
                    out[p] = e
        return out


def _fingerprint(listed: Manifest) -> str:
    """A memory container's listing fingerprint: its whole content (digests included), where a
    real container's is every entry's stat."""
    return hashlib.sha1(repr(sorted(listed.items())).encode()).hexdigest()


class MemoryTransport:
    """The Transport contract over in-memory containers: what a test needs to run the whole
    engine without Docker, a cluster or a directory. Follows the same rules a container side
    must (no `..`, no writing through a symlink: symlinks in the way are removed and reported)."""

    has_change_feed = False

    def __init__(self, target: str, containers: int = 1) -> None:
        self.target = target
        self.containers_: dict[str, MemoryContainer] = {}
        self.available = True  # False: containers() fails, as an engine that went away
        self.generation = 0
        for i in range(containers):
            self.add(f"{target}-{i}")

    def add(self, name: str) -> MemoryContainer:
        ref = ContainerRef(self.target, name, name, generation=f"{name}@{self.generation}")
        self.containers_[name] = MemoryContainer(ref)
        return self.containers_[name]

    def container(self, ref_or_name: ContainerRef | str) -> MemoryContainer:
        name = ref_or_name if isinstance(ref_or_name, str) else ref_or_name.id
        try:
            return self.containers_[name]
        except KeyError:
            raise TransportError(f"{self.target}/{name}: container is gone") from None

    async def containers(self) -> list[ContainerRef]:
        if not self.available:
            raise TransportError(f"memory target '{self.target}': unavailable", "make it available again")
        return [c.ref for c in self.containers_.values()]

    async def wait_changed(self) -> None:
        raise Unsupported(f"memory target '{self.target}': no change feed")

    async def manifest(self, ref: ContainerRef, dests: Sequence[DestPath]) -> Manifest:
        c = self.container(ref)
        out = Listing()
        for dest in dests:
            out.update(c.tree(dest))
        out.fingerprint = _fingerprint(out)
        return out

    async def fingerprint(self, ref: ContainerRef, dests: Sequence[DestPath]) -> str:
        listed = await self.manifest(ref, dests)
        return listed.fingerprint if isinstance(listed, Listing) else ""

    async def hash(self, ref: ContainerRef, paths: Sequence[DestPath]) -> dict[DestPath, str]:
        c = self.container(ref)
        return {p: hashlib.sha1(c.files[p][0]).hexdigest() for p in paths if p in c.files}

    async def apply(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        c = self.container(ref)
        root = request.root.rstrip("/") or "/"
        removed = []
        for rel in request.guard:
            path = root
            for part in [p for p in rel.split("/") if p not in ("", ".")]:
                path = posixpath.join(path, part)
                if path in c.links:
                    del c.links[path]
                    removed.append(path[len(root):].lstrip("/"))
        for name in request.deletes:
            if ".." not in name.split("/"):
                c.remove(posixpath.normpath(posixpath.join(root, name)))
        data = b"".join(request.tar)
        c.mkdirs(root)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
            for m in tf:
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise TransportError(f"refused: tar member {m.name!r} is absolute or contains '..'")
                path = posixpath.normpath(posixpath.join(root, m.name))
                c.mkdirs(posixpath.dirname(path))
                if m.isdir():
                    c.mkdirs(path)
                elif m.issym():
                    c.remove(path)
                    c.links[path] = m.linkname
                elif m.isreg():
                    c.remove(path)
                    src = tf.extractfile(m)
                    c.files[path] = (src.read() if src else b"", bool(m.mode & 0o100))
        return ApplyResult(bytes_sent=len(data), removed_symlinks=tuple(removed))

    async def apply_start(self, ref: ContainerRef, request: ApplyRequest) -> PendingApply:
        raise Unsupported("memory: applied at once")

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        self.container(ref)
        return CommandResult(0, "")

    async def throughput(self, ref: ContainerRef, nbytes: int) -> float:
        raise Unsupported(f"{ref.label}: in memory: nothing to measure")

    async def patch(self, ref: ContainerRef, request: PatchRequest) -> PatchResult:
        raise Unsupported(f"{ref.label}: in memory, a file is sent whole")

    async def run_step(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        return await self.run(ref, argv)

    async def restart(self, ref: ContainerRef) -> None:
        c = self.container(ref)
        self.generation += 1
        c.ref = ContainerRef(c.ref.target, c.ref.id, c.ref.name, generation=f"{c.ref.name}@{self.generation}")

    def mode(self, ref: ContainerRef) -> str:
        return "memory"

    async def close(self) -> None:
        return None


# --- recording and scripting any transport ------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    container: str  # the ref's label ("" for target-wide calls)
    detail: Any = None  # what was asked (dests, deletes and puts, argv)
    outcome: str = "ok"  # "ok", or the error's text


Hook = Callable[..., Awaitable[None]]


class RecordingTransport:
    """Wraps any Transport: records each call, fails the next call(s) of a method on request,
    runs a hook before a method (to interleave a fault at an exact point), and can transform
    the tar stream of applies (e.g. slow it down so a fault lands mid-batch)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.target = inner.target
        self.has_change_feed = inner.has_change_feed
        self.calls: list[Call] = []
        self._failures: dict[str, list[TransportError]] = {}
        self._hooks: dict[str, Hook] = {}
        self.payload: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None
        self.patch_payload: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None  # same, for patches

    # --- scripting ---------------------------------------------------------------------------

    def fail_next(self, method: str, error: TransportError, times: int = 1) -> None:
        self._failures.setdefault(method, []).extend([error] * times)

    def before(self, method: str, hook: Hook | None) -> None:
        """await hook(*args) before each call of `method` (None: remove it)."""
        if hook is None:
            self._hooks.pop(method, None)
        else:
            self._hooks[method] = hook

    def calls_to(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    # --- the contract --------------------------------------------------------------------------

    async def _call(self, method: str, ref: ContainerRef | None, detail: Any, *args: Any) -> Any:
        label = ref.label if ref is not None else ""
        hook = self._hooks.get(method)
        if hook is not None:
            await hook(*args)
        queued = self._failures.get(method)
        if queued:
            error = queued.pop(0)
            self.calls.append(Call(method, label, detail, str(error)))
            raise error
        try:
            result = await getattr(self.inner, method)(*args)
        except TransportError as e:
            self.calls.append(Call(method, label, detail, str(e)))
            raise
        self.calls.append(Call(method, label, detail))
        return result

    def _wrap(self, request: ApplyRequest) -> ApplyRequest:
        if self.payload is None:
            return request
        return ApplyRequest(request.root, request.deletes, request.puts, self.payload(request.tar), request.gzip)

    async def containers(self) -> list[ContainerRef]:
        return await self._call("containers", None, None)

    async def wait_changed(self) -> None:
        await self.inner.wait_changed()

    async def manifest(self, ref: ContainerRef, dests: Sequence[DestPath]) -> Manifest:
        return await self._call("manifest", ref, list(dests), ref, dests)

    async def hash(self, ref: ContainerRef, paths: Sequence[DestPath]) -> dict[DestPath, str]:
        return await self._call("hash", ref, list(paths), ref, paths)

    async def fingerprint(self, ref: ContainerRef, dests: Sequence[DestPath]) -> str:
        return await self._call("fingerprint", ref, list(dests), ref, dests)

    async def apply(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        detail = {"deletes": list(request.deletes), "puts": list(request.puts)}
        return await self._call("apply", ref, detail, ref, self._wrap(request))

    async def apply_start(self, ref: ContainerRef, request: ApplyRequest) -> PendingApply:
        detail = {"deletes": list(request.deletes), "puts": list(request.puts)}
        return await self._call("apply_start", ref, detail, ref, self._wrap(request))

    async def patch(self, ref: ContainerRef, request: PatchRequest) -> PatchResult:
        if self.patch_payload is not None:
            request = PatchRequest(request.root, request.name, request.args, self.patch_payload(request.stream))
        return await self._call("patch", ref, {"name": request.name, "args": request.args}, ref, request)

    async def throughput(self, ref: ContainerRef, nbytes: int) -> float:
        return await self._call("throughput", ref, nbytes, ref, nbytes)

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        return await self._call("run", ref, list(argv), ref, argv)

    async def run_step(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        return await self._call("run_step", ref, list(argv), ref, argv)

    async def restart(self, ref: ContainerRef) -> None:
        await self._call("restart", ref, None, ref)

    def mode(self, ref: ContainerRef) -> str:
        return self.inner.mode(ref)

    async def close(self) -> None:
        await self.inner.close()
