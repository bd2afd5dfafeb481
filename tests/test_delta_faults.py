"""Block deltas end to end through the real engine and Docker (session path), and what goes
wrong with them: each fault is a row in docs/RELIABILITY.md. In every case the container ends
with exactly the local tree (compared through Docker's archive API, not syncd's code), nothing
torn, nothing lost; a refused delta becomes a full send said once in the log."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from engine_harness import running, settle, trace_records, wait_until, write_config
from rich.console import Console
from test_delta import elf_like
from test_faults import lost
from trees import container_tree, local_tree

from syncd.core.delta import THRESHOLD
from syncd.engine import Engine
from syncd.report import cmd_trace, transfers
from syncd.testing import RecordingTransport

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

CONFIG = """
[daemon]
debounce_ms = 20
[targets.web]
kind = "docker"
container = "{name}"
delta = "always"
compress = "always"
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
"""
SIZE = 3 * THRESHOLD


def pushes(engine: Engine, since: int) -> list[dict]:
    """The push spans' details of the records since `since`."""
    return [s.get("detail", {}) for r in engine.trace.records[since:] for s in r["spans"] if s["name"].startswith("push:")]


async def based(engine: Engine, path: Path) -> None:
    """Wait until the file's current content is kept as a base (kept after the push, off its path)."""
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    assert engine.pusher.large is not None
    await wait_until(lambda: engine.pusher.large.cache.has(digest), what="the base to be kept")  # type: ignore[union-attr]


def edited(data: bytes, at: int, patch: bytes) -> bytes:
    return data[:at] + patch + data[at + len(patch):]


def converged(container, src: Path) -> list[str]:  # noqa: ANN001
    return lost(local_tree(src), container_tree(container, "/app/src"))


async def start(tmp_path: Path, make_container) -> tuple:  # noqa: ANN001
    container = make_container()
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(elf_like(SIZE))
    (src / "small.txt").write_text("hello\n")
    return container, src, big, write_config(tmp_path, CONFIG.format(name=container.name))


def recording(into: list[RecordingTransport]):  # noqa: ANN201
    """A `running(wrap=)` that puts the transport in a RecordingTransport, kept in `into`."""
    def wrap(t):  # noqa: ANN001, ANN202
        into.append(RecordingTransport(t))
        return into[-1]

    return wrap


