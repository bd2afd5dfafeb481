"""The hot channel: one session per container carries every batch; faults mid-batch (session
process killed, container restarted, WebSocket dropped) still converge; a container that
cannot run the session falls back to one exec per batch and converges too."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from syncd.settings import Settings
from syncd.testing import RecordingTransport
from syncd.transports.base import Transport
from syncd.transports.shell import rechunk
from engine_harness import running, settle, wait_until, write_config
from storms import storm
from trees import container_tree, diff_trees, local_tree

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

DOCKER = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.t]
kind = "docker"
container = "{name}"
[[services]]
name = "app"
target = "t"
sync = [{{ src = "src", dest = "/app/src" }}]
"""

KUBE = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.t]
kind = "kubernetes"
namespace = "dev"
selector = "app=web"
[[services]]
name = "app"
target = "t"
sync = [{ src = "src", dest = "/app/src" }]
"""


def seed(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a")
    return src


def workers(engine):  # noqa: ANN001, ANN201
    return list(engine.targets["t"].workers.values())


def exec_count(container) -> int:  # noqa: ANN001
    container.reload()
    return len(container.attrs.get("ExecIDs") or [])


def slowed(transport: Transport) -> Transport:
    """The transport with every apply's payload stretched (10 ms per 512 KiB frame), so a fault
    can land mid-batch."""

    def slow(tar: Iterator[bytes]) -> Iterator[bytes]:
        for piece in rechunk(tar, 1 << 19):
            time.sleep(0.01)
            yield piece

    recording = RecordingTransport(transport)
    recording.payload = slow
    return recording


def big_batch(src: Path, n: int = 40) -> None:
    (src / "big").mkdir(exist_ok=True)
    for i in range(n):
        (src / "big" / f"blob{i}").write_bytes(os.urandom(256 * 1024))


async def test_docker_batches_ride_one_session(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    src = seed(tmp_path)
    async with running(write_config(tmp_path, DOCKER.format(name=c.name))) as engine:
        [w] = workers(engine)
        assert engine.targets["t"].transport.mode(w.ref) == "session"
        before = exec_count(c)
        for i in range(10):
            (src / f"edit{i}.txt").write_text(str(i))
            await settle(engine, src)
        assert exec_count(c) == before  # ten batches, no new exec
        assert not diff_trees(local_tree(src), container_tree(c, "/app/src"))
        assert engine.status()["targets"]["t"]["containers"][c.name]["channel"] == "session"

    def session_processes() -> list[str]:
        ps = c.exec_run(["ps", "-o", "pid,args"]).output.decode()
        return [line for line in ps.splitlines() if "syncd-session" in line]

    # the daemon is gone: the session saw its stdin close and ended, leaving nothing behind
    await wait_until(lambda: not session_processes(), 10, "the session process to end")


async def test_no_dd_falls_back_to_one_exec_per_batch(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container("nodd")
    src = seed(tmp_path)
    with capture_logs() as logs:
        async with running(write_config(tmp_path, DOCKER.format(name=c.name))) as engine:
            [w] = workers(engine)
            mode = engine.targets["t"].transport.mode(w.ref)
            assert mode.startswith("per-exec") and "dd" in mode
            storm(src, random.Random(3), ops=40)
            await settle(engine, src)
            assert not diff_trees(local_tree(src), container_tree(c, "/app/src"))
    said = [e for e in logs if e["event"] == "no session; one exec per batch"]
    assert len(said) == 1 and "dd" in said[0]["reason"]  # said once, not per batch


async def _fault_mid_batch(engine, src: Path, fault) -> None:  # noqa: ANN001
    """Start a large batch, inject `fault` while it is on the wire, then converge."""
    [w] = workers(engine)
    big_batch(src)
    await wait_until(lambda: w.state == "pushing", 20, "the big batch to start")
    await anyio.to_thread.run_sync(fault)
    await wait_until(lambda: bool(workers(engine)), 30, "the container to be back")
    await settle(engine, src, timeout=60)


async def test_session_process_killed_mid_batch(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    src = seed(tmp_path)
    async with running(write_config(tmp_path, DOCKER.format(name=c.name)), wrap=slowed) as engine:
        def kill_session() -> None:
            ps = c.exec_run(["ps", "-o", "pid,args"]).output.decode()
            pids = [line.split()[0] for line in ps.splitlines() if "syncd-session" in line and "ps -o" not in line]
            assert pids, ps
            c.exec_run(["kill", "-9", *pids])

        await _fault_mid_batch(engine, src, kill_session)
        assert not diff_trees(local_tree(src), container_tree(c, "/app/src"))
        assert any("session lost" in e for r in engine.trace.records for e in r["errors"])  # the fault happened


async def test_container_restarted_mid_batch(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    src = seed(tmp_path)
    async with running(write_config(tmp_path, DOCKER.format(name=c.name)), wrap=slowed) as engine:
        await _fault_mid_batch(engine, src, lambda: c.restart(timeout=1))
        assert not diff_trees(local_tree(src), container_tree(c, "/app/src"))
        assert any(r["errors"] for r in engine.trace.records)  # the restart did cut a batch


@pytest.mark.parametrize("protocol", ["v5", "v4"])
async def test_kube_sessions_and_dropped_websocket(cluster, tmp_path: Path, protocol: str) -> None:  # noqa: ANN001
    if protocol == "v4":
        cluster.only_v4()
    cluster.create_pod("web-0", {"app": "web"})
    src = seed(tmp_path)
    async with running(write_config(tmp_path, KUBE), wrap=slowed) as engine:
        transport = engine.targets["t"].transport.inner
        [w] = workers(engine)
        assert transport.mode(w.ref) == "session"
        storm(src, random.Random(5), ops=40)
        await settle(engine, src, timeout=60)
        assert not diff_trees(local_tree(src), cluster.tree("web-0", "/app/src"))
        assert transport.protocols["web-0"] == f"{protocol}.channel.k8s.io"

        def drop_websocket() -> None:
            import socket

            session = transport.session_of(w.ref)
            session.channel.ws.sock.sock.shutdown(socket.SHUT_RDWR)  # the network goes away

        await _fault_mid_batch(engine, src, drop_websocket)
        assert not diff_trees(local_tree(src), cluster.tree("web-0", "/app/src"))
        assert any("session lost" in e for r in engine.trace.records for e in r["errors"]), [r["errors"] for r in engine.trace.records]


async def test_quick_reconcile_hashes_only_what_it_must(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    src = seed(tmp_path)
    for i in range(50):
        (src / "d" / f"f{i}.txt").write_text(f"content {i}")
    async with running(write_config(tmp_path, DOCKER.format(name=c.name))) as engine:
        [w] = workers(engine)
        # Behind syncd's back: same size, other bytes; and same bytes with a new mtime.
        c.exec_run(["sh", "-c", "printf b > /app/src/d/a.txt; touch -d '2001-01-01 00:00' /app/src/d/f1.txt /app/src/d/f2.txt"])
        before = len(engine.trace.records)
        w.request_reconcile()
        await wait_until(lambda: len(engine.trace.records) > before and engine.idle(), 30, "the reconcile")
        record = engine.trace.records[-1]
        manifest = next(s for s in record["spans"] if s["name"].startswith("manifest:"))
        push = next(s for s in record["spans"] if s["name"].startswith("push:"))
        assert manifest["detail"]["hashed"] == 3  # only the three files whose mtime differs
        assert push["detail"]["files"] == 1  # only a.txt really differed
        assert not diff_trees(local_tree(src), container_tree(c, "/app/src"))


async def test_same_second_same_size_edit_is_not_lost(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    """The quick listing cannot tell two versions apart that share size and second; the
    record of what syncd sent can. A fresh engine (as `syncd sync` would) loads it."""
    from syncd.engine import Engine
    from syncd.transports import make_transports

    c = make_container()
    src = seed(tmp_path)
    cfg = write_config(tmp_path, DOCKER.format(name=c.name))
    f = src / "d" / "a.txt"
    for _ in range(20):  # find a moment early enough in a second to write twice within it
        f.write_text("version-1")
        if time.time() % 1 < 0.5:
            break
        time.sleep(0.1)
    first = Engine(cfg, make_transports(cfg))
    assert await first.sync_once()
    f.write_text("version-2")  # same size, same second as the copy in the container
    in_container = int(c.exec_run(["stat", "-c", "%Y", "/app/src/d/a.txt"]).output)
    assert int(f.stat().st_mtime) == in_container  # the case a quick check alone gets wrong
    second = Engine(cfg, make_transports(cfg))
    assert await second.sync_once()
    assert container_tree(c, "/app/src")["d/a.txt"] == local_tree(src)["d/a.txt"]
    for e in (first, second):
        for t in e.targets.values():
            await t.transport.close()


async def test_a_record_still_true_is_kept_not_rewritten(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    """A reconcile that sends nothing and whose record proved every file leaves the record as
    it is (only its time moves: it stays among those written last), with `syncd sync`'s
    settings and a daemon's; one that sent a file writes the new record, which the next engine
    trusts."""
    from syncd.engine import Engine
    from syncd.known import container_key
    from syncd.settings import DEFAULT_SETTINGS, ONE_SHOT_SETTINGS
    from syncd.transports import make_transports

    c = make_container()
    src = seed(tmp_path)
    (src / "b.txt").write_text("b")
    cfg = write_config(tmp_path, DOCKER.format(name=c.name))

    async def sync(settings: Settings = ONE_SHOT_SETTINGS) -> Engine:
        engine = Engine(cfg, make_transports(cfg), settings=settings)
        try:
            assert await engine.sync_once()
        finally:
            await engine.close()
        return engine

    engine = await sync()
    (ref,) = await engine.targets["t"].transport.containers()
    path = engine.known._path(container_key("t", ref.id))
    record = engine.known.load(container_key("t", ref.id))
    assert set(record) == {"/app/src/d/a.txt", "/app/src/b.txt"}
    os.utime(path, (1_000_000, 1_000_000))
    before = (path.read_bytes(), path.stat().st_ino)
    await sync()  # nothing differs
    assert (path.read_bytes(), path.stat().st_ino) == before
    assert path.stat().st_mtime > time.time() - 60
    os.utime(path, (1_000_000, 1_000_000))
    await sync(DEFAULT_SETTINGS)  # a daemon's: the same
    assert (path.read_bytes(), path.stat().st_ino) == before
    assert path.stat().st_mtime > time.time() - 60
    (src / "b.txt").write_text("b2")
    await sync()
    after = engine.known.load(container_key("t", ref.id))
    assert after["/app/src/b.txt"] != record["/app/src/b.txt"] and after["/app/src/d/a.txt"] == record["/app/src/d/a.txt"]
    assert container_tree(c, "/app/src") == local_tree(src)
