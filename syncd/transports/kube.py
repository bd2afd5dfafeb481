"""`kind = "kubernetes"`: every Running pod matching a label selector, reached the way
`kubectl exec` reaches it (WebSocket exec through the API server; nothing in the image).

The official client is synchronous: every call runs in a worker thread. Exec uses its own
ApiClient (`kubernetes.stream` patches the client it is given while connecting). A pod
watch wakes container discovery at once when pods come, go or restart.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import anyio.from_thread
import anyio.lowlevel
import structlog
import urllib3
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes import watch as kwatch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream as kstream
from kubernetes.stream.ws_client import WSClient

from syncd.config import KubernetesTarget
from syncd.settings import DEFAULT_SETTINGS, Settings
from syncd.transports.base import ContainerRef, ExecResult, TransportError
from syncd.transports.exec import ExecTransport
from syncd.transports.feed import ChangeFeed
from syncd.transports.session import SESSION_SCRIPT

log = structlog.get_logger("syncd.kube")

V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3


class KubeChannel:
    """A long-lived exec WebSocket's stdin/stdout, for the session (either subprotocol:
    the session protocol is byte-counted, it never needs a stdin close)."""

    def __init__(self, ws: WSClient) -> None:
        self.ws = ws

    def send(self, data: bytes) -> None:
        for i in range(0, len(data), 1 << 19):  # frames well under 1 MiB
            self.ws.write_channel(STDIN, data[i : i + (1 << 19)])

    def recv(self) -> bytes:
        try:
            while self.ws.is_open():
                self.ws.update(timeout=5)
                data = self.ws.read_channel(STDOUT)
                if data:
                    return data
            return self.ws.read_channel(STDOUT) or b""
        except (TypeError, ValueError, AttributeError):
            return b""  # the socket was closed under the poll (our own close)

    def close(self) -> None:
        self.ws.close()


class KubeTransport(ExecTransport):
    has_change_feed = True  # a pod watch (see wait_changed)

    def __init__(self, target: str, spec: KubernetesTarget, sessions: bool = True, settings: Settings = DEFAULT_SETTINGS) -> None:
        self.spec = spec
        self._cfg: kclient.Configuration | None = None
        self._api: kclient.CoreV1Api | None = None
        self._exec_api: kclient.CoreV1Api | None = None
        self._exec_lock = threading.Lock()
        self._load_lock = threading.Lock()  # the watch thread and discovery both load the config
        self._feed = ChangeFeed(f"pods of {target}", self._follow_pods, settings.exec.feed_retry_max)
        self._reported: dict[str, str] = {}  # pod -> last problem logged (no repeats)
        self.protocols: dict[str, str] = {}  # pod -> negotiated exec subprotocol
        super().__init__(target, sessions, settings)

    def other_user_fix(self) -> str:
        return ("run the container as a user that may write there (securityContext.runAsUser / runAsGroup / "
                "fsGroup): Kubernetes exec has no user switch")

    def _open_channel(self, ref: ContainerRef) -> KubeChannel:
        ws = self._connect(ref, ["sh", "-c", SESSION_SCRIPT, "syncd-session"], stdin=True)
        return KubeChannel(ws)

    def _framed(self, ref: ContainerRef) -> bool:
        return self.protocols.get(ref.name) != V5  # v5 can close stdin; v4 needs byte counts

    # --- configuration -----------------------------------------------------------------

    def where(self) -> str:
        return f"kubernetes target '{self.target}' (namespace {self.spec.namespace}, selector {self.spec.selector})"

    def load_kubeconfig(self) -> kclient.Configuration:
        with self._load_lock:
            return self._load_locked()

    def _load_locked(self) -> kclient.Configuration:
        if self._cfg is not None:
            return self._cfg
        cfg = kclient.Configuration()
        kubeconfig = _kubeconfig_path()
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ
        try:
            if self.spec.context or any(os.path.exists(p) for p in kubeconfig.split(os.pathsep)) or not in_cluster:
                kconfig.load_kube_config(config_file=kubeconfig, context=self.spec.context, client_configuration=cfg)
            else:
                kconfig.load_incluster_config(client_configuration=cfg)
        except (ConfigException, OSError, TypeError) as e:
            raise TransportError(f"{self.where()}: cannot load kubeconfig: {e}", self._context_hint(), permanent=True) from None
        self._cfg = cfg
        self._api = kclient.CoreV1Api(kclient.ApiClient(cfg))
        self._exec_api = kclient.CoreV1Api(kclient.ApiClient(cfg))  # dedicated: stream() patches it
        return cfg

    def _context_hint(self) -> str:
        try:
            contexts, current = kconfig.list_kube_config_contexts(config_file=_kubeconfig_path())
            names = ", ".join(c["name"] for c in contexts)
            return (f"available contexts: {names} (current: {current['name'] if current else 'none'}); "
                    f"set targets.{self.target}.context or KUBECONFIG")
        except (ConfigException, OSError, TypeError):
            return "point KUBECONFIG at a kubeconfig (kind/k3d write one), or run inside the cluster"

    def api_error(self, e: Exception, doing: str) -> TransportError:
        """Turn a client error into a message with a remediation line."""
        if isinstance(e, ApiException):
            status = e.status or 0
            message = _status_message(e.body) or e.reason or str(e)
            if status == 401:
                return TransportError(f"{self.where()}: {doing}: unauthorized ({message})",
                                      "the kubeconfig credentials were rejected: refresh them (re-login / renew the token)")
            if status == 403:
                verb = "create pods/exec" if "exec" in doing else "list and watch pods"
                return TransportError(f"{self.where()}: {doing}: forbidden ({message})",
                                      f"RBAC: grant the verbs `{verb}` in namespace {self.spec.namespace} "
                                      f"(`kubectl auth can-i {verb.split()[0]} {verb.split()[-1]} -n {self.spec.namespace}`)")
            return TransportError(f"{self.where()}: {doing}: HTTP {status}: {message}")
        host = self._cfg.host if self._cfg else "?"
        return TransportError(f"{self.where()}: API server unreachable at {host} ({type(e).__name__})",
                              "check the cluster is up (`kubectl cluster-info`); syncd keeps watching and retries")

    # --- discovery ---------------------------------------------------------------------

    async def containers(self) -> list[ContainerRef]:
        self._feed.start()
        return await anyio.to_thread.run_sync(self.list_containers, abandon_on_cancel=True)

    def list_containers(self) -> list[ContainerRef]:
        self.load_kubeconfig()
        assert self._api is not None
        try:
            pods = self._api.list_namespaced_pod(
                self.spec.namespace, label_selector=self.spec.selector,
                _request_timeout=self.settings.exec.api_request_timeout
            ).items
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise self.api_error(e, "listing pods") from None
        refs: list[ContainerRef] = []
        problems: list[TransportError] = []
        for pod in pods:
            pod_name = pod.metadata.name if pod.metadata is not None else "?"
            try:
                ref = self._pod_container(pod)
            except TransportError as e:
                problems.append(e)
                self._report(str(pod_name), e)
                continue
            if ref is not None:
                self._reported.pop(str(pod_name), None)
                refs.append(ref)
        if not refs and problems:
            raise problems[0]
        if not refs:
            raise TransportError(f"{self.where()}: no Running pod matches",
                                 "changes are kept and applied when a pod appears "
                                 f"(`kubectl get pods -n {self.spec.namespace} -l {self.spec.selector}`)")
        return refs

    def _report(self, pod: str, e: TransportError) -> None:
        if self._reported.get(pod) != str(e):
            self._reported[pod] = str(e)
            log.warning("pod not usable", target=self.target, pod=pod, error=e.message, hint=e.hint)

    def _pod_container(self, pod: kclient.V1Pod) -> ContainerRef | None:
        meta, spec, state = pod.metadata, pod.spec, pod.status
        if meta is None or spec is None or state is None:
            return None  # (the API server always sends them; the client's types allow None)
        name = str(meta.name)
        if meta.deletion_timestamp is not None or state.phase != "Running":
            return None  # being deleted, pending or finished: not a place to sync to
        names = [c.name for c in spec.containers]
        wanted = self.spec.container
        if wanted is None:
            if len(names) > 1:
                raise TransportError(f"pod {name} has {len(names)} containers ({', '.join(names)})",
                                     f"set targets.{self.target}.container to one of them", permanent=True)
            wanted = names[0]
        elif wanted not in names:
            raise TransportError(f"pod {name} has no container '{wanted}' (it has: {', '.join(names)})",
                                 f"fix targets.{self.target}.container", permanent=True)
        status = next((s for s in (state.container_statuses or []) if s.name == wanted), None)
        image = next(c.image or "" for c in spec.containers if c.name == wanted)
        if status is None or status.state is None or status.state.running is None:
            waiting = status.state.waiting if status and status.state else None
            why = f"{waiting.reason}: {waiting.message or ''}".strip(": ") if waiting else "not started"
            raise TransportError(f"pod {name} container '{wanted}' is not running ({why})",
                                 f"see `kubectl logs -n {self.spec.namespace} {name} -c {wanted} --previous`; "
                                 "syncd reconciles it as soon as it runs")
        return ContainerRef(
            self.target,
            f"{meta.uid}/{wanted}",
            name,
            generation=f"{meta.uid}/{status.container_id}/{status.restart_count}",
            image=image,
            container=wanted,
        )

    # --- pod watch: wake discovery when pods change ------------------------------------

    def _follow_pods(self, notify: Callable[[], None], stopping: threading.Event) -> None:
        self.load_kubeconfig()
        assert self._api is not None
        w = kwatch.Watch()
        for _event in w.stream(self._api.list_namespaced_pod, self.spec.namespace,
                               label_selector=self.spec.selector, timeout_seconds=60, _request_timeout=75):
            notify()
            if stopping.is_set():
                w.stop()
                return

    async def wait_changed(self) -> None:
        """Returns when the pod watch saw a change (the caller bounds the wait)."""
        await self._feed.wait()

    # --- exec ----------------------------------------------------------------------------

    def _connect(self, ref: ContainerRef, argv: list[str], stdin: bool) -> WSClient:
        """Open the exec WebSocket (the API server answers errors before upgrading)."""
        self.load_kubeconfig()
        assert self._exec_api is not None
        try:
            with self._exec_lock:
                ws = kstream(
                    self._exec_api.connect_get_namespaced_pod_exec, ref.name, self.spec.namespace,
                    command=argv, container=ref.container, stdin=stdin,
                    stdout=True, stderr=True, tty=False, _preload_content=False, binary=True,
                )
        except ApiException as e:
            raise self._exec_error(ref, e) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self.api_error(e, f"exec in pod {ref.name}") from None
        self.protocols[ref.name] = ws.subprotocol or ""
        return ws

    def _exec(self, ref: ContainerRef, argv: list[str], stdin: Iterator[bytes] | None) -> ExecResult:
        """Run argv in the pod's container over the exec WebSocket."""
        ws = self._connect(ref, argv, stdin is not None)
        out, err = bytearray(), bytearray()
        sent = 0
        limit = self.settings.exec.timeout
        deadline = time.monotonic() + limit

        def drain(timeout: float) -> None:
            ws.update(timeout=timeout)
            out.extend(ws.read_channel(STDOUT) or b"")
            err.extend(ws.read_channel(STDERR) or b"")

        try:
            if stdin is not None:
                for piece in stdin:
                    for i in range(0, len(piece), 1 << 19):  # frames well under 1 MiB
                        ws.write_channel(STDIN, piece[i : i + (1 << 19)])
                        sent += min(1 << 19, len(piece) - i)
                    drain(0)
                    if not ws.is_open():
                        break  # the process ended early: its status says why
                if ws.is_open() and ws.subprotocol == V5:
                    ws.close_channel(STDIN)  # v5: a real EOF; v4 streams end by byte count
            while ws.is_open():
                if time.monotonic() > deadline:
                    raise TransportError(f"{ref.label}: exec did not finish within {limit:.0f}s")
                drain(1.0)
            drain(0)
            status = ws.read_channel(STATUS)
        except (OSError, Exception) as e:
            if isinstance(e, TransportError):
                raise
            raise TransportError(f"{ref.label}: exec connection dropped ({type(e).__name__}: {e})",
                                 "syncd reconciles the pod when it is reachable again") from None
        finally:
            ws.close()
        code, detail = _exit_code(status)
        return ExecResult(code, bytes(out), bytes(err), sent, detail)

    def _exec_error(self, ref: ContainerRef, e: ApiException) -> TransportError:
        """Errors the API server answers before upgrading the exec connection."""
        status, message = _handshake_status(e)
        pod = ref.name
        if status == 403:
            return TransportError(f"{self.where()}: exec into pod {pod} forbidden ({message})",
                                  f"RBAC: grant `create` on `pods/exec` in namespace {self.spec.namespace} "
                                  f"(`kubectl auth can-i create pods/exec -n {self.spec.namespace}`)")
        if status == 401:
            return TransportError(f"{self.where()}: unauthorized ({message})", "refresh the kubeconfig credentials")
        if status == 404:
            return TransportError(f"{ref.label}: pod {pod} not found ({message})", "it was deleted; syncd follows the selector")
        if status == 400 and "container" in message:
            return TransportError(f"{ref.label}: {message}", f"check targets.{self.target}.container", permanent=True)
        return TransportError(f"{ref.label}: exec failed: HTTP {status or '?'}: {message}")

    async def close(self) -> None:
        self._feed.stop()
        await super().close()


