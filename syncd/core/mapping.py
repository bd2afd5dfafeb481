"""Local path <-> container path, and the safety checks on container paths. Pure."""

from __future__ import annotations

import os
import posixpath
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from syncd.model import DestPath


class UnsafePath(ValueError):
    """A container path that would leave its mapping's destination."""


@dataclass(frozen=True, slots=True)
class ResolvedMapping:
    src: Path  # absolute local path (file or directory)
    dest: DestPath  # absolute, normalised container path
    service: str
    target: str

    def contains(self, path: Path | str) -> bool:
        # String comparison: this runs for every file event (pathlib would dominate).
        p, s = os.fspath(path), os.fspath(self.src)
        return p == s or p.startswith(s + "/")

    def dest_of(self, path: Path | str) -> DestPath:
        p, s = os.fspath(path), os.fspath(self.src)
        # Fast path (a reconcile maps 100,000s): strictly below the source, and no empty, `.`
        # or `..` component (no component that starts with a dot at all) and no NUL in the rest.
        if p.startswith(s) and p[len(s) : len(s) + 1] == "/" and not _ODD.search(p, len(s)):
            return sys.intern(self.dest.rstrip("/") + p[len(s) :])
        if not self.contains(p):
            raise UnsafePath(f"{p!r} is not below {s!r}")
        dest = self.dest if p == s else posixpath.join(self.dest, p[len(s) + 1 :])
        check_within(dest, self.dest)
        return sys.intern(dest)  # one string per path however many containers' manifests hold it


def most_specific(mappings: Sequence[ResolvedMapping], path: Path | str) -> ResolvedMapping | None:
    """The mapping whose source contains `path` most closely (longest source wins)."""
    best: ResolvedMapping | None = None
    for m in mappings:
        if m.contains(path) and (best is None or len(os.fspath(m.src)) > len(os.fspath(best.src))):
            best = m
    return best


def check_within(dest: DestPath, root: DestPath) -> None:
    """Refuse anything that is not `root` itself or strictly below it."""
    if not dest.startswith("/") or "\0" in dest:
        raise UnsafePath(f"{dest!r} is not an absolute container path")
    if ".." in dest.split("/"):
        raise UnsafePath(f"{dest!r} contains '..'")
    norm = posixpath.normpath(dest)
    if norm != root and not norm.startswith(root.rstrip("/") + "/"):
        raise UnsafePath(f"{dest!r} is outside {root!r}")


def common_root(dests: list[DestPath]) -> DestPath:
    """The deepest directory that contains every destination (the tar extraction root).

    The root is strictly above every destination, so each destination has a member name.
    """
    if not dests:
        return "/"
    root = posixpath.commonpath(dests)
    if root in dests:
        return posixpath.dirname(root) or "/"
    return root


_ODD = re.compile(r"//|/\.|\x00")  # an empty component, one that starts with a dot, or a NUL


def relative_name(dest: DestPath, root: DestPath) -> str:
    """The tar member name for `dest` when extracting at `root`: never absolute, never `..`."""
    # Fast path (a reconcile names 100,000s): plainly below a plain root, no empty, `.` or `..`
    # component (names with a leading dot take the full check).
    prefix = root if root.endswith("/") else root + "/"
    if root.startswith("/") and dest.startswith(prefix) and not _ODD.search(root):
        rest = dest[len(prefix):]
        if rest and not rest.endswith("/") and not _ODD.search("/" + rest):
            return rest
    check_within(dest, root)
    rel = posixpath.relpath(dest, root)
    if rel == "." or rel.startswith("/") or ".." in rel.split("/"):
        raise UnsafePath(f"{dest!r} has no safe name below {root!r}")
    return rel


def local_rel(path: Path | str, root: Path | str) -> str:
    """`path` relative to the config directory, for messages and glob matching. Paths
    outside it keep their `../` (a config in `config/` names `../backend/src/**`). Plain
    string work: it runs for every file event."""
    p = os.fspath(path)
    if not os.path.isabs(p):
        return p
    for prefix, up in _ancestors(os.fspath(root)):
        if p == prefix:
            return up.rstrip("/") or "."
        if p.startswith(prefix + "/") or prefix == "":
            return up + p[len(prefix) + 1:]
    return os.path.relpath(p, root)


@lru_cache(maxsize=64)
def _ancestors(root: str) -> tuple[tuple[str, str], ...]:
    """('/a/b', ''), ('/a', '../'), ('', '../../') for root '/a/b'."""
    out, prefix, up = [], os.path.normpath(root).rstrip("/"), ""
    while True:
        out.append((prefix, up))
        if not prefix:
            return tuple(out)
        prefix, up = os.path.dirname(prefix).rstrip("/"), up + "../"
