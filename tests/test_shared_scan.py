"""Replicas reconciling at the same moment share one local scan (syncd/reconcile.py SharedScans);
a scan that has begun is never joined."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import anyio
import pytest

import syncd.reconcile as reconcile
from syncd.scan import HashCache

pytestmark = pytest.mark.anyio


async def test_asks_at_the_same_moment_share_a_scan_later_ones_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[int] = []
    release = threading.Event()

    def fake_desired_state(target, services, hashes, errors, fp=None):  # noqa: ANN001, ANN202
        scans.append(1)
        n = len(scans)
        release.wait(10)
        errors.append(("/src/x", "denied"))
        return {"/app/a": n}

    monkeypatch.setattr(reconcile, "desired_state", fake_desired_state)
    shared = reconcile.SharedScans()
    target = SimpleNamespace(name="web")
    got: list[reconcile.Scanned] = []

    async def ask() -> None:
        got.append(await shared.desired(target, None, HashCache()))  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        for _ in range(3):  # three replicas, in one moment
            tg.start_soon(ask)
        while not scans:
            await anyio.sleep(0.01)
        tg.start_soon(ask)  # asked while the scan runs: it must not join the one already begun
        await anyio.sleep(0.05)
        release.set()
    assert len(scans) == 2
    assert sorted(s.desired["/app/a"] for s in got) == [1, 1, 1, 2]
    assert all(s.errors == [("/src/x", "denied")] for s in got)
    # other services of the same target: a scan of its own
    await shared.desired(target, {"api"}, HashCache())  # type: ignore[arg-type]
    assert len(scans) == 3


def test_the_hash_cache_survives_a_restart_and_a_rewrite_is_never_taken_for_the_old_content(tmp_path) -> None:  # noqa: ANN001
    f = tmp_path / "tree" / "a.txt"
    f.parent.mkdir()
    f.write_text("one\n")
    first = HashCache()
    digest = first.digest(str(f), f.stat())
    assert first.fresh == 1
    (tmp_path / "tree" / "gone.txt").write_text("x")
    first.digest(str(tmp_path / "tree" / "gone.txt"), (tmp_path / "tree" / "gone.txt").stat())
    (tmp_path / "tree" / "gone.txt").unlink()
    sub = tmp_path / "tree" / "sub"
    sub.mkdir()
    (sub / "b.txt").write_text("b")
    first.digest(str(sub / "b.txt"), (sub / "b.txt").stat())
    (sub / "b.txt").unlink()
    sub.rmdir()  # (a file whose directory went too)
    saved = tmp_path / ".syncd" / "hashes"
    first.save(saved)
    assert first.fresh == 0

    again = HashCache.load(saved)
    assert list(again.snapshot()) == [str(f)]  # the deleted files left the cache
    assert again.digest(str(f), f.stat()) == digest and again.fresh == 0  # not hashed again
    st = f.stat()
    f.write_text("two\n")  # same size; even with the old mtime put back, ctime moved
    import os

    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again.digest(str(f), f.stat()) != digest and again.fresh == 1

    saved.write_bytes(b"garbage")
    assert HashCache.load(saved).snapshot() == {}  # unreadable: an empty cache, hashed again
    saved.write_bytes(b"syncd-hashes 1\n" + b"\x00\x01")
    assert HashCache.load(saved).snapshot() == {}


def test_an_earlier_versions_hash_cache_is_read_and_nothing_is_hashed_again(tmp_path) -> None:  # noqa: ANN001
    import hashlib
    import marshal

    f = tmp_path / "a.txt"
    f.write_text("one\n")
    st = f.stat()
    digest = hashlib.sha1(b"one\n").hexdigest()
    key = HashCache._KEY.pack(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    saved = tmp_path / "hashes"
    # version 1: values were (packed numbers, hex digest); a broken digest is left out
    saved.write_bytes(b"syncd-hashes 1\n" + marshal.dumps({str(f): (key, digest), str(tmp_path / "b"): (key, "xyz")}))
    cache = HashCache.load(saved)
    assert len(cache) == 1 and cache.fresh == 1  # to be saved in the new form at the next save
    assert cache.digest(str(f), st) == digest and cache.fresh == 1  # (a hit: nothing hashed)
    cache.save(saved)
    assert saved.read_bytes().startswith(b"syncd-hashes 2\n")
    again = HashCache.load(saved)
    assert again.digest(str(f), f.stat()) == digest and again.fresh == 0
