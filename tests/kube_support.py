"""One interface over the two places kube tests can run: the API-server fixture (default,
pods backed by Docker containers) or a real cluster (`SYNCD_TEST_KUBECONFIG`, marker
`cluster`). Trees are observed independently of syncd: through Docker's archive API on the
fixture, through `tar` over the exec API on a real cluster."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from trees import Tree, container_tree, reread, tar_tree

NAMESPACE = "dev"
IMAGE = "syncd-test/busybox:latest"


class FixtureCluster:
    real = False

    def cleanup(self) -> None:
        for pod in self.fx.pods():
            self.fx.delete_pod(pod["metadata"]["name"], namespace=pod["metadata"]["namespace"])

    def __init__(self, fx) -> None:  # noqa: ANN001 - a kubefixture.KubeFixture
        self.fx = fx
        self.kubeconfig = fx.kubeconfig

    def create_pod(self, name: str, labels: dict[str, str], image: str = IMAGE, containers: list[str] | None = None,
                   pod_spec: dict | None = None, container_spec: dict | None = None) -> None:
        """`pod_spec`: securityContext and volumes of the pod; `container_spec`: added to each
        container (securityContext, volumeMounts)."""
        pod_spec = pod_spec or {}
        self.fx.create_pod(name, namespace=NAMESPACE, labels=labels,
                           containers=[{"name": c, "image": image, **(container_spec or {})} for c in (containers or ["app"])],
                           security_context=pod_spec.get("securityContext"), volumes=pod_spec.get("volumes"))

    def as_root(self, pod: str, argv: list[str], container: str = "app") -> None:
        """A fix made from outside the pod (what an operator does with a debug container)."""
        done = self.fx.docker_container(pod, container, namespace=NAMESPACE).exec_run(argv, user="0")
        assert done.exit_code == 0, done.output

    def delete_pod(self, name: str) -> None:
        self.fx.delete_pod(name, namespace=NAMESPACE)

    def replace_pod(self, name: str) -> None:
        self.fx.replace_pod(name, namespace=NAMESPACE)

    def restart_container(self, name: str, container: str = "app") -> None:
        self.fx.restart_container(name, container, namespace=NAMESPACE)

    def crashloop(self, name: str, container: str = "app") -> None:
        self.fx.crashloop(name, container, namespace=NAMESPACE)

    def deny(self, verb: str, resource: str) -> None:
        self.fx.deny(verb, resource)

    def only_v4(self) -> None:
        self.fx.protocols = ("v4.channel.k8s.io",)

    def tree(self, pod: str, dest: str, container: str = "app") -> Tree:
        return container_tree(self.fx.docker_container(pod, container, namespace=NAMESPACE), dest)


class RealCluster:
    """A real cluster: pods are created with SYNCD_TEST_IMAGE (default busybox:1.36)."""

    real = True

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.kubeconfig = Path(kubeconfig)
        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        self.api = client.CoreV1Api(client.ApiClient(cfg))
        self.exec_api = client.CoreV1Api(client.ApiClient(cfg))
        self.image = os.environ.get("SYNCD_TEST_IMAGE", "busybox:1.36")
        try:
            self.api.create_namespace({"metadata": {"name": NAMESPACE}})
        except Exception:  # noqa: BLE001 - it exists
            pass

    def cleanup(self) -> None:
        for pod in self.api.list_namespaced_pod(NAMESPACE, label_selector="syncd-test").items:
            self.delete_pod(pod.metadata.name)

    def create_pod(self, name: str, labels: dict[str, str], image: str | None = None, containers: list[str] | None = None,
                   pod_spec: dict | None = None, container_spec: dict | None = None) -> None:
        labels = {**labels, "syncd-test": "1"}
        spec = {"containers": [{"name": c, "image": image or self.image, **(container_spec or {}),
                                "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]}
                               for c in (containers or ["app"])], **(pod_spec or {})}
        self.api.create_namespaced_pod(NAMESPACE, {"metadata": {"name": name, "labels": labels}, "spec": spec})
        deadline = time.monotonic() + 120
        while self.api.read_namespaced_pod(name, NAMESPACE).status.phase != "Running":
            assert time.monotonic() < deadline, f"pod {name} did not start"
            time.sleep(0.5)

    def delete_pod(self, name: str) -> None:
        self.api.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)

    def replace_pod(self, name: str) -> None:
        labels = self.api.read_namespaced_pod(name, NAMESPACE).metadata.labels
        self.delete_pod(name)
        deadline = time.monotonic() + 120
        while any(p.metadata.name == name for p in self.api.list_namespaced_pod(NAMESPACE).items):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        self.create_pod(name, {k: v for k, v in labels.items() if k != "syncd-test"})

    def restart_container(self, name: str, container: str = "app") -> None:
        from kubernetes.stream import stream

        stream(self.exec_api.connect_get_namespaced_pod_exec, name, NAMESPACE, command=["kill", "1"],
               container=container, stdout=True, stderr=True)

    def crashloop(self, name: str, container: str = "app") -> None:
        pytest.skip("cannot force CrashLoopBackOff on a real cluster from the test")

    def as_root(self, pod: str, argv: list[str], container: str = "app") -> None:
        pytest.skip("the tests do not change a real cluster's pods as root")

    def deny(self, verb: str, resource: str) -> None:
        pytest.skip("RBAC changes are not made on a real cluster by the tests")

    def only_v4(self) -> None:
        pytest.skip("a real cluster's subprotocols cannot be restricted by the test")

    def tree(self, pod: str, dest: str, container: str = "app") -> Tree:
        return reread(lambda: self._tree(pod, dest, container))

    def _tree(self, pod: str, dest: str, container: str) -> Tree:
        from kubernetes.stream import stream

        ws = stream(self.exec_api.connect_get_namespaced_pod_exec, pod, NAMESPACE,
                    command=["tar", "cf", "-", "-C", dest, "."], container=container,
                    stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False, binary=True)
        data = bytearray()
        while ws.is_open():
            ws.update(timeout=1)
            data += ws.read_channel(1) or b""
        data += ws.read_channel(1) or b""
        return tar_tree(bytes(data), lambda name: name.removeprefix("./"))
