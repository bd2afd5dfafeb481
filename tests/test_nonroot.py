"""Containers that do not run as root, and read-only root filesystems (issue #20), each case a
row of docs/RELIABILITY.md, on Docker and on fixture pods (securityContext.runAsUser/runAsGroup,
readOnlyRootFilesystem and emptyDir volumes, emulated by tests/kubefixture):

- uid 1000 with a writable destination: random storms converge (session and per-exec), the
  files are the exec user's and keep the modes syncd sends;
- uid 1000 with a destination it cannot write: the error names the container, the user, the
  directory and the fixes; the daemon keeps running, and a `chown` from outside makes it
  converge on its retry schedule, without a restart;
- a read-only root filesystem with a writable volume at the destination: storms converge;
- a read-only destination: the error says it is read-only.

Trees are compared whole (tests/trees.py); `reliability.lost` must be empty.
"""

from __future__ import annotations

import io
import random
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine_harness import running, settle, wait_until, write_config
from storms import storm
from syncd.core.worker import WorkerState
from syncd.settings import Settings, WorkerSettings
from trees import Tree, container_tree, local_tree
from test_faults import config_text, lost

# A destination fixed from outside is picked up on the permanent-error retry; shortened here
# (the daemon's is WorkerSettings.permanent_retry, 60 s) so the test does not sleep a minute.
QUICK_RETRY = Settings(workers=WorkerSettings(backoff_start=0.05, permanent_retry=0.5))
UID = 1000
POD_USER = {"securityContext": {"runAsUser": UID, "runAsGroup": UID}}
EMPTY_DIR = {"volumes": [{"name": "app", "emptyDir": {}}]}
APP_MOUNT = {"volumeMounts": [{"name": "app", "mountPath": "/app"}]}
READ_ONLY = {"securityContext": {"readOnlyRootFilesystem": True}}


@dataclass
class Place:
    """Where syncd writes in one test: the target's TOML, the tree at the destination (read
    independently of syncd), the container for out-of-band commands, a fix made as root."""

    target: str
    tree: Callable[[], Tree]
    container: Any  # a docker Container (Docker, or the container behind a fixture pod); None on a real cluster
    as_root: Callable[[list[str]], None]


def docker_place(make_container, image: str, **run: Any) -> Place:  # noqa: ANN001
    c = make_container(image, user=f"{UID}:{UID}", **run)

    def as_root(argv: list[str]) -> None:
        done = c.exec_run(argv, user="0")
        assert done.exit_code == 0, done.output

    return Place(f'kind = "docker"\ncontainer = "{c.name}"', lambda: container_tree(c, "/app/src"), c, as_root)


def pod_place(cluster, image: str, pod: dict, container: dict) -> Place:  # noqa: ANN001
    from conftest import IMAGES

    cluster.create_pod("web-0", {"app": "web"}, image=None if cluster.real else IMAGES[image],
                       pod_spec={**POD_USER, **pod}, container_spec=container)
    docker_ctr = None if cluster.real else cluster.fx.docker_container("web-0", "app", namespace="dev")
    return Place('kind = "kubernetes"\nnamespace = "dev"\nselector = "app=web"',
                 lambda: cluster.tree("web-0", "/app/src"), docker_ctr, lambda argv: cluster.as_root("web-0", argv))


