"""Handing freed memory back to the system after a reconcile.

A reconcile of a large tree allocates and frees hundreds of megabytes in small pieces (the
local scan, the container's listing, the tar stream); glibc keeps freed heap pages mapped,
so a daemon that reconciled 100,000 files stays that large while idle. `malloc_trim(0)`
returns the free pages. glibc only: elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache

import anyio


@lru_cache(maxsize=1)
def _trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


async def give_back() -> None:
    """Return freed heap pages to the system (in a worker thread: it walks the whole heap)."""
    trim = _trim()
    if trim is not None:
        await anyio.to_thread.run_sync(trim, 0)
