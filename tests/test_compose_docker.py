"""develop.watch rules against containers started as Compose starts them: `docker compose up`
when a Compose CLI (v2.22+) is there, else `docker run` with the labels Compose puts on them
(project, service, container number, one-off) — the labels are all syncd reads. Trees are
compared through Docker's archive API (tests/trees.py), not through syncd."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from syncd.config import load_compose_config
from tests.conftest import IMAGES, REPO
from tests.engine_harness import running, wait_until
from tests.trees import container_tree, diff_trees, local_tree

pytestmark = pytest.mark.docker

SLEEP = ["sh", "-c", "trap 'exit 0' TERM; echo start >> /tmp/starts; while :; do sleep 0.1; done"]


def compose_cli() -> list[str] | None:
    """`docker compose` or `docker-compose`, if one that knows develop.watch (v2.22+) is here."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        try:
            out = subprocess.run([*cmd, "version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        parts = out.stdout.strip().lstrip("v").split(".")
        if out.returncode == 0 and len(parts) >= 2 and parts[0].isdigit() and (int(parts[0]), int(parts[1])) >= (2, 22):
            return cmd
    return None


class Stack:
    """A compose project's containers, started and removed by the test."""

    def __init__(self, client, project: str, file: Path) -> None:
        self.client, self.project, self.file = client, project, file
        self.cli = compose_cli()

    def up(self, service: str, replicas: int = 1) -> list:
        if self.cli is not None:
            subprocess.run([*self.cli, "-p", self.project, "-f", str(self.file), "up", "-d", "--scale",
                            f"{service}={replicas}", service], check=True, capture_output=True)
        else:
            for n in range(1, replicas + 1):
                self.run(service, n, oneoff=False)
        return self.containers(service)

    def run(self, service: str, number: int, oneoff: bool):
        """One container labelled as Compose labels it (`oneoff`: as `docker compose run` does)."""
        labels = {"com.docker.compose.project": self.project, "com.docker.compose.service": service,
                  "com.docker.compose.container-number": str(number), "com.docker.compose.oneoff": str(oneoff),
                  "com.docker.compose.project.config_files": str(self.file),
                  "com.docker.compose.project.working_dir": str(self.file.parent),
                  "com.docker.compose.version": "2.29.0", "com.docker.compose.depends_on": "",
                  "com.docker.compose.image": IMAGES["busybox"], "syncd-test": "1"}
        name = f"{self.project}-{service}-run-{number}" if oneoff else f"{self.project}-{service}-{number}"
        return self.client.containers.run(IMAGES["busybox"], SLEEP, name=name, detach=True, labels=labels)

    def containers(self, service: str, oneoff: bool = False) -> list:
        found = self.client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        return [c for c in found if c.labels.get("com.docker.compose.oneoff") == str(oneoff)]

    def down(self) -> None:
        for c in self.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={self.project}"}):
            c.remove(force=True)


@pytest.fixture
def stack(docker_client, tmp_path):
    made: list[Stack] = []

    def make(project: str, text: str) -> Stack:
        root = tmp_path / project
        root.mkdir(exist_ok=True)
        (root / "compose.yaml").write_text(textwrap.dedent(text))
        s = Stack(docker_client, project, root / "compose.yaml")
        made.append(s)
        return s

    yield make
    for s in made:
        s.down()


def expected(root: Path, drop: tuple[str, ...] = ()) -> dict:
    """The local tree less what the rules leave out (the test names it: an independent oracle)."""
    tree = local_tree(root)
    return {k: v for k, v in tree.items() if not any(k == d or k.startswith(d + "/") for d in drop)}


@pytest.mark.anyio
async def test_every_replica_of_a_scaled_service_converges_and_runs_the_exec(stack, tmp_path: Path) -> None:
    s = stack(f"syncdc{os.getpid()}", f"""
        services:
          web:
            image: {IMAGES["busybox"]}
            command: {SLEEP!r}
            deploy: {{replicas: 3}}
            develop:
              watch:
                - action: sync
                  path: ./web/src
                  target: /app/src
                  ignore: ["*.test.js", generated/]
                - action: sync+exec
                  path: ./web/conf
                  target: /app/conf
                  exec:
                    command: ["sh", "-c", "echo $$WHO $$PWD >> /tmp/execs"]
                    working_dir: /app
                    environment: [WHO=syncd]
    """)
    root = s.file.parent
    for rel, text in (("web/src/app.js", "v1"), ("web/src/app.test.js", "test"), ("web/src/lib/util.js", "u"),
                      ("web/src/generated/big.js", "gen"), ("web/conf/app.conf", "c1")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    replicas = s.up("web", 3)
    oneoff = s.run("web", 1, oneoff=True)  # `docker compose run web`: not a replica, never synced
    assert len(replicas) == 3
    cfg = load_compose_config([str(s.file)])

    def converged() -> bool:
        want_src = expected(root / "web/src", drop=("app.test.js", "generated"))
        want_conf = expected(root / "web/conf")
        return all(not diff_trees(want_src, container_tree(c, "/app/src"))
                   and not diff_trees(want_conf, container_tree(c, "/app/conf")) for c in replicas)

    def execs(c) -> str:
        return c.exec_run(["cat", "/tmp/execs"]).output.decode()

    async with running(cfg) as engine:
        assert len(engine.targets["web"].workers) == 3
        await wait_until(converged, timeout=60, what="every replica holding the local trees")
        (root / "web/src/app.js").write_text("v2")
        (root / "web/src/lib/new.js").write_text("new")
        (root / "web/src/lib/util.js").unlink()
        (root / "web/conf/app.conf").write_text("c2")
        await wait_until(converged, timeout=60, what="the edits in every replica")
        await wait_until(lambda: all("syncd /app" in execs(c) for c in replicas), timeout=60,
                         what="the sync+exec command in every replica, in its working_dir with its environment")
        await wait_until(engine.idle, what="idle")
    assert container_tree(oneoff, "/app") == {}
    assert all(container_tree(c, "/app/src/generated") == {} for c in replicas)


@pytest.mark.anyio
async def test_sync_restart_restarts_after_the_file_landed(stack) -> None:
    s = stack(f"syncdr{os.getpid()}", f"""
        services:
          proxy:
            image: {IMAGES["busybox"]}
            command: {SLEEP!r}
            develop:
              watch:
                - {{action: sync+restart, path: ./proxy.conf, target: /etc/proxy.conf}}
    """)
    (s.file.parent / "proxy.conf").write_text("v1\n")
    [c] = s.up("proxy")

    def starts() -> int:
        import docker.errors

        try:
            return c.exec_run(["cat", "/tmp/starts"]).output.decode().count("start")
        except docker.errors.APIError:
            return -1  # restarting right now

    async with running(load_compose_config([str(s.file)])) as engine:
        await wait_until(lambda: starts() == 2, timeout=60, what="the restart after the first sync")
        (s.file.parent / "proxy.conf").write_text("v2\n")
        await wait_until(lambda: starts() == 3, timeout=60, what="the restart after the edit")
        await wait_until(engine.idle, what="idle")
        assert c.exec_run(["cat", "/etc/proxy.conf"]).output == b"v2\n"


def test_syncd_sync_compose_from_the_command_line(stack) -> None:
    """`syncd sync --compose` with the compose file found as Compose finds it (from a
    subdirectory), every replica converged, exit 0; `validate --compose` names the project."""
    s = stack(f"syncdcli{os.getpid()}", f"""
        services:
          web:
            image: {IMAGES["busybox"]}
            command: {SLEEP!r}
            develop:
              watch: [{{action: sync, path: ./site, target: /srv/site}}]
    """)
    root = s.file.parent
    (root / "site" / "css").mkdir(parents=True)
    (root / "site" / "index.html").write_text("<h1>hi</h1>")
    (root / "site" / "css" / "a.css").write_text("a{}")
    replicas = s.up("web", 2)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "syncd", "sync", "--compose"], cwd=root / "site" / "css", env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for c in replicas:
        assert not diff_trees(local_tree(root / "site"), container_tree(c, "/srv/site"))
    out = subprocess.run([sys.executable, "-m", "syncd", "validate", "--compose", "compose.yaml"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"# project '{s.project}'" in out.stdout, out.stdout + out.stderr
