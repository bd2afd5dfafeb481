"""Handing freed memory back to the system after a reconcile.

A reconcile of a large tree allocates and frees hundreds of megabytes in small pieces (the
local scan, the container's listing, the tar stream); glibc keeps freed heap pages mapped,
so a daemon that reconciled 100,000 files stays that large while idle. `malloc_trim(0)`
returns the free pages. glibc only: elsewhere (musl, macOS) this does nothing.

Big buffers are kept out of the heap (`fix_mmap_threshold`): glibc serves a request above its
mmap threshold (128 KiB) with its own mapping, returned whole when freed, but raises the
threshold to the size of every such buffer freed (up to 32 MiB). Once the hash cache's file
(~12 MB at 100,000 files) had been read and freed, the container listings (~8 MB each), the
records' JSON and the dict tables came from the heap, between objects that live on, and the
idle daemon kept the holes: restarted at 100,000 files it sat at 170 MiB instead of 147
(VmHWM 396 against 341 MiB with the threshold fixed; the scale benchmark's sequence).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import lru_cache

import anyio


@lru_cache(maxsize=2)
def _libc(function: str) -> Callable[..., int] | None:
    """A glibc function, or None (another C library, or none found)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


_M_MMAP_THRESHOLD = -3  # (glibc's malloc.h)
MMAP_THRESHOLD = 128 << 10  # glibc's default, kept fixed


def fix_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at its default instead of letting freed big buffers raise it
    (see above). False where it cannot (not glibc)."""
    mallopt = _libc("mallopt")
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


async def give_back() -> None:
    """Return freed heap pages to the system (in a worker thread: it walks the whole heap)."""
    trim = _libc("malloc_trim")
    if trim is not None:
        await anyio.to_thread.run_sync(trim, 0)
