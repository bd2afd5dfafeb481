"""What a user would do without syncd: push each changed file on its own.

Each `Pusher` copies one local file into the container and returns when the engine says it
is done. syncd's pusher does nothing: the daemon notices the write by itself.
"""

from __future__ import annotations

import io
import os
import posixpath
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from docker.models.containers import Container

# push(local_file, container_path)
Pusher = Callable[[Path, str], None]


def syncd_pusher(_local: Path, _dest: str) -> None:
    """The daemon picks the write up itself."""


def docker_cp_pusher(container_id: str) -> Pusher:
    def push(local: Path, dest: str) -> None:
        # The CLI a user would script: one process and one archive request per file.
        subprocess.run(["docker", "cp", str(local), f"{container_id}:{dest}"], check=True, capture_output=True)

    return push


def kubectl_cp_pusher(namespace: str, pod: str, container: str, env: dict[str, str]) -> Pusher:
    def push(local: Path, dest: str) -> None:
        # What a user scripts against a cluster: `kubectl cp` per changed file. Each call is a
        # process start, a pod GET and two execs (`test -d DEST`, then `tar -xmf -`).
        argv = ["kubectl", "cp", str(local), f"{namespace}/{pod}:{dest}", "-c", container]
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()[-500:]}")

    return push


def kubectl_env(kubeconfig: Path, home: Path) -> dict[str, str]:
    """kubectl against the fixture: its kubeconfig, and a scratch HOME so its caches
    (~/.kube/cache) do not land in the user's home."""
    home.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))


def put_archive_pusher(container: Container) -> Pusher:
    def push(local: Path, dest: str) -> None:
        # The API `docker cp` wraps, without the CLI's process start: a one-file tar per call.
        container.put_archive(posixpath.dirname(dest), one_file_tar(posixpath.basename(dest), local.read_bytes()))

    return push


def one_file_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_tree(container: Container, path: str) -> dict[str, bytes]:
    """Regular files under container `path` (names relative to it), fetched untimed for verification."""
    stream, _stat = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r") as tar:
        out: dict[str, bytes] = {}
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
                out[rel] = f.read()
        return out
