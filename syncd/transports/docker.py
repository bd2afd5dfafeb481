"""`kind = "docker"`: containers reached through the Docker Engine API (`docker` package).

Requests go through the container's session (transports/session.py) or, where it cannot run,
one exec each (transports/exec.py): stdin carries the escaped delete list, then the tar
stream, and is half-closed when the stream ends. The `docker` client is synchronous, so every
call runs in a worker thread; the event loop never blocks on the engine. The engine's event
stream (`docker events`, filtered to the target's containers) wakes discovery as soon as one
starts, stops or restarts, so a new container is found in well under a second, not at the
next poll.
"""

from __future__ import annotations

import difflib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import anyio
import docker
import docker.errors
import requests
from docker.utils.socket import frames_iter

from syncd.config import DockerTarget
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.transports.base import ContainerRef, ExecResult, TransportError
from syncd.transports.exec import ExecTransport
from syncd.transports.feed import ChangeFeed
from syncd.transports.session import SESSION_SCRIPT

ENGINE_HINT = "start the Docker engine (dockerd / Docker Desktop) or set DOCKER_HOST"
# What talking to an engine that is gone raises: docker-py's own errors do not cover requests'.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
# Container events that change what discovery finds: one came up, went away for good, or was
# renamed. Not die/stop/kill: a container being restarted (by syncd's `restart = "container"`
# too) sends them, and a listing in that moment reports the target unavailable and stops its
# workers mid-step; the start that follows wakes discovery, and a container that just died is
# told by its worker's next push. Not exec_*: every push runs an exec.
LIFECYCLE_EVENTS = ("start", "restart", "unpause", "destroy", "rename")


@contextmanager
def engine_errors(label: str, doing: str) -> Iterator[None]:
    """Any failure to reach the engine, as a TransportError (the worker backs off and retries)."""
    try:
        yield
    except TransportError:
        raise
    except ENGINE_ERRORS as e:
        raise TransportError(f"{label}: {doing}: {e}", ENGINE_HINT) from None


class DockerChannel:
    """A long-lived exec's stdin/stdout, for the session."""

    def __init__(self, api: docker.APIClient, container_id: str, argv: list[str], user: str = "") -> None:
        ex = api.exec_create(container_id, argv, stdin=True, stdout=True, stderr=True, user=user)
        self._sock = api.exec_start(ex["Id"], socket=True)
        self._raw: socket.socket = getattr(self._sock, "_sock", self._sock)
        self._frames = frames_iter(self._sock, tty=False)

    def send(self, data: bytes) -> None:
        self._raw.sendall(data)

    def recv(self) -> bytes:
        for stream, data in self._frames:
            if stream == 1 and data:
                return data
        return b""

    def close(self) -> None:
        with suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)
        self._raw.close()


