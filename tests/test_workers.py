"""The engine over the in-memory transport (syncd.testing): failures scripted exactly where they
should land, intervals shrunk through Settings instead of slept through. Fast: no Docker, no
container, no directory standing in for one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine_harness import running, settle, wait_until, write_config
from storms import storm
from syncd.core.worker import WorkerState
from syncd.settings import Settings, WorkerSettings
from syncd.testing import MemoryTransport, RecordingTransport
from syncd.transports.base import TransportError
from trees import diff_trees, local_tree

pytestmark = pytest.mark.anyio

CONFIG = """
[daemon]
debounce_ms = 10
max_batch_wait_ms = 300
trace = ".syncd/trace.jsonl"
[targets.t]
kind = "local"
path = "unused"
[[services]]
name = "app"
target = "t"
sync = [{ src = "src", dest = "/app/src" }]
"""

FAST = Settings(workers=WorkerSettings(backoff_start=0.02, backoff_max=0.2, permanent_retry=0.3))


def memory_tree(memory: MemoryTransport, top: str = "/app/src") -> dict:
    """A MemoryContainer's tree in tests/trees.py's form (path relative to `top`)."""
    [c] = memory.containers_.values()
    out: dict = {}
    for path, entry in c.tree(top).items():
        rel = path[len(top) + 1:]
        if not rel:
            continue
        kind = entry.kind.value
        out[rel] = ("f", entry.digest, entry.exec) if kind == "f" else ("l", entry.link) if kind == "l" else ("d",)
    return out


def setup(tmp_path: Path) -> tuple[Path, MemoryTransport, RecordingTransport]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a\n")
    memory = MemoryTransport("t")
    return src, memory, RecordingTransport(memory)


async def test_a_storm_converges_in_memory(tmp_path: Path) -> None:
    src, memory, recording = setup(tmp_path)
    async with running(write_config(tmp_path, CONFIG), transports={"t": recording}, settings=FAST) as engine:
        storm(src, random.Random(7), ops=120)
        await settle(engine, src)
        assert diff_trees(local_tree(src), memory_tree(memory)) == []
        assert recording.calls_to("apply") >= 2 and recording.calls_to("manifest") == 1  # reconciled once, then pushed


async def test_a_failed_push_backs_off_reconciles_and_converges(tmp_path: Path) -> None:
    src, memory, recording = setup(tmp_path)
    async with running(write_config(tmp_path, CONFIG), transports={"t": recording}, settings=FAST) as engine:
        [worker] = engine.targets["t"].workers.values()
        recording.fail_next("apply", TransportError("disk full", "free some space"), times=3)
        (src / "d" / "b.txt").write_text("b\n")
        await wait_until(lambda: worker.failures >= 1, what="the first failure")
        assert worker.last_error.startswith("disk full")
        await settle(engine, src)
        assert diff_trees(local_tree(src), memory_tree(memory)) == []
        failed = [c for c in recording.calls if c.method == "apply" and c.outcome != "ok"]
        assert len(failed) == 3 and recording.calls_to("manifest") >= 2  # each failure: compare again
        assert worker.failures == 0 and worker.state is WorkerState.IDLE


async def test_a_permanent_error_waits_for_a_fix_and_says_so(tmp_path: Path) -> None:
    src, memory, recording = setup(tmp_path)
    async with running(write_config(tmp_path, CONFIG), transports={"t": recording}, settings=FAST) as engine:
        [worker] = engine.targets["t"].workers.values()
        recording.fail_next("apply", TransportError("no 'tar' in the container", "add tar", permanent=True), times=2)
        (src / "d" / "c.txt").write_text("c\n")
        await wait_until(lambda: worker.state is WorkerState.WAITING_FOR_FIX, what="waiting for a fix")
        status = engine.status()["targets"]["t"]["containers"]["t-0"]
        assert status["state"] == "waiting for a fix (retrying every 0s)" and "no 'tar'" in status["error"]
        await settle(engine, src)  # the user "fixed" it: the third try goes through
        assert diff_trees(local_tree(src), memory_tree(memory)) == []


async def test_a_symlink_removed_in_the_way_makes_the_worker_compare_again(tmp_path: Path) -> None:
    src, memory, recording = setup(tmp_path)
    async with running(write_config(tmp_path, CONFIG), transports={"t": recording}, settings=FAST) as engine:
        [c] = memory.containers_.values()
        c.remove("/app/src/d")
        c.links["/app/src/d"] = "/etc"  # planted behind syncd's back
        manifests = recording.calls_to("manifest")
        (src / "d" / "e.txt").write_text("e\n")
        await settle(engine, src)
        assert recording.calls_to("manifest") > manifests  # the removal was reported: a reconcile followed
        assert diff_trees(local_tree(src), memory_tree(memory)) == []


async def test_a_target_that_goes_away_is_asked_again_and_reconciled(tmp_path: Path) -> None:
    src, memory, recording = setup(tmp_path)
    fast = Settings(workers=FAST.workers, discovery=type(FAST.discovery)(interval=0.05, unavailable_retry_max=0.1))
    async with running(write_config(tmp_path, CONFIG), transports={"t": recording}, settings=fast) as engine:
        memory.available = False
        await wait_until(lambda: engine.targets["t"].error != "", what="the target unavailable")
        (src / "d" / "while-away.txt").write_text("kept\n")
        await wait_until(lambda: any("not synced" in e for r in engine.trace.records for e in r["errors"]),
                         what="the batch to find no container (the change is kept)")
        memory.available = True
        await settle(engine, src)
        assert diff_trees(local_tree(src), memory_tree(memory)) == []


async def test_a_change_is_packed_once_for_all_replicas(tmp_path: Path) -> None:
    """Three replicas: each batch is packed by one of them and its bytes reused by the others;
    every replica ends up equal to the local tree."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a\n")
    memory = MemoryTransport("t", containers=3)
    async with running(write_config(tmp_path, CONFIG), transports={"t": memory}, settings=FAST) as engine:
        await settle(engine, src)
        for i in range(30):
            (src / "d" / f"n{i}.txt").write_text(f"{i}\n" * (i + 1))
        await settle(engine, src)
        (src / "d" / "a.txt").write_text("edited\n")
        await settle(engine, src)
    for c in memory.containers_.values():
        tree = {path[len("/app/src") + 1:]: e for path, e in c.tree("/app/src").items() if path != "/app/src"}
        assert {p: (e.kind.value, e.digest) for p, e in tree.items() if e.kind.value == "f"} == \
            {p: ("f", v[1]) for p, v in local_tree(src).items() if v[0] == "f"}
    packs = [s["detail"] for r in engine.trace.records if not r["reconcile"] for s in r["spans"] if s["name"] == "pack"]
    assert packs and len(packs) % 3 == 0, packs
    shared = [p for p in packs if p.get("shared")]
    assert len(shared) == 2 * len(packs) // 3, packs  # one packer per batch, two reusers
    assert all(p["streamed"] is False for p in packs)


