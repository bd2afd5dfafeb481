"""Builds, run steps and their ordering, on the real engine with local targets (fast; the
Docker + real cargo/npm version of the same loop is tests/test_fullstack.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

from syncd.core.steps import ActionError, action_order, first_error, step_name, triggered
from tests.engine_harness import running, wait_until, write_config

pytestmark = pytest.mark.anyio

# A stand-in compiler: "compiles" src/*.txt into out/app.bin, fails like rustc on a bad line.
# Like a real one it reads its sources when it starts (a snapshot), then takes BUILD_SECONDS.
COMPILER = r"""#!/bin/sh
set -e
echo "   Compiling app (build $(cat count 2>/dev/null || echo 0))"
echo $(( $(cat count 2>/dev/null || echo 0) + 1 )) > count
rm -rf .snap && cp -r src .snap
sleep "${BUILD_SECONDS:-0}"
if grep -Hn 'SYNTAX ERROR' .snap/*.txt >/tmp/syncd-test-grep.$$ 2>&1; then
  echo "error[E0001]: syntax error"
  echo "  --> $(cut -d: -f1,2 /tmp/syncd-test-grep.$$ | sed 's#^[.]snap/#src/#' | head -1)"
  echo "error: could not compile app"
  rm -f /tmp/syncd-test-grep.$$
  exit 101
fi
rm -f /tmp/syncd-test-grep.$$
mkdir -p out
cat .snap/*.txt > out/app.bin.tmp && mv out/app.bin.tmp out/app.bin
"""


def make_app(root: Path, name: str = "app", seconds: float = 0) -> Path:
    app = root / name
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.txt").write_text("v1\n")
    (app / "compile.sh").write_text(COMPILER)
    (app / "compile.sh").chmod(0o755)
    return app


def config(root: Path, services: str) -> None:
    write_config(root, textwrap.dedent("""
        [daemon]
        debounce_ms = 20

        [targets.box]
        kind = "local"
        path = "box"
    """) + textwrap.dedent(services))


def service(name: str, seconds: float = 0, run: str = "", restart: str = "none") -> str:
    return textwrap.dedent(f"""
        [[services]]
        name = "{name}"
        target = "box"
        restart = "{restart}"
        sync = [{{ src = "{name}/src", dest = "/{name}/src" }}, {{ src = "{name}/out", dest = "/{name}/bin" }}]
        build = [{{ cmd = ["./compile.sh"], cwd = "{name}", trigger = ["{name}/src/**"], env = {{ BUILD_SECONDS = "{seconds}" }} }}]
        {run}
    """)


def box(root: Path, rel: str) -> str | None:
    p = root / "box" / rel
    return p.read_text() if p.exists() else None


def spans(engine, prefix: str) -> list[dict]:  # noqa: ANN001
    return [s for r in engine.trace.records for s in r["spans"] if s["name"].startswith(prefix)]


# --- pure -----------------------------------------------------------------------------


def test_triggers_match_like_gitignore() -> None:
    assert triggered(["backend/src/**"], ["backend/src/a/b.rs"])
    assert not triggered(["backend/src/**"], ["backend/target/debug/api"])
    assert triggered([], ["anything"]) and not triggered([], [])
    assert triggered(["*.sql"], ["migrations/003_x.sql"])


def test_step_names() -> None:
    assert step_name("backend", None, 0, 1) == "backend"
    assert step_name("backend", None, 1, 2) == "backend-2"
    assert step_name("backend", "cargo", 0, 2) == "cargo"


def test_first_error_finds_the_compiler_error_and_its_location() -> None:
    out = textwrap.dedent("""\
           Compiling api v0.1.0 (/w/backend)
        error[E0308]: mismatched types
         --> src/version.rs:1:29
          |
        1 | pub const VERSION: &str = 5;
          |                           ^ expected `&str`, found integer

        error: could not compile `api` (lib) due to 1 previous error
    """)
    block = first_error(out)
    assert block[0] == "error[E0308]: mismatched types" and "src/version.rs:1:29" in block[1]
    assert "could not compile" not in "\n".join(block)  # the first error only
    assert first_error("✘ [ERROR] Expected \";\" but found \"}\"\n\n    src/index.js:3:0:")[0].startswith("✘ [ERROR]")
    assert first_error("all good\n") == []


def test_action_order_runs_dependencies_first_once() -> None:
    deps = {"all-tests": ["backend-tests", "frontend-tests"], "backend-tests": ["dev-setup"],
            "frontend-tests": ["dev-setup"], "dev-setup": []}
    assert action_order(deps, "all-tests") == ["dev-setup", "backend-tests", "frontend-tests", "all-tests"]
    with pytest.raises(ActionError):
        action_order({"a": ["b"], "b": ["a"]}, "a")


# --- on the engine --------------------------------------------------------------------


async def test_build_then_push_then_run_step(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    config(tmp_path, service("app", run='run = [{ cmd = "cat app/bin/app.bin >> runs.log", trigger = ["app/out/**"] }]'))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        # Built once before the first sync: the container got a binary and the step ran.
        assert box(tmp_path, "app/bin/app.bin") == "v1\n"
        assert box(tmp_path, "runs.log") == "v1\n"
        (app / "src" / "main.txt").write_text("v2\n")
        await wait_until(lambda: box(tmp_path, "runs.log") == "v1\nv2\n", what="rebuilt binary and run step")
        await wait_until(engine.idle, what="idle")
        assert box(tmp_path, "app/src/main.txt") == "v2\n" and box(tmp_path, "app/bin/app.bin") == "v2\n"
        record = next(r for r in reversed(engine.trace.records) if any(s["name"] == "build:app" for s in r["spans"]))
        names = [s["name"] for s in record["spans"]]
        # build before push before run, all inside the batch's total
        assert names.index("build:app") < names.index("push:box/local") < names.index("run:app")
        assert record["ok"], record["errors"]
        # A change that pushes nothing the run step watches does not run it.
        (app / "src" / "notes.md").write_text("no code\n")
        await wait_until(lambda: box(tmp_path, "app/src/notes.md") == "no code\n", what="notes")
        await wait_until(engine.idle, what="idle")
        assert box(tmp_path, "runs.log") == "v1\nv2\n"


async def test_failed_build_leaves_the_container_alone_until_fixed(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    config(tmp_path, service("app"))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        assert box(tmp_path, "app/bin/app.bin") == "v1\n"
        (app / "src" / "main.txt").write_text("v2 SYNTAX ERROR\n")
        await wait_until(lambda: engine.gates["app"].failed is not None, what="the build to fail")
        await wait_until(engine.idle, what="idle")
        failed = next(r for r in reversed(engine.trace.records) if not r["ok"])
        assert any("error[E0001]: syntax error" in e and "src/main.txt:1" in e for e in failed["errors"]), failed["errors"]
        # Nothing of the broken change reached the container: not even the source.
        assert box(tmp_path, "app/src/main.txt") == "v1\n" and box(tmp_path, "app/bin/app.bin") == "v1\n"
        # A file that triggers no build is held too while the build is broken.
        seen = engine.batches_done
        (app / "src" / "README").write_text("docs\n")
        await wait_until(lambda: engine.batches_done > seen and engine.idle(), what="the README's batch to be done")
        assert box(tmp_path, "app/src/README") is None
        (app / "src" / "main.txt").write_text("v3\n")
        await wait_until(lambda: box(tmp_path, "app/bin/app.bin") == "v3\n", what="the fixed build")
        await wait_until(engine.idle, what="idle")
        assert box(tmp_path, "app/src/README") == "docs\n" and box(tmp_path, "app/src/main.txt") == "v3\n"
        assert engine.gates["app"].failed is None


async def test_a_build_failing_at_start_holds_its_service_in_the_first_reconcile(tmp_path: Path) -> None:
    """At start a service whose build fails sends nothing and deletes nothing (sources included):
    its container keeps the last good state; other services on the same container sync. Once a
    build succeeds the service is compared whole, deletes included."""
    app = make_app(tmp_path)
    (app / "src" / "main.txt").write_text("v2 SYNTAX ERROR\n")
    (app / "src" / "new.txt").write_text("new\n")
    other = tmp_path / "docs"
    other.mkdir()
    (other / "guide.md").write_text("guide\n")
    old = tmp_path / "box" / "app"  # what the container held from an earlier, good run
    (old / "src").mkdir(parents=True)
    (old / "bin").mkdir()
    (old / "src" / "main.txt").write_text("v1\n")
    (old / "src" / "removed-since.txt").write_text("stale\n")
    (old / "bin" / "app.bin").write_text("v1\n")
    config(tmp_path, service("app") + textwrap.dedent("""
        [[services]]
        name = "docs"
        target = "box"
        sync = [{ src = "docs", dest = "/docs" }]
    """))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        assert box(tmp_path, "docs/guide.md") == "guide\n"  # the other service synced
        assert box(tmp_path, "app/src/main.txt") == "v1\n" and box(tmp_path, "app/bin/app.bin") == "v1\n"
        assert box(tmp_path, "app/src/new.txt") is None  # nothing of the held service sent
        assert box(tmp_path, "app/src/removed-since.txt") == "stale\n"  # ... nor deleted
        first = engine.trace.records[0]
        assert first["reconcile"] and not first["ok"]
        assert any("service 'app'" in e and "held" in e and "error[E0001]" in e for e in first["errors"]), first["errors"]
        assert engine.status()["builds"]["app"].startswith("last build failed")
        (app / "src" / "main.txt").write_text("v3\n")  # fixed
        await wait_until(lambda: box(tmp_path, "app/bin/app.bin") == "v3\nnew\n", what="the fixed build")
        await wait_until(lambda: box(tmp_path, "app/src/removed-since.txt") is None, what="the held service compared whole")
        await wait_until(engine.idle, what="idle")
        assert box(tmp_path, "app/src/new.txt") == "new\n" and box(tmp_path, "app/src/main.txt") == "v3\n"


async def test_changes_during_a_build_queue_one_follow_up(tmp_path: Path) -> None:
    app = make_app(tmp_path, seconds=1.0)
    config(tmp_path, service("app", seconds=1.0))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        before = engine.gates["app"].builds_run
        (app / "src" / "main.txt").write_text("edit 0\n")
        await wait_until(lambda: engine.gates["app"].running != "", what="the build to start")
        for i in range(1, 6):  # five more changes while it compiles
            (app / "src" / "main.txt").write_text(f"edit {i}\n")
            await anyio.sleep(0.1)
        await wait_until(lambda: box(tmp_path, "app/bin/app.bin") == "edit 5\n", timeout=30, what="the last edit live")
        await wait_until(engine.idle, what="idle")
        assert engine.gates["app"].builds_run - before == 2


async def test_no_span_exceeds_its_records_total_when_a_build_outlasts_a_batch(tmp_path: Path) -> None:
    """A batch held while a build that began before it runs shares that build's span: the
    record shows only the part after its change (the rest in detail), never more than its total."""
    app = make_app(tmp_path, seconds=1.0)
    config(tmp_path, service("app", seconds=1.0))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        (app / "src" / "main.txt").write_text("edit 0\n")
        await wait_until(lambda: engine.gates["app"].running != "", what="the build to start")
        (app / "src" / "notes.md").write_text("held while it builds\n")  # joins the running build
        await wait_until(lambda: box(tmp_path, "app/src/notes.md") == "held while it builds\n", timeout=30,
                         what="the held file")
        await wait_until(engine.idle, what="idle")
        records = [r for r in engine.trace.records if not r["reconcile"]]
        for r in records:
            total = r["spans"][-1]
            for s in r["spans"][:-1]:
                assert total["start"] <= s["start"] <= s["end"] <= total["end"], (s, total)
                assert s["ms"] <= total["ms"] + 1e-6, (s["name"], s["ms"], total["ms"])
        clipped = [s for r in records for s in r["spans"] if isinstance(s["detail"], dict)
                   and s["detail"].get("began_before_batch_ms", 0) > 0]
        assert clipped and all(s["name"] == "build:app" for s in clipped), clipped


async def test_a_change_that_builds_is_cut_at_once_others_wait_for_quiet(tmp_path: Path) -> None:
    """A build trigger, and a small change after calm (an editor's save), are cut as soon as the
    watcher's step ends; a burst of plain changes waits for the quiet period."""
    app = make_app(tmp_path)
    config(tmp_path, service("app"))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        (app / "src" / "main.txt").write_text("v2\n")  # a build trigger, the build idle
        await wait_until(lambda: box(tmp_path, "app/bin/app.bin") == "v2\n", what="the build live")
        await wait_until(engine.idle, what="idle")
        await anyio.sleep(0.1)  # calm: the build's own output events have come and gone
        await wait_until(engine.idle, what="idle")
        before = engine.batches_done
        (app / "out" / "extra.bin").write_text("no build\n")  # synced, sets off no build
        await wait_until(lambda: box(tmp_path, "app/bin/extra.bin") == "no build\n", what="the plain sync")
        await wait_until(engine.idle, what="idle")
        small = engine.batches_done
        await anyio.sleep(0.05)  # calm: more than the 20 ms quiet period since the last change
        burst = engine.settings.batches.small_batch + 10
        for i in range(burst):  # one write loop: the watcher hands it over as one set
            (app / "out" / f"burst{i}.bin").write_text(f"{i}\n")
        await wait_until(lambda: box(tmp_path, f"app/bin/burst{burst - 1}.bin") == f"{burst - 1}\n", what="the burst")
        await wait_until(engine.idle, what="idle")
    coalesce = {r["batch"]: next(s for s in r["spans"] if s["name"] == "coalesce") for r in engine.trace.records
                if any(s["name"] == "coalesce" for s in r["spans"])}
    built = [r["batch"] for r in engine.trace.records if any(s["name"].startswith("build:") for s in r["spans"])]
    assert built, engine.trace.records
    assert coalesce[built[0]]["detail"].get("early") is True
    plain = [i for i in coalesce if before < i <= small]
    assert plain and all(coalesce[i]["detail"].get("early") for i in plain), coalesce
    bursts = [i for i in coalesce if i > small]
    assert bursts and not any(coalesce[i]["detail"].get("early") for i in bursts), coalesce


async def test_a_build_failing_while_its_sources_change_again_is_not_reported(tmp_path: Path) -> None:
    app = make_app(tmp_path, seconds=1.0)
    config(tmp_path, service("app", seconds=1.0))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        gate = engine.gates["app"]
        before = gate.builds_run
        # The first half of a save breaks the build it sets off; the second half fixes it.
        (app / "src" / "main.txt").write_text("half-saved SYNTAX ERROR\n")
        snap = app / ".snap" / "main.txt"  # what the compiler read when it started
        await wait_until(lambda: snap.exists() and "SYNTAX ERROR" in snap.read_text(), what="the build to read it")
        (app / "src" / "main.txt").write_text("v2\n")
        await wait_until(lambda: box(tmp_path, "app/bin/app.bin") == "v2\n", timeout=30, what="the follow-up build live")
        await wait_until(engine.idle, what="idle")
        assert gate.builds_run - before == 2 and gate.failed is None
        assert not [e for r in engine.trace.records for e in r["errors"]], engine.trace.records
        results = [s["ok"] for s in spans(engine, "build:app")]
        assert results[-2:] == [False, True]  # the failed build is still in the trace


async def test_builds_of_different_services_run_in_parallel(tmp_path: Path) -> None:
    one, two = make_app(tmp_path, "one"), make_app(tmp_path, "two")
    config(tmp_path, service("one", seconds=1.0) + service("two", seconds=1.0))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        (one / "src" / "main.txt").write_text("one v2\n")
        (two / "src" / "main.txt").write_text("two v2\n")
        await wait_until(lambda: box(tmp_path, "one/bin/app.bin") == "one v2\n" and box(tmp_path, "two/bin/app.bin") == "two v2\n",
                         timeout=30, what="both builds live")
        await wait_until(engine.idle, what="idle")
        a, b = spans(engine, "build:one")[-1], spans(engine, "build:two")[-1]
        assert a["start"] < b["end"] and b["start"] < a["end"], (a, b)  # the two builds overlapped


async def test_failing_run_step_reports_exit_and_output_and_stops_the_services_steps(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a\n")
    write_config(tmp_path, textwrap.dedent("""
        [targets.box]
        kind = "local"
        path = "box"

        [[services]]
        name = "app"
        target = "box"
        sync = [{ src = "src", dest = "/app" }]
        run = [{ name = "check", cmd = "echo checking >&2; grep -q good app/a.txt || { echo 'a.txt is not good' >&2; exit 7; }" },
               { name = "after", cmd = "touch after-ran" }]
    """))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        t0 = engine.trace.records[-1]["spans"][-1]["end"] if engine.trace.records else 0
        failed = [r for r in engine.trace.records if not r["ok"]]
        assert failed, "the start-up reconcile pushed a.txt, whose check fails"
        span = next(s for s in failed[-1]["spans"] if s["name"] == "run:check")
        assert span["detail"]["exit"] == 7 and "a.txt is not good" in span["detail"]["output"]
        assert any("run:check failed: exit 7" in e and "a.txt is not good" in e for e in failed[-1]["errors"])
        assert not (tmp_path / "box" / "after-ran").exists()  # the next step of the service did not run
        (tmp_path / "src" / "a.txt").write_text("good\n")
        await wait_until(lambda: (tmp_path / "box" / "after-ran").exists(), what="the steps after the fix")
        await wait_until(engine.idle, what="idle")
        last = engine.trace.records[-1]
        assert last["ok"] and last["spans"][-1]["end"] > t0


@pytest.mark.docker
async def test_restart_container_after_a_push(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container(command=["sh", "-c", "echo start >> /tmp/starts; trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.conf").write_text("v1\n")
    write_config(tmp_path, textwrap.dedent(f"""
        [targets.c]
        kind = "docker"
        container = "{c.name}"

        [[services]]
        name = "app"
        target = "c"
        restart = "container"
        sync = [{{ src = "src", dest = "/app" }}]
    """))
    from syncd.config import load_config

    def starts() -> int:
        import docker.errors

        try:
            return c.exec_run(["cat", "/tmp/starts"]).output.decode().count("start")
        except docker.errors.APIError:
            return -1  # restarting right now

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        await wait_until(lambda: starts() == 2, what="the restart after the first sync")
        (tmp_path / "src" / "app.conf").write_text("v2\n")
        await wait_until(lambda: starts() == 3, what="the restart after the edit")
        await wait_until(lambda: engine.idle() and all(w.state == "idle" for w in engine.targets["c"].workers.values()),
                         what="idle")
        assert c.exec_run(["cat", "/app/app.conf"]).output == b"v2\n"
        record = next(r for r in reversed(engine.trace.records) if any(s["name"] == "restart:app" for s in r["spans"]))
        assert record["ok"] and [s["name"] for s in record["spans"]].index("restart:app") > 0
        # The restarted container is reconciled; that reconcile finds nothing to push, so it
        # sets off no restart of its own (no restart loop).
        after = record["spans"][-1]["end"]
        await wait_until(lambda: any(r["reconcile"] and r["spans"][-1]["start"] >= after for r in engine.trace.records),
                         what="the reconcile of the restarted container")
        await wait_until(engine.idle, what="idle")
        last = next(r for r in reversed(engine.trace.records) if r["reconcile"])
        assert not any(s["name"].startswith(("push:", "restart:")) and (s["detail"] or {}).get("files", 1)
                       for s in last["spans"]), last["spans"]
        assert starts() == 3
