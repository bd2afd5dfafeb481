"""Kubernetes targets through the exec API: storms on a 3-replica selector (v5 and v4),
pods coming and going mid-storm, and every error a user hits, with its message.

Runs against the API-server fixture (pods are Docker containers); with
SYNCD_TEST_KUBECONFIG set, the same tests run against that real cluster."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from engine_harness import running, settle, wait_until, write_config
from kube_support import NAMESPACE
from syncd.config import KubernetesTarget
from syncd.transports.base import TransportError
from syncd.transports.base import ApplyRequest
from syncd.transports.kube import KubeTransport
from storms import storm
from trees import diff_trees, local_tree

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.cluster]

PODS = ["web-0", "web-1", "web-2"]


def kube_config(tmp_path: Path, selector: str = "app=web", extra: str = "") -> object:
    return write_config(
        tmp_path,
        f"""
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.web]
kind = "kubernetes"
namespace = "{NAMESPACE}"
selector = "{selector}"
{extra}
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
""",
    )


def seed(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.js").write_text("console.log(1)\n")
    (src / "with space ü.txt").write_text("x")
    return src


def assert_pods_equal(cluster, src: Path, pods: list[str]) -> None:  # noqa: ANN001
    want = local_tree(src)
    for pod in pods:
        problems = diff_trees(want, cluster.tree(pod, "/app/src"))
        assert not problems, f"{pod} differs:\n" + "\n".join(problems[:15])


@pytest.mark.parametrize("protocol", ["v5", "v4"])
async def test_storms_converge_on_three_replicas(cluster, tmp_path: Path, protocol: str) -> None:  # noqa: ANN001
    if protocol == "v4":
        cluster.only_v4()
    for pod in PODS:
        cluster.create_pod(pod, {"app": "web"})
    cluster.create_pod("other-0", {"app": "other"})  # not selected: never touched
    src = seed(tmp_path)
    rng = random.Random(7)
    async with running(kube_config(tmp_path)) as engine:
        assert len(engine.targets["web"].workers) == 3
        for _ in range(2):
            storm(src, rng, ops=50)
            await settle(engine, src, timeout=60)
            assert_pods_equal(cluster, src, PODS)
        transport = engine.targets["web"].transport
        assert set(transport.protocols.values()) == {f"{protocol}.channel.k8s.io"}
        assert not [r for r in engine.trace.records if not r["ok"]]
    assert cluster.tree("other-0", "/app/src") == {}


async def test_pods_come_and_go_mid_storm(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    src = seed(tmp_path)
    rng = random.Random(11)
    with capture_logs() as logs:
        async with running(kube_config(tmp_path), wait_idle=False) as engine:
            # nothing matches yet: edits accumulate locally
            storm(src, rng, ops=30)
            await wait_until(lambda: "no Running pod matches" in engine.targets["web"].error, 20, "the empty selector report")
            for pod in PODS:
                cluster.create_pod(pod, {"app": "web"})
            await settle(engine, src, timeout=60)
            assert_pods_equal(cluster, src, PODS)
            # replaced pod and restarted container (fresh filesystem) in the middle of a storm
            storm(src, rng, ops=20)
            cluster.replace_pod("web-1")
            storm(src, rng, ops=20)
            cluster.restart_container("web-2")
            storm(src, rng, ops=20)
            await wait_until(lambda: len(engine.targets["web"].workers) == 3, 30, "three pods again")
            await settle(engine, src, timeout=60)
            assert_pods_equal(cluster, src, PODS)
            # a pod deleted: dropped, no error storm
            cluster.delete_pod("web-0")
            storm(src, rng, ops=20)
            await wait_until(lambda: len(engine.targets["web"].workers) == 2, 30, "the deleted pod to be dropped")
            await settle(engine, src, timeout=60)
            assert_pods_equal(cluster, src, ["web-1", "web-2"])
    failures = [e for e in logs if e.get("log_level") == "error"]
    assert len(failures) <= 4, failures  # a push racing the deletion may fail once; nothing piles up


# --- errors users hit, each with its message ---------------------------------------------------


def transport(**spec: str) -> KubeTransport:
    return KubeTransport("web", KubernetesTarget(kind="kubernetes", namespace=NAMESPACE, **{"selector": "app=web", **spec}))


async def first_error(t: KubeTransport) -> TransportError:
    """Discover containers, then try a real push to each: the first error users would see."""
    try:
        refs = await t.containers()
        for ref in refs:
            await t.apply(ref, ApplyRequest("/app", [], [], iter([b"\0" * 1024])))
            await t.manifest(ref, ["/app/src"])
    except TransportError as e:
        return e
    finally:
        await t.close()
    raise AssertionError("no error raised")


async def test_missing_kubeconfig_and_context(cluster, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: rewrites the kubeconfig")
    e = await first_error(transport(context="nope"))
    assert "cannot load kubeconfig" in e.message and "nope" in e.message
    assert "available contexts: fixture" in e.hint and "targets.web.context" in e.hint
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing.yaml"))
    e = await first_error(transport())
    assert "cannot load kubeconfig" in e.message and "KUBECONFIG" in e.hint


async def test_unreachable_api_server(cluster, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: rewrites the kubeconfig")
    import yaml

    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {"server": "http://127.0.0.1:9"}  # nothing listens there
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(bad))
    e = await first_error(transport())
    assert "API server unreachable at http://127.0.0.1:9" in e.message and "kubectl cluster-info" in e.hint


async def test_unauthorized(cluster, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: rewrites the kubeconfig")
    bad = tmp_path / "kubeconfig"
    bad.write_text(Path(cluster.kubeconfig).read_text().replace(cluster.fx.token, "wrong-token"))
    monkeypatch.setenv("KUBECONFIG", str(bad))
    e = await first_error(transport())
    assert "unauthorized" in e.message and "credentials" in e.hint


async def test_rbac_denies_exec(cluster) -> None:  # noqa: ANN001
    cluster.create_pod("web-0", {"app": "web"})
    cluster.deny("create", "pods/exec")
    e = await first_error(transport())
    assert "forbidden" in e.message and "pods/exec" in e.hint and "kubectl auth can-i create pods/exec" in e.hint


async def test_pod_deleted_under_a_push(cluster) -> None:  # noqa: ANN001
    cluster.create_pod("web-0", {"app": "web"})
    t = transport()
    [ref] = await t.containers()
    cluster.delete_pod("web-0")
    with pytest.raises(TransportError) as info:
        await t.apply(ref, ApplyRequest("/app", [], [], iter([b"\0" * 1024])))
    assert "not found" in info.value.message and "web-0" in info.value.message
    await t.close()


async def test_wrong_and_missing_container_names(cluster) -> None:  # noqa: ANN001
    cluster.create_pod("web-0", {"app": "web"}, containers=["app", "sidecar"])
    e = await first_error(transport())
    assert "pod web-0 has 2 containers (app, sidecar)" in e.message and "targets.web.container" in e.hint
    e = await first_error(transport(container="api"))
    assert "pod web-0 has no container 'api' (it has: app, sidecar)" in e.message


async def test_crashlooping_container(cluster) -> None:  # noqa: ANN001
    cluster.create_pod("web-0", {"app": "web"})
    cluster.crashloop("web-0")
    e = await first_error(transport())
    assert "container 'app' is not running (CrashLoopBackOff" in e.message
    assert "kubectl logs -n dev web-0 -c app --previous" in e.hint


@pytest.mark.parametrize("image, words, fix", [
    ("syncd-test/notar:latest", "no 'tar' in the container", "add tar to the image"),
    ("syncd-test/nosh:latest", "no 'sh' in the container", "POSIX shell"),
])
async def test_image_without_tar_or_sh(cluster, image: str, words: str, fix: str) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: uses the local test images")
    cluster.create_pod("web-0", {"app": "web"}, image=image)
    e = await first_error(transport())
    assert words in e.message and image in e.message and fix in e.hint
