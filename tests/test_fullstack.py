"""The example app (examples/fullstack) end to end: real cargo, npm + esbuild, PostgreSQL and
Docker containers, driven through the `syncd` command as a user would.

One daemon (`syncd run`) serves the whole module; tests run in file order and each leaves
the app working. The workspace is a copy of the example, so the repo's files stay put.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.example_app import BACKEND_BINARY, copy_example
from conftest import REPO
from engine_harness import trace_records

pytestmark = pytest.mark.docker

EXAMPLE = REPO / "examples" / "fullstack"


@dataclass
class App:
    root: Path
    config: Path
    env: dict[str, str]
    daemon: subprocess.Popen
    log: Path
    docker: object

    container_of: Callable[[str], object] | None = None  # service -> its Docker container

    def ip(self, service: str) -> str:
        c = self.container_of(service) if self.container_of else self.docker.containers.get(f"fullstack-{service}")  # type: ignore[attr-defined]
        c.reload()  # type: ignore[attr-defined]
        return next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]  # type: ignore[attr-defined]

    def get(self, service: str, path: str) -> str | None:
        port = 8080 if service == "backend" else 8081
        try:
            with urllib.request.urlopen(f"http://{self.ip(service)}:{port}{path}", timeout=2) as r:
                return r.read().decode()
        except (OSError, ValueError, KeyError, StopIteration):
            return None

    def syncd(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "syncd", *args, "-c", str(self.config)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def psql(self, sql: str) -> str:
        return subprocess.run(["psql", "-tAc", sql], env=self.env, capture_output=True, text=True, check=True).stdout.strip()

    def records(self) -> list[dict]:
        return trace_records(self.config.parent / ".syncd" / "trace.jsonl")

    def wait(self, cond: Callable[[], object], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.daemon.poll() is not None:
                raise AssertionError(f"syncd exited ({self.daemon.returncode}) waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; daemon log:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])

    def edit(self, rel: str, pattern: str, replacement: str) -> None:
        path = self.root / rel
        text = path.read_text()
        new = re.sub(pattern, replacement, text)
        assert new != text, f"{rel}: {pattern!r} not found"
        path.write_text(new)

    def record_with(self, span: str, after: float) -> dict | None:
        for r in reversed(self.records()):
            if r["spans"] and r["spans"][-1]["end"] >= after and any(s["name"] == span for s in r["spans"]):
                return r
        return None


def _start_daemon(root: Path, config: Path, env: dict[str, str], docker: object) -> App:
    log = root / f"daemon-{config.stem}.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", "-c", str(config)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    return App(root, config, env, daemon, log, docker)


def _stop(app: App) -> None:
    app.daemon.send_signal(signal.SIGINT)
    try:
        app.daemon.wait(30)
    except subprocess.TimeoutExpired:
        app.daemon.kill()


def _copy_example(dest: Path) -> None:
    """The example without build products; node_modules is linked (installed by test.sh) and the
    backend's target/ is a copy of one shared from-scratch build (benchmarks/example_app.py)."""
    try:
        copy_example(dest)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def app(docker_client, postgres, redis, tmp_path_factory) -> Iterator[App]:  # noqa: ANN001
    if shutil.which("cargo") is None or shutil.which("npm") is None:
        pytest.fail("cargo and npm are needed for the example app (scripts/test.sh checks)")
    root = tmp_path_factory.mktemp("fullstack") / "app"
    _copy_example(root)
    env = {**os.environ, **postgres, **redis, "BACKEND_PORT": "0", "FRONTEND_PORT": "0"}
    env.pop("CI", None)  # the daemon's own behaviour must not depend on it
    subprocess.run(["sh", str(root / "scripts" / "down.sh")], env=env, check=True, capture_output=True)
    subprocess.run(["sh", str(root / "scripts" / "up.sh")], env=env, check=True, capture_output=True)
    a = _start_daemon(root, root / "config" / "fullstack.toml", env, docker_client)
    try:
        yield a
    finally:
        _stop(a)
        subprocess.run(["sh", str(root / "scripts" / "down.sh")], env=env, check=False, capture_output=True)


