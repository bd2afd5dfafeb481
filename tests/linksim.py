"""A link simulator: a userspace TCP proxy that makes a loopback connection behave like a slower network.

`Link` listens on 127.0.0.1 (a free port) and forwards each accepted connection to an upstream
TCP address or Unix socket (e.g. the kube fixture's API server, named in the kubeconfig instead of
the real port, or Docker's `/var/run/docker.sock`). Per direction it applies:

- a one-way delay: every chunk is released `delay` seconds after it was read, in order (a delay
  line, so latency does not serialize throughput);
- a bandwidth cap: a token bucket in bytes/s;
- byte counters (`bytes_up` = client to upstream, `bytes_down` = upstream to client).

Fault controls: `stall()`/`resume()` (bytes stop both ways, connections stay open), `drop_all()`
(reset every open connection), `refuse()` (new connections closed at once), `close()`.

What it does NOT simulate: packet loss, retransmission, jitter, reordering, MTU/segment effects or
TCP congestion control. Underneath it is still TCP over loopback, so the kernel's buffers add a
little slack: bytes already handed to a socket before a stall may still arrive.

Use: `Link.from_profile("cloud", ("127.0.0.1", fx_port))` and put `link.url()` in the kubeconfig
(the fixture's certificate names 127.0.0.1, so TLS still verifies: the proxy forwards bytes, it does
not terminate TLS); for Docker, `Link.from_profile("home", "/var/run/docker.sock")` and
`DOCKER_HOST=tcp://127.0.0.1:<link.port>`. `link_time(n)` is the floor the link alone imposes on
sending n bytes and getting an answer, for benchmarks to print ratios against.

Benchmarks import it the way they import the kube fixture (tests/ on sys.path, `import linksim`).
The proxy runs on an asyncio loop in one background thread; the public methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["PROFILES", "Link", "Profile", "mbit"]

T = TypeVar("T")

CHUNK = 64 * 1024  # largest read per syscall
BURST = 16 * 1024  # token-bucket depth; also the largest write at once
TIMER_SLACK = 0.005  # the bucket holds at least this many seconds of rate (see TokenBucket)
BUFFER_SLACK = 1 << 20  # bytes a delay line may hold beyond rate*delay before reading stops
UNCAPPED_RATE = 1e9  # bytes/s assumed for backpressure sizing when a direction has no cap


def mbit(n: float) -> float:
    """n Mbit/s in bytes/s."""
    return n * 1e6 / 8


@dataclass(frozen=True)
class Profile:
    """A link's shape. Rates in bytes/s (None = uncapped); up = client (syncd) to server."""

    name: str
    delay_up: float
    delay_down: float
    rate_up: float | None
    rate_down: float | None

    @property
    def rtt(self) -> float:
        return self.delay_up + self.delay_down

    def link_time(self, nbytes: int, direction: str = "up") -> float:
        """Seconds the link alone needs to carry nbytes one way and get an answer: RTT + N/rate."""
        rate = self.rate_up if direction == "up" else self.rate_down
        return self.rtt + (nbytes / rate if rate else 0.0)


PROFILES: dict[str, Profile] = {
    "lan": Profile("lan", 0.00025, 0.00025, mbit(1000), mbit(1000)),
    "cloud": Profile("cloud", 0.020, 0.020, mbit(50), mbit(50)),
    # Home: the issue fixes only the uplink (10 Mbit/s, syncd pushing files); a typical
    # asymmetric home line has ~5x that down, so 50 Mbit/s for the (small) replies.
    "home": Profile("home", 0.040, 0.040, mbit(10), mbit(50)),
}


