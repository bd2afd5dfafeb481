"""How a long reconcile is cut into chunks. Between two chunks the worker sends what was
submitted meanwhile (an editor's save), so on a slow link an edit waits for one chunk, not for
the whole tree. Each chunk aims to take about `target_s` on the link: its size follows the
throughput the previous chunk achieved (a LAN's chunks grow to `hi`, a 10 Mbit/s uplink's stay
near rate * target_s). Pure: the caller measures and sends."""

from __future__ import annotations

from collections.abc import Sequence


def next_chunk_bytes(sent: int, seconds: float, target_s: float, lo: int, hi: int) -> int:
    """The next chunk's budget after `sent` bytes took `seconds` (answer included)."""
    if seconds <= 0:
        return hi
    return int(min(hi, max(lo, sent / seconds * target_s)))


def chunk_end(sizes: Sequence[int], start: int, budget: int) -> int:
    """The end (exclusive) of the chunk that begins at `start`: items while their sizes fit in
    `budget`, at least one."""
    end, used = start, 0
    while end < len(sizes) and (end == start or used + sizes[end] <= budget):
        used += sizes[end]
        end += 1
    return end
