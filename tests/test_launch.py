"""`syncd run` re-executes itself once on the C library's allocator (syncd/launch.py); the
other commands, and a user's own PYTHONMALLOC, are left alone; the daemon's children do not
inherit the variables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from syncd.launch import MARK, reexec_env, settle_env
from test_cli import project

SYNCD = [sys.executable, "-m", "syncd"]


def test_only_the_daemon_is_reexecuted_and_only_once() -> None:
    env = reexec_env(["syncd", "run", "-c", "x.toml"], {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "PYTHONMALLOC": "malloc", MARK: "malloc"}
    assert reexec_env(["syncd", "run"], env) is None  # the re-executed process goes on
    assert reexec_env(["syncd", "run"], {"PYTHONMALLOC": "pymalloc"}) is None  # the user's choice stands
    for argv in (["syncd", "sync"], ["syncd", "status", "--json"], ["syncd"], ["syncd", "--version"],
                 ["syncd", "sync", "-c", "run"]):
        assert reexec_env(argv, {}) is None, argv


def test_the_variables_leave_with_the_reexecution() -> None:
    ours = {"PATH": "/bin", "PYTHONMALLOC": "malloc", MARK: "malloc"}
    settle_env(ours)
    assert ours == {"PATH": "/bin"}
    users = {"PYTHONMALLOC": "debug"}
    settle_env(users)
    assert users == {"PYTHONMALLOC": "debug"}


def test_the_daemon_runs_on_malloc_and_its_steps_do_not_inherit_it(tmp_path: Path) -> None:
    """A real `syncd run`: the same process id executes with PYTHONMALLOC=malloc (its initial
    environment, /proc/PID/environ), and a run step it starts sees neither variable."""
    src = project(tmp_path)  # test_cli's project: a local target, app/ -> /srv/app
    with open(tmp_path / "syncd.toml", "a") as cfg:  # (its last table is the service)
        cfg.write("run = [{ cmd = \"env > '%s'\" }]\n" % (tmp_path / "env.txt"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", MARK)}
    proc = subprocess.Popen(SYNCD + ["run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while b"PYTHONMALLOC=malloc\0" not in Path(f"/proc/{proc.pid}/environ").read_bytes():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "syncd run did not re-execute itself on malloc"
            time.sleep(0.02)
        (src / "main.py").write_text("print('edited')\n")
        seen = tmp_path / "env.txt"
        while not seen.exists() or not seen.read_text().endswith("\n"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run step did not run"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "PYTHONMALLOC" not in seen.read_text() and MARK not in seen.read_text()


def test_sync_exits_at_once_with_its_output_whole(tmp_path: Path) -> None:
    """`syncd sync` ends with os._exit (no teardown of its objects): nothing it logged or
    printed may be lost by that, every line whole, and its exit code stays the command's."""
    project(tmp_path)
    done = subprocess.run(SYNCD + ["sync", "--log-format", "json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert "reconciled" in events, done.stderr
    dry = subprocess.run(SYNCD + ["sync", "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and "up to date" in dry.stdout, dry
    bad = subprocess.run(SYNCD + ["sync", "--service", "nosuch"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown service(s): nosuch" in bad.stderr, bad
