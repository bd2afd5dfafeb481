"""The link simulator (tests/linksim.py) against small in-process servers; no Docker.

Time assertions are lower bounds only: the machine is small and shared, so slowness proves nothing."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from linksim import PROFILES, Link, mbit

pytestmark = pytest.mark.timeout(60)

WAIT = 15.0  # generous ceiling for waits that should finish in milliseconds


class Server:
    """A threaded TCP (or Unix) server running `serve(conn)` per connection."""

    def __init__(self, serve: Callable[[socket.socket], None], unix_path: str | None = None) -> None:
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(unix_path)
            self.address: tuple[str, int] | str = unix_path
        else:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.address = self.sock.getsockname()[:2]
        self.sock.listen(16)
        self.serve = serve
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a reset mid-test is the point of some tests
            self.serve(conn)

    def close(self) -> None:
        self.sock.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def sink_then_reply(conn: socket.socket) -> None:
    """Read until EOF, then answer with the byte count and sha1: proves half-close and ordering."""
    h, n = hashlib.sha1(), 0
    while data := conn.recv(65536):
        h.update(data)
        n += len(data)
    conn.sendall(f"{n} {h.hexdigest()}".encode())


@pytest.fixture
def echo_server() -> Iterator[Server]:
    s = Server(echo)
    yield s
    s.close()


@pytest.fixture
def sink_server() -> Iterator[Server]:
    s = Server(sink_then_reply)
    yield s
    s.close()


def connect(link: Link) -> socket.socket:
    c = socket.create_connection(link.address, timeout=WAIT)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_exactly(c: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = c.recv(min(65536, n - len(buf)))
        assert data, f"EOF after {len(buf)} of {n} bytes"
        buf += data
    return bytes(buf)


def recv_all(c: socket.socket) -> bytes:
    buf = bytearray()
    while data := c.recv(65536):
        buf += data
    return bytes(buf)


def poll(cond: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def sees_reset(c: socket.socket) -> bool:
    """True once the peer closed or reset the connection."""
    try:
        return c.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_bytes_arrive_intact_both_ways_and_are_counted(echo_server: Server) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    with Link(echo_server.address, delay_up=0.001, delay_down=0.001) as link, connect(link) as c:
        sender = threading.Thread(target=c.sendall, args=(payload,))
        sender.start()
        got = recv_exactly(c, len(payload))
        sender.join(WAIT)
        assert hashlib.sha1(got).hexdigest() == hashlib.sha1(payload).hexdigest()
        assert link.bytes_up == link.bytes_down == len(payload)
        assert link.connections == 1 and link.open_connections == 1


def test_unix_socket_upstream(tmp_path: Path) -> None:
    server = Server(echo, unix_path=str(tmp_path / "engine.sock"))
    try:
        with Link(str(tmp_path / "engine.sock"), delay_up=0.001) as link, connect(link) as c:
            c.sendall(b"ping")
            assert recv_exactly(c, 4) == b"ping"
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b""  # the upstream's EOF came back through the link
    finally:
        server.close()


def test_one_way_delay_applies_each_way(echo_server: Server) -> None:
    with Link(echo_server.address, delay_up=0.05, delay_down=0.05) as link, connect(link) as c:
        for _ in range(3):
            t0 = time.monotonic()
            c.sendall(b"x")
            assert recv_exactly(c, 1) == b"x"
            assert time.monotonic() - t0 >= 0.1


def test_delay_does_not_serialize_throughput(sink_server: Server) -> None:
    # 40 chunks sent back to back through a 100 ms link: a sleep-per-chunk proxy would need 4 s.
    # Only a lower bound is asserted; the upper bound is shown by the test's own runtime.
    with Link(sink_server.address, delay_up=0.1, delay_down=0.1) as link, connect(link) as c:
        t0 = time.monotonic()
        for _ in range(40):
            c.sendall(b"y" * 1000)
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c).split()[0] == b"40000"
        assert time.monotonic() - t0 >= 0.2


def test_bandwidth_cap(sink_server: Server) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    with Link(sink_server.address, rate_up=mbit(8)) as link, connect(link) as c:
        t0 = time.monotonic()
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        reply = recv_all(c).decode()
        elapsed = time.monotonic() - t0
        assert reply == f"{len(payload)} {hashlib.sha1(payload).hexdigest()}"
        assert elapsed >= 1.9, elapsed  # 2 MiB at 1 MB/s, less one bucket of burst
        assert link.bytes_up == len(payload)


def test_stall_holds_bytes_until_resume(echo_server: Server) -> None:
    with Link(echo_server.address) as link, connect(link) as c:
        c.sendall(b"a")
        assert recv_exactly(c, 1) == b"a"  # nothing in flight from here on
        link.stall()
        before = link.bytes_up, link.bytes_down
        c.sendall(b"b" * 100)
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.recv(1)
        assert (link.bytes_up, link.bytes_down) == before
        assert link.open_connections == 1
        link.resume()
        c.settimeout(WAIT)
        assert recv_exactly(c, 100) == b"b" * 100


def test_timed_stall_resumes_by_itself(echo_server: Server) -> None:
    with Link(echo_server.address) as link, connect(link) as c:
        c.sendall(b"a")
        assert recv_exactly(c, 1) == b"a"
        t0 = time.monotonic()
        link.stall(0.3)
        c.sendall(b"b")
        assert recv_exactly(c, 1) == b"b"
        assert time.monotonic() - t0 >= 0.3


def test_drop_all_resets_open_connections(echo_server: Server) -> None:
    with Link(echo_server.address) as link:
        a, b = connect(link), connect(link)
        for c in (a, b):
            c.sendall(b"hi")
            assert recv_exactly(c, 2) == b"hi"
        link.drop_all()
        assert sees_reset(a) and sees_reset(b)
        assert poll(lambda: link.open_connections == 0)
        with connect(link) as c:  # the link itself still works
            c.sendall(b"again")
            assert recv_exactly(c, 5) == b"again"
        a.close()
        b.close()


def test_refuse_closes_new_connections_without_reaching_upstream(echo_server: Server) -> None:
    with Link(echo_server.address) as link:
        link.refuse(True)
        for _ in range(3):
            try:
                c = connect(link)
            except ConnectionResetError:  # the RST can beat connect() back to the caller
                continue
            with c:
                assert sees_reset(c)
        assert echo_server.accepted == 0
        link.refuse(False)
        with connect(link) as c:
            c.sendall(b"ok")
            assert recv_exactly(c, 2) == b"ok"
        assert echo_server.accepted == 1
        assert link.connections == 4


def test_half_close_propagates_and_reply_still_arrives(sink_server: Server) -> None:
    payload = os.urandom(300_000)
    with Link(sink_server.address, delay_up=0.02, delay_down=0.02, rate_up=mbit(100)) as link, connect(link) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # the server sees EOF only after every byte, then replies
        assert recv_all(c).decode() == f"{len(payload)} {hashlib.sha1(payload).hexdigest()}"
        assert poll(lambda: link.open_connections == 0)


def test_http_through_the_link() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Kubernetes client uses it

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            reply = hashlib.sha1(body).hexdigest().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with Link.from_profile("cloud", httpd.server_address[:2]) as link:
            conn = http.client.HTTPConnection(link.host, link.port, timeout=WAIT)
            body = os.urandom(100_000)
            for _ in range(2):  # keep-alive: the second request reuses the connection
                conn.request("POST", "/", body=body)
                resp = conn.getresponse()
                assert resp.status == 200
                assert resp.read().decode() == hashlib.sha1(body).hexdigest()
            conn.close()
            assert link.connections == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_close_is_prompt_with_stalled_connections(echo_server: Server) -> None:
    link = Link(echo_server.address, delay_up=0.5)
    c = connect(link)
    link.stall()
    c.sendall(b"z" * 10_000)
    t0 = time.monotonic()
    link.close()
    assert sees_reset(c)
    c.close()
    assert time.monotonic() - t0 < WAIT  # a ceiling far above any plausible run: a hang, not speed


def test_profiles_and_link_time() -> None:
    assert set(PROFILES) == {"lan", "cloud", "home"}
    cloud, home = PROFILES["cloud"], PROFILES["home"]
    assert cloud.delay_up == cloud.delay_down == 0.020
    assert home.rtt == pytest.approx(0.080)
    assert home.rate_up == mbit(10)
    # 10 MB up a home line: 80 ms RTT + 80 Mbit / 10 Mbit/s
    assert home.link_time(10_000_000) == pytest.approx(0.08 + 8.0)
    assert PROFILES["lan"].rtt == pytest.approx(0.0005)
