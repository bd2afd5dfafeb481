"""Finding the running daemon without -c (syncd/daemons.py), as a user runs the commands: from
the project, from a subdirectory, from elsewhere with one or several daemons running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
