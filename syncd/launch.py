"""The `syncd` command's entry point: `syncd run` runs on the C library's allocator.

The daemon lives for hours with a big tree's manifests in memory. A reconcile allocates and
frees a few hundred thousand small objects (the scan, the container's listing, the records)
between the few it keeps, and CPython's own allocator keeps every 1 MiB arena of which one
object lives: at 100,000 files into two containers the idle daemon stayed at ~222 MiB of
which ~72 MiB were live data. On glibc's malloc the pages freed between them go back to the
system (syncd/memory.py trims after big reconciles): ~148 MiB. The price, measured A/B over
3 restarts each: ~1 s more (median 11.0 vs 10.0 s) to converge after a restart at that size,
and ~30 MiB more at the peak; a daemon is idle far longer than it starts. `PYTHONMALLOC` is
read only when the interpreter starts, so `syncd run` executes itself again, once, with it
set (the same process id: a supervisor's signals still reach it). A `PYTHONMALLOC` the user
set is kept; the short-lived commands are left alone. Kept import-light: it runs before
syncd.cli's imports (~0.4 s), which the re-executed process would only do again.

`syncd sync` ends without tearing its objects down: the interpreter's exit freed a 20,000-file
tree's hash cache, manifests and scan one object at a time (~0.14 s of a ~1.3 s no-op sync,
seen in strace between the last atexit call and exit_group); the system takes the whole
address space back at once. Its output is flushed first; it keeps no other buffered file
open (the trace, records and hash cache are closed as they are written).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import suppress

MARK = "SYNCD_ALLOCATOR"  # set on the re-execution: the variables are ours, not the user's
LONG_LIVED = frozenset({"run"})
EXIT_AT_ONCE = frozenset({"sync"})


def command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv[1:] if not a.startswith("-")), None)


def reexec_env(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to execute `argv` again with, or None to go on as we are."""
    command = command_of(argv)
    if command not in LONG_LIVED or "PYTHONMALLOC" in env or MARK in env:
        return None
    return {**env, "PYTHONMALLOC": "malloc", MARK: "malloc"}


def settle_env(env: MutableMapping[str, str]) -> None:
    """After the re-execution: drop our variables again, so the builds, steps and actions the
    daemon starts run with the environment the user gave it."""
    if env.pop(MARK, None) is not None:
        env.pop("PYTHONMALLOC", None)


def main() -> int:
    env = reexec_env(sys.argv, os.environ)
    if env is not None:
        with suppress(OSError):  # (if it cannot: CPython's allocator, bigger while idle, otherwise the same)
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    settle_env(os.environ)
    from syncd.cli import main as cli_main

    code = cli_main()
    if command_of(sys.argv) in EXIT_AT_ONCE:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    return code
