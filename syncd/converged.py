"""Proof that nothing changed since a reconcile found a container equal to the local tree.

A reconcile compares every path: at 100,000 files that is seconds of Python (the local scan,
parsing the container's listing, resolving it against the record, the diff). When it finds
both sides equal, it keeps here, per container, what each side looked like then:

- the local fingerprint: every entry's path and lstat in walk order, the ignore files that
  decided the walk, the target's configuration (syncd/scan.py `Fingerprint`);
- the container's fingerprint: the sha1 of its quick listing of the destinations, exactly as
  it printed it (mode, size, mtime to the nanosecond, ctime, every name, in its order);
- the container's manifest then, packed (syncd/core/packed.py).

The next reconcile of that container in a later run (a restarted daemon, a `syncd sync`)
first asks both sides for their fingerprints — a walk without hashing, and the container
printing a digest of its listing instead of the listing — and, when both are what was kept,
takes the kept manifest instead of comparing: equal inputs would give the comparison the
same result. Anything else, or no fingerprint (a transport that cannot give one), and it
compares as always. A fingerprint only ever matches a tree that did not change: any write
moves a ctime, on either side, and nothing can set one back.

Kept as marshal data in the state dir, one file per container, the last `KEEP` written.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from syncd.core.manifest import Tracked
from syncd.core.packed import PackedManifest, from_data, pack, to_data
from syncd.known import keep_newest, write_marshal

KEEP = 64  # as many as syncd/known.py keeps records


@dataclass(frozen=True)
class Converged:
    local: str  # the local tree's fingerprint
    remote: str  # the container listing's fingerprint
    manifest: PackedManifest  # what the container held


class ConvergedStore:
    _MAGIC = b"syncd-converged 1\n"

    def __init__(self, state_dir: Path, keep: int = KEEP) -> None:
        self.dir = state_dir / "converged"
        self.keep = keep

    def _path(self, container_key: str) -> Path:
        return self.dir / (hashlib.sha1(container_key.encode()).hexdigest()[:20] + ".bin")

    def save(self, container_key: str, local: str, remote: str, manifest: Tracked) -> None:
        """Keep the proof for `container_key` (blocking: ~10 ms at 100,000 paths)."""
        packed = manifest if isinstance(manifest, PackedManifest) and not manifest.changes else pack(manifest)
        data = {"container": container_key, "local": local, "remote": remote, "manifest": to_data(packed)}
        try:
            write_marshal(self._path(container_key), self._MAGIC, data)
            keep_newest(self.dir, self.keep)
        except OSError:
            pass  # only an optimisation: the next reconcile compares instead

    def forget(self, container_key: str) -> None:
        with suppress(OSError):
            os.unlink(self._path(container_key))

    def load(self, container_key: str) -> Converged | None:
        """The proof kept for `container_key`; None when there is none or it does not hold
        together. (Its columns are shared with the replicas' when taken: `packed.from_columns`.)"""
        try:
            raw = self._path(container_key).read_bytes()
        except OSError:
            return None
        if not raw.startswith(self._MAGIC):
            return None
        try:
            data = marshal.loads(memoryview(raw)[len(self._MAGIC):])  # data only: runs nothing
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("container") != container_key:
            return None
        local, remote = data.get("local"), data.get("remote")
        manifest = from_data(data.get("manifest"))
        if type(local) is not str or type(remote) is not str or not local or not remote or manifest is None:
            return None
        return Converged(local, remote, manifest)
