"""An observer inside the container that reports when files become visible there.

It is one long-running `docker exec` per watch (never an exec per check: that alone costs
~60 ms). The test image's busybox has no `inotifyd`, so the watch is a small busybox `sh`
loop that polls with shell builtins only (no fork per check): it sleeps ~1 ms with
`read -t` on its stdin and stamps each observation with `$EPOCHREALTIME`, the kernel clock
the host shares. A "stop" line ends it, and so does stdin at EOF (read then keeps returning at once), so
no loop outlives its phase and steals CPU from the next one.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from dataclasses import dataclass

# Modes:  file PATH   -> "<ts> C <first line>" whenever PATH's first line changes
#         count DIR N -> "<ts> N <count>" once DIR holds >= N entries, all non-empty
SCRIPT = r"""
mode=$1 target=$2 want=${3:-0}
echo "$EPOCHREALTIME R ready"
prev= done= fast=0
while :; do
  a=$EPOCHREALTIME
  if read -t 0.001 l; then [ "$l" = stop ] && exit 0; fast=0; else
    b=$EPOCHREALTIME
    # "stop" ends the loop. Without it (the host side died: stdin at EOF) read returns at
    # once, every time; a timeout can too, now and then (busybox rounds to a ms tick), and
    # 50 in a row once ended a live observer under load: only a long run of them means EOF.
    if [ $(( ${b%.*}${b#*.} - ${a%.*}${a#*.} )) -lt 300 ]; then
      fast=$((fast + 1)); [ $fast -ge 3000 ] && exit 0
    else fast=0; fi
  fi
  if [ "$mode" = file ]; then
    l=; read -r l < "$target" 2>/dev/null
    [ "$l" != "$prev" ] && { prev=$l; echo "$EPOCHREALTIME C $l"; }
  elif [ -z "$done" ]; then
    set -- "$target"/*
    [ -e "$1" ] || set --
    if [ $# -ge "$want" ]; then
      t=$EPOCHREALTIME ok=1
      for f in "$@"; do [ -s "$f" ] || { ok=; break; }; done  # tar writes after create
      [ -n "$ok" ] && { done=1; echo "$t N $#"; }
    fi
  fi
done
"""

MAX_CLOCK_SKEW = 1.0  # s; beyond this the engine is not on this kernel (remote DOCKER_HOST)


@dataclass(frozen=True)
class Event:
    seen: float  # when the container saw it (container clock, or host arrival if skewed)
    arrived: float  # host time the line reached us
    kind: str  # C (content) or N (count)
    payload: str


class Observer:
    """One watch: `Observer(cid, "file", "/app/src/x")` or `Observer(cid, "count", dir, n)`."""

    def __init__(self, container_id: str, mode: str, target: str, want: int = 0, ready_timeout: float = 20.0):
        argv = ["docker", "exec", "-i", container_id, "sh", "-c", SCRIPT, "observer", mode, target, str(want)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._events: queue.Queue[Event | None] = queue.Queue()
        self.lags: list[float] = []  # host arrival - container stamp: the stream's own delay
        self.use_container_clock = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._ready = threading.Event()
        self._reader.start()
        if not self._ready.wait(ready_timeout):
            err = self.close()
            raise RuntimeError(f"observer did not start: {err}")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            arrived = time.time()
            stamp, kind, payload = (raw.decode("utf-8", "replace").rstrip("\n").split(" ", 2) + ["", ""])[:3]
            try:
                ts = float(stamp)
            except ValueError:
                continue
            if kind == "R":
                self.use_container_clock = abs(arrived - ts) < MAX_CLOCK_SKEW
                self._ready.set()
                continue
            self.lags.append(arrived - ts)
            self._events.put(Event(ts if self.use_container_clock else arrived, arrived, kind, payload))
        self._events.put(None)  # the stream ended

    def wait_content(self, expected: str, timeout: float) -> Event | None:
        """The event in which the file first showed `expected`; None on timeout."""
        return self._wait(lambda e: e.kind == "C" and e.payload == expected, timeout)

    def wait_count(self, timeout: float) -> Event | None:
        return self._wait(lambda e: e.kind == "N", timeout)

    def _wait(self, match, timeout: float) -> Event | None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                return None
            if event is None:
                return None
            if match(event):
                return event
        return None

    def close(self) -> str:
        """Stop the in-container loop (close its stdin) and the client; returns stderr."""
        try:
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.write(b"stop\n")
                self._proc.stdin.close()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        err = self._proc.stderr.read() if self._proc.stderr else b""
        return err.decode("utf-8", "replace").strip()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
