"""Polling the tree: what inotify would have said, found by comparing two walks.

The watcher's fallback where inotify cannot be used (not Linux, `WATCHFILES_FORCE_POLLING`, WSL)
or an inotify limit was hit. Each walk lstat()s every entry below the roots — symlinks are never
followed, as with inotify — and a path is reported when it appeared, vanished, or its file
identity (type, inode, size, mtime and ctime in nanoseconds) differs from the last walk. A
directory is reported only when it appeared, vanished or was replaced: its times move whenever an
entry below it does, and those entries are reported themselves (as inotify names the child, not
its directory). Nanosecond times and ctime matter: watchfiles' poller compares whole-second
mtimes, so a file rewritten within the second it was created went unseen.
"""

from __future__ import annotations

import os
import stat

# path -> (st_mode, inode, size, mtime_ns, ctime_ns); for a directory (st_mode, inode, 0, 0, 0)
Snapshot = dict[str, tuple[int, int, int, int, int]]


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    if stat.S_ISDIR(st.st_mode):
        return (st.st_mode, st.st_ino, 0, 0, 0)
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def walk(roots: list[str]) -> Snapshot:
    """Every path at and below the roots (an unreadable directory is listed, not entered)."""
    out: Snapshot = {}
    stack: list[str] = []
    for root in roots:
        try:
            st = os.lstat(root)
        except OSError:
            continue
        out[root] = _identity(st)
        if stat.S_ISDIR(st.st_mode):
            stack.append(root)
    while stack:
        top = stack.pop()
        try:
            it = os.scandir(top)
        except OSError:
            continue
        with it:
            for de in it:
                try:
                    st = de.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished between listing and stat: the next walk says so
                out[de.path] = _identity(st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(de.path)
    return out


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    """Paths that appeared, vanished or changed between two walks."""
    out = {p for p, ident in after.items() if before.get(p) != ident}
    out.update(p for p in before.keys() - after.keys())
    return out


class Poller:
    """The last walk, and what changed since it."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self._last: Snapshot = {}

    def start(self) -> None:
        """The baseline walk: changes are reported against it from now on."""
        self._last = walk(self.roots)

    def poll(self) -> set[str]:
        now = walk(self.roots)
        out = changed(self._last, now)
        self._last = now
        return out

    def is_dir(self, path: str) -> bool:
        ident = self._last.get(path)
        return ident is not None and stat.S_ISDIR(ident[0])