# --- protocol details ------------------------------------------------------------------


def _kubeconfig_path() -> str:
    """Like kubectl: $KUBECONFIG (a `:`-separated list) else ~/.kube/config. Read now: the
    client library's own default was fixed when it was imported."""
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _status_message(body: object) -> str:
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        return ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""


_HANDSHAKE = re.compile(r"Handshake status (\d{3})")


def _handshake_status(e: ApiException) -> tuple[int, str]:
    """The client reports a refused upgrade as status 0 with the HTTP status and the
    apiserver's metav1.Status body inside the reason text: dig both out."""
    text = f"{e.reason or ''} {e.body or ''}"
    m = _HANDSHAKE.search(text)
    status = int(m.group(1)) if m else (e.status or 0)
    # websocket-client's text is "Handshake status 403 Forbidden -+-+- {headers} -+-+- b'{body}'":
    # the Status JSON is in the last part, not the first brace (that is the headers dict).
    last = text.rsplit("-+-+-", 1)[-1]
    body = last[last.find("{"):last.rfind("}") + 1] if "{" in last else ""
    message = _status_message(body.encode().decode("unicode_escape") if "\\" in body else body) or _status_message(body)
    return status, message or text.strip()[:300]


def _exit_code(status: bytes | str | None) -> tuple[int, str]:
    """metav1.Status from channel 3 -> (exit code, message). Success is 0; a NonZeroExitCode
    carries the code in details.causes[reason=ExitCode]; anything else is -1."""
    if not status:
        return -1, "the exec ended without a status (connection closed)"
    try:
        data = json.loads(status)
    except ValueError:
        return -1, str(status)[:300]
    if data.get("status") == "Success":
        return 0, ""
    message = str(data.get("message", ""))
    for cause in (data.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", "")), message
            except ValueError:
                break
    return -1, message