async def test_shared_packs_reuse_only_the_same_versions_while_fresh(tmp_path: Path) -> None:
    from syncd.model import Put
    from syncd.push import SharedPacks
    from syncd.scan import HashCache, read_entry
    from syncd.testing import ManualClock

    f = tmp_path / "a.txt"
    f.write_text("one\n")
    clock = ManualClock()
    packs = SharedPacks(clock, limit=1 << 20, fresh=2.0)

    def puts() -> list[Put]:
        lf = read_entry(str(f), HashCache())
        assert lf is not None
        return [Put("/app/a.txt", lf)]

    first = await packs.packed("t", puts(), "/app")
    again = await packs.packed("t", puts(), "/app")
    assert first is not None and again is not None
    assert not first[1].shared and again[1].shared and b"".join(first[0]) == b"".join(again[0])
    assert "/app/a.txt" in again[1].sent and again[1].seconds == 0.0
    f.write_text("two\n")  # a new local version: packed anew
    changed = await packs.packed("t", puts(), "/app")
    assert changed is not None and not changed[1].shared and b"two" in b"".join(changed[0])
    clock.advance(3.0)  # too old to reuse
    stale = await packs.packed("t", puts(), "/app")
    assert stale is not None and not stale[1].shared
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 << 20))
    lf = read_entry(str(big), HashCache())
    assert lf is not None and await packs.packed("t", [Put("/app/big.bin", lf)], "/app") is None  # streamed instead


