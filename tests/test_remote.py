"""syncd at a distance: the kube fixture's API server and the Docker engine behind a simulated
link (tests/linksim.py, wired by tests/remote_support.py). What crosses the link is what users'
clusters see: the kubeconfig names the proxy, DOCKER_HOST names it for a Docker target.

Every case compares whole trees (tests/trees.py); fault cases are rows of docs/RELIABILITY.md."""

from __future__ import annotations

import random
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from engine_harness import running, settle, wait_until, write_config
from kube_support import NAMESPACE
from remote_support import docker_behind_link, fixture_behind_link
from storms import storm
from test_faults import config_text, lost
from trees import Tree, container_tree, diff_trees, local_tree

from syncd.settings import DEFAULT_SETTINGS

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

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
        async with running(write_config(tmp_path, config_text(KUBE_TARGET))) as engine:
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
        async with running(write_config(tmp_path, config_text(target))) as engine:
            storm(src, random.Random(5), ops=40)
            await settle(engine, src, timeout=120)
            problems = diff_trees(local_tree(src), container_tree(container, "/app/src"))
            assert not problems, "\n".join(problems[:15])
        assert link.bytes_up > size, (link.bytes_up, size)


# --- faults at a distance: each a row of docs/RELIABILITY.md ---------------------------------


def big_tree(src: Path, files: int, size: int, tag: str = "v0") -> None:
    for i in range(files):
        d = src / f"d{i // 100:02}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04}.bin").write_bytes(f"{tag} {i}\n".encode() + random.Random(i).randbytes(size))


def pod_files(cluster) -> Tree:  # noqa: ANN001
    return cluster.tree("web-0", "/app/src")


@pytest.mark.reliability("link stalls for 10 s in the middle of a 6 MB batch (home profile: 40 ms each way, "
                         "10 Mbit/s up)", kind="fault")
async def test_link_stall_mid_batch(cluster, monkeypatch, tmp_path: Path, reliability) -> None:  # noqa: ANN001
    """The session reports the stall (keep-alive check shortened to 2 s here; 5 s by default)
    and its end; the batch completes after it, whole tree compared."""
    from structlog.testing import capture_logs

    fixture_only(cluster)
    cluster.create_pod("web-0", {"app": "web"})
    src = tmp_path / "src"
    (src / "start.txt").parent.mkdir(parents=True)
    (src / "start.txt").write_text("start\n")
    settings = replace(DEFAULT_SETTINGS, session=replace(DEFAULT_SETTINGS.session, keepalive_every=2.0))
    cfg = write_config(tmp_path, config_text(KUBE_TARGET))
    with fixture_behind_link(cluster.fx, "home", tmp_path) as (link, kubeconfig), capture_logs() as logs:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        async with running(cfg, settings=settings) as engine:
            await settle(engine, src, timeout=60)
            before = link.bytes_up
            n_records = len(engine.trace.records)
            big_tree(src, 400, 16_000)  # ~6.4 MB: ~5 s of the link's 10 Mbit/s
            await wait_until(lambda: link.bytes_up - before > 1_500_000, 60, "the batch to start crossing the link")
            t_stall = time.time()
            link.stall(10)
            reliability.tried(1)
            await anyio.sleep(10)
            await settle(engine, src, timeout=120)
            t_done = time.time()
    reliability.lost = lost(local_tree(src), pod_files(cluster))
    failed = [r for r in engine.trace.records[n_records:] if not r["ok"]]
    events = [e["event"] for e in logs]
    reliability.outcome = (f"stalled 10 s mid-batch: 'no progress' reported {events.count('no progress')}x, "
                           f"'moving again' {events.count('moving again')}x; {len(failed)} failed batch(es) "
                           f"{'(retried)' if failed else '(the batch waited and went on)'}; converged {t_done - t_stall - 10:.1f} s after the link resumed")
    assert not reliability.lost, reliability.lost[:10]
    assert "no progress" in events and "moving again" in events[events.index("no progress"):], events