class DockerTransport(ExecTransport):
    has_change_feed = True  # the engine's event stream (see _follow_events)

    def __init__(self, target: str, spec: DockerTarget, sessions: bool = True, settings: Settings = DEFAULT_SETTINGS) -> None:
        self.spec = spec
        self._client: docker.DockerClient | None = None
        self._events: docker.types.CancellableStream | None = None  # the open event stream (closed to stop)
        self._feed = ChangeFeed(f"docker events of {target}", self._follow_events, settings.exec.feed_retry_max)
        super().__init__(target, sessions, settings)

    def _open_channel(self, ref: ContainerRef) -> DockerChannel:
        try:
            return DockerChannel(self._engine().api, ref.id, ["sh", "-c", SESSION_SCRIPT, "syncd-session"], self.spec.user or "")
        except docker.errors.NotFound:  # (an APIError: before the engine errors)
            raise TransportError(f"{ref.label}: container is gone", "it will be picked up again when it runs") from None
        except ENGINE_ERRORS as e:
            raise TransportError(f"{ref.label}: cannot start the session: {e}", ENGINE_HINT) from None

    def other_user_fix(self) -> str:
        return (f'run syncd\'s exec as a user that may write there: targets.{self.target}.user = "UID[:GID]" '
                '(e.g. "0")')

    # --- engine access -------------------------------------------------------------------

    def _engine(self) -> docker.DockerClient:
        if self._client is None:
            try:
                client = docker.from_env(timeout=30)
                client.ping()
            except docker.errors.DockerException as e:
                raise TransportError(f"docker target '{self.target}': engine not reachable ({e})", ENGINE_HINT) from None
            self._client = client
        return self._client

    def _describe(self) -> str:
        if self.spec.container:
            return f"container '{self.spec.container}'"
        return "containers labelled " + ", ".join(f"{k}={v}" for k, v in (self.spec.labels or {}).items())

    def _close_names(self, client: docker.DockerClient) -> list[str]:
        """Names of existing containers (`docker ps -a`) close to the configured one."""
        try:
            names = [n.lstrip("/") for c in client.api.containers(all=True) for n in c.get("Names") or []]
        except (docker.errors.DockerException, OSError):
            return []
        return difflib.get_close_matches(self.spec.container or "", [n for n in names if n], n=2, cutoff=0.7)

    async def containers(self) -> list[ContainerRef]:
        self._feed.start()
        return await anyio.to_thread.run_sync(self.list_containers, abandon_on_cancel=True)

    def list_containers(self) -> list[ContainerRef]:
        client = self._engine()
        try:
            if self.spec.container:
                found = [client.containers.get(self.spec.container)]
            else:
                labels = [f"{k}={v}" for k, v in (self.spec.labels or {}).items()]
                found = client.containers.list(all=True, filters={"label": labels})
        except docker.errors.NotFound:
            close = self._close_names(client)
            guess = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
            raise TransportError(
                f"docker target '{self.target}': {self._describe()} not found",
                f"{guess}start it, or fix targets.{self.target}.container (see `docker ps -a`)",
            ) from None
        except (docker.errors.DockerException, OSError) as e:
            self._client = None
            raise TransportError(f"docker target '{self.target}': {e}", ENGINE_HINT) from None
        running = [c for c in found if c.status == "running"]
        if not running:
            states = ", ".join(f"{c.name} is {c.status}" for c in found) or "none exist"
            start = f"docker start {found[0].name}" if found else "start the container"
            raise TransportError(f"docker target '{self.target}': {self._describe()} not running ({states})",
                                 f"{start}; syncd reconciles it as soon as it runs")
        return [
            ContainerRef(
                self.target,
                c.id,
                c.name,
                generation=f"{c.id}@{c.attrs.get('State', {}).get('StartedAt', '')}",
                image=(c.attrs.get("Config", {}) or {}).get("Image", ""),
            )
            for c in running
        ]

    # --- engine events: wake discovery when containers change ---------------------------

    def _follow_events(self, notify: Callable[[], None], stopping: threading.Event) -> None:
        where = {"container": [self.spec.container]} if self.spec.container else {
            "label": [f"{k}={v}" for k, v in (self.spec.labels or {}).items()]}
        client = docker.from_env(timeout=None)  # its own connection: the stream blocks between events
        try:
            self._events = client.api.events(decode=True, filters={"type": "container", "event": list(LIFECYCLE_EVENTS), **where})
            # Open: look once now. A container that started between the first listing and this
            # moment sent its event before anyone listened.
            notify()
            for _event in self._events:
                notify()
                if stopping.is_set():
                    return
        finally:
            self._events = None
            client.close()

    async def wait_changed(self) -> None:
        """Returns when the engine reported a container event (the caller bounds the wait)."""
        await self._feed.wait()

    # --- exec ----------------------------------------------------------------------------

    def _exec(self, ref: ContainerRef, argv: list[str], stdin: Iterator[bytes] | None) -> ExecResult:
        """Run argv in the container; stream stdin (then half-close it)."""
        api = self._engine().api
        try:
            ex = api.exec_create(ref.id, argv, stdin=stdin is not None, stdout=True, stderr=True, user=self.spec.user or "")
            if stdin is None:
                out, err = api.exec_start(ex["Id"], demux=True)
                return ExecResult(self._exit_code(api, ex["Id"]), out or b"", err or b"")
            sock = api.exec_start(ex["Id"], socket=True)
        except docker.errors.NotFound:
            raise TransportError(f"{ref.label}: container is gone", "it will be picked up again when it runs") from None
        except docker.errors.APIError as e:
            msg = e.explanation or str(e)
            if "is not running" in str(msg) or "is paused" in str(msg):
                raise TransportError(f"{ref.label}: {msg}", f"start it: docker start {ref.name}") from None
            raise TransportError(f"{ref.label}: exec failed: {msg}") from None
        except ENGINE_ERRORS as e:
            self._client = None
            raise TransportError(f"{ref.label}: the Docker engine does not answer: {e}", ENGINE_HINT) from None
        raw: socket.socket = getattr(sock, "_sock", sock)
        out, err = bytearray(), bytearray()

        def read_all() -> None:
            try:
                for stream, data in frames_iter(sock, tty=False):
                    (out if stream == 1 else err).extend(data)
            except OSError:
                pass

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        sent = 0
        try:
            for chunk in stdin:
                raw.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the process exited early (e.g. no tar): its exit code and stderr say why
        finally:
            with suppress(OSError):
                raw.shutdown(socket.SHUT_WR)
        reader.join(timeout=300)
        with suppress(OSError):
            sock.close()
        with engine_errors(ref.label, "reading the exit code"):
            return ExecResult(self._exit_code(api, ex["Id"]), bytes(out), bytes(err), sent)

    @staticmethod
    def _exit_code(api: docker.APIClient, exec_id: str) -> int:
        for _ in range(100):  # the stream can end a moment before the engine records the exit
            info = api.exec_inspect(exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.005)
        return -1

    async def restart(self, ref: ContainerRef) -> None:
        """`docker restart`: TERM, then KILL after the grace period. The container comes back
        with a new StartedAt, so discovery sees a new generation and reconciles it."""
        timeout = self.settings.exec.restart_grace

        def restart() -> None:
            try:
                self._engine().api.restart(ref.id, timeout=timeout)
            except docker.errors.NotFound:
                raise TransportError(f"{ref.label}: container is gone", "it will be picked up again when it runs") from None
            except docker.errors.APIError as e:
                raise TransportError(f"{ref.label}: restart failed: {e.explanation or e}") from None
            except ENGINE_ERRORS as e:
                raise TransportError(f"{ref.label}: restart failed: {e}", ENGINE_HINT) from None

        await anyio.to_thread.run_sync(restart, abandon_on_cancel=True)

    async def close(self) -> None:
        self._feed.stop()
        events = self._events
        if events is not None:
            with suppress(Exception):  # unblocks the feed's read; it may be closing already
                events.close()
        await super().close()
        if self._client is not None:
            self._client.close()

