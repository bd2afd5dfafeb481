"""The local copies of large files as syncd last sent them: the bases block deltas are encoded
against (syncd/deltas.py).

Content-addressed: `.syncd/bases/<sha1>` holds the bytes whose sha1 that is. Which base a
container has is what its manifest says (the digest syncd sent, or listed), and the container
verifies it again before patching, so one copy serves every replica and every container that
got the same version. Bounded by `limit` bytes: the least recently used go first. Nothing
here is precious: a missing, evicted or unreadable base (the directory deleted, the disk full)
only means the next send of that file is whole.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from pathlib import Path

import structlog

log = structlog.get_logger("syncd")

LIMIT = 512 << 20  # a few versions of a few large binaries


class BaseCache:
    def __init__(self, directory: Path, limit: int = LIMIT) -> None:
        self.dir = directory
        self.limit = limit
        self._warned = False

    def _path(self, digest: str) -> Path:
        return self.dir / digest

    def get(self, digest: str) -> bytes | None:
        """The bytes of `digest`, or None (never stored, evicted, or not what they claim)."""
        if not digest:
            return None
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha1(data).hexdigest() != digest:  # a torn or tampered copy is no base
            with suppress(OSError):
                path.unlink()
            return None
        with suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return data

    def has(self, digest: str) -> bool:
        return bool(digest) and self._path(digest).is_file()

    def put(self, digest: str, data: bytes) -> None:
        """Keep `data` (whose sha1 is `digest`); written aside and renamed, so a reader never
        sees half of it. Failure (no space, directory gone and not creatable) is logged once."""
        if len(data) > self.limit or self.has(digest):
            return
        tmp = self._path(digest + ".tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, self._path(digest))
        except OSError as e:
            with suppress(OSError):
                tmp.unlink()
            if not self._warned:
                self._warned = True
                log.warning("cannot keep a base for block deltas; large files are sent whole", dir=str(self.dir),
                            error=e.strerror or str(e), hint=f"free space or make {self.dir} writable")
            return
        self._evict()

    def put_file(self, path: str, digest: str) -> None:
        """Keep the local file `path` when it still holds `digest` (what was sent)."""
        try:
            with open(path, "rb") as f:
                data = f.read(self.limit + 1)
        except OSError:
            return
        if hashlib.sha1(data).hexdigest() == digest:
            self.put(digest, data)

    def _evict(self) -> None:
        try:
            entries = [(e.stat().st_mtime, e.stat().st_size, Path(e.path)) for e in os.scandir(self.dir)
                       if e.is_file() and not e.name.endswith(".tmp")]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit:
                break
            with suppress(OSError):
                path.unlink()
            total -= size