async def test_a_const_edit_and_an_insertion_travel_as_small_deltas(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container, src, big, cfg = await start(tmp_path, make_container)
    async with running(cfg) as engine:
        await based(engine, big)
        n = len(engine.trace.records)
        big.write_bytes(edited(big.read_bytes(), 1_000_000, b"CONST=2"))
        await settle(engine, src)
        [delta] = [p for p in pushes(engine, n) if p.get("method") == "delta"]
        assert delta["delta"]["literal"] <= 2 * 4096 and delta["after"] < SIZE // 100, delta
        assert delta["before"] >= SIZE and delta["delta"]["copied"] >= SIZE - 2 * 4096
        await based(engine, big)
        n = len(engine.trace.records)
        data = big.read_bytes()
        big.write_bytes(data[:SIZE // 2] + os.urandom(10_000) + data[SIZE // 2:])
        await settle(engine, src)
        [shifted] = [p for p in pushes(engine, n) if p.get("method") == "delta"]
        assert shifted["delta"]["literal"] <= 10_000 + 2 * 4096, shifted
        assert not converged(container, src)
        listing = container.exec_run(["ls", "-a", "/app/src"]).output.decode()
        assert ".syncd-patch" not in listing
        [shown] = engine.targets["web"].status().values()  # what the status page shows
        assert shown["content_sent"] > 2 * SIZE and shown["bytes_sent"] < shown["content_sent"] * 0.6
    # `syncd trace` shows how the pushes travelled, with the ratio
    [row] = [r for r in transfers(trace_records(cfg.resolve(cfg.daemon.trace))) if r["method"] == "delta"]
    assert row["pushes"] == 2 and row["ratio"] < 0.01 and row["copied"] > 2 * SIZE - 20_000, row
    out = io.StringIO()
    assert cmd_trace(cfg.resolve(cfg.daemon.trace), Console(file=out, width=200), None, None, 1, None, False) == 0
    assert "how pushes travelled" in out.getvalue() and "delta" in out.getvalue()


def _flip_a_literal(stream: Iterator[bytes]) -> Iterator[bytes]:
    flipped = False
    for chunk in stream:
        if not flipped and chunk[:2] in (b"L ", b"Z "):
            head, _, body = chunk.partition(b"\n")
            chunk, flipped = head + b"\n" + bytes([body[0] ^ 0xFF]) + body[1:], True
        yield chunk


FAULTS = {
    "base-changed": "the container's copy changed behind syncd's back (base hash mismatch)",
    "base-removed": "the container's copy removed before a delta",
    "corrupted": "a delta corrupted in transit (one literal byte flipped)",
    "cache-deleted": "the local base cache directory deleted",
    "cache-full": "the local base cache full (limit below the file's size)",
    "rewritten": "the file rewritten while its delta is encoded and sent",
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.reliability("block delta fault", kind="fault")
async def test_a_failed_delta_becomes_a_full_send(tmp_path: Path, make_container, reliability, fault: str) -> None:  # noqa: ANN001
    reliability.name = f"block delta: {FAULTS[fault]}"
    container, src, big, cfg = await start(tmp_path, make_container)
    recorder: list[RecordingTransport] = []
    async with running(cfg, wrap=recording(recorder)) as engine:
        await based(engine, big)
        large = engine.pusher.large
        assert large is not None
        n = len(engine.trace.records)
        if fault == "base-changed":
            container.exec_run(["sh", "-c", "printf XYZ | dd of=/app/src/big.bin bs=1 seek=5 conv=notrunc"])
        elif fault == "base-removed":
            container.exec_run(["rm", "-f", "/app/src/big.bin"])
        elif fault == "corrupted":
            recorder[0].patch_payload = _flip_a_literal
        elif fault == "cache-deleted":
            shutil.rmtree(cfg.state_dir / "bases")
        elif fault == "cache-full":
            large.cache.limit = THRESHOLD
            for f in (cfg.state_dir / "bases").iterdir():
                f.unlink()
        elif fault == "rewritten":
            final = edited(big.read_bytes(), 2_000_000, b"FINAL")

            async def rewrite(*_args: object) -> None:
                recorder[0].before("patch", None)
                await anyio.to_thread.run_sync(big.write_bytes, final)

            recorder[0].before("patch", rewrite)
        big.write_bytes(edited(big.read_bytes(), 1_000_000, b"EDIT"))
        reliability.tried(1)
        await settle(engine, src, timeout=60)
        details = pushes(engine, n)
        await wait_until(lambda: not converged(container, src), timeout=30, what="the trees to match")
        if fault == "rewritten":
            assert big.read_bytes() == final
        methods = [d.get("method") for d in details]
        refused = sum(d.get("delta", {}).get("refused", 0) for d in details)
    reliability.lost = converged(container, src)
    reliability.outcome = (f"pushes {methods}, {refused} delta(s) refused by the container and sent whole; "
                           f"converged, no .syncd-patch file left")
    if fault in ("base-changed", "base-removed", "corrupted"):
        assert refused == 1 and "gzip" in methods, details  # sent whole (compressed: compress = "always")
    elif fault in ("cache-deleted", "cache-full"):
        assert "delta" not in methods and "gzip" in methods, details
    else:
        assert "delta" in methods, details  # the version read was sent as a delta; the rewrite came after
    assert ".syncd-patch" not in container.exec_run(["ls", "-a", "/app/src"]).output.decode()
    assert not reliability.lost, reliability.lost


@pytest.mark.reliability("block delta: the link stalls mid-delta, then drops", kind="fault")
async def test_a_link_stalling_mid_delta_converges(tmp_path: Path, make_container, reliability,  # noqa: ANN001
                                                    monkeypatch) -> None:  # noqa: ANN001
    import linksim

    link = linksim.Link.from_profile("home", "/var/run/docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{link.port}")
    try:
        container, src, big, cfg = await start(tmp_path, make_container)
        recorder: list[RecordingTransport] = []
        async with running(cfg, wrap=recording(recorder)) as engine:
            await based(engine, big)

            def stall_then_drop() -> None:
                time.sleep(0.05)
                link.stall()
                time.sleep(3)
                link.drop_all()
                link.resume()

            async def on_patch(*_args: object) -> None:
                recorder[0].before("patch", None)
                threading.Thread(target=stall_then_drop, daemon=True).start()

            recorder[0].before("patch", on_patch)
            n = len(engine.trace.records)
            big.write_bytes(edited(big.read_bytes(), 1_000_000, os.urandom(200_000)))
            reliability.tried(1)
            await wait_until(lambda: recorder[0].calls_to("patch") >= 1, timeout=30, what="a delta to start")
            await settle(engine, src, timeout=120)
            errors = [e for r in engine.trace.records[n:] for e in r["errors"]]
        reliability.lost = converged(container, src)
    finally:
        link.close()
    reliability.outcome = (f"the session was lost mid-delta ({len(errors)} batch error(s): {errors[:1]}); the worker "
                           "reconciled on a new session; converged")
    assert errors, "the drop should have failed the delta's batch"
    assert not reliability.lost, reliability.lost
