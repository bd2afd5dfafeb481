"""Time, injected: what the engine asks instead of calling `time` directly, so decisions that
depend on time are tested with a clock the test moves (syncd.testing.ManualClock).

- `now()`: wall-clock seconds. Trace spans use it: they are compared with file change times
  (inode ctime) and read by people.
- `monotonic()`: for durations and deadlines; never jumps.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()
