"""`syncd smoke` end to end, as CI runs it: against a Docker container and a Kubernetes pod
(the API-server fixture), with budgets, JUnit/JSON output and an interruption mid-run. After
every run the local and the container trees are exactly as before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from syncd.smoke import Sample, junit, over_budget, parse_budget, summarize
from trees import container_tree, diff_trees, local_tree

pytestmark = pytest.mark.docker


def make_project(root: Path, target: str, build_seconds: float = 0.0) -> None:
    (root / "web").mkdir(parents=True)
    (root / "web" / "index.html").write_text("<h1>hello</h1>\n")
    (root / "api" / "src").mkdir(parents=True)
    (root / "api" / "src" / "main.txt").write_text("fn main() {}\n")
    (root / "api" / "out").mkdir()
    (root / "api" / "out" / "api").write_text("fn main() {}\n")  # as built before the run
    (root / "syncd.toml").write_text(textwrap.dedent(f"""
        [daemon]
        debounce_ms = 10
        api = "127.0.0.1:0"

        {target}

        [[services]]
        name = "web"
        target = "app"
        sync = [{{ src = "web", dest = "/srv/www" }}]
        ready = {{ cmd = "cat /srv/www/index.html", expect = "hello" }}

        [[services]]
        name = "api"
        target = "app"
        sync = [{{ src = "api/out", dest = "/app/bin" }}]
        smoke = {{ path = "api/src/main.txt", comment = "//" }}
        build = [{{ name = "compile", cmd = "sleep {build_seconds} && mkdir -p out && cp src/main.txt out/api", cwd = "api", trigger = ["api/src/**"] }}]
    """))


def smoke(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncd", "smoke", "-c", str(root / "syncd.toml"), *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _descendant_runs(pid: int, program: str) -> bool:
    """Is `program` running below process `pid`? (/proc: parent links and command lines)"""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(stat_fields[1])
            names[int(entry.name)] = (entry / "comm").read_text().strip()
        except (OSError, IndexError, ValueError):
            continue
    for child, name in names.items():
        if name != program:
            continue
        up = child
        while up in parents and up > 1:
            up = parents[up]
            if up == pid:
                return True
    return False


def snapshot(root: Path) -> dict:
    return local_tree(root, skip={".syncd", "smoke.xml", "smoke.json", "over.xml", "k.xml"})


def assert_same_everywhere(root: Path, before: dict, container) -> None:  # noqa: ANN001
    assert diff_trees(before, snapshot(root)) == [], "the smoke run left local edits behind"
    assert diff_trees(local_tree(root / "web"), container_tree(container, "/srv/www")) == []
    assert diff_trees(local_tree(root / "api" / "out"), container_tree(container, "/app/bin")) == []


def check_junit(path: Path, services: list[str], iterations: int) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"syncd smoke: {s}" for s in services]
    for suite in suites:
        cases = suite.findall("testcase")
        assert len(cases) == 2 * iterations + 1 == int(suite.get("tests"))
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        for case in cases:
            assert case.get("classname", "").startswith("syncd.smoke.") and case.get("name")
            float(case.get("time"))
    return root


def test_smoke_on_docker_budget_junit_and_json(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    make_project(tmp_path, f'[targets.app]\nkind = "docker"\ncontainer = "{c.name}"')
    before = snapshot(tmp_path)

    out = smoke(tmp_path, "--iterations", "2", "--budget", "p95=30s", "--junit", str(tmp_path / "smoke.xml"),
                "--json", str(tmp_path / "smoke.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "live" in out.stdout and "build:compile" in out.stdout
    root = check_junit(tmp_path / "smoke.xml", ["web", "api"], 2)
    assert root.get("failures") == "0"
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["passed"] and data["within_budget"]
    api = data["services"]["api"]
    assert api["live"]["count"] == 4 and "build:compile" in api["spans"] and "push:app" in api["spans"]
    assert all(s["ok"] and s["live_ms"] >= s["sync_ms"] > 0 for s in api["samples"])
    assert_same_everywhere(tmp_path, before, c)

    out = smoke(tmp_path, "--iterations", "1", "--budget", "p50=1ms", "--junit", str(tmp_path / "over.xml"))
    assert out.returncode == 3, out.stdout + out.stderr
    assert "over budget" in out.stdout
    root = check_junit(tmp_path / "over.xml", ["web", "api"], 1)
    budget_case = root.find(".//testcase[@name='budget']")
    assert budget_case is not None and budget_case.find("failure").get("type") == "BudgetExceeded"
    assert_same_everywhere(tmp_path, before, c)


def test_smoke_interrupted_mid_run_leaves_nothing_behind(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    make_project(tmp_path, f'[targets.app]\nkind = "docker"\ncontainer = "{c.name}"', build_seconds=2.0)
    before = snapshot(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "smoke", "-c", str(tmp_path / "syncd.toml"), "--service", "api",
                             "--iterations", "5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    edited = tmp_path / "api" / "src" / "main.txt"
    deadline = time.monotonic() + 120
    # the edit is in place and its 2 s build running (the build's `sleep` is smoke's descendant)
    while "syncd smoke" not in edited.read_text() or not _descendant_runs(proc.pid, "sleep"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "restoring" in output
    assert_same_everywhere(tmp_path, before, c)


def test_smoke_on_a_kubernetes_pod(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: compares the pod's tree through its Docker container")
    cluster.create_pod("app-0", {"app": "smoke"})
    make_project(tmp_path, '[targets.app]\nkind = "kubernetes"\nnamespace = "dev"\nselector = "app=smoke"')
    before = snapshot(tmp_path)
    out = smoke(tmp_path, "--iterations", "2", "--budget", "p95=30s", "--junit", str(tmp_path / "k.xml"))
    assert out.returncode == 0, out.stdout + out.stderr
    check_junit(tmp_path / "k.xml", ["web", "api"], 2)
    assert_same_everywhere(tmp_path, before, cluster.fx.docker_container("app-0", "app", namespace="dev"))


def test_budget_and_report_logic() -> None:
    assert parse_budget("p95=2s,max=5000ms") == {"p95": 2000.0, "max": 5000.0}
    with pytest.raises(ValueError, match="STAT=TIME"):
        parse_budget("p95=fast")
    assert over_budget([10, 20, 30, 40, 1000], {"p50": 25}) == ["p50 30 ms > 25 ms"]
    samples = [Sample("web", 1, "edit", True, 12.0, 10.0, 2.0, {"push:app": 3.0}),
               Sample("web", 1, "restore", False, error="not live after 5s: no batch picked the edit up")]
    summary = summarize(samples, {"p95": 100})
    assert not summary["passed"] and summary["within_budget"]
    xml = ET.fromstring(junit(summary))
    failure = xml.find(".//testcase[@name='iteration 1 restore']/failure")
    assert failure is not None and "no batch picked" in failure.get("message")


# --- smoke next to a daemon, edits that must deploy something (local targets: no Docker) ----------

LOCAL_PROJECT = """
[daemon]
debounce_ms = 10
api = "127.0.0.1:0"

