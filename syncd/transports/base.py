"""The transport contract: everything the engine asks of a target's containers, and how it fails.

One Protocol, `Transport`, fulfilled by every kind (local, docker, kubernetes) and by the
recording fake the tests use (syncd.testing.RecordingTransport). The engine never probes for a
method: a capability a transport lacks answers with `Unsupported`, and the engine falls back
(documented per method). docs/ARCHITECTURE.md shows how to add a transport.

Failure rules (every method):
- `TransportError` (message + a line telling the user what to do) for anything that went wrong
  with one container or target. The worker that asked backs off and, since the container may
  now hold anything, compares the whole tree before sending again.
- `permanent=True` when retrying cannot help until the user changes something (no `tar` in the
  image, no such container in the pod): retried rarely (`WorkerSettings.permanent_retry`),
  and `syncd status` says it waits for a fix.
- `Unsupported`: this transport, or this container, cannot do that at all; not a failure.
- Any other exception is a bug.

Results are data: what an apply removed in the container (symlinks planted in the way of
synced directories) comes back as a list, never as text for the engine to grep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from syncd.core.manifest import Manifest
from syncd.model import DestPath


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """One running container of a target. A new `generation` (restart, re-create) means
    syncd can no longer trust what it knew about the container: it reconciles."""

    target: str
    id: str
    name: str
    generation: str
    image: str = ""
    container: str = ""  # the container's name inside a pod (Kubernetes)

    @property
    def label(self) -> str:
        return f"{self.target}/{self.name}"


class TransportError(Exception):
    """A failure on one target/container, with a line telling the user what to do."""

    def __init__(self, message: str, hint: str = "", *, permanent: bool = False) -> None:
        self.message = message
        self.hint = hint
        self.permanent = permanent
        super().__init__(message + (f" — {hint}" if hint else ""))


class Unsupported(TransportError):
    """This transport (or this container) cannot do that; the caller uses its fallback."""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """One exec in a container (Docker or Kubernetes), whole."""

    exit: int  # -1: the exit status could not be read (`detail` says why)
    stdout: bytes = b""
    stderr: bytes = b""
    sent: int = 0  # stdin bytes written
    detail: str = ""  # what the runtime said beyond the process's own output (Kubernetes' status)


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit: int  # -1: the exit status could not be read (the output says why)
    output: str  # stdout and stderr

    @classmethod
    def of(cls, code: int, out: bytes, err: bytes) -> CommandResult:
        sep = b"\n" if out and err and not out.endswith(b"\n") else b""
        return cls(code, (out + sep + err).decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class ApplyResult:
    bytes_sent: int
    removed_symlinks: tuple[str, ...] = ()  # planted in the container where the batch writes: removed first
    output: str = ""


@dataclass(slots=True)
class ApplyRequest:
    """One batch for one container: delete `deletes`, then extract `tar`, both relative to
    `root`. `puts` names what the tar writes (for the guard: no symlink on the way to any
    directory the batch touches is followed; it is removed)."""

    root: DestPath
    deletes: list[str]
    puts: list[str]
    tar: Iterator[bytes]
    gzip: int = 0  # > 0: the stream travels gzip-compressed at this level (the container runs gzip -d)
    guard: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.guard = guard_dirs(self.deletes, self.puts)


def guard_dirs(deletes: Iterable[str], puts: Iterable[str]) -> list[str]:
    """The directories (relative to the root) a batch deletes or writes in."""
    return sorted({n.rsplit("/", 1)[0] for n in [*deletes, *puts] if "/" in n})


@dataclass(slots=True)
class PatchRequest:
    """One large file rebuilt in the container from the version it holds (`base`, a sha1; ""
    for none: the file sent whole) and the ops of a block delta (syncd/transports/patch.py):
    `stream` is the request's stdin, `args` its arguments."""

    root: DestPath
    name: str  # relative to root
    args: list[str]
    stream: Iterator[bytes]


@dataclass(frozen=True, slots=True)
class PatchResult:
    applied: bool  # False: the container refused (another base, none, a failed check): `why`
    bytes_sent: int
    why: str = ""


# The container's answer to an apply already written (see Transport.apply_start).
PendingApply = Callable[[], Awaitable[ApplyResult]]


class Transport(Protocol):
    """How the engine reaches one target's containers. All methods are coroutines that never
    block the event loop; `ref` is one of the refs `containers()` returned."""

    target: str
    has_change_feed: bool  # True: wait_changed() wakes discovery; False: the engine polls containers()

    async def containers(self) -> list[ContainerRef]:
        """The running containers of this target now (none: TransportError saying why)."""
        ...

    async def wait_changed(self) -> None:
        """Return when the set of containers may have changed (a pod watch event). Unsupported
        when `has_change_feed` is False."""
        ...

    async def manifest(self, ref: ContainerRef, dests: Sequence[DestPath]) -> Manifest:
        """What the container holds below each destination. Files carry a digest, or only size
        and mtime (a quick listing: see `hash`)."""
        ...

    async def hash(self, ref: ContainerRef, paths: Sequence[DestPath]) -> dict[DestPath, str]:
        """sha1 of container files the quick listing left undecided (absent paths left out)."""
        ...

    async def fingerprint(self, ref: ContainerRef, dests: Sequence[DestPath]) -> str:
        """The fingerprint a `manifest` of `dests` would carry now (core/manifest.py `Listing`),
        without the listing; "" when none can be had (then no reconcile is skipped for it:
        syncd/converged.py). A `manifest` that is not a `Listing` carries none."""
        ...

    async def apply(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        """Apply one batch and return once the container has."""
        ...

    async def apply_start(self, ref: ContainerRef, request: ApplyRequest) -> PendingApply:
        """Write the batch and return at once with an awaitable for the container's answer, so
        the next batch is packed while this one is applied (pipelining). Unsupported: no
        pipelining for this container; the engine uses `apply`."""
        ...

    async def patch(self, ref: ContainerRef, request: PatchRequest) -> PatchResult:
        """Rebuild one file from the container's copy and a block delta, verified before and
        after, renamed into place. A refusal is a result (`applied` False: send it whole), not
        an error. Unsupported where a delta cannot pay (a local directory)."""
        ...

    async def throughput(self, ref: ContainerRef, nbytes: int) -> float:
        """Send `nbytes` the container discards and return bytes/s up to its answer: what
        the channel carries, for deciding whether compression or deltas pay. Unsupported
        where there is no channel worth measuring (a local directory) or no session."""
        ...

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        """Run a command in the container on its own (an action: it may be slow). Raises only
        when it could not be run at all."""
        ...

    async def run_step(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        """A short command after a push (run steps, `kill -HUP 1`), in order behind the batches
        sent before it; where there is no faster way it is `run`."""
        ...

    async def restart(self, ref: ContainerRef) -> None:
        """Restart the container (`restart = "container"`); it comes back as a new generation.
        Unsupported where the runtime has no such call (config validation refuses it first)."""
        ...

    def mode(self, ref: ContainerRef) -> str:
        """How batches reach this container, for `syncd status` ("session", "per-exec (why)")."""
        ...

    async def close(self) -> None:
        """Release connections and sessions; the transport is not used again."""
        ...
