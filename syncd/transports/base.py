"""What every transport offers, and the errors it raises."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    """A failure on one target/container, with a line telling the user what to do.

    `permanent`: retrying will not help until the user changes something (no `tar` in the
    image); syncd still retries, with a long backoff, as the user may fix it meanwhile.
    """

    def __init__(self, message: str, hint: str = "", *, permanent: bool = False):
        self.message = message
        self.hint = hint
        self.permanent = permanent
        super().__init__(message + (f" — {hint}" if hint else ""))


@dataclass
class ApplyResult:
    bytes_sent: int
    output: str = ""


@dataclass
class CommandResult:
    exit: int  # -1: the exit status could not be read (the output says why)
    output: str  # stdout and stderr

    @classmethod
    def of(cls, code: int, out: bytes, err: bytes) -> CommandResult:
        sep = b"\n" if out and err and not out.endswith(b"\n") else b""
        return cls(code, (out + sep + err).decode("utf-8", "replace"))


class Transport(Protocol):
    target: str

    async def containers(self) -> list[ContainerRef]:
        """The running containers of this target now. Raises TransportError."""
        ...

    async def manifest(self, ref: ContainerRef, dests: list[DestPath]) -> Manifest:
        """What the container holds below each destination (files hashed in the container)."""
        ...

    async def apply(self, ref: ContainerRef, root: DestPath, deletes: list[str], tar: Iterator[bytes],
                    guard: Sequence[str] = ()) -> ApplyResult:
        """Delete `deletes` (names relative to `root`), then extract `tar` at `root`. Symlinks
        on the way to the `guard` directories are removed first: nothing is written or
        deleted through a symlink planted in the container."""
        ...

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        """Run a command in the container (its own exec, not the session: it may be slow).
        Raises TransportError only when it could not be run at all."""
        ...

    async def close(self) -> None: ...
