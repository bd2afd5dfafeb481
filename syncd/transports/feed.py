"""A change feed: a blocking event stream (a pod watch, the Docker engine's events) followed in
a thread, waking the event loop at each event so discovery runs at once instead of at its
next poll. A stream that breaks is followed again, backing off to `retry_max` seconds (low: a
returning API server or engine is noticed within seconds)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.lowlevel import EventLoopToken

from syncd.core.backoff import backoff

# follow(notify, stopping): read the stream, call notify() at each event; return (or raise)
# when it ends or breaks, and soon after `stopping` is set.
Follow = Callable[[Callable[[], None], threading.Event], None]


class ChangeFeed:
    def __init__(self, name: str, follow: Follow, retry_max: float) -> None:
        self.name = name
        self._follow = follow
        self._retry_max = retry_max
        self._changed: anyio.Event | None = None
        self._thread: threading.Thread | None = None
        self._token: EventLoopToken | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        """Begin following (from the event loop's thread); idempotent. Start it before the first
        listing, so that nothing changing between the listing and the first wait is missed."""
        if self._thread is None:
            self._changed = anyio.Event()
            self._token = anyio.lowlevel.current_token()
            self._thread = threading.Thread(target=self._run, daemon=True, name=f"feed {self.name}")
            self._thread.start()

    async def wait(self) -> None:
        """Return at the next event since the last wait (the caller bounds the wait)."""
        self.start()
        assert self._changed is not None
        await self._changed.wait()
        self._changed = anyio.Event()

    def stop(self) -> None:
        self.stopping.set()

    def _notify(self) -> None:
        def fire() -> None:
            if self._changed is not None:
                self._changed.set()

        with contextlib.suppress(RuntimeError):  # the event loop is gone (shutting down)
            anyio.from_thread.run_sync(fire, token=self._token)

    def _run(self) -> None:
        failures = 0

        def notify() -> None:
            nonlocal failures
            failures = 0
            self._notify()

        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self._follow(notify, self.stopping)
                if time.monotonic() - began >= 1.0:
                    continue  # a stream that ended by itself (a watch's timeout): followed again at once
            except Exception:
                self._notify()  # it broke: let discovery look now (and report what it finds)
            failures += 1  # (broken, or ended at once: never spin)
            if self.stopping.wait(backoff(failures, 0.5, self._retry_max)):
                return