async def test_replicas_keep_their_manifests_packed_and_true_through_edits(tmp_path: Path) -> None:
    """After the start-up reconcile each worker keeps its manifest in columns (core/packed.py),
    the replicas sharing them; edits change it in place and a big enough change packs it again:
    it always says what the container holds."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(40):
        (src / "d" / f"f{i}.txt").write_text(f"{i}\n")
    memory = MemoryTransport("t", containers=3)
    async with running(write_config(tmp_path, CONFIG), transports={"t": memory}, settings=FAST) as engine:
        await settle(engine, src)
        _manifests_true(engine, memory, shared=True)
        (src / "d" / "f3.txt").write_text("edited\n")
        (src / "d" / "f4.txt").unlink()
        await settle(engine, src)
        _manifests_true(engine, memory, shared=False)
        for i in range(20):  # half the tree again: packed anew
            (src / "d" / f"n{i}.txt").write_text(f"new {i}\n")
        await settle(engine, src)
        _manifests_true(engine, memory, shared=False)
        assert all(w.manifest.changes == 0 for w in engine.targets["t"].workers.values())  # type: ignore[union-attr]


def _manifests_true(engine, memory: MemoryTransport, shared: bool) -> None:  # noqa: ANN001
    """Every worker keeps its manifest packed and equal to its container's tree; `shared`: the
    replicas keep one copy of their paths."""
    from syncd.core.packed import PackedManifest

    workers = list(engine.targets["t"].workers.values())
    assert len(workers) == 3 and all(isinstance(w.manifest, PackedManifest) for w in workers)
    for w in workers:
        held = {p: (e.kind, e.digest if e.kind.value == "f" else "") for p, e in memory.containers_[w.ref.id].tree("/app/src").items()}
        kept = {p: (e.kind, e.digest if e.kind.value == "f" else "") for p, e in w.manifest.items()
                if p == "/app/src" or p.startswith("/app/src/")}  # (the manifest also knows /app)
        assert kept == held
    if shared:
        names = {id(w.manifest.columns()[0]) for w in workers}
        assert len(names) == 1, "replicas in step keep one copy of their paths"


async def test_restarted_replicas_take_their_kept_manifests_when_nothing_changed(tmp_path: Path) -> None:
    """syncd/converged.py through the engine: a run that found the replicas equal keeps a proof
    each; the next run asks for fingerprints, lists nothing, and holds manifests true to the
    containers and shared; a push drops that container's proof, so the run after compares it."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(40):
        (src / "d" / f"f{i}.txt").write_text(f"{i}\n")
    memory = MemoryTransport("t", containers=3)
    cfg = write_config(tmp_path, CONFIG)

    async def reconciled(engine) -> None:  # noqa: ANN001
        """The start-up reconciles done (not `settle`: its marker file is a push)."""
        workers = engine.targets["t"].workers
        await wait_until(lambda: len(workers) == 3 and all(w.manifest is not None for w in workers.values())
                         and engine.idle(), 30, "every replica reconciled")

    async with running(cfg, transports={"t": memory}, settings=FAST) as engine:
        await settle(engine, src)  # sends everything
    async with running(cfg, transports={"t": memory}, settings=FAST) as engine:
        await reconciled(engine)  # compares, finds all equal: the proofs are kept
    seen = RecordingTransport(memory)
    async with running(cfg, transports={"t": seen}, settings=FAST) as engine:
        await reconciled(engine)
        assert (seen.calls_to("manifest"), seen.calls_to("fingerprint")) == (0, 3)
        _manifests_true(engine, memory, shared=True)
        (src / "d" / "f3.txt").write_text("edited\n")
        await settle(engine, src)
        _manifests_true(engine, memory, shared=False)
    seen = RecordingTransport(memory)
    async with running(cfg, transports={"t": seen}, settings=FAST) as engine:
        await reconciled(engine)
        assert seen.calls_to("manifest") == 3  # (every replica got the edit: no proof is left)
        _manifests_true(engine, memory, shared=True)
