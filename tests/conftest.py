"""Shared fixtures. Docker tests need a real engine: under CI=true a missing engine or
missing test image is a failure, elsewhere a skip (run scripts/test.sh to get both)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
# `python -m syncd` in a subprocess runs this checkout's syncd, like the tests' own imports, and not
# whatever is installed (an editable install of another worktree would otherwise be tested).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IMAGES = {"busybox": "syncd-test/busybox:latest", "notar": "syncd-test/notar:latest", "nosh": "syncd-test/nosh:latest", "nodd": "syncd-test/nodd:latest",
          "fullstack": "syncd-test/fullstack:latest"}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}: Docker tests must run in CI (see scripts/test.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():  # noqa: ANN201
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means "no engine"
        _unavailable(f"no Docker engine answers ({e})")
    missing = [img for img in IMAGES.values() if not client.images.list(name=img)]
    if missing:
        subprocess.run(["bash", str(REPO / "scripts/build-test-images.sh")], check=False)
        missing = [img for img in IMAGES.values() if not client.images.list(name=img)]
    if missing:
        _unavailable(f"test images missing: {missing} (scripts/build-test-images.sh)")
    yield client
    client.close()


@pytest.fixture
def make_container(docker_client) -> Iterator[Callable[..., object]]:  # noqa: ANN001
    """Start a test container (image 'busybox' or 'notar'); removed after the test."""
    made = []

    def make(image: str = "busybox", **kwargs):  # noqa: ANN003, ANN202
        name = f"syncd-test-{uuid.uuid4().hex[:10]}"
        c = docker_client.containers.run(IMAGES[image], name=name, detach=True, labels={"syncd-test": "1"}, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The real kubectl (the fixture's faithfulness is judged by it): a failure under CI."""
    import shutil

    path = shutil.which("kubectl")
    if path is None:
        _unavailable("kubectl is not installed (needs a v1.30+ client; the machine image provides one)")
    return path


@pytest.fixture(scope="session")
def kube_server(docker_client):  # noqa: ANN001, ANN201
    """The API-server fixture (pods are Docker containers), started once per session."""
    from kubefixture import KubeFixture

    fx = KubeFixture()
    fx.start()
    yield fx
    fx.stop()


@pytest.fixture
def cluster(request, monkeypatch):  # noqa: ANN001, ANN201
    """Where kube tests run: the fixture, or a real cluster when SYNCD_TEST_KUBECONFIG is set."""
    from kube_support import FixtureCluster, RealCluster

    real = os.environ.get("SYNCD_TEST_KUBECONFIG")
    if real:
        c = RealCluster(real)
    else:
        fx = request.getfixturevalue("kube_server")
        fx.protocols = ("v5.channel.k8s.io", "v4.channel.k8s.io")
        fx.allow_all()
        c = FixtureCluster(fx)
    monkeypatch.setenv("KUBECONFIG", str(c.kubeconfig))
    yield c
    c.cleanup()


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL (Debian's binaries) on a unix socket: the libpq environment
    (PGHOST, PGPORT, PGUSER, PGDATABASE) that the example app's migrations use."""
    from pg import start_postgres

    try:
        server = start_postgres()
    except FileNotFoundError as e:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL is not installed ({e}); scripts/test.sh installs it")
        pytest.skip(f"PostgreSQL not installed ({e})")
    try:
        yield server.env
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis(tmp_path_factory) -> Iterator[dict[str, str]]:  # noqa: ANN001
    """A throwaway Redis (Debian's redis-server) on a unix socket, no persistence: the
    environment (REDIS_SOCKET) the example app's warm-cache action uses."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("CI=true but redis-server is not installed; scripts/test.sh installs it")
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    base = tmp_path_factory.mktemp("redis")
    sock = str(base / "redis.sock")
    subprocess.run(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", str(base), "--daemonize", "yes",
                    "--pidfile", str(base / "redis.pid"), "--logfile", str(base / "log"), "--save", ""], check=True)
    deadline = time.monotonic() + 30
    while subprocess.run(["redis-cli", "-s", sock, "ping"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"redis-server did not answer on {sock}:\n{(base / 'log').read_text(errors='replace')}")
        time.sleep(0.05)
    try:
        yield {"REDIS_SOCKET": sock}
    finally:
        subprocess.run(["redis-cli", "-s", sock, "shutdown", "nosave"], capture_output=True, check=False)


# --- docs/RELIABILITY.md: what each fault / bad-input / security test tried and lost ------------

_RELIABILITY: list[dict] = []


class Reliability:
    """What one reliability case did: `tried(n)` times, the `outcome` in words, and what was
    `lost` (paths or changes that did not arrive; must be empty for the test to pass)."""

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.tries = 0
        self.outcome = ""
        self.lost: list[str] = []

    def tried(self, n: int = 1) -> None:
        self.tries += n


@pytest.fixture
def reliability(request) -> Iterator[Reliability]:  # noqa: ANN001
    """For tests marked @pytest.mark.reliability("what was tried", kind="fault|bad input|security")."""
    mark = request.node.get_closest_marker("reliability")
    assert mark is not None, "use @pytest.mark.reliability(name, kind=...) with this fixture"
    variant = getattr(getattr(request.node, "callspec", None), "id", None)  # a parametrized case
    rec = Reliability(mark.args[0] + (f" ({variant})" if variant else ""), mark.kwargs.get("kind", "fault"))
    yield rec
    rep = getattr(request.node, "rep_call", None)
    _RELIABILITY.append({"name": rec.name, "kind": rec.kind, "tries": rec.tries, "outcome": rec.outcome,
                         "lost": rec.lost, "passed": bool(rep and rep.passed), "test": request.node.nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    out = os.environ.get("SYNCD_RELIABILITY_OUT")
    if out and _RELIABILITY:
        import json

        Path(out).write_text(json.dumps(_RELIABILITY, indent=2))
