"""watchfiles adapter: raw filesystem events -> sets of changed paths, ignores applied early.

Ignored paths are filtered before they reach the coalescer, so they never wake the pipeline.
watchfiles' own grouping is kept minimal (`step`); coalescing is done by `core.coalesce`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import watchfiles

# accept(path, is_dir) -> bool
Accept = Callable[[str, bool], bool]

STEP_MS = 5  # watchfiles' poll of its event queue; bounds added latency and idle wakeups


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


async def changes(roots: list[Path], accept: Accept, stop: anyio.Event, max_wait_ms: int) -> AsyncIterator[set[str]]:
    def flt(_change: watchfiles.Change, path: str) -> bool:
        return accept(path, os.path.isdir(path))

    async for batch in watchfiles.awatch(
        *roots,
        watch_filter=flt,
        step=STEP_MS,
        debounce=max(max_wait_ms, STEP_MS),
        stop_event=stop,
        yield_on_timeout=False,
        recursive=True,
        ignore_permission_denied=True,
    ):
        yield {path for _change, path in batch}
