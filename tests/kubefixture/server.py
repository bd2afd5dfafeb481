"""KubeFixture: the server's lifecycle (own asyncio loop in a background thread), the kubeconfig
it writes, and the test-facing API for changing pods and permissions."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import secrets
import ssl
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import docker
import yaml
from aiohttp import web
from docker.models.containers import Container

from .api import make_app
from .auth import Policy
from .context import Context
from .docker_backend import DockerBackend
from .kubelet import Kubelet
from .state import Store
from .tls import make_certificate, server_context

DEFAULT_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


class KubeFixture:
    """A kube-apiserver stand-in on 127.0.0.1 whose pods are Docker containers.

    >>> fx = KubeFixture().start()
    >>> fx.create_pod("web-0", namespace="dev", labels={"app": "web"},
    ...               containers=[{"name": "app", "image": "syncd-test/busybox:latest"}])
    >>> # KUBECONFIG=fx.kubeconfig kubectl exec -n dev web-0 -- ls
    >>> fx.stop()
    """

    def __init__(
        self,
        protocols: Iterable[str] = DEFAULT_PROTOCOLS,
        *,
        docker_client: docker.DockerClient | None = None,
        kubeconfig: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int = 0,
        token: str | None = None,
        history_limit: int = 1000,
    ) -> None:
        self._host, self._port, self._tls_port = host, port, tls_port
        self._kubeconfig_path = Path(kubeconfig) if kubeconfig else None
        self.token = token or secrets.token_hex(16)
        self._store = Store(history_limit)
        self._backend = DockerBackend(docker_client)
        self._kubelet = Kubelet(self._store, self._backend)
        self._policy = Policy()
        self._ctx = Context(self._store, self._kubelet, self._policy, self.token, tuple(protocols))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tls: ssl.SSLContext | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""  # plain HTTP: for raw clients and the python client
        self.port = 0
        self.https_url = ""  # TLS, what the kubeconfig names: kubectl sends tokens only over https
        self.tls_port = 0
        self.ca_file = Path()  # the serving certificate (self-signed, its own CA)
        self.kubeconfig = Path()

    # ----- settings -----------------------------------------------------------------------------
    @property
    def protocols(self) -> tuple[str, ...]:
        """Exec subprotocols the server accepts, in its preference order; read at each upgrade."""
        return self._ctx.protocols

    @protocols.setter
    def protocols(self, value: Iterable[str]) -> None:
        self._ctx.protocols = tuple(value)

    # ----- lifecycle ----------------------------------------------------------------------------
    def start(self) -> KubeFixture:
        if self._thread is not None:
            return self
        self._tmpdir = tempfile.TemporaryDirectory(prefix="kubefixture-")
        self.ca_file, key = make_certificate(Path(self._tmpdir.name))
        tls = server_context(self.ca_file, key)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(tls))
            except BaseException as e:  # noqa: BLE001 - reported to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="kubefixture", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        self.url = f"http://{self._host}:{self.port}"
        self.https_url = f"https://{self._host}:{self.tls_port}"
        self.kubeconfig = self._write_kubeconfig()
        self._kubelet.watch_docker()
        atexit.register(self.stop)
        return self

    async def _serve(self, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(make_app(self._ctx), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._tls = tls
        await self._listen(self._port, self._tls_port)

    async def _listen(self, port: int, tls_port: int) -> None:
        assert self._runner is not None
        plain = web.TCPSite(self._runner, self._host, port)
        secure = web.TCPSite(self._runner, self._host, tls_port, ssl_context=self._tls)
        await plain.start()
        await secure.start()
        self.port = plain._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.tls_port = secure._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # ----- faults -------------------------------------------------------------------------------
    def down(self) -> None:
        """The API server goes away, as when kube-apiserver restarts or its host drops off the
        network: both listeners close (new connections are refused) and every open connection
        (watches, exec sessions, keep-alive) is cut. Pods keep running. `up()` ends it."""
        self._call(self._down())

    def up(self) -> None:
        """Serve again, on the same ports (the kubeconfig stays valid)."""
        self._call(self._listen(self.port, self.tls_port))

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """`with fx.unreachable(): ...` — down() for the block, up() after it."""
        self.down()
        try:
            yield
        finally:
            self.up()

    async def _down(self) -> None:
        assert self._runner is not None and self._runner.server is not None
        for site in list(self._runner.sites):
            await site.stop()
        for handler in self._runner.server.connections:
            handler.force_close()  # closes the socket: the client sees the connection drop

    def _call(self, coro) -> None:  # noqa: ANN001 - a coroutine for the server's loop
        if self._loop is None or self._thread is None:
            raise RuntimeError("the fixture is not running (start() it first)")
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def kubeconfig_through(self, address: tuple[str, int], path: str | Path) -> Path:
        """A kubeconfig naming `address` instead of the TLS port: a proxy in front of the API
        server, e.g. a tests/linksim.py Link to ("127.0.0.1", fx.tls_port). The proxy must listen
        on 127.0.0.1 (the certificate's name) and forward bytes, so TLS still verifies."""
        if self._tmpdir is None:
            raise RuntimeError("the fixture is not running (start() it first)")
        host, port = address
        return self._write_kubeconfig(Path(path), f"https://{host}:{port}")

    def _write_kubeconfig(self, path: Path | None = None, server: str | None = None) -> Path:
        assert self._tmpdir is not None
        path = path or self._kubeconfig_path or Path(self._tmpdir.name) / "kubeconfig"
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fixture",
                          "cluster": {"server": server or self.https_url, "certificate-authority-data": ca}}],
            "users": [{"name": "fixture", "user": {"token": self.token}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture", "namespace": "default"}}],
            "current-context": "fixture",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        """Stop serving (open watches and exec sessions end) and remove every container."""
        loop, thread = self._loop, self._thread
        if thread is not None and loop is not None:
            self._thread = None
            if self._runner is not None:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
        self._kubelet.shutdown()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> KubeFixture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- pods -------------------------------------------------------------------------------
    def create_pod(self, name: str, namespace: str = "default", labels: dict[str, str] | None = None,
                   containers: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None,
                   security_context: dict[str, Any] | None = None, volumes: list[dict[str, Any]] | None = None,
                   ) -> dict[str, Any]:
        """Create a pod and return it once every container runs. `containers` items take
        name, image and optionally command, args, env ([{name, value}]), workingDir,
        securityContext (runAsUser, runAsGroup, runAsNonRoot, readOnlyRootFilesystem) and
        volumeMounts ([{name, mountPath, readOnly}]); `security_context` is the pod's
        (runAsUser, runAsGroup, runAsNonRoot), `volumes` its emptyDir volumes ([{name, emptyDir: {}}])."""
        if containers is None:
            containers = [{"name": "app", "image": "syncd-test/busybox:latest"}]
        return self._kubelet.create(name, namespace, labels or {}, containers, annotations, security_context, volumes)

    def delete_pod(self, name: str, namespace: str = "default") -> None:
        self._kubelet.delete(name, namespace)

    def replace_pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self._kubelet.replace(name, namespace)

    def restart_container(self, name: str, container: str, namespace: str = "default") -> dict[str, Any]:
        return self._kubelet.restart_container(name, container, namespace)

    def crashloop(self, name: str, container: str, namespace: str = "default") -> dict[str, Any]:
        return self._kubelet.crashloop(name, container, namespace)

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self._store.get(namespace, name)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self._store.list(namespace)[0]

    def docker_container(self, name: str, container: str, namespace: str = "default") -> Container:
        docker_id = self._kubelet.docker_id(namespace, name, container)
        if docker_id is None:
            raise KeyError(f"no container {container!r} in pod {namespace}/{name}")
        return self._backend.container(docker_id)

    @property
    def instance(self) -> str:
        """Value of the `syncd.fixture.instance` label on this fixture's Docker containers."""
        return self._backend.instance

    @property
    def resource_version(self) -> str:
        return str(self._store.resource_version)

    def compact(self) -> None:
        """Forget the watch history: watches from an older resourceVersion get 410 Expired."""
        self._store.compact()

    # ----- RBAC ---------------------------------------------------------------------------------
    def deny(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """Make later requests for verb on resource ("pods", "pods/exec", …) get 403."""
        self._policy.deny(verb, resource, namespace)

    def allow_all(self) -> None:
        self._policy.allow_all()
