"""Coalescing of file events into batches. Pure: time is always passed in as `now`.

A batch closes after `debounce` seconds without new events (the quiet period), or
`max_wait` seconds after its first event at the latest, so a never-ending stream of events
(a build writing files, a 5,000-file checkout) still produces batches at a steady cadence.

The quiet period is adaptive: the watcher hands over a set of paths only after its own quiet
step (a few ms), so a *small* set that arrives after `debounce` seconds of calm (an editor's
save) is cut at once — waiting longer would only add latency. While a burst is forming (sets
arriving less than `debounce` apart, or a large one) the quiet period applies as before, so a
checkout still lands in a few batches, not one per watcher step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncd.model import Batch


@dataclass
class Coalescer:
    debounce: float
    max_wait: float
    small: int = 0  # a set of at most this many paths after calm is cut at once (0: never)
    _paths: set[str] = field(default_factory=set)
    _first: float | None = None
    _last: float | None = None
    _calm_since: float | None = None  # the last event of the previous batch (None: never)
    _reconcile: bool = False
    _hurry: bool = False
    _quick: bool = False  # cut without the quiet period: a small change after calm
    _next_id: int = 1

    def add(self, paths: set[str] | frozenset[str], now: float) -> None:
        if not paths:
            return
        calm = self._calm_since is None or now - self._calm_since >= self.debounce
        if self._first is None and calm and len(paths) <= self.small:
            self._quick = True
        elif self._first is not None:
            self._quick = False  # more is coming: a burst is forming, wait for quiet
        self._paths.update(paths)
        if self._first is None:
            self._first = now
        self._last = now

    def request_reconcile(self, now: float) -> None:
        """Events were lost (watcher overflow, restart): the next batch compares whole trees."""
        self._reconcile = True
        if self._first is None:
            self._first = now
        self._last = now

    def hurry(self) -> None:
        """Close the open batch now, without its quiet period (its changes start a build:
        each millisecond waited is added to the build's)."""
        if self._first is not None:
            self._hurry = True

    @property
    def pending(self) -> int:
        return len(self._paths)

    def deadline(self) -> float | None:
        """When the open batch must be cut, or None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        if self._hurry or self._quick:
            return self._last
        return min(self._last + self.debounce, self._first + self.max_wait)

    def cut(self, now: float) -> Batch | None:
        """Close the batch if its deadline has passed; events added later go to the next one."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        assert self._first is not None and self._last is not None
        batch = Batch(
            id=self._next_id,
            paths=frozenset(self._paths),
            first_event=self._first,
            last_event=self._last,
            cut=now,
            reconcile=self._reconcile,
            early=self._hurry or self._quick,
        )
        self._next_id += 1
        self._calm_since = self._last
        self._paths = set()
        self._first = self._last = None
        self._reconcile = self._hurry = self._quick = False
        return batch
