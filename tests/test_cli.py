"""The `syncd` command as users run it: subprocesses, exit codes, messages, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trees import diff_trees, local_tree

SYNCD = [sys.executable, "-m", "syncd"]
# Drop root's power to read anything: makes "permission denied" real for a root test run.
NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def project(tmp_path: Path) -> Path:
    src = tmp_path / "app"
    (src / "sub").mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    (src / "sub" / "x.txt").write_text("x")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("sub/x.txt")
    (tmp_path / "syncd.toml").write_text(
        """
[daemon]
trace = ".syncd/trace.jsonl"
[targets.box]
kind = "local"
path = "box"
[[services]]
name = "app"
target = "box"
sync = [{ src = "app", dest = "/srv/app" }]
"""
    )
    return src


def run(args: list[str], cwd: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run((prefix or []) + SYNCD + args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_sync_converges_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    src = project(tmp_path)
    dry = run(["sync", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "/srv/app/main.py" in dry.stdout and "/srv/app/link" in dry.stdout
    assert not (tmp_path / "box" / "srv").exists()
    done = run(["sync"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not diff_trees(local_tree(src), local_tree(tmp_path / "box/srv/app"))
    (tmp_path / "box/srv/app/stale").write_text("not in the local tree")
    assert "stale" in run(["sync", "--dry-run"], tmp_path).stdout
    assert run(["sync"], tmp_path).returncode == 0
    assert not (tmp_path / "box/srv/app/stale").exists()
    assert "up to date" in run(["sync", "--dry-run"], tmp_path).stdout


def test_sync_unknown_service_is_a_usage_error(tmp_path: Path) -> None:
    project(tmp_path)
    res = run(["sync", "--service", "nope"], tmp_path)
    assert res.returncode == 2 and "unknown service(s): nope" in res.stderr and "app" in res.stderr


def test_missing_config_names_the_paths_searched(tmp_path: Path) -> None:
    res = run(["sync"], tmp_path)
    assert res.returncode == 2
    assert "syncd.toml" in res.stderr and "config/syncd.toml" in res.stderr and "-c FILE" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's capabilities to make a file unreadable")
def test_unreadable_file_is_reported_and_the_rest_syncs(tmp_path: Path) -> None:
    src = project(tmp_path)
    secret = src / "sub" / "private.key"
    secret.write_text("k")
    secret.chmod(0)
    res = run(["sync", "--log-format", "json"], tmp_path, prefix=NO_DAC)
    assert res.returncode == 1, res.stderr
    errors = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in errors if e.get("level") == "error"]
    assert errors and errors[0]["path"] == str(secret) and "Permission denied" in errors[0]["error"]
    assert "permissions" in errors[0]["hint"]
    box = tmp_path / "box/srv/app"
    assert (box / "main.py").read_text() == "print('hi')\n" and not (box / "sub/private.key").exists()


def test_run_exits_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    project(tmp_path)
    trace = tmp_path / ".syncd/trace.jsonl"
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(SYNCD + ["run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (trace.exists() and trace.read_text().strip()):  # the start-up reconcile is recorded
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "daemon did not reconcile"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - sent < 3.0, "shutdown must be prompt (contract: within a second)"
        assert "Traceback" not in err
        trace.unlink()


def test_run_syncs_edits_and_writes_trace_records(tmp_path: Path) -> None:
    src = project(tmp_path)
    trace = tmp_path / ".syncd/trace.jsonl"
    proc = subprocess.Popen(SYNCD + ["run", "--log-format", "json"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not trace.exists():
            time.sleep(0.05)
            assert time.monotonic() < deadline
        (src / "main.py").write_text("print('edited')\n")
        while not (tmp_path / "box/srv/app/main.py").read_text() == "print('edited')\n":
            time.sleep(0.02)
            assert time.monotonic() < deadline, "edit never arrived"
        while len(trace.read_text().splitlines()) < 2:
            time.sleep(0.02)
            assert time.monotonic() < deadline, "no batch record"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    batch = [json.loads(line) for line in trace.read_text().splitlines()][-1]
    names = [s["name"] for s in batch["spans"]]
    assert names[-1] == "total" and {"coalesce", "plan", "pack", "push:box/local"} <= set(names)
    assert batch["ok"] and batch["spans"][-1]["ms"] >= max(s["ms"] for s in batch["spans"][:-1])
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "batch" and entry["files"] == 1 for entry in logs)


def test_trace_command_summarizes(tmp_path: Path) -> None:
    project(tmp_path)
    assert run(["sync"], tmp_path).returncode == 0
    res = run(["trace"], tmp_path)
    assert res.returncode == 0 and "push" in res.stdout and "p95" in res.stdout
    missing = run(["trace", str(tmp_path / "nope.jsonl")], tmp_path)
    assert missing.returncode == 1 and "no trace file" in missing.stderr


def test_validate_via_module_entry_point(tmp_path: Path) -> None:
    project(tmp_path)
    res = run(["validate"], tmp_path)
    assert res.returncode == 0 and "1 service(s)" in res.stdout


def test_demo_runs_on_a_fresh_directory_and_reads_well_when_piped(tmp_path: Path) -> None:
    """The README's first command: the embedded example, no Docker. Piped (as in CI logs) every
    table title starts a line of its own."""
    out = subprocess.run([*SYNCD, "demo", "--edits", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("✓ every target matches the local tree") for line in lines), out.stdout
    for title in ("syncd demo: scripted edits done", "per step over the demo's batches (ms)"):
        assert any(line.startswith(title) for line in lines), (title, out.stdout)
    assert not any("┘" in line and not line.rstrip().endswith("┘") for line in lines), out.stdout
    assert (tmp_path / "syncd-demo" / ".syncd" / "trace.jsonl").exists()