@pytest.mark.reliability("every connection through the link dropped every 0.5 s for 6 s while files change "
                         "(cloud profile)", kind="fault")
async def test_link_dropping_every_connection(cluster, monkeypatch, tmp_path: Path, reliability) -> None:  # noqa: ANN001
    fixture_only(cluster)
    cluster.create_pod("web-0", {"app": "web"})
    src = tmp_path / "src"
    seed(src, files=20)
    with fixture_behind_link(cluster.fx, "cloud", tmp_path) as (link, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        async with running(write_config(tmp_path, config_text(KUBE_TARGET))) as engine:
            await settle(engine, src, timeout=60)
            n_records = len(engine.trace.records)
            rng = random.Random(9)
            t0 = time.time()
            drops = 0
            while time.time() - t0 < 6:
                storm(src, rng, ops=10)
                link.drop_all()
                drops += 1
                reliability.tried(1)
                await anyio.sleep(0.5)
            t_end = time.time()
            await settle(engine, src, timeout=120)
            t_done = time.time()
    reliability.lost = lost(local_tree(src), pod_files(cluster))
    failed = [r for r in engine.trace.records[n_records:] if not r["ok"]]
    reliability.outcome = (f"{drops} drops of every open connection ({link.connections} connections made in all); "
                           f"{len(failed)} failed batch(es) retried; converged {t_done - t_end:.1f} s after the last drop")
    assert not reliability.lost, reliability.lost[:10]


@pytest.mark.reliability("slow link (home: 10 Mbit/s up) during a 10 MB reconcile, one file edited meanwhile",
                         kind="fault")
async def test_single_edit_overtakes_a_slow_reconcile(cluster, monkeypatch, tmp_path: Path, reliability) -> None:  # noqa: ANN001
    """The edit must not wait behind the whole reconcile: it is measured how long it waited."""
    fixture_only(cluster)
    cluster.create_pod("web-0", {"app": "web"})
    src = tmp_path / "src"
    big_tree(src, 1000, 10_000)  # ~10 MB: ~8 s of the link's 10 Mbit/s
    (src / "edit.txt").write_text("before\n")
    backing = cluster.fx.docker_container("web-0", "app", namespace=NAMESPACE)

    def in_pod(content: str) -> bool:
        code, out = backing.exec_run(["cat", "/app/src/edit.txt"])
        return code == 0 and out.decode() == content

    with fixture_behind_link(cluster.fx, "home", tmp_path) as (link, kubeconfig):
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        async with running(write_config(tmp_path, config_text(KUBE_TARGET)), wait_idle=False) as engine:
            await wait_until(lambda: link.bytes_up > 1_000_000, 60, "the reconcile to start crossing the link")
            t_edit = time.time()
            (src / "edit.txt").write_text("during the reconcile\n")
            reliability.tried(1)
            await wait_until(lambda: in_pod("during the reconcile\n"), 120, "the edit in the pod")
            waited = time.time() - t_edit
            t_edit_seen = time.time()
            await wait_until(engine.idle, 180, "the reconcile to end")
            t_idle = time.time()
            await settle(engine, src, timeout=120)
    reliability.lost = lost(local_tree(src), pod_files(cluster))
    rest = t_idle - t_edit_seen
    reliability.outcome = (f"the edit was in the pod {waited:.1f} s after it was written; the reconcile "
                           f"went on {rest:.1f} s after that ({link.bytes_up / 1e6:.1f} MB up in all: it is sent "
                           "in chunks, the edit's batch between two)")
    assert not reliability.lost, reliability.lost[:10]
    # The edit's batch ended before the reconcile did: it overtook it between two chunks.
    records = engine.trace.records
    reconcile = next(r for r in records if r.get("reconcile"))
    edit = next(r for r in records if not r.get("reconcile") and r["spans"])
    assert edit["spans"][-1]["end"] < reconcile["spans"][-1]["end"], "the edit waited for the whole reconcile"
    assert sum(s["name"].startswith("push:") for s in reconcile["spans"]) > 2  # chunks
