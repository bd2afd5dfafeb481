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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import suppress

MARK = "SYNCD_ALLOCATOR"  # set on the re-execution: the variables are ours, not the user's
LONG_LIVED = frozenset({"run"})


def reexec_env(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to execute `argv` again with, or None to go on as we are."""
    command = next((a for a in argv[1:] if not a.startswith("-")), None)
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

    return cli_main()