class TokenBucket:
    """Bytes/s cap. Tokens may go negative (a write is never split below BURST) and the debt is
    slept off, so the average rate is exact. The depth is at least TIMER_SLACK seconds of rate:
    a shallower bucket would lose the tokens accrued while a sleep oversleeps, capping high
    rates (1 Gbit/s) below their setting."""

    def __init__(self, rate: float | None, burst: int = BURST) -> None:
        self.rate = rate
        self.depth = max(burst, int((rate or 0) * TIMER_SLACK))
        self.tokens = float(self.depth)
        self.last = 0.0

    async def take(self, n: int) -> None:
        if not self.rate:
            return
        now = asyncio.get_running_loop().time()
        if self.last:
            self.tokens = min(self.depth, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class _Direction:
    """One way of one connection: a reader filling a delay line, a writer draining it."""

    def __init__(self, link: Link, delay: float, rate: float | None, count: Callable[[int], None]) -> None:
        self.link, self.delay, self.count = link, delay, count
        self.bucket = TokenBucket(rate)
        self.limit = int((rate or UNCAPPED_RATE) * delay) + BUFFER_SLACK
        self.line: deque[tuple[float, bytes]] = deque()  # (release time, chunk); b"" = EOF
        self.queued = 0
        self.changed = asyncio.Event()  # the line gained or lost an item

    def start(self, tg: asyncio.TaskGroup, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        tg.create_task(self._read(src))
        tg.create_task(self._write(dst))

    async def _wait_change(self) -> None:
        self.changed.clear()
        await self.changed.wait()

    async def _read(self, src: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.queued > self.limit:  # backpressure: leave the rest in the kernel's buffers
                await self._wait_change()
            data = await src.read(CHUNK)
            self.line.append((loop.time() + self.delay, data))
            self.queued += len(data)
            self.changed.set()
            if not data:
                return

    async def _write(self, dst: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.line:
                await self._wait_change()
            release, data = self.line[0]
            if (wait := release - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:  # half-close: EOF only after every queued byte went out
                await self.link.flowing.wait()
                await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
                return
            view = memoryview(data)
            for at in range(0, len(view), BURST):
                piece = view[at : at + BURST]
                await self.bucket.take(len(piece))
                await self.link.flowing.wait()  # no await between this check and the write
                dst.write(piece)
                self.count(len(piece))
                await dst.drain()
            self.line.popleft()
            self.queued -= len(data)
            self.changed.set()


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the peer."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Conn:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = asyncio.current_task()

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()  # its pumps may be parked on a delay line or a stall


class Link:
    """A simulated link in front of `upstream`: (host, port) or a Unix socket path.

    Connect to `link.address` (127.0.0.1, `link.port`) instead of the upstream."""

    def __init__(
        self,
        upstream: tuple[str, int] | str,
        *,
        delay_up: float = 0.0,
        delay_down: float = 0.0,
        rate_up: float | None = None,
        rate_down: float | None = None,
    ) -> None:
        self.upstream = upstream
        self.profile = Profile("custom", delay_up, delay_down, rate_up, rate_down)
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0  # accepted since start (refused ones included)
        self._open: set[_Conn] = set()
        self._refusing = False
        self._resume_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="linksim", daemon=True)
        self._thread.start()
        self.flowing: asyncio.Event = self._call(self._make_event)
        self._server: asyncio.Server = self._run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    @classmethod
    def from_profile(cls, profile: str | Profile, upstream: tuple[str, int] | str) -> Link:
        p = PROFILES[profile] if isinstance(profile, str) else profile
        link = cls(upstream, delay_up=p.delay_up, delay_down=p.delay_down, rate_up=p.rate_up, rate_down=p.rate_down)
        link.profile = p
        return link

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def url(self, scheme: str = "https") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def link_time(self, nbytes: int, direction: str = "up") -> float:
        return self.profile.link_time(nbytes, direction)

    # -- controls (any thread) -------------------------------------------------------------

    def stall(self, seconds: float | None = None) -> None:
        """Stop bytes both ways (connections stay open); resume after `seconds`, or at resume()."""

        def go() -> None:
            self._cancel_timer()
            self.flowing.clear()
            if seconds is not None:
                self._resume_timer = self._loop.call_later(seconds, self.flowing.set)

        self._call(go)

    def resume(self) -> None:
        def go() -> None:
            self._cancel_timer()
            self.flowing.set()

        self._call(go)

    def drop_all(self) -> None:
        """Reset every open connection (both ends see RST); new ones are still accepted."""

        def go() -> None:
            for conn in list(self._open):
                conn.reset()

        self._call(go)

    def refuse(self, on: bool = True) -> None:
        """While on, accepted connections are reset at once, without reaching the upstream."""
        self._refusing = on

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._shutdown(), timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loop side -------------------------------------------------------------------------

    @staticmethod
    def _make_event() -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    def _call(self, fn: Callable[[], T]) -> T:
        """Run fn on the loop and wait, so a control has taken effect when it returns."""

        async def wrap() -> T:
            return fn()

        return self._run(wrap())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _cancel_timer(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None

    async def _shutdown(self) -> None:
        self._server.close()
        for conn in list(self._open):
            conn.reset()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.upstream, str):
            return await asyncio.open_unix_connection(self.upstream)
        return await asyncio.open_connection(*self.upstream)

    async def _handle(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = _Conn(c_writer)
        if self._refusing:
            conn.reset()
            return
        self._open.add(conn)
        try:
            await self._relay(conn, c_reader)
        except asyncio.CancelledError:
            # drop_all/close cancel this task; it is the handler's outermost frame, and asyncio's
            # server logs a cancelled handler as an error, so end it normally
            conn.reset()
        finally:
            self._open.discard(conn)
            for w in (c_writer, conn.upstream):
                if w is not None:
                    w.close()

    async def _relay(self, conn: _Conn, c_reader: asyncio.StreamReader) -> None:
        try:
            u_reader, conn.upstream = await self._connect_upstream()
            p = self.profile
            up = _Direction(self, p.delay_up, p.rate_up, self._count_up)
            down = _Direction(self, p.delay_down, p.rate_down, self._count_down)
            async with asyncio.TaskGroup() as tg:  # one pump failing cancels the other three
                up.start(tg, c_reader, conn.upstream)
                down.start(tg, u_reader, conn.client)
        except* OSError:
            conn.reset()  # one side failed: the other sees a reset too, as with a broken path

    def _count_up(self, n: int) -> None:
        self.bytes_up += n

    def _count_down(self, n: int) -> None:
        self.bytes_down += n
