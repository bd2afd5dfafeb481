"""examples/fullstack/README.md's recipe, run as written, line by line, in a copy of the example:
what a new user does first. `syncd run` goes to the background (the README says: a terminal of
its own); a line whose comment says `→ TEXT` is retried until it prints TEXT (the edit it follows
takes a build, a push and a restart)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from test_fullstack import _copy_example

pytestmark = pytest.mark.docker

README = REPO / "examples" / "fullstack" / "README.md"


def recipe() -> list[tuple[str, str | None]]:
    """(command, expected output or None) for each line of the README's recipe block."""
    text = README.read_text()
    block = text.split("<!-- recipe:", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.splitlines():
        command, _, comment = line.partition(" # ")
        expect = re.search(r"→ (.+?)\s*$", comment)
        lines.append((command.strip(), expect[1] if expect else None))
    return lines


def test_the_recipe_is_a_shell_block_of_commands() -> None:
    steps = recipe()
    assert [c for c, _ in steps if c.startswith("syncd run")] == ["syncd run -c config/fullstack.toml"]
    assert steps[0][0] == "sh scripts/dev-up.sh" and steps[-1][0] == "sh scripts/dev-down.sh"
    assert any(c == "syncd smoke --iterations 2" for c, _ in steps)


def test_the_example_runs_from_its_readme(docker_client, tmp_path: Path) -> None:  # noqa: ANN001
    root = tmp_path / "fs"
    _copy_example(root)
    env = {**os.environ, "SYNCD_RUNTIME_DIR": str(tmp_path / "daemons")}  # only this test's daemon
    for key in [k for k in env if k.startswith("PG")] + ["CI"]:
        env.pop(key, None)  # as on a fresh machine: the example brings its own PostgreSQL
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}:{env['PATH']}"  # the `syncd` of this Python (pip install -e)
    daemon: subprocess.Popen | None = None
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115
    done: list[str] = []
    try:
        for command, expect in recipe():
            if command.startswith("syncd run"):
                daemon = subprocess.Popen(command, shell=True, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
                done.append(command)
                continue
            deadline = time.monotonic() + (300 if expect else 0)
            while True:
                out = subprocess.run(command, shell=True, cwd=root, env=env, capture_output=True, text=True, timeout=600)
                ok = out.returncode == 0 and (expect is None or expect in out.stdout)
                if ok or time.monotonic() > deadline:
                    break
                assert daemon is None or daemon.poll() is None, f"syncd run exited:\n{(tmp_path / 'daemon.log').read_text()[-4000:]}"
                time.sleep(0.5)
            assert ok, (f"after {done}:\n$ {command}\nexit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
                        f"\n--- daemon log ---\n{(tmp_path / 'daemon.log').read_text(errors='replace')[-3000:]}")
            if command == "syncd status":
                assert "fullstack-backend" in out.stdout and "idle" in out.stdout
            if command.startswith("syncd smoke"):
                assert "edits synced by the running daemon" in out.stdout, out.stdout
            done.append(command)
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGINT)
            daemon.wait(60)
        log.close()
        subprocess.run("sh scripts/dev-down.sh", shell=True, cwd=root, env=env, capture_output=True, check=False)
    # the smoke run restored its edits: only the recipe's own edit remains
    assert 'VERSION: &str = "v2"' in (root / "backend" / "src" / "version.rs").read_text()
    assert 'VERSION = "v1"' in (root / "frontend" / "src" / "version.js").read_text()
    assert "file events may have been lost" not in (tmp_path / "daemon.log").read_text(errors="replace")
