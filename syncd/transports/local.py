"""`kind = "local"`: a directory stands in for a container's filesystem root.

Container path `/app/src/x` lands at `<path>/app/src/x`. Extraction is done here in Python
with the same rules a container side must follow: no absolute or `..` names, never through
a symlink, files replaced atomically (write to a temporary name, then rename).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio

from syncd.core.manifest import Manifest
from syncd.core.mapping import UnsafePath
from syncd.model import DestPath, Kind
from syncd.scan import HashCache, read_entry
from syncd.transports.base import (
    ApplyRequest,
    ApplyResult,
    CommandResult,
    ContainerRef,
    PatchRequest,
    PatchResult,
    PendingApply,
    TransportError,
    Unsupported,
)


class _IterReader:
    """A read()-able view of a chunk iterator, so tarfile can stream from it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        self.consumed += len(out)
        return out

    def drain(self) -> None:
        for chunk in self._chunks:
            self.consumed += len(chunk)


class LocalTransport:
    has_change_feed = False

    def __init__(self, target: str, path: Path) -> None:
        self.target = target
        self.base = Path(os.path.abspath(path))
        self._hashes = HashCache()

    async def containers(self) -> list[ContainerRef]:
        try:
            self.base.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TransportError(f"local target '{self.target}': cannot create {self.base}: {e.strerror}",
                                 f"fix targets.{self.target}.path or its permissions") from None
        return [ContainerRef(self.target, str(self.base), "local", generation=str(self.base.stat().st_ino))]

    def host_path(self, dest: DestPath) -> Path:
        """Where container path `dest` lives on disk, refusing symlinked components."""
        if not dest.startswith("/") or ".." in dest.split("/"):
            raise UnsafePath(f"{dest!r} is not a safe container path")
        current = self.base
        for part in [p for p in dest.split("/") if p][:-1]:
            current = current / part
            if current.is_symlink():
                raise UnsafePath(f"{dest!r}: {current} is a symlink; syncd never writes through one")
        return self.base / dest.lstrip("/")

    async def wait_changed(self) -> None:
        raise Unsupported(f"local target '{self.target}': a directory has no change feed")

    def mode(self, ref: ContainerRef) -> str:
        return "direct"

    def _check_ref(self, ref: ContainerRef) -> None:
        if ref.id != str(self.base):
            raise TransportError(f"local target '{self.target}': {ref.label} is gone (this target is {self.base})")

    async def manifest(self, ref: ContainerRef, dests: Sequence[DestPath]) -> Manifest:
        self._check_ref(ref)
        return await anyio.to_thread.run_sync(self._manifest, dests)

    async def fingerprint(self, ref: ContainerRef, dests: Sequence[DestPath]) -> str:
        return ""  # (its manifest is a plain one: a local directory is compared, always)

    async def hash(self, ref: ContainerRef, paths: Sequence[DestPath]) -> dict[DestPath, str]:
        def digests() -> dict[DestPath, str]:
            out: dict[DestPath, str] = {}
            for dest in paths:
                try:
                    lf = read_entry(str(self.host_path(dest)), self._hashes)
                except (UnsafePath, OSError):
                    continue
                if lf is not None and lf.entry.kind is Kind.FILE:
                    out[dest] = lf.entry.digest
            return out

        return await anyio.to_thread.run_sync(digests)

    def _manifest(self, dests: Sequence[DestPath]) -> Manifest:
        out: Manifest = {}
        for dest in dests:
            try:
                top = self.host_path(dest)
            except UnsafePath:
                continue
            lf = read_entry(str(top), self._hashes)
            if lf is None:
                continue
            out[dest] = lf.entry
            if lf.entry.kind is not Kind.DIR:
                continue
            for dirpath, dirnames, filenames in os.walk(top):
                rel = Path(dirpath).relative_to(top).as_posix()
                prefix = dest if rel == "." else f"{dest}/{rel}"
                for name in dirnames + filenames:
                    entry = read_entry(os.path.join(dirpath, name), self._hashes)
                    if entry is not None:
                        out[f"{prefix}/{name}"] = entry.entry
        return out

    async def apply(self, ref: ContainerRef, request: ApplyRequest) -> ApplyResult:
        self._check_ref(ref)
        return await anyio.to_thread.run_sync(self._apply, request)

    async def apply_start(self, ref: ContainerRef, request: ApplyRequest) -> PendingApply:
        raise Unsupported(f"local target '{self.target}': applied in place, nothing to pipeline")

    def _unguard(self, prefix: str, guard: list[str]) -> tuple[str, ...]:
        """As the container side does: a symlink on the way to a directory the batch touches
        is removed (the local tree has a directory there), never followed."""
        removed: list[str] = []
        for rel in guard:
            current = self.base / prefix.lstrip("/")
            parts = [p for p in rel.split("/") if p and p != "."]
            for i, part in enumerate(parts):
                current = current / part
                if current.is_symlink():
                    current.unlink()
                    removed.append("/".join(parts[: i + 1]))
        return tuple(removed)

    def _apply(self, request: ApplyRequest) -> ApplyResult:
        prefix = request.root.rstrip("/")
        deletes, tar = request.deletes, request.tar
        try:
            if any(".." in g.split("/") for g in request.guard):
                raise UnsafePath(f"a batch name contains '..': {request.guard}")
            removed = self._unguard(prefix, request.guard)
            for name in deletes:
                _remove(self.host_path(f"{prefix}/{name}"))
            reader = _IterReader(tar)
            # (the stubs know no file object without seek(); a pipe mode streams from one)
            with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8",  # type: ignore[call-overload]  # see above
                              errors="surrogateescape") as tf:
                for member in tf:
                    if member.name.startswith("/") or ".." in member.name.split("/"):
                        raise UnsafePath(f"tar member {member.name!r} is absolute or contains '..'")
                    self._extract(tf, member, self.host_path(f"{prefix}/{member.name}"))
            reader.drain()
        except UnsafePath as e:
            raise TransportError(f"refused: {e}", "nothing outside the mapped destination is written") from None
        except OSError as e:
            raise TransportError(f"local target '{self.target}': {e.filename}: {e.strerror}",
                                 "check permissions and free space of the target directory") from None
        return ApplyResult(bytes_sent=reader.consumed, removed_symlinks=removed)

    @staticmethod
    def _extract(tf: tarfile.TarFile, m: tarfile.TarInfo, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if m.isdir():
            if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
                dst.unlink()
            dst.mkdir(exist_ok=True)
            os.chmod(dst, m.mode & 0o7777)
            return
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        if m.issym():
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink(m.linkname, dst)
            return
        if not m.isreg():
            return
        tmp = dst.parent / f".syncd-tmp-{os.getpid()}-{dst.name[:40]}"
        src = tf.extractfile(m)
        assert src is not None
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(tmp, m.mode & 0o7777)
        os.utime(tmp, (m.mtime, m.mtime))
        os.replace(tmp, dst)

    async def throughput(self, ref: ContainerRef, nbytes: int) -> float:
        raise Unsupported(f"{ref.label}: a local directory: nothing to measure")

    async def patch(self, ref: ContainerRef, request: PatchRequest) -> PatchResult:
        raise Unsupported(f"{ref.label}: a local directory is written whole (a copy costs less than a delta)")

    async def run(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        """A local target's "container" is a directory: commands run on this machine, in it
        (a container's `/app` is the directory's `app/`)."""
        try:
            done = await anyio.run_process(argv, cwd=self.base, check=False, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise TransportError(f"local target '{self.target}': cannot run {argv[0]!r}: {e.strerror}",
                                 "install it or fix the command") from None
        return CommandResult.of(done.returncode, done.stdout, done.stderr)

    async def run_step(self, ref: ContainerRef, argv: list[str]) -> CommandResult:
        return await self.run(ref, argv)

    async def restart(self, ref: ContainerRef) -> None:
        raise Unsupported(f"local target '{self.target}': a directory cannot be restarted")

    async def close(self) -> None:
        return None


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
