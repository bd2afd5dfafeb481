"""A batch's bookkeeping while it is in flight: its trace, finished when every container it was
sent to (and every build gate holding part of it) has answered."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from syncd.trace import BatchTrace


class BatchJob:
    """One batch's trace and how many parties still owe it an answer (`expect` /
    `finish_one`); `on_done` runs once, when the last one answers."""

    def __init__(self, trace: BatchTrace, on_done: Callable[[BatchJob], None]) -> None:
        self.trace = trace
        self.outstanding = 0
        self._on_done = on_done
        self.done = anyio.Event()

    def expect(self) -> None:
        self.outstanding += 1

    def finish_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding <= 0 and not self.done.is_set():
            self._on_done(self)
            self.done.set()
