"""The daemon's promises, on real transports: bytes not re-sent, ignores honoured, nothing
written outside `dest`, and every kind of bad input reported while other targets go on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine_harness import running, settle, wait_until, write_config
from syncd import batches
from syncd.testing import RecordingTransport
from syncd.transports.base import Transport
from syncd.workers import ContainerWorker
from syncd.model import Batch
from trees import container_tree, diff_trees, local_tree

pytestmark = pytest.mark.anyio


def docker_cfg(tmp_path: Path, container: str, extra: str = "") -> object:
    return write_config(
        tmp_path,
        f"""
[daemon]
trace = ".syncd/trace.jsonl"
[targets.web]
kind = "docker"
container = "{container}"
[targets.mirror]
kind = "local"
path = "mirror"
[[services]]
name = "web"
target = "web"
ignore = ["*.secret", "cache/"]
sync = [{{ src = "src", dest = "/app/src" }}, {{ src = "static/logo.txt", dest = "/srv/logo.txt" }}]
[[services]]
name = "mirror"
target = "mirror"
sync = [{{ src = "src", dest = "/app/src" }}]
{extra}
""",
    )


def make_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "a.js").write_text("export const a = 1\n")
    (src / "index.js").write_text("import './lib/a.js'\n")
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "logo.txt").write_text("logo")
    (tmp_path / "static" / "unmapped.txt").write_text("not mapped")
    (tmp_path / "README.md").write_text("outside every mapping")
    return src


def whole_fs(container) -> dict[str, tuple]:  # noqa: ANN001
    """Every path of the container outside /proc, /sys, /dev (via the archive API)."""
    out = {}
    for top in ("/bin", "/etc", "/tmp", "/srv", "/app"):
        for rel, entry in container_tree(container, top).items():
            out[f"{top}/{rel}"] = entry
    return out


async def test_unchanged_bytes_are_not_resent(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container()
    src = make_tree(tmp_path)
    async with running(docker_cfg(tmp_path, container.name)) as engine:
        web = next(iter(engine.targets["web"].workers.values()))
        await settle(engine, src)
        before = web.bytes_sent
        (src / "index.js").write_bytes((src / "index.js").read_bytes())  # same bytes
        (src / "lib" / "a.js").touch()  # mtime only
        await settle(engine, src)
        marker_cost = web.bytes_sent - before
        assert web.files_sent >= 1
        before = web.bytes_sent
        (src / "index.js").write_bytes((src / "index.js").read_bytes())
        await settle(engine, src)
        # the only bytes sent are the settle marker's, exactly as much as last time
        assert web.bytes_sent - before == marker_cost
        (src / "index.js").write_text("changed\n")
        await settle(engine, src)
        assert web.bytes_sent - before > marker_cost
        assert container_tree(container, "/app/src")["index.js"] == local_tree(src)["index.js"]


async def test_ignored_and_unmapped_paths_never_reach_the_container(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container()
    src = make_tree(tmp_path)
    outside_before = {k: v for k, v in whole_fs(container).items() if not k.startswith(("/app/src", "/srv/logo.txt"))}
    async with running(docker_cfg(tmp_path, container.name)) as engine:
        seen: list[set[str]] = []
        original = engine.note_changes
        engine.note_changes = lambda paths, now=None: (seen.append(set(paths)), original(paths, now))[1]  # type: ignore[method-assign]
        (src / "key.secret").write_text("s3cr3t")
        (src / "cache").mkdir()
        (src / "cache" / "blob").write_text("cached")
        (src / "x.swp").write_text("vim swap")
        (src / "node_modules" / "dep").mkdir(parents=True)
        (src / "node_modules" / "dep" / "i.js").write_text("dep")
        (tmp_path / "static" / "unmapped.txt").write_text("changed but not mapped")
        (tmp_path / "README.md").write_text("changed")
        (src / "ok.js").write_text("synced")
        await settle(engine, src)
        woke = set().union(*seen)
        # ignored by every service (defaults) or outside every mapping: never woke the pipeline
        assert not [p for p in woke if p.endswith((".swp", "i.js", "unmapped.txt", "README.md"))]
        # ignored by 'web' only: the 'mirror' service still gets them, 'web' does not
        await wait_until(lambda: (tmp_path / "mirror/app/src/cache/blob").exists())
        assert (tmp_path / "mirror/app/src/key.secret").exists()
        tree = container_tree(container, "/app/src")
        assert "ok.js" in tree
        assert not [k for k in tree if k.endswith((".secret", ".swp")) or k.startswith(("cache", "node_modules"))]
        assert container_tree(container, "/srv") == {"logo.txt": local_tree(tmp_path / "static")["logo.txt"]}
        # the file mapping follows edits, and nothing outside the destinations changed
        (tmp_path / "static" / "logo.txt").write_text("new logo")
        await settle(engine, src)
        await wait_until(lambda: container_tree(container, "/srv")["logo.txt"] == local_tree(tmp_path / "static")["logo.txt"])
    outside_after = {k: v for k, v in whole_fs(container).items() if not k.startswith(("/app/src", "/srv/logo.txt"))}
    outside_before.pop("/app", None), outside_after.pop("/app", None)
    assert diff_trees(outside_before, outside_after) == []


async def test_stopped_container_is_reported_and_others_go_on(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container()
    container.stop(timeout=1)
    src = make_tree(tmp_path)
    with capture_logs() as logs:
        async with running(docker_cfg(tmp_path, container.name)) as engine:
            (src / "new.js").write_text("while web is down")
            await wait_until(lambda: (tmp_path / "mirror/app/src/new.js").exists(), what="the local target to sync")
            errors = [e for e in logs if e["event"] == "target unavailable" and e["target"] == "web"]
            assert errors and "not running" in errors[0]["error"] and container.name in errors[0]["error"]
            assert f"docker start {container.name}" in errors[0]["hint"]
            container.start()
            await settle(engine, src, timeout=30)  # discovery picks it up and reconciles
            assert not diff_trees(local_tree(src), container_tree(container, "/app/src"))
            assert not diff_trees(local_tree(src), local_tree(tmp_path / "mirror/app/src"))


async def test_container_without_tar_is_reported_and_others_go_on(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container("notar")
    src = make_tree(tmp_path)
    with capture_logs() as logs:
        async with running(docker_cfg(tmp_path, container.name), wait_idle=False) as engine:
            await wait_until(lambda: any(e["event"] == "push failed" for e in logs), what="the failure report")
            failure = next(e for e in logs if e["event"] == "push failed")
            assert "no 'tar'" in failure["error"] and "syncd-test/notar" in failure["error"]
            assert "add tar to the image" in failure["hint"]
            (src / "more.js").write_text("still flowing to the other target")
            await wait_until(lambda: (tmp_path / "mirror/app/src/more.js").exists(), what="the local target to sync")
            web = next(iter(engine.targets["web"].workers.values()))
            assert "no 'tar'" in web.last_error and web.failures >= 1 and web.state != "idle"
            assert engine.status()["targets"]["web"]["containers"][container.name]["error"] == web.last_error


async def test_file_vanishing_between_event_and_pack(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container()
    src = make_tree(tmp_path)
    async with running(docker_cfg(tmp_path, container.name)) as engine:
        doomed = src / "doomed.js"
        doomed.write_text("here for a moment")
        batch = Batch(id=999, paths=frozenset({str(doomed)}), first_event=time.time(), last_event=time.time(), cut=time.time())
        plan, _ = batches.plan(batch, engine.services, engine.cfg.root, engine.hashes, [])
        doomed.unlink()  # gone after planning, before packing
        worker: ContainerWorker = next(iter(engine.targets["web"].workers.values()))
        from syncd.core.manifest import diff

        await engine.pusher.send(worker, diff(plan.targets["web"].desired, worker.manifest or {}), [])
        assert "doomed.js" not in container_tree(container, "/app/src")
        assert "/app/src/doomed.js" not in (worker.manifest or {})
        await settle(engine, src)
        assert not diff_trees(local_tree(src), container_tree(container, "/app/src"))


async def test_fall_back_on_runs_the_fallback_instead_of_syncing(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    (tmp_path / "package.json").write_text("{}")
    cfg = write_config(
        tmp_path,
        """
