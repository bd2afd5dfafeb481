"""The file watcher: raw filesystem events -> sets of changed paths, ignores applied early.

Ignored paths are filtered before they reach the coalescer, so they never wake the pipeline.
On Linux the inotify descriptor is read directly (syncd/inotify.py): nothing runs while
nothing changes, a batch ends after `WatchSettings.step_ms` of quiet, the kernel's queue
overflow is reported as it happens, and symlinks are never followed. When polling is forced
(`WATCHFILES_FORCE_POLLING`, WSL) or an inotify limit was hit, syncd/poll.py walks the tree;
where inotify does not exist (not Linux) watchfiles watches natively. Coalescing is done by
`core.coalesce` either way.

The watchfiles path (watchfiles 1.3 / notify 8) can fail in ways watchfiles does not report:
- **inotify watch limit** (`fs.inotify.max_user_watches`): notify stops adding watches at the
  first ENOSPC; watchfiles swallows the error when `ignore_permission_denied` is set, so part
  of the tree is silently unwatched. The watcher is therefore created without that flag first
  (the error surfaces), and on the limit syncd says so once and polls instead.
- **inotify instance limit** (`fs.inotify.max_user_instances`): the same, polling.
- **queue overflow** (`fs.inotify.max_queued_events`): notify reports it as a path-less
  `Rescan` event, which watchfiles drops (samuelcolvin/watchfiles#348). Two things stand in
  for it: a batch of raw events large enough to have filled the kernel queue, and new
  directories that are not watched (their create event was lost, or the watch limit was hit
  while running). Either way the events are reported lost (`on_lost`: the engine compares
  whole trees) and the watcher is re-created (or replaced by polling on the watch limit).
- Any other watcher error: re-created (with back-off), events reported lost. The daemon
  never dies because its watcher did.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import structlog
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

from syncd import inotify
from syncd.core.backoff import backoff
from syncd.dirlinks import LinkMap
from syncd.poll import Poller
from syncd.settings import WatchSettings

log = structlog.get_logger("syncd")

# accept(path, is_dir) -> bool
Accept = Callable[[str, bool], bool]
# on_lost(reason): events may have been lost, compare whole trees
Lost = Callable[[str], None]

ADDED = 1  # watchfiles.Change.added
POLL_DUTY = 5  # a polling walk that took t s waits at least 5t before the next one (<= 20 % of a core)

WATCHES_HINT = ("raise it: `sudo sysctl fs.inotify.max_user_watches=524288` (to persist: "
                "`echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/90-syncd-inotify.conf`), "
                "or sync narrower sources (every directory below a mapping's src is watched, ignored ones too); "
                "`syncd doctor` counts them. Polling meanwhile: changes take up to "
                "{poll_ms} ms longer to be seen")
INSTANCES_HINT = ("raise it: `sudo sysctl fs.inotify.max_user_instances=1024`; polling meanwhile "
                  "(changes take up to {poll_ms} ms longer to be seen)")
QUEUE_HINT = "raise `sudo sysctl fs.inotify.max_queued_events=65536` if this happens often"


def watch_roots(paths: list[Path]) -> list[Path]:
    """The directories to watch: each path's nearest existing directory, nested ones dropped."""
    dirs: set[Path] = set()
    for p in paths:
        d = p if p.is_dir() else p.parent
        while not d.exists() and d != d.parent:
            d = d.parent
        dirs.add(d)
    ordered = sorted(dirs, key=lambda d: len(d.parts))
    kept: list[Path] = []
    for d in ordered:
        if not any(k == d or k in d.parents for k in kept):
            kept.append(d)
    return kept


# --- inotify introspection (Linux; everything degrades to "unknown" elsewhere) ---------------


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _limit(user_ns: str, init_ns: str) -> int | None:
    """The limit that applies to this process: its user namespace's (/proc/sys/user/…, the
    same value as fs.inotify.… in the initial namespace)."""
    return _read_int(f"/proc/sys/user/{user_ns}") or _read_int(f"/proc/sys/fs/inotify/{init_ns}")


def _inotify_fds() -> set[int]:
    out: set[int] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                out.add(int(name))
        except (OSError, ValueError):
            pass
    return out


def _kernel_key(st: os.stat_result) -> tuple[int, int]:
    """(inode, device) as /proc/PID/fdinfo prints them: the kernel's dev_t is major<<20|minor."""
    return st.st_ino, (os.major(st.st_dev) << 20) | os.minor(st.st_dev)


