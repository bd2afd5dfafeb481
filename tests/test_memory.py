"""syncd/memory.py: the daemon keeps big buffers out of its heap (glibc's mmap threshold fixed)."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import ctypes, sys
from syncd.memory import fix_mmap_threshold
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytearray(12 << 20)  # a hash cache's file, read whole
del big                    # freed: glibc would now raise its threshold to 12 MiB
buf = bytearray(1 << 20)   # a listing's worth: its own mapping, or a piece of the heap
at = ctypes.addressof((ctypes.c_char * 1).from_buffer(buf))
with open("/proc/self/maps") as f:
    heap = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f if line.rstrip().endswith("[heap]")]
print("heap" if any(lo <= at < hi for lo, hi in heap) else "own mapping")
"""


def _where(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin"})
    return out.stdout.strip()


def test_a_freed_big_buffer_does_not_pull_the_next_ones_into_the_heap() -> None:
    """With the threshold fixed, a 1 MiB buffer after a freed 12 MiB one gets its own mapping
    (returned whole when freed); left to glibc, it comes from the heap."""
    assert _where("fixed") == "own mapping"
    assert _where("default") == "heap"