[daemon]
trace = ".syncd/trace.jsonl"
[targets.box]
kind = "local"
path = "box"
[[services]]
name = "web"
target = "box"
fall_back_on = ["package.json"]
fallback = "echo rebuilt >> fallback.log; echo 'rebuild started'"
sync = [{ src = "src", dest = "/app/src" }]
""",
    )
    async with running(cfg) as engine:
        (src / "index.js").write_text("edited together with package.json\n")
        (tmp_path / "package.json").write_text('{"dependencies": {}}')
        await wait_until(lambda: (tmp_path / "fallback.log").exists() and not engine.jobs_open, what="the fallback")
        assert (tmp_path / "fallback.log").read_text() == "rebuilt\n"
        # the batch was not synced by the push path ...
        pushes = [s for s in record_spans(engine, "fallback:web") if s["name"].startswith("push:")]
        assert pushes == []
        record = next(r for r in engine.trace.records if any(s["name"] == "fallback:web" for s in r["spans"]))
        span = next(s for s in record["spans"] if s["name"] == "fallback:web")
        assert span["ok"] and span["detail"]["exit"] == 0 and "rebuild started" in span["detail"]["output"]
        assert "package.json matches fall_back_on" in span["detail"]["reason"]
        # ... but a reconcile after the successful fallback brings the held-back edit
        await wait_until(lambda: (tmp_path / "box/app/src/index.js").read_text() == "edited together with package.json\n")
        # and the next ordinary edit syncs as usual
        (src / "index.js").write_text("after the rebuild\n")
        await wait_until(lambda: (tmp_path / "box/app/src/index.js").read_text() == "after the rebuild\n")


def record_spans(engine, span_name: str) -> list[dict]:  # noqa: ANN001
    """The spans of the batch record that holds a span named `span_name`."""
    record = next(r for r in engine.trace.records if any(s["name"] == span_name for s in r["spans"]))
    return record["spans"]


async def test_restarted_container_is_reconciled(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    container = make_container()
    src = make_tree(tmp_path)
    async with running(docker_cfg(tmp_path, container.name)) as engine:
        await settle(engine, src)
        old = next(iter(engine.targets["web"].workers.values()))
        # Someone changes the container behind syncd's back, then it restarts.
        container.exec_run(["sh", "-c", "rm -rf /app/src/lib && echo stray > /app/src/stray.txt"])
        container.restart(timeout=1)
        await wait_until(lambda: any(w is not old for w in engine.targets["web"].workers.values()), 30, "the restart to be seen")
        await settle(engine, src)
        assert not diff_trees(local_tree(src), container_tree(container, "/app/src"))


async def test_a_reconcile_asked_for_while_one_is_sent_is_run_after_it(tmp_path: Path) -> None:
    """A resync (or a fallback, a restarted container) asked for while the start-up reconcile's
    push is on its way forgets the worker's manifest mid-send: the daemon must not trip over
    the missing manifest (it once exited with a NoneType error) and must compare again."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(20):
        (src / "d" / f"f{i}").write_text(str(i))
    cfg = write_config(tmp_path, '[targets.t]\nkind = "local"\npath = "sandbox"\n'
                                 '[[services]]\nname = "app"\ntarget = "t"\nsync = [{ src = "src", dest = "/app/src" }]\n')
    recorder: list[RecordingTransport] = []
    engines: list[object] = []
    asked: list[bool] = []

    async def ask_again(*_args: object) -> None:  # before the first apply: mid-send of the start-up reconcile
        recorder[0].before("apply", None)
        asked.append(True)
        await wait_until(lambda: bool(engines), 10, "the test to get the engine")
        for target in engines[0].targets.values():  # type: ignore[attr-defined]
            for worker in target.workers.values():
                worker.request_reconcile()

    def wrap(t: Transport) -> Transport:
        recorder.append(RecordingTransport(t))
        recorder[0].before("apply", ask_again)
        return recorder[0]

    async with running(cfg, wait_idle=False, wrap=wrap) as engine:
        engines.append(engine)
        await wait_until(engine.idle, 20, "the reconciles")
        (src / "d" / "late").write_text("after")
        await settle(engine, src)
        assert asked and recorder[0].calls_to("apply") >= 2
        assert not diff_trees(local_tree(src), local_tree(tmp_path / "sandbox/app/src"))
        assert sum(1 for r in engine.trace.records if r["reconcile"]) >= 2