def test_first_start_builds_and_serves_everything(app: App) -> None:
    app.wait(lambda: app.get("backend", "/version") == "backend v1\n", "the backend to answer v1")
    app.wait(lambda: "frontend v1" in (app.get("frontend", "/app.js") or ""), "the frontend bundle")
    assert "app.js" in (app.get("frontend", "/") or "")
    app.wait(lambda: app.psql("select count(*) from schema_migrations") == "2", "the first two migrations")
    names = app.psql("select name from schema_migrations order by name").split()
    assert names == ["001_create_users.sql", "002_create_notes.sql"]


def test_rust_edit_is_built_pushed_and_restarted(app: App) -> None:
    t0 = time.time()
    app.edit("backend/src/version.rs", r'VERSION: &str = "[^"]*"', 'VERSION: &str = "v2"')
    app.wait(lambda: app.get("backend", "/version") == "backend v2\n", "the backend to answer v2")
    # The edit's batch: the one that built. The binary's own events arrive while the build's
    # outputs are being found and join that batch (BuildGate.late), so it carries the push and
    # the restart even when those events would win the race to the container.
    app.wait(lambda: app.record_with("build:cargo", t0), "the batch's trace record")
    record = app.record_with("build:cargo", t0)
    assert record is not None and record["ok"], record
    names = [s["name"] for s in record["spans"]]
    # Built, then pushed, then checked, then restarted: in that order, inside one batch.
    order = ["build:cargo", "push:backend/fullstack-backend", "run:check-binary", "restart:backend"]
    assert [n for n in names if n in order] == order, names
    build = next(s for s in record["spans"] if s["name"] == "build:cargo")
    assert build["detail"]["exit"] == 0 and "Compiling api" in build["detail"]["output"]
    # cargo's temporary directories under the ignored target/ (deps/rmeta*) are no loss of events
    assert "file events may have been lost" not in app.log.read_text(errors="replace"), app.tail()


def test_frontend_edit_goes_through_the_bundler(app: App) -> None:
    t0 = time.time()
    app.edit("frontend/src/version.js", r'VERSION = "[^"]*"', 'VERSION = "v2"')
    app.wait(lambda: "frontend v2" in (app.get("frontend", "/app.js") or ""), "the new bundle to be served")
    app.wait(lambda: app.record_with("build:esbuild", t0), "the batch's trace record")
    record = app.record_with("build:esbuild", t0)
    names = [s["name"] for s in record["spans"]]
    assert names.index("build:esbuild") < names.index("push:frontend/fullstack-frontend"), names
    assert "restart:backend" not in names and "build:cargo" not in names


def test_new_migration_is_applied_once(app: App) -> None:
    sql = "create table tags (id serial primary key, label text not null unique);\n"
    (app.root / "migrations" / "003_create_tags.sql").write_text(sql)
    app.wait(lambda: app.psql("select count(*) from schema_migrations") == "3", "migration 003")
    assert app.psql("select count(*) from tags") == "0"
    # The same file saved again, and another change in the directory, run the step again:
    # 003 is recorded, so it is skipped, not applied twice (which would fail: the table exists).
    t0 = time.time()
    (app.root / "migrations" / "003_create_tags.sql").write_text(sql + "-- reviewed\n")
    app.wait(lambda: app.record_with("build:migrate", t0), "the second migrate run")
    record = app.record_with("build:migrate", t0)
    step = next(s for s in record["spans"] if s["name"] == "build:migrate")
    assert step["ok"] and "003_create_tags.sql" in step["detail"]["output"] and "skipped" in step["detail"]["output"]
    assert app.psql("select count(*) from schema_migrations where name = '003_create_tags.sql'") == "1"
    # The SQL files reached the container too.
    out = app.syncd("trigger", "service-status")
    assert out.returncode == 0 and "003_create_tags.sql" in out.stdout, out.stdout + out.stderr


def test_compile_error_keeps_the_last_good_binary(app: App) -> None:
    t0 = time.time()
    app.edit("backend/src/version.rs", r'VERSION: &str = "[^"]*"', "VERSION: &str = 3")
    app.wait(lambda: any(not r["ok"] and r["spans"][-1]["end"] >= t0 for r in app.records()), "the failed build")
    failed = next(r for r in reversed(app.records()) if not r["ok"])
    errors = "\n".join(failed["errors"])
    assert "error[E0308]: mismatched types" in errors and "src/version.rs" in errors, errors
    assert not any(s["name"].startswith("push:") for s in failed["spans"])
    assert "build failed" in app.log.read_text() or "error[E0308]" in app.log.read_text()
    # Once the daemon is idle, nothing more is on its way: the container kept the last good binary.
    app.wait(lambda: json.loads(app.syncd("status", "--json", "--last", "0").stdout or "{}").get("idle"), "the daemon idle")
    assert app.get("backend", "/version") == "backend v2\n"
    app.edit("backend/src/version.rs", r"VERSION: &str = 3", 'VERSION: &str = "v3"')
    app.wait(lambda: app.get("backend", "/version") == "backend v3\n", "the fixed backend")


