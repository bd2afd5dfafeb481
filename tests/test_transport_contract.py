"""One set of checks over every transport (syncd/transports/base.py's contract): local, Docker,
Kubernetes (the API-server fixture) and the in-memory fake tests use (syncd.testing). What one
kind does, all do: a batch applied is what the container then lists, symlinks planted in the way
are removed and reported (never written through), capabilities a kind lacks answer
`Unsupported`, a container that is gone is a `TransportError`."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from syncd.config import DockerTarget, KubernetesTarget
from syncd.core.manifest import Listing
from syncd.model import Entry, Kind
from syncd.testing import MemoryTransport, RecordingTransport
from syncd.transports.base import ApplyRequest, ContainerRef, Transport, TransportError, Unsupported

pytestmark = pytest.mark.anyio


@dataclass
class Subject:
    transport: Transport
    ref: ContainerRef
    plant_symlink: Callable[[str, str], None]  # (container path, target) behind syncd's back
    exists: Callable[[str], bool]  # container path
    can_restart: bool = False
    pipelines: bool = False
    change: Callable[[], None] | None = None  # a lifecycle change discovery must hear of (with a change feed)
    fingerprints: bool = True  # False: a directory on this host, always compared (no fingerprint)


def _tar(files: dict[str, bytes], dirs: tuple[str, ...] = (), links: dict[str, str] | None = None,
         execs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o755 if name in execs else 0o644, 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
    return buf.getvalue()


@pytest.fixture(params=["local", "docker", "kubernetes", "memory"])
async def subject(request, tmp_path: Path) -> AsyncIterator[Subject]:  # noqa: ANN001
    kind = request.param
    if kind == "local":
        from syncd.transports.local import LocalTransport

        base = tmp_path / "box"
        t: Transport = LocalTransport("t", base)
        [ref] = await t.containers()
        (tmp_path / "outside").mkdir()

        def plant(path: str, target: str) -> None:
            dst = base / path.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(tmp_path / "outside", dst)

        yield Subject(t, ref, plant, lambda p: os.path.lexists(base / p.lstrip("/")), fingerprints=False)
    elif kind == "docker":
        make = request.getfixturevalue("make_container")
        c = make()
        from syncd.transports.docker import DockerTransport

        t = DockerTransport("t", DockerTarget(kind="docker", container=c.name))
        [ref] = await t.containers()

        def plant(path: str, target: str) -> None:
            c.exec_run(["sh", "-c", f"mkdir -p {target} $(dirname {path}) && ln -s {target} {path}"])

        yield Subject(t, ref, plant, lambda p: c.exec_run(["test", "-e", p]).exit_code == 0 or
                      c.exec_run(["test", "-L", p]).exit_code == 0, can_restart=True, pipelines=True,
                      change=lambda: c.restart(timeout=0))
        await t.close()
    elif kind == "kubernetes":
        cluster = request.getfixturevalue("cluster")
        cluster.create_pod("web-0", {"app": "web"})
        from syncd.transports.kube import KubeTransport

        t = KubeTransport("t", KubernetesTarget(kind="kubernetes", namespace="dev", selector="app=web"))
        [ref] = await t.containers()

        async def run(script: str) -> int:
            return (await t.run(ref, ["sh", "-c", script])).exit

        cmds: list[str] = []

        def plant(path: str, target: str) -> None:
            cmds.append(f"mkdir -p {target} $(dirname {path}) && ln -s {target} {path}")

        subject = Subject(t, ref, plant, lambda p: True, pipelines=True,
                          change=lambda: cluster.create_pod("web-1", {"app": "web"}))
        subject.run = run  # type: ignore[attr-defined]
        subject.pending = cmds  # type: ignore[attr-defined]
        yield subject
        await t.close()
    else:
        memory = MemoryTransport("t")
        t = RecordingTransport(memory)
        [ref] = await t.containers()
        c = memory.container(ref)

        def plant(path: str, target: str) -> None:
            c.mkdirs(os.path.dirname(path))
            c.links[path] = target

        yield Subject(t, ref, plant, lambda p: c.entry(p) is not None, can_restart=True)


async def _flush(s: Subject) -> None:
    """Kubernetes plants by running commands in the pod (the test runs in the event loop)."""
    for cmd in getattr(s, "pending", []):
        assert await s.run(cmd) == 0  # type: ignore[attr-defined]
    getattr(s, "pending", []).clear()


async def test_a_batch_applied_is_what_the_container_lists(subject: Subject) -> None:
    t, ref = subject.transport, subject.ref
    data = {"src/a.txt": b"alpha\n", "src/sub/b.bin": bytes(range(256)) * 10, "src/run.sh": b"#!/bin/sh\n"}
    tar = _tar(data, dirs=("src", "src/sub"), links={"src/link": "a.txt"}, execs=("src/run.sh",))
    result = await t.apply(ref, ApplyRequest("/app", [], ["src", "src/sub", *data, "src/link"], iter([tar])))
    assert result.bytes_sent >= len(tar) and result.removed_symlinks == ()
    listed = await t.manifest(ref, ["/app/src"])
    # a quick listing carries size and mtime instead of a digest: `hash` answers for those
    undecided = [p for p, e in listed.items() if e.kind is Kind.FILE and not e.digest]
    digests = await t.hash(ref, undecided) if undecided else {}
    files = {p: (e.digest or digests.get(p), e.exec) for p, e in listed.items() if e.kind is Kind.FILE}
    assert files == {f"/app/{n}": (hashlib.sha1(b).hexdigest(), n == "src/run.sh") for n, b in data.items()}
    assert listed["/app/src/sub"] == Entry(Kind.DIR) and listed["/app/src/link"] == Entry(Kind.LINK, link="a.txt")

    # deletes first, then the new content; a file replaced by a directory and back
    tar2 = _tar({"src/sub": b"now a file\n"})
    await t.apply(ref, ApplyRequest("/app", ["src/a.txt", "src/sub"], ["src/sub"], iter([tar2])))
    listed = await t.manifest(ref, ["/app/src"])
    assert "/app/src/a.txt" not in listed and listed["/app/src/sub"].kind is Kind.FILE
    assert "/app/src/sub/b.bin" not in listed


async def test_a_symlink_planted_in_the_way_is_removed_and_reported(subject: Subject) -> None:
    t, ref = subject.transport, subject.ref
    subject.plant_symlink("/app/src/d", "/outside-dir")
    await _flush(subject)
    tar = _tar({"src/d/x.txt": b"x\n"}, dirs=("src/d",))
    result = await t.apply(ref, ApplyRequest("/app", [], ["src/d", "src/d/x.txt"], iter([tar])))
    assert result.removed_symlinks == ("src/d",)
    listed = await t.manifest(ref, ["/app/src"])
    assert listed["/app/src/d"].kind is Kind.DIR and "/app/src/d/x.txt" in listed


async def test_capabilities_answer_or_say_unsupported(subject: Subject) -> None:
    t, ref = subject.transport, subject.ref
    assert isinstance(t.mode(ref), str) and t.mode(ref)
    tar = _tar({"p.txt": b"p\n"})
    try:
        pending = await t.apply_start(ref, ApplyRequest("/app", [], ["p.txt"], iter([tar])))
    except Unsupported:
        assert not subject.pipelines
    else:
        assert subject.pipelines
        assert (await pending()).bytes_sent >= len(tar)
    if subject.can_restart:
        await t.restart(ref)
        [again] = await t.containers()
        assert again.id == ref.id and again.generation != ref.generation
    else:
        with pytest.raises(Unsupported):
            await t.restart(ref)
    if not t.has_change_feed:
        with pytest.raises(Unsupported):
            await t.wait_changed()
    step = await t.run_step(ref, ["true"])
    assert step.exit == 0


async def test_a_change_feed_wakes_discovery_when_containers_change(subject: Subject) -> None:
    """With a change feed, discovery polls only as a safety net (every 30 s): the feed itself must
    report a container that restarts or a pod that comes, or they would go unseen that long."""
    t = subject.transport
    if not t.has_change_feed:
        assert subject.change is None
        return
    assert subject.change is not None
    while True:  # drain what the feed says when it opens (a pod watch lists what exists)
        with anyio.move_on_after(1.0) as quiet:
            await t.wait_changed()
        if quiet.cancelled_caught:
            break
    woke = anyio.Event()

    async def wait() -> None:
        await t.wait_changed()
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.to_thread.run_sync(subject.change)
        with anyio.fail_after(20):  # generous on a loaded machine; the poll would take 30 s
            await woke.wait()
    assert len(await t.containers()) >= 1


async def test_a_container_that_is_gone_is_a_transport_error(subject: Subject) -> None:
    t, ref = subject.transport, subject.ref
    gone = ContainerRef(ref.target, "no-such-" + ref.id.replace("/", "-"), "no-such", "g0")
    with pytest.raises(TransportError):
        await t.manifest(gone, ["/app"])


async def test_a_fingerprint_is_its_listings_until_the_tree_changes(subject: Subject) -> None:
    """`fingerprint` is what a `manifest` would carry now (syncd/converged.py): equal while the
    tree stands still, different once anything below the destination changed. A transport
    that gives none ("": the local directory) carries none on its listings either."""
    t, ref = subject.transport, subject.ref
    await t.apply(ref, ApplyRequest("/app", [], ["src", "src/a.txt"], iter([_tar({"src/a.txt": b"a\n"}, dirs=("src",))])))
    listed = await t.manifest(ref, ["/app/src"])
    carried = listed.fingerprint if isinstance(listed, Listing) else ""
    now = await t.fingerprint(ref, ["/app/src"])
    assert now == carried
    assert bool(now) == subject.fingerprints
    if not now:
        return
    assert await t.fingerprint(ref, ["/app/src"]) == now  # (asking changes nothing)
    await t.apply(ref, ApplyRequest("/app", [], ["src/b.txt"], iter([_tar({"src/b.txt": b"b\n"})])))
    moved = await t.fingerprint(ref, ["/app/src"])
    assert moved and moved != now
    listed = await t.manifest(ref, ["/app/src"])
    assert isinstance(listed, Listing) and listed.fingerprint == moved
