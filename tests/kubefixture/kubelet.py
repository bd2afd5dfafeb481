"""The kubelet's part: runs a pod's containers in Docker and reports their status into the
store, in the order a real kubelet's status updates arrive (each step one watch event)."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from typing import Any

from . import model
from .docker_backend import LABEL_INSTANCE, DockerBackend, Started
from .model import Pod
from .state import Store


class PodNotFound(KeyError):
    pass


class Kubelet:
    def __init__(self, store: Store, backend: DockerBackend, node: str = "kubefixture") -> None:
        self.store = store
        self.backend = backend
        self.node = node
        self._lock = threading.RLock()  # one lifecycle operation at a time
        # (namespace, pod, container) -> docker id of the current container
        self._docker: dict[tuple[str, str, str], str] = {}
        self._auto_restarts: dict[tuple[str, str, str], float] = {}
        self._events: Any = None
        self._watcher: threading.Thread | None = None

    def _pod(self, namespace: str, name: str) -> Pod:
        pod = self.store.get(namespace, name)
        if pod is None:
            raise PodNotFound(f'pods "{name}" not found')
        return pod

    def docker_id(self, namespace: str, name: str, container: str) -> str | None:
        return self._docker.get((namespace, name, container))

    def create(self, name: str, namespace: str, labels: dict[str, str], containers: list[dict[str, Any]],
               annotations: dict[str, str] | None = None, security_context: dict[str, Any] | None = None,
               volumes: list[dict[str, Any]] | None = None) -> Pod:
        if not containers:
            raise ValueError("a pod needs at least one container")
        names = [c["name"] for c in containers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate container names: {names}")
        with self._lock:
            pod = model.new_pod(name, namespace, str(uuid.uuid4()), labels, annotations or {}, containers, self.node,
                                security_context, volumes)
            pod = self.store.add(pod)  # ADDED: Pending, ContainerCreating
            started: dict[str, Started] = {}
            try:
                for spec in containers:
                    started[spec["name"]] = self._start(pod, spec)
            except Exception:
                self.delete(name, namespace)
                raise
            # One status update for the whole pod, like the kubelet's status manager.

            def running(p: Pod) -> None:
                for cname, s in started.items():
                    model.set_running(p, cname, s.docker_id, s.image_id, model.docker_time(s.started_at), s.ip)

            return self.store.update(namespace, name, running)

    def _start(self, pod: Pod, spec: dict[str, Any]) -> Started:
        meta = pod["metadata"]
        started = self.backend.run(pod, spec)
        self._docker[(meta["namespace"], meta["name"], spec["name"])] = started.docker_id
        return started

    def delete(self, name: str, namespace: str) -> Pod:
        """Graceful deletion as watchers see it: MODIFIED with deletionTimestamp, then the
        containers go, then DELETED with the final object."""
        with self._lock:
            self._pod(namespace, name)
            self.store.update(namespace, name, model.set_deleting)
            for key in [k for k in self._docker if k[:2] == (namespace, name)]:
                self._auto_restarts.pop(key, None)
                self.backend.remove(self._docker.pop(key))
            self.backend.remove_volumes(self._pod(namespace, name))
            return self.store.remove(namespace, name)

    def replace(self, name: str, namespace: str) -> Pod:
        with self._lock:
            old = self._pod(namespace, name)
            containers = [{k: v for k, v in c.items() if k in model.CONTAINER_KEYS} for c in old["spec"]["containers"]]
            self.delete(name, namespace)
            return self.create(name, namespace, old["metadata"].get("labels", {}), containers,
                               old["metadata"].get("annotations", {}), old["spec"].get("securityContext"),
                               old["spec"].get("volumes"))

    def restart_container(self, name: str, container: str, namespace: str) -> Pod:
        """A container crash and the kubelet's restart: the old container dies (MODIFIED:
        terminated, not ready), a new one is created from the image with a fresh filesystem
        (MODIFIED: running, restartCount+1, new containerID)."""
        with self._lock:
            pod = self._pod(namespace, name)
            spec = self._spec(pod, container)
            key = (namespace, name, container)
            old_id = self._docker.get(key)
            self._auto_restarts.pop(key, None)
            if old_id and "running" in model.container_status(pod, container)["state"]:
                code, finished = self.backend.kill(old_id)
                self.store.update(namespace, name, lambda p: model.set_terminated(p, container, code, model.docker_time(finished)))
            if old_id:
                self.backend.remove(old_id)
            s = self._start(pod, spec)
            return self.store.update(namespace, name, lambda p: model.set_restarted(
                p, container, s.docker_id, s.image_id, model.docker_time(s.started_at), s.ip))

    def crashloop(self, name: str, container: str, namespace: str) -> Pod:
        """Stop the container and report CrashLoopBackOff; it stays stopped (no restart) until
        restart_container() brings it back."""
        with self._lock:
            pod = self._pod(namespace, name)
            self._spec(pod, container)
            docker_id = self._docker.get((namespace, name, container))
            code, finished = self.backend.kill(docker_id) if docker_id else (1, model.now())
            return self.store.update(namespace, name, lambda p: model.set_crashloop(p, container, code, model.docker_time(finished)))

    def running(self, namespace: str, name: str, container: str) -> bool:
        pod = self.store.get(namespace, name)
        if pod is None:
            return False
        try:
            return "running" in model.container_status(pod, container)["state"]
        except KeyError:
            return False

    @staticmethod
    def _spec(pod: Pod, container: str) -> dict[str, Any]:
        for c in pod["spec"]["containers"]:
            if c["name"] == container:
                return copy.deepcopy(c)
        raise KeyError(f"container {container} is not valid for pod {pod['metadata']['name']}")

    # ----- containers that die on their own ------------------------------------------------------
    BACKOFF = 10.0  # the kubelet's first crash back-off step

    def watch_docker(self) -> None:
        """Follow Docker's `die` events for this fixture's containers in a thread, so a container
        whose process exits (e.g. `kill 1` from an exec) is handled as the kubelet would."""
        self._events = self.backend.client.events(
            decode=True, filters={"type": "container", "event": "die", "label": f"{LABEL_INSTANCE}={self.backend.instance}"})
        self._watcher = threading.Thread(target=self._follow, args=(self._events,), name="kubefixture-docker-events", daemon=True)
        self._watcher.start()

    def _follow(self, events: Any) -> None:
        try:
            for ev in events:
                docker_id = ev.get("id") or ev.get("Actor", {}).get("ID", "")
                try:
                    self._died(docker_id)
                except Exception:  # noqa: BLE001 - a pod deleted meanwhile, docker gone at shutdown
                    pass
        except Exception:  # noqa: BLE001 - the stream is closed at shutdown
            pass

    def _died(self, docker_id: str) -> None:
        """Containers the fixture stops itself are no longer current (restart, delete) or no
        longer running in the store (crashloop) by the time the lock is free: ignored. Any other
        death is a crash: restartPolicy Always restarts it at once (fresh container from the
        image, restartCount+1); a second crash within the back-off is CrashLoopBackOff, which
        stays until restart_container()."""
        with self._lock:
            key = next((k for k, v in self._docker.items() if v == docker_id), None)
            if key is None or not self.running(*key):
                return
            namespace, name, container = key
            code, finished = self.backend.kill(docker_id)  # already dead: reads the exit state
            finished = model.docker_time(finished)
            last = self._auto_restarts.get(key)
            if last is not None and time.monotonic() - last < self.BACKOFF:
                self.store.update(namespace, name, lambda p: model.set_crashloop(p, container, code, finished))
                return
            self.store.update(namespace, name, lambda p: model.set_terminated(p, container, code, finished))
            self.backend.remove(docker_id)
            pod = self._pod(namespace, name)
            s = self._start(pod, self._spec(pod, container))
            self._auto_restarts[key] = time.monotonic()
            self.store.update(namespace, name, lambda p: model.set_restarted(
                p, container, s.docker_id, s.image_id, model.docker_time(s.started_at), s.ip))

    def shutdown(self) -> None:
        with self._lock:
            self._docker.clear()
        if self._events is not None:
            self._events.close()
        self.backend.remove_all()
