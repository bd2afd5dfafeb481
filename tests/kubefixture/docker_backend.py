"""Docker side of the fixture: the containers that back pods, and exec sessions.

Blocking docker SDK calls are made from the calling thread (tests, or an executor thread of the
server). The exec stream itself is opened by hand on the Engine API socket with an asyncio
connection (POST /exec/{id}/start, `Upgrade: tcp`): the SDK's `exec_start(socket=True)` hands
back the socket underneath http.client's buffered reader, so output that arrived together with
the 101 response headers would be lost; here the StreamReader keeps it, and stdin can be written
with real backpressure (`drain`) and half-closed (`write_eof` = shutdown(SHUT_WR))."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import Mount

LABEL = "syncd.fixture"  # every container the fixture creates carries syncd.fixture=1
LABEL_INSTANCE = "syncd.fixture.instance"
# The names dockershim gave these labels, so tools that know Kubernetes-on-Docker find them.
LABEL_POD = "io.kubernetes.pod.name"
LABEL_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER = "io.kubernetes.container.name"
LABEL_POD_LABELS = "syncd.fixture.pod-labels"  # JSON of the pod's labels


@dataclass(frozen=True)
class Started:
    docker_id: str
    image_id: str
    started_at: str  # docker's State.StartedAt
    ip: str


def security(pod: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """securityContext as Docker options: runAsUser/runAsGroup (the container's over the pod's)
    -> `--user UID[:GID]` (exec runs as that user too, as on a kubelet); readOnlyRootFilesystem
    -> `--read-only`. runAsNonRoot with no non-zero runAsUser is refused as the kubelet refuses
    it (the fixture does not read the image's USER)."""
    pod_sc, sc = pod["spec"].get("securityContext") or {}, spec.get("securityContext") or {}
    uid, gid = sc.get("runAsUser", pod_sc.get("runAsUser")), sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and not uid:
        raise ValueError(f"container {spec['name']!r}: container has runAsNonRoot and image will run as root "
                         "(kubefixture: set runAsUser)")
    if gid is not None and uid is None:
        raise ValueError(f"container {spec['name']!r}: kubefixture needs runAsUser with runAsGroup")
    out: dict[str, Any] = {}
    if uid is not None:
        out["user"] = f"{uid}:{gid}" if gid is not None else str(uid)
    if sc.get("readOnlyRootFilesystem"):
        out["read_only"] = True
    return out


class ExecStartError(Exception):
    """The container is gone or not running: what the kubelet reports as container not found."""


class DockerBackend:
    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self.client = client or docker.from_env(timeout=120)
        self.instance = uuid.uuid4().hex[:12]

    # ----- containers -------------------------------------------------------------------------
    def run(self, pod: dict[str, Any], spec: dict[str, Any]) -> Started:
        meta = pod["metadata"]
        name = f"kf-{meta['namespace']}-{meta['name']}-{spec['name']}-{uuid.uuid4().hex[:8]}"
        labels = {
            LABEL: "1", LABEL_INSTANCE: self.instance, LABEL_POD: meta["name"], LABEL_NAMESPACE: meta["namespace"],
            LABEL_UID: meta["uid"], LABEL_CONTAINER: spec["name"], LABEL_POD_LABELS: json.dumps(meta.get("labels", {})),
        }
        env = [f"{e['name']}={e.get('value', '')}" for e in spec.get("env", [])]
        ctr = self.client.containers.run(
            spec["image"], name=name, detach=True, labels=labels, hostname=meta["name"],
            entrypoint=spec.get("command"), command=spec.get("args"), environment=env or None,
            working_dir=spec.get("workingDir"), **security(pod, spec), mounts=self._mounts(pod, spec),
        )
        ctr.reload()
        attrs = ctr.attrs
        return Started(ctr.id, f"docker://{attrs['Image']}", attrs["State"]["StartedAt"],
                       attrs["NetworkSettings"].get("IPAddress", ""))

    def _volume(self, pod: dict[str, Any], volume: str) -> str:
        meta = pod["metadata"]
        return f"kf-{self.instance}-{meta['uid']}-{volume}"

    def _mounts(self, pod: dict[str, Any], spec: dict[str, Any]) -> list[Mount]:
        """The container's volumeMounts. An emptyDir is a Docker volume of the pod (shared by its
        containers, kept across container restarts, removed with the pod) on tmpfs, empty and
        mode 0777 as the kubelet creates it — whatever the image holds at the mount path."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        mounts = []
        for m in spec.get("volumeMounts", []):
            v = volumes.get(m["name"])
            if v is None or "emptyDir" not in v:
                raise ValueError(f"kubefixture: volumeMount {m['name']!r}: only emptyDir volumes of the pod are emulated")
            source = self._volume(pod, m["name"])
            if not self.client.volumes.list(filters={"name": source}):
                self.client.volumes.create(source, driver="local", labels={LABEL: "1", LABEL_INSTANCE: self.instance},
                                           driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "mode=0777"})
            mounts.append(Mount(m["mountPath"], source, type="volume", read_only=bool(m.get("readOnly")), no_copy=True))
        return mounts

    def remove_volumes(self, pod: dict[str, Any]) -> None:
        for v in pod["spec"].get("volumes", []):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_volume(self._volume(pod, v["name"]), force=True)

    def kill(self, docker_id: str) -> tuple[int, str]:
        """Stop a container at once (SIGKILL); returns (exit code, FinishedAt)."""
        ctr = self.client.containers.get(docker_id)
        try:
            ctr.kill()
        except docker.errors.APIError:
            pass  # already stopped
        ctr.wait(timeout=30)
        ctr.reload()
        return ctr.attrs["State"]["ExitCode"], ctr.attrs["State"]["FinishedAt"]

    def remove(self, docker_id: str) -> None:
        try:
            self.client.api.remove_container(docker_id, force=True, v=True)
        except docker.errors.NotFound:
            pass

    def container(self, docker_id: str) -> Container:
        return self.client.containers.get(docker_id)

    def remove_all(self) -> None:
        """Remove every container of this fixture instance (running or not)."""
        for c in self.client.containers.list(all=True, filters={"label": f"{LABEL_INSTANCE}={self.instance}"}):
            self.remove(c.id)
        for v in self.client.volumes.list(filters={"label": f"{LABEL_INSTANCE}={self.instance}"}):
            with contextlib.suppress(docker.errors.APIError):
                v.remove(force=True)

    def logs(self, docker_id: str) -> bytes:
        return self.client.api.logs(docker_id, stdout=True, stderr=True)

    # ----- exec -------------------------------------------------------------------------------
    def exec_create(self, docker_id: str, cmd: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        try:
            return self.client.api.exec_create(docker_id, cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)["Id"]
        except (docker.errors.NotFound, docker.errors.APIError) as e:
            # 409 "is not running" / 404: the container the kubelet would look up is not running.
            raise ExecStartError(str(e)) from e

    def exec_exit_code(self, exec_id: str, timeout: float = 10.0) -> int:
        # The stream can end a moment before the engine records the exit: poll briefly.
        deadline = time.monotonic() + timeout
        while True:
            info = self.client.api.exec_inspect(exec_id)
            if not info["Running"] and info["ExitCode"] is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return -1
            time.sleep(0.01)

    def exec_resize(self, exec_id: str, width: int, height: int) -> None:
        try:
            self.client.api.exec_resize(exec_id, height=height, width=width)
        except docker.errors.APIError:
            pass  # the process may be gone already

    async def exec_attach(self, exec_id: str, tty: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Start the exec and hijack its connection (the Engine API's raw stream)."""
        # Connect where the SDK client connects: its unix socket, or a plain tcp:// engine.
        api = self.client.api
        socket_path = getattr(getattr(api, "_custom_adapter", None), "socket_path", None)
        if socket_path:
            reader, writer = await asyncio.open_unix_connection(socket_path, limit=1 << 20)
        elif api.base_url.startswith("http://"):
            url = urlparse(api.base_url)
            reader, writer = await asyncio.open_connection(url.hostname, url.port or 2375, limit=1 << 20)
        else:
            raise RuntimeError(f"kubefixture: exec over the Docker endpoint {api.base_url} is not supported (TLS/ssh)")
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        head = (f"POST /v{self.client.api._version}/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        if b" 101 " not in status_line and b" 200 " not in status_line:
            rest = await reader.read(4096)
            writer.close()
            raise ExecStartError(f"{status_line.decode().strip()}: {rest.decode(errors='replace').strip()}")
        return reader, writer
