"""The one back-off rule: doubling from `start`, capped at `cap`. Pure."""

from __future__ import annotations


def backoff(failures: int, start: float, cap: float) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1 → start, 2 → 2·start, …)."""
    if failures <= 0:
        return 0.0
    return min(cap, start * 2 ** min(failures - 1, 30))