def make_place(request, runtime: str, layout: str, image: str = "busybox") -> Place:  # noqa: ANN001
    """`layout`: "chowned" (the image's /app given to uid 1000; a pod: an emptyDir at /app),
    "unwritable" (/app owned by root, mode 0755), "ro-volume" (read-only root, a writable
    volume at /app), "ro-dest" (read-only root, /app on it)."""
    if runtime == "docker":
        mk = request.getfixturevalue("make_container")
        run: dict[str, Any] = {"ro-dest": {"read_only": True}}.get(layout, {})
        if layout == "ro-volume":  # a named volume (Docker's archive API, the observer, cannot read a tmpfs)
            client = request.getfixturevalue("docker_client")
            volume = client.volumes.create(f"syncd-test-{uuid.uuid4().hex[:10]}", labels={"syncd-test": "1"})

            def drop() -> None:
                for c in client.containers.list(all=True, filters={"volume": volume.name}):
                    c.remove(force=True)
                volume.remove(force=True)

            request.addfinalizer(drop)
            run = {"read_only": True, "volumes": {volume.name: {"bind": "/app", "mode": "rw"}}}
        place = docker_place(mk, image, **run)
        if layout in ("chowned", "ro-volume"):  # what a Dockerfile's chown (or the volume's owner) does
            place.as_root(["chown", f"{UID}:{UID}", "/app"])
        return place
    cluster = request.getfixturevalue("cluster")
    if cluster.real and image != "busybox":
        pytest.skip("a real cluster's pods run SYNCD_TEST_IMAGE: the per-exec image is local to the fixture")
    if runtime == "pod-v4":  # an API server without v5: stdin cannot be closed, requests are framed
        cluster.only_v4()
    pod, container = {
        "chowned": (EMPTY_DIR, APP_MOUNT),
        "unwritable": ({}, {}),
        "ro-volume": (EMPTY_DIR, {**APP_MOUNT, **READ_ONLY}),
        "ro-dest": ({}, READ_ONLY),
    }[layout]
    return pod_place(cluster, image, pod, container)


def modes_and_owners(container, dest: str) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(path, mode, uid:gid) of everything below `dest` but symlinks, from Docker's archive API."""
    stream, _stat = container.get_archive(dest)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), encoding="utf-8", errors="surrogateescape") as tf:
        return sorted((m.name.split("/", 1)[1], f"{m.mode & 0o7777:o}", f"{m.uid}:{m.gid}")
                      for m in tf if "/" in m.name and not m.issym())


def local_modes(root: Path) -> list[tuple[str, str, str]]:
    """The same for the local tree, owned as the container's user should own it."""
    return sorted((p.relative_to(root).as_posix(), f"{p.lstat().st_mode & 0o7777:o}", f"{UID}:{UID}")
                  for p in root.rglob("*") if not p.is_symlink())


def worker_of(engine):  # noqa: ANN001, ANN201
    workers = list(engine.targets["web"].workers.values())
    return workers[0] if workers else None


async def wait_for_error(engine, words: str) -> str:  # noqa: ANN001
    def said() -> bool:
        w = worker_of(engine)
        return w is not None and words in w.last_error

    await wait_until(said, timeout=60, what=f"a push error saying {words!r}")
    return worker_of(engine).last_error


RUNTIMES = ["docker", "pod"]


# --- uid 1000, writable destination -----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("runtime,image", [(r, i) for r in RUNTIMES for i in ("busybox", "nodd")],
                         ids=[f"{r}-{m}" for r in RUNTIMES for m in ("session", "per-exec")])
@pytest.mark.reliability("non-root exec user (uid 1000), writable destination: 3 random storms of 80 operations",
                         kind="fault")
async def test_nonroot_writable_destination_storms_converge(request, tmp_path: Path, runtime: str, image: str,  # noqa: ANN001
                                                            reliability) -> None:  # noqa: ANN001
    place = make_place(request, runtime, "chowned", image)
    src = tmp_path / "src"
    src.mkdir()
    (src / "seed.txt").write_text("seed\n")
    cfg = write_config(tmp_path, config_text(place.target))
    rng = random.Random(20)
    async with running(cfg, settings=QUICK_RETRY) as engine:
        mode = engine.targets["web"].transport.mode(worker_of(engine).ref)
        for _ in range(3):
            storm(src, rng, 80)
            reliability.tried(80)
            await settle(engine, src, timeout=90)
        errors = [e for r in engine.trace.records for e in r["errors"]]
    reliability.lost = lost(local_tree(src), place.tree())
    bad_modes: list[str] = []
    if place.container is not None:
        got, want = modes_and_owners(place.container, "/app/src"), local_modes(src)
        bad_modes = sorted(set(got) ^ set(want))[:10]
    reliability.outcome = (f"{mode}; {len(errors)} batch errors; every file owned by {UID}:{UID} with the mode "
                           f"sent: {'yes' if not bad_modes else 'NO ' + str(bad_modes[:3])}")
    assert mode.startswith("session" if image == "busybox" else "per-exec"), mode
    assert not reliability.lost, reliability.lost[:10]
    assert not bad_modes, bad_modes


# --- uid 1000, destination it cannot write; fixed from outside ----------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("runtime", [*RUNTIMES, "pod-v4"])
@pytest.mark.reliability("non-root exec user (uid 1000), destination owned by root: error, then `chown` from outside",
                         kind="bad input")
