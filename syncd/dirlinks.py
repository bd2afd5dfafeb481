"""Symlinks to directories inside the synced trees.

syncd syncs such a link as a link; it never reads through it. Two places need care:

- **The watcher** (the watchfiles fallback only: syncd's own inotify reader never follows a
  link). notify (under watchfiles, which offers no switch) follows symlinks to
  directories and watches their targets too. inotify keeps one watch per inode, so once a
  directory is also reachable through a link, notify may report changes made in the real
  directory under the *link's* path (`src/link/f` for `src/real/f`): read as is, the real edit
  would be lost and the file read through the link instead. `LinkMap` knows the links below the
  roots and puts each reported path back where it really is (or drops it when it is outside
  the roots: a link to `/etc` or `..`). A link that was removed or re-pointed leaves stale
  watches behind (notify still names the old target's changes after it, below a path that no
  longer exists): the watcher must then be re-created and the trees compared.
- **Reading a changed path.** A path that goes through such a link (from any source) stands
  for the link itself (`through_link`).
"""

from __future__ import annotations

import os
import stat


def _dir_link_target(path: str) -> str | None:
    """realpath of `path` if it is a symlink to a directory, else None."""
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode) or not os.path.isdir(path):
            return None
        # realpath itself can raise when a link on the way goes away while it is resolved
        # (it lstat()s, then readlink()s): the link is gone, as if it never was one.
        return os.path.realpath(path)
    except OSError:
        return None


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


ADDED, DELETED = 1, 3  # watchfiles' Change values

_OUTSIDE = ""  # a reported directory that really is outside the roots
_MISSING = None  # a reported directory that does not exist (any more)


class LinkMap:
    """Puts the paths notify reports back where they really are, and says when its watches
    can no longer be trusted (then: re-create the watcher and compare whole trees)."""

    def __init__(self, roots: list[str]) -> None:
        # longest real root first, so that the closest one wins
        self.roots = sorted(((os.path.abspath(r), os.path.realpath(r)) for r in roots),
                            key=lambda rr: -len(rr[1]))
        self.links: dict[str, str] = {}  # link path -> its realpath when it was seen
        self.stale: set[str] = set()  # links removed or re-pointed since
        self._gone_before: set[str] = set()  # the previous batch's deletions

    def scan(self) -> None:
        """Find every symlink to a directory below the roots (not following links). Runs in a
        worker thread right after the watcher is (re)created."""
        self.links.clear()
        self.stale.clear()
        self._gone_before = set()
        for root, _ in self.roots:
            self._scan_below(root)

    def _scan_below(self, top: str) -> None:
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(d) as entries:
                    for e in entries:
                        if e.is_symlink():
                            self.note(e.path)
                        elif e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
            except OSError:
                continue

    def note(self, path: str) -> None:
        """`path` was created or changed: remember it if it is a link to a directory now; a
        known link that is gone or points elsewhere makes the watches stale."""
        target = _dir_link_target(path)
        known = self.links.get(path)
        if known is not None and target != known:
            self.stale.add(path)
        elif target is not None:
            self.links[path] = target

    def place(self, raw: set[tuple[int, str]]) -> tuple[set[tuple[int, str]], list[tuple[int, str]]]:
        """One watchfiles batch with each path where it really is (paths outside the roots
        dropped), and the paths that cannot be placed: reported below a directory that does
        not exist and was not deleted — notify named a watch by a link that is gone. Either
        those or `stale` mean: re-create the watcher and compare whole trees."""
        for change, path in raw:  # new links first: the same batch may report paths below them
            if change == ADDED and _is_real_dir(path):
                self._scan_below(path)  # notify walked it, following the links in it
            elif change == ADDED or path in self.links:
                self.note(path)
        gone = {p for c, p in raw if c == DELETED}
        canon: dict[str, str | None] = {}
        out: set[tuple[int, str]] = set()
        unplaced: list[tuple[int, str]] = []
        for change, path in raw:
            d = os.path.dirname(path)
            if d not in canon:
                canon[d] = self._canonical_dir(d)
            where = canon[d]
            if where == _OUTSIDE:
                continue
            if where is _MISSING:
                if self._deleted(d, gone):
                    out.add((change, path))  # below a directory deleted meanwhile: fine as is
                else:
                    unplaced.append((change, path))
                continue
            out.add((change, path if where == d else os.path.join(where, os.path.basename(path))))
        self._gone_before = gone
        return out, unplaced

    def below_link(self, path: str) -> bool:
        """Is `path` below a symlinked directory syncd knows of (now or before it went stale)?"""
        d = os.path.dirname(path)
        while d and d != os.path.dirname(d):
            if d in self.links or d in self.stale:
                return True
            d = os.path.dirname(d)
        return False

    def _canonical_dir(self, d: str) -> str | None:
        """Where directory `d` really is below a root: itself (the common case), its real
        place when the path goes through a link, _OUTSIDE, or _MISSING."""
        if not os.path.isdir(d):
            return _MISSING
        try:
            real = os.path.realpath(d)
        except OSError:  # a link on the way went away while it was resolved
            return _MISSING
        for root, real_root in self.roots:
            if _under(real, real_root):
                where = root + real[len(real_root):]
                if where != d:
                    self._learn(d)
                return where
        self._learn(d)
        return _OUTSIDE

    def _learn(self, d: str) -> None:
        """`d` was reached through links: remember them, so that removing one is noticed."""
        while d and d != os.path.dirname(d) and not any(d == r for r, _ in self.roots):
            if d not in self.links:
                target = _dir_link_target(d)
                if target is not None:
                    self.links[d] = target
            d = os.path.dirname(d)

    def _deleted(self, d: str, gone: set[str]) -> bool:
        """Whether `d` or a directory above it (below its root) was reported deleted in this
        batch or the previous one (a removed link does not count: its watches are stale)."""
        while d and d != os.path.dirname(d) and not any(d == r for r, _ in self.roots):
            if (d in gone or d in self._gone_before) and d not in self.links:
                return True
            d = os.path.dirname(d)
        return False


def through_link(path: str, top: str, memo: dict[str, str | None]) -> str | None:
    """The outermost symlink strictly between `top` (a mapping's src) and `path`, if any.
    `memo` caches directories across the paths of one batch."""
    found = None
    d = os.path.dirname(path)
    chain: list[str] = []
    while _under(d, top) and d != top:
        if d in memo:
            found = memo[d] or found
            break
        chain.append(d)
        d = os.path.dirname(d)
    # Walk back down from the outermost unknown directory so the outermost link wins.
    for d in reversed(chain):
        if found is None and os.path.islink(d):
            found = d
        memo[d] = found
    return found
