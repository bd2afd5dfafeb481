"""An observer inside the container that reports when files become visible there.

It is one long-running `docker exec` per watch (never an exec per check: that alone costs
~60 ms). The test image's busybox has no `inotifyd`, so the watch is a small busybox `sh`
loop that polls with shell builtins only (no fork per check): it sleeps ~1 ms with
`read -t` on its stdin and stamps each observation with `$EPOCHREALTIME`, the kernel clock
the host shares.

How it ends: a "stop" line, or no line at all for `LINGER_S` seconds. The host writes a
keep-alive line every `KEEPALIVE_S`, so a loop whose host side died (stdin at EOF, or a
client killed) stops by itself and steals no CPU from the next phase. It is a time, not a
guess: busybox's `read -t` returns 1 on a timeout and on EOF alike, and an earlier version
that took "many timeouts in a row that returned too fast" for EOF ended a live observer
under load (a whole baseline's edits went unseen though they landed).
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
mode=$1 target=$2 want=${3:-0} linger=${4:-10}
echo "$EPOCHREALTIME R ready"
prev= done= heard=${EPOCHREALTIME%.*}
while :; do
  if read -t 0.001 l; then
    [ "$l" = stop ] && exit 0
    heard=${EPOCHREALTIME%.*}
  else
    now=${EPOCHREALTIME%.*}
    [ $((now - heard)) -gt "$linger" ] && exit 0  # no keep-alive: the host side is gone
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
KEEPALIVE_S = 1.0  # the host's keep-alive line
LINGER_S = 10  # s without any line before the loop takes its host side for gone

MAX_CLOCK_SKEW = 1.0  # s; beyond this the engine is not on this kernel (remote DOCKER_HOST)


@dataclass(frozen=True)
class Event:
    seen: float  # when the container saw it (container clock, or host arrival if skewed)
    arrived: float  # host time the line reached us
    kind: str  # C (content) or N (count)
    payload: str


class Observer:
    """One watch: `Observer(cid, "file", "/app/src/x")` or `Observer(cid, "count", dir, n)`."""

    def __init__(self, container_id: str, mode: str, target: str, want: int = 0, ready_timeout: float = 20.0,
                 linger_s: int = LINGER_S):
        argv = ["docker", "exec", "-i", container_id, "sh", "-c", SCRIPT, "observer", mode, target, str(want),
                str(linger_s)]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._events: queue.Queue[Event | None] = queue.Queue()
        self.lags: list[float] = []  # host arrival - container stamp: the stream's own delay
        self.use_container_clock = True
        self.ended = False  # the stream ended (the loop stopped, or its exec did)
        self._closing = threading.Event()
        self._stdin_lock = threading.Lock()  # the keep-alive and close() both write
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._keepalive = threading.Thread(target=self._keep_alive, daemon=True)
        self._ready = threading.Event()
        self._reader.start()
        self._keepalive.start()
        if not self._ready.wait(ready_timeout):
            err = self.close()
            raise RuntimeError(f"observer did not start: {err}")

    def _keep_alive(self) -> None:
        while not self._closing.wait(KEEPALIVE_S):
            if not self._send(b"k\n"):
                return

    def _send(self, line: bytes) -> bool:
        with self._stdin_lock:
            try:
                if self._proc.stdin is None or self._proc.stdin.closed:
                    return False
                self._proc.stdin.write(line)
                return True
            except OSError:
                return False

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
        self.ended = True
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
                self._events.put(None)  # every later wait returns at once too
                return None
            if match(event):
                return event
        return None

    def close(self) -> str:
        """Stop the in-container loop ("stop", then stdin closed) and the client; returns stderr."""
        self._closing.set()
        self._send(b"stop\n")
        with self._stdin_lock, contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        err = self._proc.stderr.read() if self._proc.stderr else b""
        return err.decode("utf-8", "replace").strip()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
