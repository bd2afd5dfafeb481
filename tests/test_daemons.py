"""Finding the running daemon without -c (syncd/daemons.py), as a user runs the commands: from
the project, from a subdirectory, from elsewhere with one or several daemons running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_api import CONFIG, Daemon


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, str]:
    """A registry of this test's own (the user's real one may list other daemons)."""
    return {"SYNCD_RUNTIME_DIR": str(tmp_path / "registry")}


def syncd(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncd", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_from_a_subdirectory_the_projects_daemon_is_found(tmp_path: Path, registry: dict[str, str]) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", env=registry)
    try:
        (tmp_path / "src" / "deep" / "er").mkdir(parents=True)
        out = syncd(tmp_path / "src" / "deep" / "er", registry, "status", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["config"] == str(tmp_path / "syncd.toml")
        assert out.stderr == ""  # the obvious choice is not commented on
    finally:
        assert d.stop() == 0


def test_elsewhere_the_one_running_daemon_is_used_and_named(tmp_path: Path, registry: dict[str, str]) -> None:
    """The report: from the repository root (whose config/syncd.toml has no daemon) and from a
    directory without a config, `syncd status` said there was no daemon while the example's ran."""
    app = tmp_path / "examples" / "app"
    (app / "config").mkdir(parents=True)
    d = Daemon(app, "127.0.0.1:0", env=registry)
    (tmp_path / "config").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "config" / "syncd.toml").write_text(CONFIG.format(api="127.0.0.1:0", extra="").replace('"src"', '"../src"'))
    (tmp_path / "elsewhere").mkdir()
    try:
        for cwd in (tmp_path, tmp_path / "elsewhere"):
            out = syncd(cwd, registry, "status", "--json")
            assert out.returncode == 0, (cwd, out.stderr)
            assert json.loads(out.stdout)["config"] == str(app / "syncd.toml")
            assert f"using the syncd daemon for {app / 'syncd.toml'} (pid {d.proc.pid}" in out.stderr, out.stderr
        out = syncd(tmp_path, registry, "trigger", "hello")
        assert out.returncode == 0 and "ran by the daemon" in out.stdout, out.stderr
        out = syncd(tmp_path, registry, "trace", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["records"] >= 1, out.stdout + out.stderr
        # -c still means exactly that config: its daemon is not running
        out = syncd(tmp_path, registry, "status", "-c", "config/syncd.toml")
        assert out.returncode == 1 and "no syncd daemon is running for config/syncd.toml" in out.stderr
    finally:
        assert d.stop() == 0


def test_several_daemons_are_listed_to_pick_from(tmp_path: Path, registry: dict[str, str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "elsewhere").mkdir()
    a = Daemon(tmp_path / "a", "127.0.0.1:0", env=registry)
    b = Daemon(tmp_path / "b", "127.0.0.1:0", env=registry)
    try:
        out = syncd(tmp_path / "elsewhere", registry, "pause")
        assert out.returncode == 2, out.stderr
        assert "2 syncd daemons are running" in out.stderr and "pick one with -c FILE" in out.stderr
        for d in (a, b):
            assert f"{d.root / 'syncd.toml'} (pid {d.proc.pid}, API {d.address}" in out.stderr
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_nothing_found_names_what_was_searched(tmp_path: Path, registry: dict[str, str]) -> None:
    out = syncd(tmp_path, registry, "status")
    assert out.returncode == 2
    said = " ".join(out.stderr.split())
    assert f"syncd.toml and config/syncd.toml in {tmp_path.resolve()} and every directory above it" in said, said
    assert "no syncd daemon is running" in said


def test_a_killed_daemon_leaves_nothing_that_misleads(tmp_path: Path, registry: dict[str, str]) -> None:
    d = Daemon(tmp_path / ".", "127.0.0.1:0", env=registry)
    entries = list(Path(registry["SYNCD_RUNTIME_DIR"]).glob("*.json"))
    assert len(entries) == 1 and "secret" not in entries[0].read_text()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    d.log.close()
    (tmp_path / "sub").mkdir()
    out = syncd(tmp_path / "sub", registry, "status")  # the project's config, found from below
    assert out.returncode == 1 and f"no syncd daemon is running for {tmp_path / 'syncd.toml'}" in out.stderr, out.stderr
    assert not list(Path(registry["SYNCD_RUNTIME_DIR"]).glob("*.json"))  # the stale entry was removed


# --- one writer per project (syncd/statelock.py) ----------------------------------------------


def test_a_second_daemon_is_refused_naming_the_first_and_a_killed_one_leaves_no_lock(
        tmp_path: Path, registry: dict[str, str]) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", env=registry)
    config = tmp_path / "syncd.toml"
    try:
        second = syncd(tmp_path, registry, "run", "-c", str(config))  # a daemon that started would time out here
        assert second.returncode == 1, second.stderr
        said = second.stderr
        assert f"a syncd daemon already runs for {config}: pid {d.proc.pid}, API {d.address}, since " in said, said
        assert f"syncd status -c {config}" in said and f"kill {d.proc.pid}" in said, said
        assert "Traceback" not in said
        # the first daemon is untouched: still the one in api.json and the registry, still serving
        assert json.loads((tmp_path / ".syncd" / "api.json").read_text())["pid"] == d.proc.pid
        assert json.loads(d.cli("status", "--json").stdout)["config"] == str(config)
        assert len(list(Path(registry["SYNCD_RUNTIME_DIR"]).glob("*.json"))) == 1
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
    finally:
        if d.proc.poll() is None:
            d.stop()
        d.log.close()
    # nothing to clean by hand: the kernel released the lock with the process
    again = Daemon(tmp_path, "127.0.0.1:0", env=registry)
    assert again.cli("status", "--json").returncode == 0
    assert again.stop() == 0


def test_sync_beside_a_daemon_is_refused_and_says_how_to_resync(tmp_path: Path, registry: dict[str, str]) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", env=registry)
    try:
        d.wait_box("a.txt", "a\n")
        known = tmp_path / ".syncd" / "known"

        def records() -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in known.iterdir()} if known.exists() else {}

        deadline = time.monotonic() + 30
        while not (records() and json.loads(d.cli("status", "--json").stdout)["idle"]):
            assert time.monotonic() < deadline, "the daemon did not settle"
            time.sleep(0.05)
        before = records()
        (tmp_path / "box" / "app" / "stray.txt").write_text("only a sync would delete this")
        out = d.cli("sync")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"syncd sync: refused: a syncd daemon already runs for {tmp_path / 'syncd.toml'}: pid {d.proc.pid}" \
            in out.stderr, out.stderr
        assert f"syncd resync -c {tmp_path / 'syncd.toml'}" in out.stderr
        assert (tmp_path / "box" / "app" / "stray.txt").exists() and records() == before  # it wrote nothing
        dry = d.cli("sync", "--dry-run")  # only reads: allowed beside the daemon
        assert dry.returncode == 0 and "/app/stray.txt" in dry.stdout, dry.stdout + dry.stderr
        assert d.cli("resync").returncode == 0  # what the message advises: the daemon compares and converges
        deadline = time.monotonic() + 30
        while (tmp_path / "box" / "app" / "stray.txt").exists():
            assert time.monotonic() < deadline, "the daemon's resync did not delete the stray file"
            time.sleep(0.05)
    finally:
        assert d.stop() == 0
    assert syncd(tmp_path, registry, "sync").returncode == 0  # with the daemon gone, sync runs


def test_a_running_sync_holds_the_project_too(tmp_path: Path, registry: dict[str, str]) -> None:
    """Whatever writes the state holds the lock: a daemon started during a `syncd sync` is refused
    and says what runs (here this test process stands in for the sync)."""
    from syncd.statelock import acquire

    (tmp_path / "src").mkdir()
    (tmp_path / "syncd.toml").write_text(CONFIG.format(api="127.0.0.1:0", extra=""))
    with acquire(tmp_path / ".syncd", "sync", tmp_path / "syncd.toml"):
        out = syncd(tmp_path, registry, "run")
        assert out.returncode == 1, out.stderr
        assert f"syncd run: refused: `syncd sync` (pid {os.getpid()}, since " in out.stderr, out.stderr
        assert f"kill {os.getpid()}" in out.stderr and not (tmp_path / ".syncd" / "api.json").exists()
        smoke = syncd(tmp_path, registry, "smoke")  # with no daemon, smoke runs an engine of its own: the same
        assert smoke.returncode == 1 and "syncd smoke: refused: `syncd sync`" in smoke.stderr, smoke.stderr
    assert (tmp_path / ".syncd" / "state.lock").read_text() == ""  # released: names no one
