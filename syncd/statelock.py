"""One writer per state directory: an exclusive OS lock on `.syncd/state.lock`.

The commands that write a project's state — `syncd run`, `sync`, `smoke` with an engine of its
own, `demo` — hold it while they run. Two writers would each trust the per-container records in
`.syncd/known/` that the other one overwrote (a quick reconcile would then take a changed file
for unchanged), rewrite `api.json` under each other and push every edit twice.

The lock is flock(2) on an open file: the kernel drops it when the process ends, however it ends
(SIGKILL, the OOM killer, a crash), so there is never a stale lock to remove by hand. Its
descriptor is not inherited by the commands syncd starts (builds, fallbacks), which may outlive
it. The file itself is never deleted: a process that had opened the old file and one that
created a new one could then both hold "the" lock. What it contains — who holds it — only feeds
the message a second writer gets (`syncd.daemons.refusal`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

LOCK_FILE = "state.lock"
# A holder says who it is right after it locks; a process refused in between waits this long
# to read it (rather than naming no one).
HOLDER_WAIT = 1.0
# File systems where flock(2) is not supported: syncd runs unguarded there (and says so).
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a state directory, as it wrote itself into the lock file."""

    pid: int
    command: str  # "run", "sync", "smoke", "demo"
    config: str
    started: float


class StateBusy(Exception):
    """Another process holds the state directory's lock (`holder`: None if it did not say who)."""

    def __init__(self, path: Path, holder: Holder | None) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"{path} is locked by " + (f"pid {holder.pid}" if holder else "another process"))


class StateLock:
    """A held lock (released by `release()`, leaving a `with` block, or the process ending).
    `unguarded` says why nothing is held: the file system has no flock(2)."""

    def __init__(self, path: Path, fd: int | None, unguarded: str | None = None) -> None:
        self.path = path
        self._fd = fd
        self.unguarded = unguarded

    def release(self) -> None:
        if self._fd is None:
            return
        with suppress(OSError):
            os.ftruncate(self._fd, 0)  # no longer names a holder
        os.close(self._fd)  # closing the descriptor drops the lock
        self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def acquire(state_dir: Path, command: str, config: Path) -> StateLock:
    """Lock `state_dir` for this process, or raise StateBusy naming the holder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateBusy(path, _wait_for_holder(path)) from None
    except OSError as e:
        os.close(fd)
        if e.errno in _UNSUPPORTED:
            return StateLock(path, None, unguarded=f"{path}: cannot lock ({e.strerror}); nothing stops a second "
                                                   "syncd from writing this state directory")
        raise
    holder = Holder(os.getpid(), command, str(config), time.time())
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
    return StateLock(path, fd)


def read_holder(path: Path) -> Holder | None:
    """Who the lock file says holds it; None when it is empty (released) or unreadable."""
    try:
        info = json.loads(path.read_text())
        return Holder(int(info["pid"]), str(info["command"]), str(info["config"]), float(info["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _wait_for_holder(path: Path) -> Holder | None:
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        holder = read_holder(path)
        if holder is not None or time.monotonic() >= deadline:
            return holder
        time.sleep(0.02)