def _watched(fd: int) -> set[tuple[int, int]] | None:
    """The (inode, device) of every watch of inotify instance `fd` (its /proc fdinfo)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            text = f.read()
    except OSError:
        return None
    out: set[tuple[int, int]] = set()
    for line in text.splitlines():
        if not line.startswith("inotify wd:"):
            continue
        fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
        try:
            out.add((int(fields["ino"], 16), int(fields["sdev"], 16)))
        except (KeyError, ValueError):
            continue
    return out


_libc = None


def _probe_watch(path: str) -> int:
    """Try to watch `path` from a fresh inotify instance: 0 when it can be watched, else the
    errno (ENOSPC: the per-user watch limit is reached; EMFILE: the instance limit)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fd = _libc.inotify_init1(0o2000000)  # IN_CLOEXEC
        if fd < 0:
            return ctypes.get_errno()
        try:
            wd = _libc.inotify_add_watch(fd, os.fsencode(path), 0x100)  # IN_CREATE
            return 0 if wd >= 0 else ctypes.get_errno()
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return 0


def _is_limit(e: BaseException) -> str | None:
    text = str(e)
    if "watch limit" in text or "MaxFilesWatch" in text or "No space left on device" in text:
        return "watches"
    if "Too many open files" in text:
        return "instances"
    return None


def _force_polling() -> bool:
    """watchfiles' own default: WATCHFILES_FORCE_POLLING, or WSL."""
    env = os.environ.get("WATCHFILES_FORCE_POLLING")
    if env:
        return env.lower() not in {"false", "disable", "disabled"}
    uname = os.uname()
    return "microsoft-standard" in uname.release.lower()


class _Stop:
    """What RustNotify.watch() polls every step (from its worker thread)."""

    def __init__(self, stop: anyio.Event) -> None:
        self.stop = stop

    def is_set(self) -> bool:
        return self.stop.is_set()


