"""What syncd last sent to each container: digest, size and whole-second mtime per file.

A quick container listing (size + mtime, no hash) is only trusted against this record: if a
file's size and tar-written mtime equal what syncd sent, the container holds exactly the
sent bytes. Kept per container and saved in the state dir, so a later `syncd sync` or
daemon start can reconcile an unchanged tree without hashing every file in the container. Only
the records of the containers written to last are kept (`KEEP_RECORDS`), and only one process at
a time writes them (syncd/statelock.py).
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from syncd.core.manifest import Manifest
from syncd.model import DestPath, Entry, Kind

Record = dict[DestPath, tuple[str, int, int]]  # dest -> (digest, size, mtime)


def container_key(target: str, container_id: str) -> str:
    """Names a container across restarts: records are kept per container."""
    return f"{target}/{container_id}"


def record_of(manifest: Manifest) -> Record:
    return {d: (e.digest, e.size, e.mtime) for d, e in manifest.items()
            if e.kind is Kind.FILE and e.digest and e.size >= 0 and e.mtime >= 0}


def write_marshal(path: Path, magic: bytes, data: dict[str, Any]) -> None:
    """`magic` and `data` as marshal, written to `path` whole or not at all (OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(magic)
        marshal.dump(data, f)
    os.replace(tmp, path)


def keep_newest(directory: Path, keep: int) -> None:
    """Remove all but the `keep` files of `directory` written last (and leftovers of an
    interrupted save)."""
    entries = list(os.scandir(directory))
    if len(entries) <= keep:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for entry in entries[:-keep]:
        with suppress(FileNotFoundError):
            os.unlink(entry.path)


# Records kept: those of the containers written to last. Every re-created container (a new
# image, a replaced pod) has a new id and so a new record; a record only spares hashing, so the
# oldest go rather than letting `.syncd/known/` grow with every deploy.
KEEP_RECORDS = 64


class KnownStore:
    """The records, one file per container: rewritten after a reconcile that sent something
    or found a file the record could not prove, only touched after one the record proved whole
    (`touch`; rewriting costs ~0.1 s per container at 100,000 files).

    A record is marshal data, read and written ~4x faster than JSON, which a restart at 100,000
    files paid per container: its paths as one NUL-joined string, its (digest, size, mtime)
    as a list. Not a dict of paths: marshal re-interns each path at load, and the restarted
    daemon kept those strings (its manifests intern theirs), spread between the freed record's
    tuples: 169 against 148 MiB idle. Records of earlier versions, JSON, are still read."""

    _MAGIC = b"syncd-known 2\n"

    def __init__(self, state_dir: Path, keep: int = KEEP_RECORDS) -> None:
        self.dir = state_dir / "known"
        self.keep = keep

    def _path(self, container_key: str, suffix: str = ".rec") -> Path:
        return self.dir / (hashlib.sha1(container_key.encode()).hexdigest()[:20] + suffix)

    def load(self, container_key: str) -> Record:
        try:
            raw = self._path(container_key).read_bytes()
        except FileNotFoundError:
            return self._load_json(container_key)
        except OSError:
            return {}
        if not raw.startswith(self._MAGIC):
            return {}
        try:
            # data only: marshal builds values, it runs nothing
            data = marshal.loads(memoryview(raw)[len(self._MAGIC):])
        except (EOFError, ValueError, TypeError):
            return {}
        paths, values = (data.get("paths"), data.get("values")) if isinstance(data, dict) else (None, None)
        if type(paths) is not str or type(values) is not list:
            return {}
        return {d: v for d, v in zip(paths.split("\0"), values, strict=False)
                if type(v) is tuple and len(v) == 3 and type(v[0]) is str}

    def _load_json(self, container_key: str) -> Record:
        try:
            raw = json.loads(self._path(container_key, ".json").read_text())
            return {d: (v[0], int(v[1]), int(v[2])) for d, v in raw.get("files", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError):
            return {}

    def save(self, container_key: str, record: Record) -> None:
        try:
            # paths as one NUL-joined string: marshal would re-intern them one by one at load,
            # and the restarted daemon would keep those strings, spread between the freed
            # record's tuples (idle at 100,000 files 169 against 148 MiB)
            write_marshal(self._path(container_key), self._MAGIC,
                          {"container": container_key, "paths": "\0".join(record), "values": list(record.values())})
            with suppress(FileNotFoundError):
                os.unlink(self._path(container_key, ".json"))  # (an earlier version's)
            keep_newest(self.dir, self.keep)
        except OSError:
            pass  # only an optimisation: the next reconcile hashes instead

    def touch(self, container_key: str) -> None:
        """The record is still true: keep it among those written last (`keep_newest`) without
        writing it again."""
        with suppress(OSError):
            os.utime(self._path(container_key))


def resolve(remote: Manifest, known: Record, desired_sizes: dict[DestPath, int]) -> list[DestPath]:
    """Give quick-listed files their digests from `known` where size and mtime prove it.
    Files of the local size that cannot be proven are returned (hash them in the container);
    other unproven files get "?" (they differ from anything local: re-sent or deleted)."""
    unsure: list[DestPath] = []
    for dest, e in remote.items():
        if e.kind is not Kind.FILE or e.digest or e.size < 0:
            continue
        sent = known.get(dest)
        if sent is not None and e.mtime >= 0 and (sent[1], sent[2]) == (e.size, e.mtime):
            remote[dest] = Entry(Kind.FILE, sent[0], e.exec, size=e.size, mtime=e.mtime)
        elif desired_sizes.get(dest) == e.size:
            unsure.append(dest)
        else:
            remote[dest] = Entry(Kind.FILE, "?", e.exec)
    return unsure
