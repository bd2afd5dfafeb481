"""The object store: pods, one global resourceVersion (etcd's revision: every write bumps it),
a bounded event history for watches that resume from an older resourceVersion, and the live
watch subscriptions. Written from any thread, read by the server's event loop."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .model import Pod


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: Pod


class Expired(Exception):
    """The requested resourceVersion is older than the retained history (etcd compaction)."""

    def __init__(self, requested: int, oldest: int) -> None:
        # Wording of the watch cache / etcd3 watcher: "too old resource version: %d (%d)".
        super().__init__(f"too old resource version: {requested} ({oldest})")


@dataclass
class Subscription:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def push(self, ev: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, ev)
        except RuntimeError:
            pass  # the server's loop is closed: nobody is watching any more


class Store:
    def __init__(self, history_limit: int = 1000) -> None:
        self._lock = threading.RLock()
        self._pods: dict[tuple[str, str], Pod] = {}
        self._rv = 1
        self._history: deque[Event] = deque(maxlen=history_limit)
        self._compacted_to = 1  # oldest rv a watch may resume from
        self._subs: list[Subscription] = []

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def _emit(self, kind: str, pod: Pod) -> Pod:
        self._rv += 1
        pod["metadata"]["resourceVersion"] = str(self._rv)
        snap = copy.deepcopy(pod)
        ev = Event(self._rv, kind, snap)
        if len(self._history) == self._history.maxlen:
            self._compacted_to = self._history[0].rv
        self._history.append(ev)
        for sub in self._subs:
            sub.push(ev)
        return copy.deepcopy(snap)

    def add(self, pod: Pod) -> Pod:
        with self._lock:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            if key in self._pods:
                raise KeyError(f'pods "{key[1]}" already exists')
            self._pods[key] = pod
            return self._emit("ADDED", pod)

    def update(self, namespace: str, name: str, mutate: Callable[[Pod], None]) -> Pod:
        """Apply `mutate` to the stored pod and publish MODIFIED, atomically."""
        with self._lock:
            pod = self._pods[(namespace, name)]
            mutate(pod)
            return self._emit("MODIFIED", pod)

    def remove(self, namespace: str, name: str) -> Pod:
        with self._lock:
            pod = self._pods.pop((namespace, name))
            return self._emit("DELETED", pod)

    def get(self, namespace: str, name: str) -> Pod | None:
        with self._lock:
            pod = self._pods.get((namespace, name))
            return copy.deepcopy(pod) if pod else None

    def list(self, namespace: str | None = None) -> tuple[list[Pod], int]:
        with self._lock:
            pods = [copy.deepcopy(p) for (ns, _), p in sorted(self._pods.items()) if namespace in (None, ns)]
            return pods, self._rv

    def namespaces(self) -> set[str]:
        with self._lock:
            return {ns for ns, _ in self._pods}

    def compact(self) -> None:
        """Drop the watch history, like an etcd compaction: older resourceVersions now get 410."""
        with self._lock:
            self._history.clear()
            self._compacted_to = self._rv

    def subscribe(self, loop: asyncio.AbstractEventLoop, since: int | None) -> tuple[list[Event], Subscription]:
        """Register a watcher. `since=None` means "start now, with the current state as ADDED
        events" (no resourceVersion / resourceVersion=0); otherwise replay the history after
        `since`, or raise Expired when it is no longer retained."""
        with self._lock:
            if since is None:
                initial = [Event(self._rv, "ADDED", copy.deepcopy(p)) for _, p in sorted(self._pods.items())]
            else:
                if since < self._compacted_to:
                    raise Expired(since, self._compacted_to)
                initial = [ev for ev in self._history if ev.rv > since]
            sub = Subscription(loop)
            self._subs.append(sub)
            return initial, sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