class Watcher:
    """One RustNotify (inotify, or polling after a limit), plus what is needed to check it."""

    def __init__(self, roots: list[Path], settings: WatchSettings | None = None) -> None:
        self.settings = settings or WatchSettings()
        self.roots = [str(r) for r in roots]
        self.polling = _force_polling()
        self.notify: RustNotify | None = None
        self.fd: int | None = None  # our inotify instance, for auditing its watches
        self.overflow_at: int | None = None  # raw events per batch that suggest a queue overflow
        self.links = LinkMap(self.roots)  # filled by links.scan() once the watch exists

    # --- opening -----------------------------------------------------------------------

    def open(self) -> None:
        """Create the watcher; on an inotify limit say so (error + remedy) and poll instead."""
        if not self.polling:
            try:
                self._open_inotify()
                return
            except (OSError, WatchfilesRustInternalError) as e:
                which = _is_limit(e)
                if which is None:
                    raise
                self.say_limit(which, str(e))
        self._open_polling()

    def _open_inotify(self) -> None:
        before = _inotify_fds()
        partial = False
        try:
            # Without ignore_permission_denied, so that hitting the watch limit is an error
            # here and not a silently partial watch.
            notify = RustNotify(self.roots, False, False, self.settings.poll_ms, True, False)
        except PermissionError as e:
            # A directory that cannot be read cannot be watched, and notify stops walking the
            # tree at the first one: what comes after it in the walk is not watched (polling
            # fails on it at every poll, so that is no way out either). Say so.
            log.warning("some directories cannot be watched", error=str(e), roots=self.roots,
                        hint="make them readable by this user or move them out of the synced sources; "
                             "until then changes below them and below directories walked after them "
                             "are not seen (`syncd resync` compares whole trees)")
            notify = RustNotify(self.roots, False, False, self.settings.poll_ms, True, True)
            partial = True
        new = _inotify_fds() - before
        # No audit of a watch known to be partial, nor when another thread opened an inotify
        # instance at the same time (which one is ours?).
        self.fd = new.pop() if len(new) == 1 and not partial else None
        if self.fd is not None:
            watched = _watched(self.fd)
            try:
                keys = {_kernel_key(os.stat(r)) for r in self.roots}
            except OSError:
                keys = set()
            if watched is None or not keys or not keys <= watched:
                self.fd = None  # fdinfo does not name our roots as stat does: cannot audit
        queued = _read_int("/proc/sys/fs/inotify/max_queued_events")
        # A kernel queue that overflowed held `queued` events at once; a watchfiles batch that
        # large (each change is one or more events) is the trace it leaves. Half of it, so that
        # ordinary bursts (a 5,000-file checkout with the default 16384) are not mistaken for one.
        self.overflow_at = max(16, queued // 2) if queued else None
        self.notify = notify

    def _open_polling(self) -> None:
        self.polling = True
        self.fd = None
        self.overflow_at = None
        self.notify = RustNotify(self.roots, False, True, self.settings.poll_ms, True, True)

    def say_limit(self, which: str, error: str) -> None:
        _say_limit(which, error, self.roots, self.settings)

    def close(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def reopen(self, polling: bool = False) -> None:
        """Re-create the watcher (and re-read the links below the roots). Blocking."""
        self.close()
        if polling:
            self.polling = True
        self.open()
        self.links.scan()

    # --- checking ----------------------------------------------------------------------

    def unwatched(self, added: list[str]) -> list[str]:
        """New directories (and directories below them) that our inotify instance does not
        watch. Runs in a worker thread."""
        if self.fd is None or not added:
            return []
        keys: dict[tuple[int, int], str] = {}
        for top in sorted(added):
            stack = [top]
            while stack:
                d = stack.pop()
                try:
                    st = os.lstat(d)
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode) or _kernel_key(st) in keys:
                    continue
                keys[_kernel_key(st)] = d
                try:
                    with os.scandir(d) as entries:
                        stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
                except OSError:
                    pass
        if not keys:
            return []
        missing = dict(keys)
        # notify adds the watches of new directories right after reading their events:
        # give it a moment before calling one missing.
        for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
            time.sleep(delay)
            watched = _watched(self.fd)
            if watched is None:
                return []
            # (An unreadable directory cannot be watched by anyone, nor synced: not a loss.)
            missing = {k: d for k, d in missing.items()
                       if k not in watched and os.path.isdir(d) and os.access(d, os.R_OK)}
            if not missing:
                return []
        return sorted(missing.values())


async def changes(roots: list[Path], accept: Accept, stop: anyio.Event, max_wait_ms: int,
                  on_lost: Lost | None = None, settings: WatchSettings | None = None) -> AsyncIterator[set[str]]:
    """Changed paths that `accept` lets through, a set per quiet step, until `stop`.

    On Linux the inotify descriptor is read directly (syncd/inotify.py); when polling is forced
    or an inotify limit is hit, the tree is polled (syncd/poll.py); elsewhere watchfiles
    watches natively. `on_lost(reason)` is called when events may have been lost (see the
    module docstring); the caller should then compare whole trees (a reconcile)."""
    settings = settings or WatchSettings()
    lost = _reporter(on_lost)
    if _force_polling():
        async for paths in _poll_changes(roots, accept, stop, lost, settings, None):
            yield paths
        return
    if not inotify.available():
        async for paths in _notify_changes(roots, accept, stop, max_wait_ms, lost, settings):
            yield paths
        return
    hit: list[str] = []  # set when a limit ends the inotify watcher: why events may be lost
    async for paths in _inotify_changes(roots, accept, stop, max_wait_ms, lost, settings, hit):
        yield paths
    if stop.is_set():
        return
    async for paths in _poll_changes(roots, accept, stop, lost, settings, hit[0] if hit else None):
        yield paths


async def _poll_changes(roots: list[Path], accept: Accept, stop: anyio.Event, lost: Callable[..., None],
                        settings: WatchSettings, reason: str | None) -> AsyncIterator[set[str]]:
    """Walk the tree every `poll_ms` (longer when a walk is slow: polling never takes more than
    1/POLL_DUTY of a core) and report what changed since the last walk."""
    poller = Poller([str(r) for r in roots])
    await anyio.to_thread.run_sync(poller.start)
    log.info("watching by polling", every_ms=settings.poll_ms, roots=poller.roots)
    if reason:  # after the baseline walk: the comparison covers whatever that walk cannot
        lost(reason)
    every = settings.poll_ms / 1000
    while not stop.is_set():
        with anyio.move_on_after(every):
            await stop.wait()
        if stop.is_set():
            return
        t0 = time.monotonic()
        raw = await anyio.to_thread.run_sync(poller.poll)
        every = max(settings.poll_ms / 1000, (time.monotonic() - t0) * POLL_DUTY)
        paths = {p for p in raw if accept(p, poller.is_dir(p))}
        if paths:
            yield paths


def _reporter(on_lost: Lost | None) -> Callable[..., None]:
    def lost(reason: str, sure: bool = True, **detail: object) -> None:
        say = log.warning if sure else log.info
        say("file events may have been lost", reason=reason, **detail,
            hint="comparing whole trees" if on_lost else "run `syncd resync` to compare whole trees")
        if on_lost is not None:
            on_lost(reason)

    return lost


async def _inotify_changes(roots: list[Path], accept: Accept, stop: anyio.Event, max_wait_ms: int,
                           lost: Callable[..., None], settings: WatchSettings,
                           hit: list[str]) -> AsyncIterator[set[str]]:
    """The inotify descriptor, read when it is readable (no wake-ups while idle); a batch ends
    after `step_ms` without a new event (at most `max_wait_ms` after its first). Returns when
    `stop` is set, or when a limit is hit (said first, and why events may be lost put in `hit`:
    the caller polls from then on, and reports the loss once its first walk is done)."""
    tree = inotify.InotifyTree([str(r) for r in roots])
    failures = 0
    while True:
        try:
            # (in the event loop: the watches exist before the caller's next step)
            opened = tree.open()
            break
        except inotify.WatchLimit as e:
            _say_limit(e.which, str(e), [str(r) for r in roots], settings)
            hit.append("polling started before the first walk")  # (the start-up reconcile may come first)
            return
        except OSError as e:
            failures += 1
            delay = backoff(failures, settings.restart_start, settings.restart_max)
            log.error("cannot start the file watcher", error=str(e), roots=tree.roots,
                      hint=f"retrying in {delay:.1f}s; check that the mapped sources exist")
            with anyio.move_on_after(delay):
                await stop.wait()
            if stop.is_set():
                return
    if failures:
        lost("the file watcher started late")
    _say_unreadable(opened.unreadable)
    step, longest = settings.step_ms / 1000, max(max_wait_ms, settings.step_ms) / 1000
    try:
        while not stop.is_set():
            with anyio.move_on_after(1.0):  # (only to look at `stop` now and then)
                await anyio.wait_readable(tree.fd)
            batch = tree.read()
            if not batch.paths and not batch.overflowed:
                continue
            deadline = time.monotonic() + longest
            while time.monotonic() < deadline:  # the quiet step: more may be on its way
                with anyio.move_on_after(min(step, deadline - time.monotonic())) as quiet:
                    await anyio.wait_readable(tree.fd)
                if quiet.cancelled_caught:
                    break
                more = tree.read()
                batch.paths |= more.paths
                batch.overflowed |= more.overflowed
                batch.roots_lost += more.roots_lost
                batch.unreadable += more.unreadable
            _say_unreadable(batch.unreadable)
            if batch.overflowed:
                again = await anyio.to_thread.run_sync(tree.rewatch)
                _say_unreadable(again.unreadable)
                lost("inotify queue overflow", events=len(batch.paths), remedy=QUEUE_HINT)
            if batch.roots_lost:
                lost("a watched directory was removed or moved", directories=batch.roots_lost[:5])
            paths = {p for p in batch.paths if accept(p, inotify.is_dir(p))}
            if paths:
                yield paths
    except inotify.WatchLimit as e:
        _say_limit(e.which, str(e), tree.roots, settings)
        hit.append(f"the inotify {e.which} limit was reached while running")
    finally:
        tree.close()


def _say_unreadable(dirs: list[str]) -> None:
    if dirs:
        log.warning("some directories cannot be watched", directories=dirs[:5], count=len(dirs),
                    hint="make them readable by this user or move them out of the synced sources; until "
                         "then changes below them are not seen (`syncd resync` compares whole trees)")


def _say_limit(which: str, error: str, roots: list[str], settings: WatchSettings) -> None:
    if which == "watches":
        log.error("inotify watch limit reached", error=error, roots=roots,
                  limit=_limit("max_inotify_watches", "max_user_watches"),
                  sysctl="fs.inotify.max_user_watches", hint=WATCHES_HINT.format(poll_ms=settings.poll_ms))
    else:
        log.error("inotify instance limit reached", error=error,
                  limit=_limit("max_inotify_instances", "max_user_instances"),
                  sysctl="fs.inotify.max_user_instances", hint=INSTANCES_HINT.format(poll_ms=settings.poll_ms))


async def _notify_changes(roots: list[Path], accept: Accept, stop: anyio.Event, max_wait_ms: int,
                          lost: Callable[..., None], settings: WatchSettings) -> AsyncIterator[set[str]]:
    """watchfiles (notify), where syncd/inotify.py cannot be used (it polls itself once a limit is hit)."""
    watcher = Watcher(roots, settings)
    failures = 0
    while True:
        try:
            # In the event loop, as watchfiles' awatch does: the watch exists before the
            # caller's next step (a change made once the daemon is up is never missed).
            watcher.open()
            break
        except (OSError, WatchfilesRustInternalError) as e:
            failures += 1
            delay = backoff(failures, settings.restart_start, settings.restart_max)
            log.error("cannot start the file watcher", error=str(e), roots=watcher.roots,
                      hint=f"retrying in {delay:.1f}s; check that the mapped sources exist")
            with anyio.move_on_after(delay):
                await stop.wait()
            if stop.is_set():
                return
    await anyio.to_thread.run_sync(watcher.links.scan)
    if failures:
        lost("the file watcher started late")
    if watcher.polling:
        log.info("watching by polling", every_ms=settings.poll_ms, roots=watcher.roots)
    debounce = max(max_wait_ms, settings.step_ms)
    stopper = _Stop(stop)
    try:
        while not stop.is_set():
            assert watcher.notify is not None
            try:
                raw = await anyio.to_thread.run_sync(watcher.notify.watch, debounce, settings.step_ms,
                                                   settings.block_ms, stopper)
            except WatchfilesRustInternalError as e:
                which = _is_limit(e)
                if which is not None and not watcher.polling:
                    watcher.say_limit(which, str(e))
                else:
                    log.error("file watcher failed", error=str(e), hint="re-creating it")
                await _reopen(watcher, stop, polling=which is not None)
                lost("the file watcher failed", error=str(e))
                continue
            if raw == "stop" or stop.is_set():
                return
            if not isinstance(raw, set):  # "timeout" (or "signal": not delivered to threads)
                continue
            links = watcher.links
            # A few stat calls per directory: inline for the usual handful of paths (a thread
            # hop costs more than that), in a worker thread for a burst.
            events, unplaced = links.place(raw) if len(raw) <= 64 else await anyio.to_thread.run_sync(links.place, raw)
            raw = events
            if watcher.polling:  # polling names what it walked just now: never a stale name
                raw |= set(unplaced)
                unplaced = []
            elif unplaced:
                # A path in a directory that is already gone and that no link leads through is
                # a short-lived temporary directory (cargo's deps/rmeta*): when syncd would
                # ignore it anyway, nothing was lost and no comparison is needed.
                unplaced = [(c, p) for c, p in unplaced if links.below_link(p) or accept(p, False)]
            isdir: dict[str, bool] = {}
            paths = set()
            for _change, path in raw:
                if path not in isdir:
                    isdir[path] = os.path.isdir(path)
                if accept(path, isdir[path]):
                    paths.add(path)
            suspect = watcher.overflow_at is not None and len(raw) >= watcher.overflow_at
            missing: list[str] = []
            if watcher.fd is not None:
                # After an overflow any directory may have been created unseen (so unwatched):
                # check them all; else the new synced ones (the watch limit may be hit while
                # running; once it is, every later directory is affected, synced ones too).
                added = list(watcher.roots) if suspect else \
                    [p for change, p in raw if change == ADDED and isdir.get(p) and p in paths]
                if added:
                    missing = await anyio.to_thread.run_sync(watcher.unwatched, added)
            if missing:
                err = await anyio.to_thread.run_sync(_probe_watch, missing[0])
                if err == errno.ENOSPC:
                    watcher.say_limit("watches", f"{missing[0]}: {os.strerror(err)}")
                else:
                    log.warning("directories are not watched; re-creating the watcher",
                                directories=missing[:5], count=len(missing))
                await _reopen(watcher, stop, polling=err == errno.ENOSPC)
            if (links.stale or unplaced) and not missing:
                # notify follows symlinked directories (see syncd.dirlinks): watches named by a
                # link that is gone or re-pointed report real changes under wrong paths.
                why = dict(links=sorted(links.stale)[:5], paths=[p for _, p in unplaced[:5]])
                await _reopen(watcher, stop)
                lost("a symlinked directory was removed or re-pointed", sure=False, **why)
            # Reported once the watcher is whole again: the reconcile's scan comes after it.
            if suspect:  # a burst this large may have overflowed the kernel queue: cannot tell
                lost("possible inotify queue overflow", sure=bool(missing), events=len(raw), remedy=QUEUE_HINT)
            elif missing:
                lost("directories were not watched", directories=missing[:5], count=len(missing))
            if paths:
                yield paths
    finally:
        watcher.close()


async def _reopen(watcher: Watcher, stop: anyio.Event, polling: bool = False) -> None:
    """Re-create the watcher, retrying with back-off until it works or `stop`."""
    failures = 0
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(watcher.reopen, polling)
            if watcher.polling:
                log.info("watching by polling", every_ms=watcher.settings.poll_ms, roots=watcher.roots)
            return
        except (OSError, WatchfilesRustInternalError) as e:
            failures += 1
            delay = backoff(failures, watcher.settings.restart_start, watcher.settings.restart_max)
            log.error("cannot re-create the file watcher", error=str(e), hint=f"retrying in {delay:.1f}s")
            with anyio.move_on_after(delay):
                await stop.wait()