def test_actions_run_with_their_dependencies(app: App) -> None:
    ran: dict[str, subprocess.CompletedProcess] = {}
    for name in ["db-migrate", "backend-unit-tests", "backend-integration-tests", "backend-tests", "frontend-tests",
                 "all-tests", "health-check", "service-status", "warm-cache", "build-performance-test", "dev-setup",
                 "cleanup-resources"]:
        ran[name] = out = app.syncd("trigger", name)
        assert out.returncode == 0, f"{name}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        assert "(ran by the daemon" in out.stdout, out.stdout  # through the control API
    assert "test result: ok" in ran["backend-unit-tests"].stdout
    assert "ok\n" in ran["health-check"].stdout
    assert "recorded in Redis" in ran["warm-cache"].stdout, ran["warm-cache"].stdout
    stored = subprocess.run(["redis-cli", "-s", app.env["REDIS_SOCKET"], "hget", "fullstack:warm-cache", "backend"],
                            capture_output=True, text=True, check=True).stdout.strip()
    binary = (app.root / BACKEND_BINARY).read_bytes()
    assert stored == subprocess.run(["cksum"], input=binary, capture_output=True, check=True).stdout.split()[0].decode()
    assert re.search(r"cargo incremental build: \d+ ms", ran["build-performance-test"].stdout)
    # Dependencies first, each once, in order.
    lines = [line.split()[1] for line in ran["all-tests"].stdout.splitlines() if line.startswith("✓")]
    assert lines == ["backend-unit-tests", "backend-integration-tests", "backend-tests", "frontend-tests", "all-tests"]
    # A failing action reports its exit status and stops the chain.
    lib = app.root / "backend" / "src" / "lib.rs"
    good = lib.read_text()
    lib.write_text(good + '#[cfg(test)]\nmod broken { #[test] fn fails() { assert_eq!(1, 2, "deliberately broken"); } }\n')
    try:
        out = app.syncd("trigger", "all-tests")
        assert out.returncode == 1, out.stdout
        assert "✗ backend-unit-tests" in out.stdout and "deliberately broken" in out.stdout, out.stdout
        assert "not run (an earlier action failed): backend-integration-tests, backend-tests, frontend-tests, all-tests" \
            in out.stdout, out.stdout
    finally:
        lib.write_text(good)
    # Destructive: refused without --yes (exit 2, nothing dropped), done with it.
    out = app.syncd("trigger", "db-reset")
    assert out.returncode == 2 and "--yes" in out.stderr
    assert app.psql("select count(*) from tags") == "0"
    app.psql("insert into tags(label) values ('x')")
    out = app.syncd("trigger", "db-reset", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert app.psql("select count(*) from tags") == "0" and app.psql("select count(*) from schema_migrations") == "3"
    # Standalone (no daemon involved) works the same.
    out = app.syncd("trigger", "health-check", "--standalone")
    assert out.returncode == 0 and "(ran by the daemon" not in out.stdout
    # Every action is timed in the trace.
    spans = {s["name"] for r in app.records() if r.get("action") for s in r["spans"]}
    assert {"action:db-migrate", "action:backend-unit-tests", "action:health-check-frontend", "action:dev-setup"} <= spans


def test_fall_back_on_runs_the_fallback_and_reconciles_the_new_container(app: App) -> None:
    old = app.docker.containers.get("fullstack-backend").id  # type: ignore[attr-defined]
    t0 = time.time()
    # An image-level change and a source edit in one go: nothing of the batch is synced for
    # the backend; the fallback re-creates the container, which then gets the current build.
    app.edit("backend/src/version.rs", r'VERSION: &str = "[^"]*"', 'VERSION: &str = "v4"')
    with open(app.root / "runtime" / "syncd-supervise", "a") as f:
        f.write("# touched by the test\n")
    app.wait(lambda: app.record_with("fallback:backend", t0), "the fallback")
    record = app.record_with("fallback:backend", t0)
    fb = next(s for s in record["spans"] if s["name"] == "fallback:backend")
    assert fb["ok"] and "runtime/syncd-supervise" in fb["detail"]["reason"], fb
    assert not any(s["name"].startswith("push:backend") for s in record["spans"]), record["spans"]
    app.wait(lambda: app.docker.containers.get("fullstack-backend").id != old, "the new container")  # type: ignore[attr-defined]
    app.wait(lambda: app.get("backend", "/version") == "backend v4\n", "the new container to serve v4")


def test_kubernetes_variant_on_fixture_pods(cluster, docker_client, postgres, tmp_path: Path) -> None:  # noqa: ANN001
    """The same app through the Kubernetes exec API: pods of the fixture, restart by SIGHUP."""
    if cluster.real:
        pytest.skip("fixture-only: the pods run the locally built syncd-test/fullstack image")
    fx = cluster.fx
    root = tmp_path / "app"
    _copy_example(root)
    image = "syncd-test/fullstack:latest"
    fx.create_pod("fullstack-backend-0", namespace="dev", labels={"app": "fullstack-backend"},
                  containers=[{"name": "backend", "image": image, "command": ["syncd-supervise", "/app/bin/api"]}])
    fx.create_pod("fullstack-frontend-0", namespace="dev", labels={"app": "fullstack-frontend"},
                  containers=[{"name": "frontend", "image": image, "command": ["httpd", "-f", "-p", "8081", "-h", "/srv/www"]}])
    env = {**os.environ, **postgres, "KUBECONFIG": str(cluster.kubeconfig)}
    env.pop("CI", None)
    app = _start_daemon(root, root / "config" / "fullstack-kube.toml", env, docker_client)
    app.container_of = lambda svc: fx.docker_container(f"fullstack-{svc}-0", svc, namespace="dev")
    try:
        app.wait(lambda: app.get("backend", "/version") == "backend v1\n", "the backend pod to answer v1")
        app.wait(lambda: "frontend v1" in (app.get("frontend", "/app.js") or ""), "the frontend pod's bundle")
        app.edit("backend/src/version.rs", r'VERSION: &str = "[^"]*"', 'VERSION: &str = "v2"')
        app.wait(lambda: app.get("backend", "/version") == "backend v2\n", "the backend pod to answer v2")
        record = app.record_with("restart:backend", 0)
        assert record is not None and any(s["name"] == "push:backend/fullstack-backend-0" for s in record["spans"])
    finally:
        _stop(app)


def test_smoke_loop_on_the_example_app(app: App) -> None:
    """`syncd smoke` as CI runs it, on the real app, beside the module's daemon (which it
    drives: the daemon builds and times the edits): a fresh marker in the Rust VERSION rebuilt,
    pushed, restarted and answered by /version; the same through esbuild for the frontend. The
    tree is unchanged afterwards. A paused daemon is refused: its edits would never go out."""
    before = {p: p.read_bytes() for p in [app.root / "backend/src/version.rs", app.root / "frontend/src/version.js"]}
    assert app.syncd("pause").returncode == 0
    try:
        out = app.syncd("smoke", "--iterations", "1", timeout=60)
        assert out.returncode == 2 and "paused" in out.stderr and "syncd resume" in out.stderr, out.stdout + out.stderr
    finally:
        assert app.syncd("resume").returncode == 0
    out = app.syncd("smoke", "--service", "backend", "--service", "frontend", "--iterations", "2",
                    "--budget", "p95=60s", "--junit", str(app.root / "smoke.xml"), "--json", str(app.root / "smoke.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "edits synced by the running daemon" in out.stdout
    data = json.loads((app.root / "smoke.json").read_text())
    backend = data["services"]["backend"]
    assert backend["live"]["count"] == 4 and "build:cargo" in backend["spans"]
    assert "push:backend" in backend["spans"] and "restart:backend" in backend["spans"]  # each edit deployed
    assert "build:esbuild" in data["services"]["frontend"]["spans"]
    assert {p: p.read_bytes() for p in before} == before
    app.wait(lambda: app.get("backend", "/health") == "ok\n", "the backend after the smoke run")