[targets.app]
kind = "local"
path = "box"

[[services]]
name = "api"
target = "app"
sync = [{{ src = "api/out", dest = "/app/bin" }}]
smoke = {smoke}
ready = {{ cmd = "cat app/bin/api", expect = "{expect}" }}
build = [{{ name = "compile", cmd = "mkdir -p out && grep -v '^//' src/main.txt > out/api", cwd = "api", trigger = ["api/src/**"] }}]
"""


def local_project(root: Path, smoke_edit: str, expect: str) -> None:
    (root / "api" / "src").mkdir(parents=True)
    (root / "api" / "src" / "main.txt").write_text('const VERSION = "v1"\n')
    (root / "syncd.toml").write_text(LOCAL_PROJECT.format(smoke=smoke_edit, expect=expect))


def test_a_marker_in_a_pattern_is_built_deployed_and_probed(tmp_path: Path) -> None:
    local_project(tmp_path, """{ path = "api/src/main.txt", pattern = 'VERSION = "([^"]*)"' }""", 'VERSION = \\"{marker}\\"')
    out = smoke(tmp_path, "--iterations", "2", "--json", str(tmp_path / "smoke.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "smoke.json").read_text())["services"]["api"]
    assert len(report["samples"]) == 4 and all(s["ok"] for s in report["samples"])
    assert all(s["spans"].get("push:app", 0) > 0 and "build:compile" in s["spans"] for s in report["samples"])
    assert (tmp_path / "api" / "src" / "main.txt").read_text() == 'const VERSION = "v1"\n'  # restored
    assert (tmp_path / "box" / "app" / "bin" / "api").read_text() == 'const VERSION = "v1"\n'


def test_an_edit_that_deploys_nothing_fails_the_iteration(tmp_path: Path) -> None:
    """A comment appended to a source the build strips: build and scan ran, nothing was pushed.
    That used to be reported as 'live in ~260 ms'."""
    local_project(tmp_path, """{ path = "api/src/main.txt", comment = "//" }""", "VERSION")
    out = smoke(tmp_path, "--iterations", "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nothing was pushed" in out.stdout and "smoke.pattern" in out.stdout


def test_smoke_beside_a_running_daemon_drives_it(tmp_path: Path) -> None:
    """Never a second engine: the daemon builds and pushes each edit once, and times it."""
    local_project(tmp_path, """{ path = "api/src/main.txt", pattern = 'VERSION = "([^"]*)"' }""", 'VERSION = \\"{marker}\\"')
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
    daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", "-c", str(tmp_path / "syncd.toml")],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "box" / "app" / "bin" / "api").exists() or not (tmp_path / ".syncd" / "api.json").exists():
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "syncd", "smoke", "--iterations", "2"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "edits synced by the running daemon at" in out.stdout and f"(pid {daemon.pid})" in out.stdout
        assert "building before the first sync" not in out.stdout + out.stderr  # no engine of its own
        records = [json.loads(line) for line in (tmp_path / ".syncd" / "trace.jsonl").read_text().splitlines()]
        builds = [s for r in records if not r["reconcile"] for s in r["spans"] if s["name"] == "build:compile"]
        assert len(builds) == 4, builds  # 2 edits + 2 restores, each built once, by the daemon
    finally:
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(30) == 0
        log.close()
    assert (tmp_path / "api" / "src" / "main.txt").read_text() == 'const VERSION = "v1"\n'


def test_a_smoke_pattern_that_matches_nothing_is_refused_before_anything_changes(tmp_path: Path) -> None:
    local_project(tmp_path, """{ path = "api/src/main.txt", pattern = 'NOT_THERE = "([^"]*)"' }""", "x")
    out = smoke(tmp_path, "--iterations", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "smoke.pattern" in out.stderr and "matches nothing" in out.stderr and "main.txt" in out.stderr
    assert (tmp_path / "api" / "src" / "main.txt").read_text() == 'const VERSION = "v1"\n'