async def test_unwritable_destination_is_explained_then_converges(request, tmp_path: Path, runtime: str,  # noqa: ANN001
                                                                  reliability) -> None:  # noqa: ANN001
    place = make_place(request, runtime, "unwritable")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.js").write_text("console.log(1)\n")
    cfg = write_config(tmp_path, config_text(place.target))
    async with running(cfg, wait_idle=False, settings=QUICK_RETRY) as engine:
        error = await wait_for_error(engine, "cannot write")
        worker = worker_of(engine)
        reliability.tried(1)
        await wait_until(lambda: worker.failures >= 2, timeout=60, what="a second failed try (the daemon keeps going)")
        state = worker.state
        (src / "later.txt").write_text("written while the destination refused\n")
        place.as_root(["chown", f"{UID}:{UID}", "/app"])
        t_fixed = time.monotonic()
        await settle(engine, src, timeout=60)
        fixed_in = time.monotonic() - t_fixed
        same_worker = worker_of(engine) is worker  # no restart, no new container: the retry did it
    reliability.lost = lost(local_tree(src), place.tree())
    reliability.outcome = (f"error \"{error}\"; worker '{state.value}'; converged {fixed_in:.1f} s after the chown "
                           f"(retried every {QUICK_RETRY.workers.permanent_retry} s here, 60 s by default), no restart")
    ref = worker.ref
    assert error.startswith(f"{ref.label}: cannot write /app: the exec user (uid={UID} gid={UID}) may not create files "
                            "in /app (Permission denied)"), error
    assert f"chown {UID}:{UID} /app" in error and "emptyDir" in error, error
    assert ("targets.web.user" in error) == (runtime == "docker"), error
    assert (runtime == "docker") or "Kubernetes exec has no user switch" in error, error  # Kubernetes exec has no user switch
    assert state is WorkerState.WAITING_FOR_FIX
    assert same_worker
    assert not reliability.lost, reliability.lost[:10]


# --- read-only root filesystem ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.reliability("read-only root filesystem, uid 1000, writable volume at the destination: 3 random storms "
                         "of 80 operations", kind="fault")
async def test_read_only_root_with_a_volume_storms_converge(request, tmp_path: Path, runtime: str,  # noqa: ANN001
                                                           reliability) -> None:  # noqa: ANN001
    place = make_place(request, runtime, "ro-volume")
    if place.container is not None:  # the root really is read-only, /tmp included
        probe = place.container.exec_run(["sh", "-c", "touch /tmp/x /x"])
        assert probe.exit_code != 0 and b"Read-only file system" in probe.output, probe.output
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(tmp_path, config_text(place.target))
    rng = random.Random(21)
    async with running(cfg, settings=QUICK_RETRY) as engine:
        for _ in range(3):
            storm(src, rng, 80)
            reliability.tried(80)
            await settle(engine, src, timeout=90)
        errors = [e for r in engine.trace.records for e in r["errors"]]
    reliability.lost = lost(local_tree(src), place.tree())
    reliability.outcome = f"{len(errors)} batch errors; nothing written outside the volume"
    assert not errors, errors[:3]
    assert not reliability.lost, reliability.lost[:10]


@pytest.mark.anyio
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.reliability("read-only root filesystem with the destination on it", kind="bad input")
async def test_read_only_destination_is_explained(request, tmp_path: Path, runtime: str, reliability) -> None:  # noqa: ANN001
    place = make_place(request, runtime, "ro-dest")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    cfg = write_config(tmp_path, config_text(place.target))
    async with running(cfg, wait_idle=False, settings=QUICK_RETRY) as engine:
        error = await wait_for_error(engine, "read-only")
        worker = worker_of(engine)
        reliability.tried(1)
        await wait_until(lambda: worker.failures >= 2, timeout=60, what="a second failed try (the daemon keeps going)")
        state = worker.state
    reliability.outcome = f"error \"{error}\"; worker '{state.value}', retried rarely"
    if place.container is not None:  # the test image has /app (a real cluster's image may not: "to be created in /")
        assert error.startswith(f"{worker.ref.label}: cannot write /app: /app is on a read-only filesystem "
                                f"(Read-only file system); the exec user is uid={UID} gid={UID}"), error
    assert error.startswith(f"{worker.ref.label}: cannot write /app") and "is on a read-only filesystem" in error, error
    assert "mount a writable volume at /app" in error and "targets.web.user" not in error, error
    assert state is WorkerState.WAITING_FOR_FIX


