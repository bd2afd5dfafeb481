"""HTTP routes of the kube-apiserver subset: discovery, pods (get/list/watch/delete/log),
namespaces, the auth filters, and the pod exec route (exec_ws)."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import status as st
from .auth import forbidden_message, request_attributes
from .context import CTX, Context
from .exec_ws import handle_exec, is_websocket
from .kubelet import PodNotFound
from .selection import SelectorError, parse_label_selector, parse_pod_field_selector
from .state import Event, Expired
from .table import NAMESPACE_COLUMNS, POD_COLUMNS, namespace_row, pod_row, table

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VERSION = {
    "major": "1", "minor": "35", "gitVersion": "v1.35.0", "gitCommit": "kubefixture", "gitTreeState": "clean",
    "buildDate": "2025-12-17T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def _json(body: dict[str, Any], content_type: str = "application/json") -> web.Response:
    return web.Response(text=st.dumps(body), headers={"Content-Type": content_type})


# ----- filters (authentication, then authorization, as the apiserver's handler chain) ----------
@web.middleware
async def auth_filter(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token or not hmac.compare_digest(token, ctx.token):
        return st.response(st.unauthorized())
    attrs = request_attributes(request)
    verbs = [attrs.verb]
    if attrs.subresource in ("exec", "attach", "portforward") and attrs.verb == "get" and is_websocket(request):
        # AuthorizePodWebsocketUpgradeCreatePermission (KEP-4006, beta in v1.35): a WebSocket
        # upgrade arrives as GET but also needs "create" on the subresource.
        verbs.append("create")
    for verb in verbs:
        if not ctx.policy.allowed(attrs, verb):
            return st.response(st.forbidden(attrs.resource, attrs.name, forbidden_message(attrs, verb)))
    return await handler(request)


# ----- discovery -------------------------------------------------------------------------------
async def version(request: web.Request) -> web.Response:
    return _json(VERSION)


async def api_versions(request: web.Request) -> web.Response:
    # Always the legacy (unaggregated) form with Content-Type application/json: kubectl asks for
    # apidiscovery.k8s.io/v2 APIGroupDiscoveryList first and falls back on this answer.
    host = request.host
    return _json({"kind": "APIVersions", "versions": ["v1"],
                  "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})


async def api_groups(request: web.Request) -> web.Response:
    return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})


async def api_v1(request: web.Request) -> web.Response:
    # Verbs are what this fixture implements (a subset of the real server's).
    return _json({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["get", "list"], "shortNames": ["ns"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["delete", "get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
        {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ]})


# ----- content negotiation ---------------------------------------------------------------------
def table_version(request: web.Request) -> str | None:
    """meta.k8s.io version of a Table the Accept header asks for first, else None (plain JSON)."""
    for part in request.headers.get("Accept", "").split(","):
        fields = [f.strip() for f in part.split(";")]
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
        if not params.get("as") and fields[0] in ("application/json", "*/*", "application/*"):
            return None
    return None


def _table_type(v: str) -> str:
    return f"application/json;as=Table;v={v};g=meta.k8s.io"


# ----- pods ------------------------------------------------------------------------------------
def _strip_type(obj: dict[str, Any]) -> dict[str, Any]:
    # List items are served without kind/apiVersion, as the real server does.
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


async def list_pods(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    namespace = request.match_info.get("namespace")
    try:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_pod_field_selector(request.query.get("fieldSelector"))
    except SelectorError as e:
        return st.response(st.bad_request(str(e)))

    def match(pod: dict[str, Any]) -> bool:
        return (namespace in (None, pod["metadata"]["namespace"])
                and labels(pod["metadata"].get("labels", {})) and fields(pod))

    if request.query.get("watch", "") in ("1", "true", "True"):
        return await watch_pods(request, ctx, match)
    pods, rv = ctx.store.list(namespace)
    items = [p for p in pods if match(p)]
    tv = table_version(request)
    if tv:
        include = request.query.get("includeObject", "Metadata")
        api_version = f"meta.k8s.io/{tv}"
        rows = [pod_row(p, api_version, include) for p in items]
        return _json(table(POD_COLUMNS, rows, str(rv), api_version), _table_type(tv))
    return _json({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)},
                  "items": [_strip_type(p) for p in items]})


async def watch_pods(request: web.Request, ctx: Context, match: Callable[[dict[str, Any]], bool]) -> web.StreamResponse:
    """Newline-delimited watch events, chunked, until timeoutSeconds or the client goes away."""
    rv_param = request.query.get("resourceVersion", "")
    send_initial = request.query.get("sendInitialEvents") == "true"
    try:
        since = None if rv_param in ("", "0") or send_initial else int(rv_param)
        timeout = float(request.query.get("timeoutSeconds") or 1800)
    except ValueError:
        return st.response(st.bad_request(f"invalid resource version: {rv_param}"))
    tv = table_version(request)
    include = request.query.get("includeObject", "Metadata")
    resp = web.StreamResponse(headers={"Content-Type": _table_type(tv) if tv else "application/json"})
    resp.enable_chunked_encoding()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    ctx.tasks.add(task)
    sub = None
    try:
        try:
            initial, sub = ctx.store.subscribe(loop, since)
        except Expired as e:
            await resp.prepare(request)
            await resp.write(_line({"type": "ERROR", "object": st.expired(str(e))}))
            return resp
        await resp.prepare(request)

        async def send(ev: Event) -> None:
            if not match(ev.obj):
                return
            obj: dict[str, Any] = ev.obj
            if tv:
                api_version = f"meta.k8s.io/{tv}"
                obj = table(POD_COLUMNS, [pod_row(obj, api_version, include)], str(ev.rv), api_version)
            await resp.write(_line({"type": ev.type, "object": obj}))

        for ev in initial:
            await send(ev)
        if send_initial and request.query.get("allowWatchBookmarks") == "true":
            # WatchList: a BOOKMARK annotated k8s.io/initial-events-end closes the initial state.
            await resp.write(_line({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {
                "resourceVersion": str(ctx.store.resource_version),
                "annotations": {"k8s.io/initial-events-end": "true"}}}}))
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                ev = await asyncio.wait_for(sub.queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            await send(ev)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # client went away, or the server is stopping
    finally:
        if sub is not None:
            ctx.store.unsubscribe(sub)
        ctx.tasks.discard(task)
    return resp


def _line(obj: dict[str, Any]) -> bytes:
    return (st.dumps(obj) + "\n").encode()


async def get_pod(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ns, name = request.match_info["namespace"], request.match_info["name"]
    pod = ctx.store.get(ns, name)
    if pod is None:
        return st.response(st.not_found("pods", name))
    tv = table_version(request)
    if tv:
        api_version = f"meta.k8s.io/{tv}"
        row = pod_row(pod, api_version, request.query.get("includeObject", "Metadata"))
        return _json(table(POD_COLUMNS, [row], pod["metadata"]["resourceVersion"], api_version), _table_type(tv))
    return _json(pod)


async def delete_pod(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ns, name = request.match_info["namespace"], request.match_info["name"]
    loop = asyncio.get_running_loop()
    try:
        pod = await loop.run_in_executor(None, ctx.kubelet.delete, name, ns)
    except PodNotFound:
        return st.response(st.not_found("pods", name))
    return _json(pod)


async def pod_log(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ns, name = request.match_info["namespace"], request.match_info["name"]
    pod = ctx.store.get(ns, name)
    if pod is None:
        return st.response(st.not_found("pods", name))
    names = [c["name"] for c in pod["spec"]["containers"]]
    container = request.query.get("container") or (names[0] if len(names) == 1 else "")
    if not container:
        return st.response(st.bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"))
    if container not in names:
        return st.response(st.bad_request(f"container {container} is not valid for pod {name}"))
    docker_id = ctx.kubelet.docker_id(ns, name, container)
    data = b""
    if docker_id:
        data = await asyncio.get_running_loop().run_in_executor(None, ctx.kubelet.backend.logs, docker_id)
    return web.Response(body=data, content_type="text/plain")


# ----- namespaces ------------------------------------------------------------------------------
def _namespace(ctx: Context, name: str) -> dict[str, Any]:
    uid = ctx.namespace_uids.setdefault(name, str(uuid.uuid4()))
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": uid, "resourceVersion": "1", "creationTimestamp": ctx.started,
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _namespace_names(ctx: Context) -> list[str]:
    return sorted(set(SYSTEM_NAMESPACES) | ctx.store.namespaces())


async def list_namespaces(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    items = [_namespace(ctx, n) for n in _namespace_names(ctx)]
    rv = str(ctx.store.resource_version)
    tv = table_version(request)
    if tv:
        api_version = f"meta.k8s.io/{tv}"
        rows = [namespace_row(ns, api_version, request.query.get("includeObject", "Metadata")) for ns in items]
        return _json(table(NAMESPACE_COLUMNS, rows, rv, api_version), _table_type(tv))
    return _json({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                  "items": [_strip_type(n) for n in items]})


async def get_namespace(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["namespace"]
    if name not in _namespace_names(ctx):
        return st.response(st.not_found("namespaces", name))
    return _json(_namespace(ctx, name))


async def not_allowed(request: web.Request) -> web.Response:
    return st.response(st.method_not_allowed())


async def not_found_path(request: web.Request) -> web.Response:
    return st.response(st.status(404, "NotFound", "the server could not find the requested resource", {}))


def make_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[auth_filter], client_max_size=64 << 20)
    app[CTX] = ctx
    pod = "/api/v1/namespaces/{namespace}/pods/{name}"
    app.router.add_get("/version", version)
    app.router.add_get("/api", api_versions)
    app.router.add_get("/apis", api_groups)
    app.router.add_get("/api/v1", api_v1)
    app.router.add_get("/api/v1/namespaces", list_namespaces)
    app.router.add_get("/api/v1/namespaces/{namespace}", get_namespace)
    app.router.add_get("/api/v1/pods", list_pods)
    app.router.add_get("/api/v1/namespaces/{namespace}/pods", list_pods)
    app.router.add_get(pod, get_pod)
    app.router.add_delete(pod, delete_pod)
    app.router.add_get(pod + "/log", pod_log)
    app.router.add_route("GET", pod + "/exec", handle_exec)
    app.router.add_route("POST", pod + "/exec", handle_exec)
    for path in ("/api/v1/namespaces/{namespace}/pods", pod):
        app.router.add_route("*", path, not_allowed)
    app.router.add_route("*", "/{tail:.*}", not_found_path)

    async def on_shutdown(app: web.Application) -> None:
        for task in list(ctx.tasks):
            task.cancel()

    app.on_shutdown.append(on_shutdown)
    return app

