"""Linux inotify, read directly: the watcher syncd uses on Linux (watch.py falls back to
watchfiles' polling where inotify cannot be used).

Why not watchfiles/notify here: its watch() call polls for events every `step` milliseconds
(200 wake-ups a second at the 5 ms a low latency needs, ~1.5 % of a core while idle), follows
symlinked directories (so edits in a real directory were reported under a link's path, and
watches went stale when the link went away: syncd/dirlinks.py's heuristics), and hides the
kernel's queue overflow. Read directly, the inotify descriptor costs nothing until an event
arrives, reports the real path of every change, never follows a symlink (IN_DONT_FOLLOW, and a
link is never walked), and says when the kernel dropped events (IN_Q_OVERFLOW).

The tree of watches is kept by hand, as every recursive inotify watcher must:
- a directory created or moved in gets a watch at once, and is then listed: whatever was made in
  it before the watch existed is reported too (the watch first, then the listing: no gap);
- a directory moved within the tree keeps its watches (they follow the inode): only the paths
  they stand for are renamed; one moved out of the tree has its watches removed;
- the kernel's queue overflowing (`overflowed`) means events were dropped: the caller compares
  whole trees, and the tree is walked again for directories that never got a watch.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from dataclasses import dataclass, field

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_ONLYDIR | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of NUL-padded name)


class WatchLimit(OSError):
    """inotify_add_watch failed with ENOSPC (fs.inotify.max_user_watches) or the instance
    could not be created (EMFILE: fs.inotify.max_user_instances)."""

    def __init__(self, which: str, path: str, err: int) -> None:
        self.which = which  # "watches" | "instances"
        super().__init__(err, f"{path}: {os.strerror(err)}")


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def available() -> bool:
    """Can this process use inotify (Linux, and the calls exist)?"""
    try:
        lib = _lib()
        return hasattr(lib, "inotify_init1") and hasattr(lib, "inotify_add_watch")
    except OSError:
        return False


@dataclass
class Batch:
    """What one read brought: the changed paths, and whether the kernel dropped events."""

    paths: set[str] = field(default_factory=set)
    overflowed: bool = False
    roots_lost: list[str] = field(default_factory=list)  # a watched root itself was removed or moved
    unreadable: list[str] = field(default_factory=list)  # directories that could not be watched (EACCES)


class InotifyTree:
    """Recursive watches over `roots` (existing directories). Not thread-safe: one reader."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = [os.path.abspath(r) for r in roots]
        self.fd = -1
        self._dirs: dict[int, str] = {}  # wd -> the directory it watches
        self._wds: dict[str, int] = {}  # directory -> wd

    # --- setting up ------------------------------------------------------------------------

    def open(self) -> Batch:
        """Create the instance and watch every directory below the roots. WatchLimit when a
        limit is hit (the caller says so and polls instead)."""
        fd = _lib().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise WatchLimit("instances", "inotify_init1", err) if err == errno.EMFILE else OSError(err, os.strerror(err))
        self.fd = fd
        found = Batch()
        try:
            for root in self.roots:
                self._watch_tree(root, None, found)
        except BaseException:
            self.close()
            raise
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        self._dirs.clear()
        self._wds.clear()

    @property
    def watches(self) -> int:
        return len(self._dirs)

    def _watch(self, path: str) -> int | None:
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise WatchLimit("watches", path, err)
            return None  # gone meanwhile, not a directory any more, or unreadable (EACCES)
        old = self._dirs.get(wd)
        if old is not None and old != path:
            self._wds.pop(old, None)  # the same inode under a new name (a hard move we missed)
        self._dirs[wd] = path
        self._wds[path] = wd
        return wd

    def _watch_tree(self, top: str, report: set[str] | None, batch: Batch) -> None:
        """Watch `top` and every directory below it (symlinks are not followed); with `report`,
        add every entry found to it (a tree that appeared: its content is news)."""
        stack = [top]
        while stack:
            d = stack.pop()
            if self._watch(d) is None:
                if os.path.isdir(d) and not os.path.islink(d) and not os.access(d, os.R_OK | os.X_OK):
                    batch.unreadable.append(d)
                continue
            try:
                with os.scandir(d) as entries:
                    for e in entries:
                        if report is not None:
                            report.add(e.path)
                        try:
                            if e.is_dir(follow_symlinks=False):
                                stack.append(e.path)
                        except OSError:
                            continue
            except OSError:
                continue

    def rewatch(self) -> Batch:
        """After an overflow: walk the roots again, watching directories that never got a
        watch (their creation was among the dropped events). Existing watches are kept."""
        found = Batch()
        for root in self.roots:
            self._watch_tree(root, None, found)
        return found

    # --- reading ------------------------------------------------------------------------------

    def read(self) -> Batch:
        """Everything pending now (non-blocking), as changed paths."""
        out = Batch()
        moved_from: dict[int, str] = {}  # cookie -> old path of a directory moved away
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                break
            self._parse(data, out, moved_from)
        for old in moved_from.values():  # moved out of the watched tree: its watches are stale
            self._forget_tree(old)
        return out

    def _parse(self, data: bytes, out: Batch, moved_from: dict[int, str]) -> None:
        i, n = 0, len(data)
        while i + _EVENT.size <= n:
            wd, mask, cookie, length = _EVENT.unpack_from(data, i)
            i += _EVENT.size
            name = os.fsdecode(data[i:i + length].rstrip(b"\0")) if length else ""
            i += length
            if mask & IN_Q_OVERFLOW:
                out.overflowed = True
                continue
            base = self._dirs.get(wd)
            if mask & IN_IGNORED:
                if base is not None:
                    self._dirs.pop(wd, None)
                    if self._wds.get(base) == wd:
                        self._wds.pop(base, None)
                continue
            if base is None:
                continue  # a watch already forgotten (its directory moved out or was removed)
            path = f"{base}/{name}" if name else base
            if not name and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if base in self.roots:
                    out.roots_lost.append(base)
                continue  # the parent reports the entry itself
            out.paths.add(path)
            if not mask & IN_ISDIR:
                continue
            if mask & IN_MOVED_FROM:
                moved_from[cookie] = path
            elif mask & IN_MOVED_TO:
                old = moved_from.pop(cookie, None)
                if old is not None:
                    self._rename_tree(old, path)
                    out.paths.add(old)
                # Then walk it as news, known or not: a directory renamed before its creation was
                # read had no watch to rename (nor had what was moved into it meanwhile). Watches
                # it already has are kept (the kernel answers the same wd), nothing is lost twice.
                self._watch_tree(path, out.paths, out)
            elif mask & IN_CREATE:
                self._watch_tree(path, out.paths, out)

    def _rename_tree(self, old: str, new: str) -> None:
        prefix = old + "/"
        for d in [d for d in self._wds if d == old or d.startswith(prefix)]:
            wd = self._wds.pop(d)
            moved = new + d[len(old):]
            self._wds[moved] = wd
            self._dirs[wd] = moved

    def _forget_tree(self, old: str) -> None:
        prefix = old + "/"
        for d in [d for d in self._wds if d == old or d.startswith(prefix)]:
            wd = self._wds.pop(d)
            self._dirs.pop(wd, None)
            _lib().inotify_rm_watch(self.fd, wd)


def is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