# --- Docker targets' `user` ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_docker_target_user_runs_every_exec_as_that_user(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    """`user = "1000:1000"` on a container that runs as root: the session, the per-batch
    writes and run steps all run as uid 1000 (`docker exec --user`), so files are uid 1000's."""
    c = make_container()
    assert c.exec_run(["chown", f"{UID}:{UID}", "/app"]).exit_code == 0
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("f\n")
    target = f'kind = "docker"\ncontainer = "{c.name}"\nuser = "{UID}:{UID}"'
    text = config_text(target) + 'run = [{ cmd = "id -u > /app/who", trigger = ["src/**"] }]\n'
    cfg = write_config(tmp_path, text)
    async with running(cfg) as engine:
        (src / "d" / "g.txt").write_text("g\n")
        await settle(engine, src)
        await wait_until(lambda: c.exec_run(["cat", "/app/who"]).output == f"{UID}\n".encode(), timeout=30,
                         what="the run step to have run as the target's user")
        mode = engine.targets["web"].transport.mode(worker_of(engine).ref)
    assert mode == "session"
    assert not lost(local_tree(src), container_tree(c, "/app/src"))
    assert {owner for _path, _mode, owner in modes_and_owners(c, "/app/src")} == {f"{UID}:{UID}"}


# --- the probe's answer in words (no container needed) -------------------------------------------


def test_probe_answers_become_errors_naming_user_directory_and_fix() -> None:
    from syncd.transports.base import ContainerRef
    from syncd.transports.writable import not_writable, parse_probe

    ref = ContainerRef("web", "abc", "api-0", "g")
    assert not_writable(ref, parse_probe("@@ID\t1000\t1000\t\n@@TMP\t/app\n"), "") is None
    access = parse_probe("@@ID\t1000\t50\tnode\n@@NO\tPermission denied\t/srv\t/srv/data/x\n@@NO\tPermission denied\t/srv\t/srv/y\n@@TMP\t\n")
    assert access.who == "uid=1000 gid=50 (node)" and len(access.refused) == 2 and access.tmp == ""
    e = not_writable(ref, access, "run as root")
    assert e is not None and e.permanent
    assert e.message == ("web/api-0: cannot write /srv/data/x: /srv/data/x does not exist and the exec user "
                         "(uid=1000 gid=50 (node)) may not create it in /srv (Permission denied)")
    assert e.hint.startswith("make /srv/data/x writable by uid 1000 in the image (Dockerfile: RUN mkdir -p /srv/data/x "
                             "&& chown 1000:50 /srv/data/x), or mount a volume (Kubernetes: an emptyDir) at /srv/data/x, "
                             "or run as root;"), e.hint
    ro = not_writable(ref, parse_probe("@@ID\t0\t0\t\n@@NO\tRead-only file system\t/\t/app\n"), "run as root")
    assert ro is not None and "/app (to be created in /) is on a read-only filesystem" in ro.message
    assert "run as root" not in ro.hint  # no user can write a read-only filesystem


# --- `syncd sync`, as the issue met it ------------------------------------------------------------


def test_sync_once_says_who_cannot_write_where_and_exits_1(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    """`syncd sync` into a uid 1000 container whose /app is root's: exit 1, and the log line
    carries the explained error and a hint (it used to be tar's words and an empty hint)."""
    import os
    import subprocess
    import sys

    c = make_container(user=f"{UID}:{UID}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a\n")
    write_config(tmp_path, config_text(f'kind = "docker"\ncontainer = "{c.name}"'))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "syncd", "sync"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "sync failed" in said and f"web/{c.name}: cannot write /app: the exec user (uid={UID} gid={UID})" in said, said
    assert "hint='make /app writable by uid 1000" in said and "tar:" not in said, said
    assert c.exec_run(["chown", f"{UID}:{UID}", "/app"], user="0").exit_code == 0
    again = subprocess.run([sys.executable, "-m", "syncd", "sync"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not lost(local_tree(tmp_path / "src"), container_tree(c, "/app/src"))
