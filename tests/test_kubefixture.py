"""The kube-apiserver stand-in (tests/kubefixture) against real clients: kubectl, the official
python client, and raw WebSocket frames. Faithful means these clients cannot tell it from the
real server for what syncd uses: discovery, pod get/list/watch, exec (v5 and v4) and errors."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import websocket
from kubefixture import KubeFixture
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

pytestmark = pytest.mark.docker

BUSYBOX = "syncd-test/busybox:latest"
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def fx(docker_client, tmp_path_factory) -> Iterator[KubeFixture]:  # noqa: ANN001
    fixture = KubeFixture(docker_client=docker_client).start()
    fixture.kubectl_home = tmp_path_factory.mktemp("kubectl-home")  # type: ignore[attr-defined]
    fixture.create_pod("web-0", namespace="dev", labels={"app": "web"}, containers=[{"name": "app", "image": BUSYBOX}])
    fixture.create_pod("web-1", namespace="dev", labels={"app": "web", "tier": "backend"},
                       containers=[{"name": "app", "image": BUSYBOX}])
    fixture.create_pod("multi", namespace="dev", labels={"app": "multi"},
                       containers=[{"name": "app", "image": BUSYBOX}, {"name": "sidecar", "image": BUSYBOX}])
    yield fixture
    fixture.stop()
    assert not docker_client.containers.list(all=True, filters={"label": f"syncd.fixture.instance={fixture.instance}"})


@pytest.fixture(autouse=True)
def _reset(request) -> Iterator[None]:  # noqa: ANN001
    yield
    if "fx" in request.fixturenames:
        fx = request.getfixturevalue("fx")
        fx.protocols = (V5, V4)
        fx.allow_all()


def kubectl(fx: KubeFixture, *args: str, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, KUBECONFIG=str(fx.kubeconfig), HOME=str(fx.kubectl_home))  # type: ignore[attr-defined]
    return subprocess.run(["kubectl", *args], env=env, input=input, capture_output=True, timeout=timeout)


@pytest.fixture
def api(fx: KubeFixture) -> Iterator[k8s.CoreV1Api]:
    """The official client, configured from the fixture's kubeconfig only (no global default)."""
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(fx.kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as client:
        yield k8s.CoreV1Api(client)


def http(fx: KubeFixture, path: str, *, token: str | None = "", headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(fx.url + path, method=method, headers=headers or {})
    token = fx.token if token == "" else token
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def exec_path(pod: str, command: list[str], namespace: str = "dev", **flags: Any) -> str:
    query = [("command", c) for c in command]
    query += [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in flags.items()]
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


def ws_connect(fx: KubeFixture, path: str, protocols: list[str], token: str | None = "") -> websocket.WebSocket:
    header = [f"Authorization: Bearer {fx.token if token == '' else token}"] if token is not None else []
    return websocket.create_connection("ws" + fx.url[4:] + path, header=header, subprotocols=protocols, timeout=20)


def read_session(ws: websocket.WebSocket) -> tuple[list[bytes], int]:
    """All data frames until the close frame; returns (frames, close code). Closes our side."""
    frames = []
    try:
        while True:
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return frames, int.from_bytes(frame.data[:2], "big")
            frames.append(frame.data)
    finally:
        ws.shutdown()  # recv_data_frame already answered the close frame


def channel(frames: list[bytes], ch: int) -> bytes:
    return b"".join(f[1:] for f in frames if f[:1] == bytes([ch]))


def docker_read(fx: KubeFixture, pod: str, path: str, namespace: str = "dev", container: str = "app") -> bytes:
    res = fx.docker_container(pod, container, namespace=namespace).exec_run(["cat", path])
    assert res.exit_code == 0, res.output
    return res.output


# ----- kubectl ------------------------------------------------------------------------------------
def test_kubectl_get_pods_with_label_selector(fx: KubeFixture) -> None:
    res = kubectl(fx, "get", "pods", "-n", "dev", "-l", "app=web")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [["web-0", "1/1", "Running", "0"], ["web-1", "1/1", "Running", "0"]]
    res = kubectl(fx, "get", "pods", "-A", "-l", "app in (multi)", "--show-labels")
    assert res.returncode == 0, res.stderr
    row = res.stdout.decode().splitlines()[1].split()
    assert row[:4] == ["dev", "multi", "2/2", "Running"] and row[-1] == "app=multi"


def test_kubectl_get_pod_json_round_trips(fx: KubeFixture) -> None:
    res = kubectl(fx, "get", "pod", "web-0", "-n", "dev", "-o", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == fx.pod("web-0", "dev")
    res = kubectl(fx, "get", "pods", "-n", "dev", "-l", "tier=backend", "-o", "jsonpath={.items[*].metadata.name}")
    assert res.stdout == b"web-1"


def test_kubectl_exec_streams_and_exit_code(fx: KubeFixture) -> None:
    res = kubectl(fx, "exec", "-n", "dev", "web-0", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert res.returncode == 7
    assert res.stdout == b"out\n"
    assert res.stderr == b"err\ncommand terminated with exit code 7\n"


def test_kubectl_exec_stdin(fx: KubeFixture) -> None:
    data = os.urandom(200_000)
    res = kubectl(fx, "exec", "-i", "-n", "dev", "web-0", "--", "sh", "-c", "cat > /tmp/stdin.bin")
    assert res.returncode == 0, res.stderr
    res = kubectl(fx, "exec", "-i", "-n", "dev", "web-0", "--", "sh", "-c", "cat > /tmp/stdin.bin", input=data)
    assert res.returncode == 0, res.stderr
    assert docker_read(fx, "web-0", "/tmp/stdin.bin") == data


def test_kubectl_cp_round_trip(fx: KubeFixture, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    (src / "nested" / "b.bin").write_bytes(os.urandom(300_000))
    (src / "nested" / "deeper" / "empty").write_bytes(b"")
    res = kubectl(fx, "cp", str(src), "dev/web-1:/tmp/dir")
    assert res.returncode == 0, res.stderr
    assert docker_read(fx, "web-1", "/tmp/dir/a.txt") == b"hello\n"
    back = tmp_path / "back"
    res = kubectl(fx, "cp", "dev/web-1:/tmp/dir", str(back))
    assert res.returncode == 0, res.stderr

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(back) == tree(src)


def test_kubectl_exec_error_texts(fx: KubeFixture) -> None:
    res = kubectl(fx, "exec", "-n", "dev", "ghost", "--", "true")
    assert (res.returncode, res.stderr) == (1, b'Error from server (NotFound): pods "ghost" not found\n')
    res = kubectl(fx, "exec", "-n", "dev", "web-0", "-c", "nope", "--", "true")
    assert (res.returncode, res.stderr) == (1, b"Error from server (BadRequest): container nope is not valid for pod web-0\n")
    res = kubectl(fx, "exec", "-n", "dev", "web-0", "--", "no-such-binary")
    assert res.returncode == 1
    assert res.stderr.startswith(b"error: Internal error occurred: Internal error occurred: error executing command in "
                                 b"container: failed to exec in container: failed to start exec ")
    assert b'exec: "no-such-binary": executable file not found in $PATH' in res.stderr
    fx.deny("create", "pods/exec")
    res = kubectl(fx, "exec", "-n", "dev", "web-0", "--", "true")
    assert (res.returncode, res.stderr) == (1, b'Error from server (Forbidden): pods "web-0" is forbidden: User "fixture" '
                                               b'cannot create resource "pods/exec" in API group "" in the namespace "dev"\n')
    fx.allow_all()
    assert kubectl(fx, "exec", "-n", "dev", "web-0", "--", "true").returncode == 0


def test_kubectl_crashloop(fx: KubeFixture) -> None:
    fx.create_pod("crash-0", namespace="crash", containers=[{"name": "app", "image": BUSYBOX}])
    pod = fx.crashloop("crash-0", "app", namespace="crash")
    cs = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Running"
    assert cs["ready"] is False and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    row = kubectl(fx, "get", "pods", "-n", "crash").stdout.decode().splitlines()[1].split()
    assert row[:4] == ["crash-0", "0/1", "CrashLoopBackOff", "1"]
    res = kubectl(fx, "exec", "-n", "crash", "crash-0", "--", "true")
    assert (res.returncode, res.stderr) == (1, b'error: Internal error occurred: unable to upgrade connection: container not found ("app")\n')
    # v4 path (apiserver proxies to the kubelet): the kubelet's plain-text 500 before the upgrade.
    fx.protocols = (V4,)
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        ws_connect(fx, exec_path("crash-0", ["true"], namespace="crash", stdout=True), [V4])
    assert err.value.status_code == 500 and err.value.resp_body == b'container not found ("app")'
    fx.protocols = (V5, V4)
    fx.restart_container("crash-0", "app", namespace="crash")
    assert kubectl(fx, "exec", "-n", "crash", "crash-0", "--", "true").returncode == 0
    fx.delete_pod("crash-0", namespace="crash")


def test_kubectl_get_watch_shows_changes(fx: KubeFixture) -> None:
    fx.create_pod("w-0", namespace="kwatch")
    env = dict(os.environ, KUBECONFIG=str(fx.kubeconfig), HOME=str(fx.kubectl_home))  # type: ignore[attr-defined]
    proc = subprocess.Popen(["kubectl", "get", "pods", "-n", "kwatch", "-w"], env=env, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        first = lines.get(timeout=20)
        assert first.split()[:3] == ["NAME", "READY", "STATUS"]
        row = lines.get(timeout=20).split()
        assert row[:3] == ["w-0", "1/1", "Running"]
        fx.restart_container("w-0", "app", namespace="kwatch")
        rows = []
        while not rows or rows[-1][:4] != ["w-0", "1/1", "Running", "1"]:
            rows.append(lines.get(timeout=20).split())
        assert ["w-0", "0/1", "Error"] in [r[:3] for r in rows]
        fx.delete_pod("w-0", namespace="kwatch")
        row = lines.get(timeout=20).split()
        assert row[:3] == ["w-0", "0/1", "Terminating"] or row[:3] == ["w-0", "1/1", "Terminating"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_container_exiting_on_its_own_restarts_then_crashloops(fx: KubeFixture) -> None:
    created = fx.create_pod("die-0", namespace="die")

    def status() -> dict[str, Any]:
        return fx.pod("die-0", "die")["status"]["containerStatuses"][0]  # type: ignore[index]

    fx.docker_container("die-0", "app", namespace="die").exec_run(["kill", "1"])  # PID 1 exits 0 on TERM
    cs = wait_for(lambda: (s := status())["restartCount"] == 1 and "running" in s["state"] and s, what="a restart")
    assert cs["containerID"] != created["status"]["containerStatuses"][0]["containerID"]
    assert cs["lastState"]["terminated"]["reason"] == "Completed"
    fx.docker_container("die-0", "app", namespace="die").exec_run(["kill", "1"])  # again, within the back-off
    cs = wait_for(lambda: (s := status())["state"].get("waiting") and s, what="CrashLoopBackOff")
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["restartCount"] == 2
    fx.delete_pod("die-0", namespace="die")


# ----- the official python client --------------------------------------------------------------
def test_client_lists_with_label_and_field_selectors(fx: KubeFixture, api: k8s.CoreV1Api) -> None:

    def names(**kw: Any) -> list[str]:
        return [p.metadata.name for p in api.list_namespaced_pod("dev", **kw).items]

    assert names(label_selector="app=web") == ["web-0", "web-1"]
    assert names(label_selector="app!=web") == ["multi"]
    assert names(label_selector="app in (web, multi),!tier") == ["multi", "web-0"]
    assert names(label_selector="tier") == ["web-1"]
    assert names(label_selector="app==web,tier notin (frontend)") == ["web-0", "web-1"]
    assert names(field_selector="metadata.name=web-1") == ["web-1"]
    assert names(label_selector="app=none") == []
    listed = api.list_pod_for_all_namespaces(label_selector="app=web")
    assert int(listed.metadata.resource_version) >= 1
    assert {(p.metadata.namespace, p.metadata.name) for p in listed.items} >= {("dev", "web-0"), ("dev", "web-1")}
    pod = api.read_namespaced_pod("multi", "dev")
    assert [c.name for c in pod.spec.containers] == ["app", "sidecar"]
    assert all(cs.container_id.startswith("docker://") and cs.state.running for cs in pod.status.container_statuses)
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    with pytest.raises(ApiException) as err:
        api.read_namespaced_pod("ghost", "dev")
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'pods "ghost" not found'
    with pytest.raises(ApiException) as err:
        api.list_namespaced_pod("dev", label_selector="app in (")
    assert err.value.status == 400


def test_client_watch_sees_added_modified_deleted(fx: KubeFixture, api: k8s.CoreV1Api) -> None:
    rv = api.list_namespaced_pod("pywatch").metadata.resource_version
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    w = k8s_watch.Watch()

    def run() -> None:
        for ev in w.stream(api.list_namespaced_pod, "pywatch", resource_version=rv, timeout_seconds=30):
            events.put((ev["type"], ev["object"]))
            if ev["type"] == "DELETED":
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    created = fx.create_pod("pw-0", namespace="pywatch", labels={"app": "pw"})
    restarted = fx.restart_container("pw-0", "app", namespace="pywatch")
    fx.delete_pod("pw-0", namespace="pywatch")
    t.join(timeout=20)
    got = []
    while not events.empty():
        got.append(events.get())
    types = [t for t, _ in got]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and "MODIFIED" in types
    rvs = [int(o.metadata.resource_version) for _, o in got]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    final_running = [o for t, o in got if t == "MODIFIED" and o.status.container_statuses[0].restart_count == 1
                     and o.status.container_statuses[0].state.running]
    assert final_running
    old_id = created["status"]["containerStatuses"][0]["containerID"]
    assert final_running[-1].status.container_statuses[0].container_id == restarted["status"]["containerStatuses"][0]["containerID"] != old_id
    assert got[-1][1].metadata.uid == created["metadata"]["uid"]


def test_client_exec_v5_close_stdin(fx: KubeFixture, api: k8s.CoreV1Api) -> None:
    ws = stream(api.connect_get_namespaced_pod_exec, "web-0", "dev", command=["sh", "-c", "cat; echo done >&2; exit 3"],
                stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False, binary=True)
    assert ws.subprotocol == V5
    ws.write_stdin(b"payload\n")
    ws.close_channel(0)  # v5 CLOSE: cat sees EOF
    ws.run_forever(timeout=20)
    assert (ws.read_stdout(), ws.read_stderr(), ws.returncode) == (b"payload\n", b"done\n", 3)
    ws.close()


def test_client_exec_v4_only(fx: KubeFixture, api: k8s.CoreV1Api) -> None:
    fx.protocols = (V4,)
    ws = stream(api.connect_get_namespaced_pod_exec, "web-0", "dev", command=["sh", "-c", "head -c 5; exit 4"],
                stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False, binary=True)
    assert ws.subprotocol == V4
    ws.write_stdin(b"12345")
    ws.run_forever(timeout=20)
    assert (ws.read_stdout(), ws.returncode) == (b"12345", 4)
    ws.close()
    ws = stream(api.connect_get_namespaced_pod_exec, "multi", "dev", container="sidecar", command=["hostname"],
                stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    ws.run_forever(timeout=20)
    assert (ws.read_stdout(), ws.returncode) == ("multi\n", 0)
    ws.close()


# ----- raw frames -----------------------------------------------------------------------------
def test_raw_v5_frames_status_and_close_code(fx: KubeFixture) -> None:
    ws = ws_connect(fx, exec_path("web-0", ["sh", "-c", "echo hi; echo oops >&2; exit 5"], stdout=True, stderr=True), [V5, V4])
    assert ws.subprotocol == V5
    frames, code = read_session(ws)
    assert frames[0] == b"\x01"  # the empty frame on the lowest writable channel, first
    assert (channel(frames, 1), channel(frames, 2)) == (b"hi\n", b"oops\n")
    assert frames[-1][:1] == b"\x03" and code == 1000
    assert json.loads(frames[-1][1:]) == {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: command terminated with exit code 5",
        "details": {"causes": [{"reason": "ExitCode", "message": "5"}]}}
    ws = ws_connect(fx, exec_path("web-0", ["true"], stderr=True), [V5])
    frames, code = read_session(ws)
    assert frames == [b"\x02", b'\x03{"metadata":{},"status":"Success"}'] and code == 1000
    ws = ws_connect(fx, exec_path("web-0", ["true"], stdin=True), [V5])
    ws.send_binary(b"\xff\x00")
    frames, code = read_session(ws)
    assert frames == [b"\x03", b'\x03{"metadata":{},"status":"Success"}'] and code == 1000


def test_raw_v4_status_and_no_stream_close(fx: KubeFixture) -> None:
    fx.protocols = (V4,)
    ws = ws_connect(fx, exec_path("web-0", ["sh", "-c", "head -c 5; exit 9"], stdin=True, stdout=True, stderr=True), [V5, V4])
    assert ws.subprotocol == V4
    ws.send_binary(b"\xff\x00")  # no CLOSE signal in v4: ignored, stdin stays open
    ws.send_binary(b"\x00hello")
    frames, code = read_session(ws)
    assert frames[0] == b"\x01" and channel(frames, 1) == b"hello" and code == 1000
    assert json.loads(channel(frames, 3))["message"] == (
        "command terminated with non-zero exit code: error executing command [sh -c head -c 5; exit 9], exit code 9")


def test_raw_large_stdin_intact(fx: KubeFixture) -> None:
    data = os.urandom(3 << 20)
    ws = ws_connect(fx, exec_path("web-1", ["sh", "-c", "sha1sum; cat /dev/null"], stdin=True, stdout=True, stderr=True), [V5])
    for i in range(0, len(data), 64 << 10):
        ws.send_binary(b"\x00" + data[i:i + (64 << 10)])
    ws.send_binary(b"\xff\x00")
    frames, code = read_session(ws)
    assert channel(frames, 1).split()[0].decode() == hashlib.sha1(data).hexdigest()
    assert channel(frames, 3) == b'{"metadata":{},"status":"Success"}' and code == 1000


def test_raw_missing_binary_status(fx: KubeFixture) -> None:
    ws = ws_connect(fx, exec_path("web-0", ["nope"], stdout=True, stderr=True), [V5])
    frames, code = read_session(ws)
    assert channel(frames, 1) == b"" and code == 1000
    status = json.loads(channel(frames, 3))
    assert (status["reason"], status["code"]) == ("InternalError", 500)
    assert status["message"].startswith("Internal error occurred: Internal error occurred: error executing command in container")
    assert 'exec: "nope": executable file not found in $PATH' in status["details"]["causes"][0]["message"]


def test_raw_errors_before_upgrade(fx: KubeFixture) -> None:
    def refused(path: str, protocols: list[str] = [V5, V4], token: str | None = "") -> tuple[int, bytes]:  # noqa: B006
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            ws_connect(fx, path, protocols, token=token)
        return err.value.status_code, err.value.resp_body

    def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason}
        return {**body, **({"details": details} if details is not None else {}), "code": code}

    good = exec_path("web-0", ["true"], stdout=True)
    code, body = refused(good, token=None)
    assert (code, json.loads(body)) == (401, status(401, "Unauthorized", "Unauthorized"))
    assert refused(good, token="wrong")[0] == 401
    code, body = refused(exec_path("ghost", ["true"], stdout=True))
    assert (code, json.loads(body)) == (404, status(404, "NotFound", 'pods "ghost" not found', {"name": "ghost", "kind": "pods"}))
    code, body = refused(exec_path("web-0", ["true"], container="nope", stdout=True))
    assert (code, json.loads(body)) == (400, status(400, "BadRequest", "container nope is not valid for pod web-0"))
    code, body = refused(exec_path("multi", ["true"], stdout=True))
    assert (code, json.loads(body)["message"]) == (400, "a container name must be specified for pod multi, choose one of: [app sidecar]")
    code, body = refused(good, protocols=["v9.channel.k8s.io"])
    assert (code, body) == (403, b"")  # x/net/websocket handshake refusal: bare 403
    fx.protocols = (V4,)
    assert refused(good, protocols=[V5]) == (403, b"")
    fx.protocols = (V5, V4)
    fx.deny("create", "pods/exec")
    code, body = refused(good)
    assert (code, json.loads(body)) == (403, status(403, "Forbidden", 'pods "web-0" is forbidden: User "fixture" cannot create '
                                                     'resource "pods/exec" in API group "" in the namespace "dev"',
                                                     {"name": "web-0", "kind": "pods"}))
    fx.allow_all()
    code, _, body = http(fx, good)  # no Upgrade header
    assert (code, json.loads(body)) == (400, status(400, "BadRequest", "Upgrade request required"))
    code, _, body = http(fx, "/api/v1/pods", token="wrong")
    assert (code, json.loads(body)["reason"]) == (401, "Unauthorized")
    fx.deny("list", "pods")
    code, _, body = http(fx, "/api/v1/namespaces/dev/pods")
    assert (code, json.loads(body)["message"]) == (403, 'pods is forbidden: User "fixture" cannot list resource "pods" in '
                                                        'API group "" in the namespace "dev"')


def test_raw_discovery_and_table(fx: KubeFixture) -> None:
    code, headers, body = http(fx, "/api", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    assert code == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["kind"] == "APIVersions" and json.loads(body)["versions"] == ["v1"]
    assert json.loads(http(fx, "/apis")[2]) == {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
    resources = {r["name"]: r for r in json.loads(http(fx, "/api/v1")[2])["resources"]}
    assert resources["pods"]["shortNames"] == ["po"] and resources["pods"]["namespaced"] is True
    assert resources["pods/exec"]["kind"] == "PodExecOptions" and "create" in resources["pods/exec"]["verbs"]
    assert json.loads(http(fx, "/version")[2])["major"] == "1"
    code, headers, body = http(fx, "/api/v1/namespaces/dev/pods?labelSelector=app%3Dweb",
                               headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    table = json.loads(body)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [r["cells"][:4] for r in table["rows"]] == [["web-0", "1/1", "Running", "0"], ["web-1", "1/1", "Running", "0"]]


def test_raw_watch_replay_initial_events_and_expired(fx: KubeFixture) -> None:
    def events(query: str, stop_after: int) -> list[dict[str, Any]]:
        req = urllib.request.Request(f"{fx.url}/api/v1/namespaces/rawwatch/pods?watch=true&{query}",
                                     headers={"Authorization": f"Bearer {fx.token}"})
        out = []
        with urllib.request.urlopen(req, timeout=20) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            for line in resp:
                out.append(json.loads(line))
                if len(out) == stop_after:
                    break
        return out

    start_rv = fx.resource_version
    fx.create_pod("r-0", namespace="rawwatch")
    fx.create_pod("r-1", namespace="rawwatch")
    # no resourceVersion: the current state as ADDED events first
    initial = events("timeoutSeconds=1", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in initial] == [("ADDED", "r-0"), ("ADDED", "r-1")]
    # from an older resourceVersion: the history after it, in order (ADDED Pending, MODIFIED Running, …)
    replay = events(f"resourceVersion={start_rv}&timeoutSeconds=5", 4)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [
        ("ADDED", "r-0"), ("MODIFIED", "r-0"), ("ADDED", "r-1"), ("MODIFIED", "r-1")]
    assert replay[0]["object"]["status"]["phase"] == "Pending" and replay[1]["object"]["status"]["phase"] == "Running"
    # the stream ends at timeoutSeconds
    assert events(f"resourceVersion={fx.resource_version}&timeoutSeconds=1", 99) == []
    fx.compact()
    expired = events(f"resourceVersion={start_rv}", 1)
    assert expired[0]["type"] == "ERROR"
    assert expired[0]["object"]["code"] == 410 and expired[0]["object"]["reason"] == "Expired"
    assert expired[0]["object"]["message"].startswith(f"too old resource version: {start_rv} (")


def test_security_context_and_empty_dir_as_kubectl_sees_them(fx: KubeFixture, docker_client) -> None:  # noqa: ANN001
    """runAsUser/runAsGroup make exec run as that user (what `kubectl exec … id` shows on a
    kubelet), readOnlyRootFilesystem makes the root read-only, an emptyDir is an empty, mode
    0777 volume the pod's containers share; the pod spec reads back as it was given."""
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    ro = {"securityContext": {"readOnlyRootFilesystem": True}}
    fx.create_pod("secure", namespace="dev", labels={"app": "secure"},
                  containers=[{"name": "app", "image": BUSYBOX, **mount, **ro}, {"name": "side", "image": BUSYBOX, **mount}],
                  security_context={"runAsUser": 1000, "runAsGroup": 3000}, volumes=[{"name": "data", "emptyDir": {}}])
    try:
        res = kubectl(fx, "exec", "-n", "dev", "secure", "-c", "app", "--", "sh", "-c",
                      "id -u; id -g; stat -c %a /data; echo hi > /data/x && echo wrote; touch /tmp/y /y 2>&1 | sort")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.decode().splitlines()
        assert lines[:4] == ["1000", "3000", "777", "wrote"], lines
        assert len(lines) == 6 and all("Read-only file system" in line for line in lines[4:]), lines
        shared = kubectl(fx, "exec", "-n", "dev", "secure", "-c", "side", "--", "sh", "-c", "cat /data/x; id -u")
        assert shared.stdout == b"hi\n1000\n", shared
        spec = json.loads(kubectl(fx, "get", "pod", "-n", "dev", "secure", "-o", "json").stdout)["spec"]
        assert spec["securityContext"] == {"runAsUser": 1000, "runAsGroup": 3000}
        assert spec["volumes"] == [{"name": "data", "emptyDir": {}}]
        assert spec["containers"][0]["securityContext"] == {"readOnlyRootFilesystem": True}
        with pytest.raises(ValueError, match="runAsNonRoot"):
            fx.create_pod("rooted", namespace="dev", labels={"app": "rooted"}, containers=[{"name": "app", "image": BUSYBOX}],
                          security_context={"runAsNonRoot": True})
    finally:
        pod = fx.pod("secure", namespace="dev")
        fx.delete_pod("secure", namespace="dev")
    volume = f"kf-{fx.instance}-{pod['metadata']['uid']}-data"
    assert not docker_client.volumes.list(filters={"name": volume}), "the emptyDir outlived its pod"
