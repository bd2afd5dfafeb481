"""The local Docker engine, stopped and started again the way it was started (tests only)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def local_dockerd() -> tuple[int, str, list[str], dict[str, str]] | None:
    """The dockerd process serving this machine's default socket, as (pid, executable, argv,
    environment), so that it can be stopped and started again the same way; None when the
    engine is not a local process this test may restart (remote, rootless, another user's)."""
    if os.environ.get("DOCKER_HOST") or os.geteuid() != 0:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
                continue
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            env = dict(line.split(b"=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                       if b"=" in line)
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if any(a.startswith((b"-H", b"--host")) for a in argv[1:]):
            return None  # listens elsewhere: not (only) the default socket
        return (int(pid), exe, [os.fsdecode(a) for a in argv],
                {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()})
    return None


def stop_dockerd(pid: int, timeout: float = 60) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited (its parent has not reaped it yet)


def start_dockerd(exe: str, argv: list[str], env: dict[str, str], docker_client, timeout: float = 60) -> None:  # noqa: ANN001
    log = open("/tmp/syncd-dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon for good
    # Started in the background by a shell that exits at once: dockerd is nobody's child here
    # (as the one it replaces), outlives the test session and never lingers as our zombie.
    subprocess.run(["sh", "-c", '"$@" &', "sh", exe, *argv[1:]], env=env, stdin=subprocess.DEVNULL, stdout=log,
                   stderr=subprocess.STDOUT, start_new_session=True, check=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if docker_client.ping():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd did not answer within {timeout:.0f} s; see /tmp/syncd-dockerd.log")
        time.sleep(0.1)


def restart_dockerd(docker_client, down_for: float = 1.0) -> None:  # noqa: ANN001
    """Stop the local engine (its containers stop; those with a restart policy come back when
    it starts), wait `down_for`, start it again and wait until it answers."""
    found = local_dockerd()
    assert found is not None, "no local dockerd to restart"
    pid, exe, argv, env = found
    try:
        stop_dockerd(pid)
        time.sleep(down_for)
    finally:
        start_dockerd(exe, argv, env, docker_client)
