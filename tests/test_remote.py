"""syncd at a distance: the kube fixture's API server and the Docker engine behind a simulated
link (tests/linksim.py, wired by tests/remote_support.py). What crosses the link is what users'
clusters see: the kubeconfig names the proxy, DOCKER_HOST names it for a Docker target.

Every case compares whole trees (tests/trees.py); fault cases are rows of docs/RELIABILITY.md."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from engine_harness import running, settle, write_config
from kube_support import NAMESPACE
from remote_support import docker_behind_link, fixture_behind_link
from storms import storm
from trees import container_tree, diff_trees, local_tree

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

CONFIG = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.web]
{target}
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
"""
KUBE_TARGET = f'kind = "kubernetes"\nnamespace = "{NAMESPACE}"\nselector = "app=web"'


def seed(src: Path, files: int = 50) -> int:
    """A small tree; its size in bytes."""
    (src / "pkg").mkdir(parents=True)
    for i in range(files):
        (src / "pkg" / f"m{i:03}.js").write_text(f"export const n = {i};\n" * 20)
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def fixture_only(cluster) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: the link is put in front of the fixture's API server")


async def test_kube_target_through_a_cloud_link(cluster, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    """The kubeconfig names a cloud-shaped link (20 ms each way, 50 Mbit/s) in front of the API
    server: kubectl and syncd both work through it, and syncd's pushes cross it."""
    fixture_only(cluster)
    cluster.create_pod("web-0", {"app": "web"})
    src = tmp_path / "src"
    size = seed(src)
    with fixture_behind_link(cluster.fx, "cloud", tmp_path) as (link, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        out = subprocess.run(["kubectl", "get", "pods", "-n", NAMESPACE, "-o", "name"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and "pod/web-0" in out.stdout, out.stderr
        after_kubectl = link.bytes_up
        async with running(write_config(tmp_path, CONFIG.format(target=KUBE_TARGET))) as engine:
            storm(src, random.Random(3), ops=40)
            await settle(engine, src, timeout=120)
            problems = diff_trees(local_tree(src), cluster.tree("web-0", "/app/src"))
            assert not problems, "\n".join(problems[:15])
        # the initial reconcile alone pushed the seeded tree through the link
        assert link.bytes_up - after_kubectl > size, (link.bytes_up, after_kubectl, size)
        assert link.connections >= 2


async def test_docker_target_through_a_link(docker_client, make_container, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    """DOCKER_HOST=tcp://<link>: the engine's API (discovery, events, exec sessions) crosses a
    home-shaped link (40 ms each way, 10 Mbit/s up)."""
    container = make_container()
    src = tmp_path / "src"
    size = seed(src)
    with docker_behind_link("home") as (link, docker_host):
        monkeypatch.setenv("DOCKER_HOST", docker_host)
        target = f'kind = "docker"\ncontainer = "{container.name}"'
        async with running(write_config(tmp_path, CONFIG.format(target=target))) as engine:
            storm(src, random.Random(5), ops=40)
            await settle(engine, src, timeout=120)
            problems = diff_trees(local_tree(src), container_tree(container, "/app/src"))
            assert not problems, "\n".join(problems[:15])
        assert link.bytes_up > size, (link.bytes_up, size)
