"""What syncd last sent to each container: digest, size and whole-second mtime per file.

A quick container listing (size + mtime, no hash) is only trusted against this record: if a
file's size and tar-written mtime equal what syncd sent, the container holds exactly the
sent bytes. Kept per container and saved in the state dir, so a later `syncd sync` or
daemon start can reconcile an unchanged tree without hashing every file in the container.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from syncd.core.manifest import Manifest
from syncd.model import DestPath, Entry, Kind

Record = dict[DestPath, tuple[str, int, int]]  # dest -> (digest, size, mtime)


def container_key(target: str, container_id: str) -> str:
    """Names a container across restarts: records are kept per container."""
    return f"{target}/{container_id}"


def record_of(manifest: Manifest) -> Record:
    return {d: (e.digest, e.size, e.mtime) for d, e in manifest.items()
            if e.kind is Kind.FILE and e.digest and e.size >= 0 and e.mtime >= 0}


class KnownStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "known"

    def _path(self, container_key: str) -> Path:
        return self.dir / (hashlib.sha1(container_key.encode()).hexdigest()[:20] + ".json")

    def load(self, container_key: str) -> Record:
        try:
            raw = json.loads(self._path(container_key).read_text())
        except (OSError, ValueError):
            return {}
        return {d: (v[0], int(v[1]), int(v[2])) for d, v in raw.get("files", {}).items()}

    def save(self, container_key: str, record: Record) -> None:
        path = self._path(container_key)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"container": container_key, "files": record}))
            os.replace(tmp, path)
        except OSError:
            pass  # only an optimisation: the next reconcile hashes instead


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
