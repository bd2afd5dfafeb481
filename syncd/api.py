"""The daemon's local control API (aiohttp): what `syncd status` and `syncd trigger` talk to.

Bound to loopback TCP (`daemon.api`, port 0 picks a free one) or a unix socket (0600). The
address actually bound, the pid and the daemon's write secret are written (0600) to
`.syncd/api.json` beside the config, so commands run in the same project find the daemon
without being told the port. Who may call it is decided by `syncd.core.access`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog
from aiohttp import web

from syncd.actions import ActionRunner, NeedsConfirmation, UnknownAction
from syncd.config import is_loopback
from syncd.core.access import SECRET_HEADER, AccessPolicy
from syncd.daemons import STATE_FILE, RunningDaemon, register, unregister
from syncd.transports.base import TransportError

if TYPE_CHECKING:
    from syncd.engine import Engine

log = structlog.get_logger("syncd.api")



def bind(address: str, state_dir: Path) -> tuple[socket.socket, str]:
    """Open the listening socket for `address`; returns it and the address to advertise."""
    if address.startswith("unix:"):
        path = Path(address[5:])
        path = path if path.is_absolute() else state_dir.parent / path
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: only this user may drive the daemon
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        return sock, f"unix:{path}"
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), int(port)))
    sock.listen(64)
    bound_host, bound_port = sock.getsockname()[:2]
    return sock, f"{bound_host}:{bound_port}"


class ControlAPI:
    """Routes: the status page (`/`), `/api/status`, `/api/events` (server-sent events, one per
    finished batch), `/api/actions/NAME`, `/api/pause`, `/api/resume`, `/api/resync`, `/metrics`.

    Access: with a token configured every request must carry it (`Authorization: Bearer T`,
    or `?token=T` for a browser's reads); without one, only loopback peers (and the 0600 unix
    socket) are served. On top of that, `AccessPolicy`: Host and Origin checks against pages
    in the user's browser, and a secret (or the token) on every state-changing request."""

    def __init__(self, engine: Engine, actions: ActionRunner, token: str | None = None,
                 hosts: list[str] | tuple[str, ...] = ()) -> None:
        from syncd.metrics import Metrics

        self.engine = engine
        self.actions = actions
        self.token = token
        self.hosts = frozenset(hosts)
        self.secret = secrets.token_urlsafe(32)  # per daemon run; proves a caller is not a foreign page
        self.policy: AccessPolicy | None = None  # set once the socket is bound (the port is part of it)
        self.metrics = Metrics()
        self._subscribers: set[asyncio.Queue[dict]] = set()
        self.listeners: list[Callable[[dict], None]] = []  # more consumers of every record (OpenTelemetry)
        engine.on_record.append(self._on_record)
        actions.on_record = self._on_record
        self.app = web.Application(middlewares=[self._guard])
        self.app.add_routes([
            web.get("/", self.page),
            web.get("/api/status", self.status),
            web.get("/api/events", self.events),
            web.post("/api/actions/{name}", self.trigger),
            web.post("/api/pause", self.pause),
            web.post("/api/resume", self.resume),
            web.post("/api/resync", self.resync),
            # what `syncd smoke` asks of the daemon that syncs its edits (syncd/liveness.py)
            web.post("/api/live/{service}/verify", self.live_verify),
            web.post("/api/live/{service}/probe", self.live_probe),
            web.get("/metrics", self.prometheus),
        ])

    def _on_record(self, record: dict) -> None:
        """Every finished batch, reconcile and action: metrics, live subscribers, listeners."""
        self.metrics.observe(record)
        for listener in self.listeners:
            listener(record)
        for queue in list(self._subscribers):
            if queue.qsize() < 1000:  # a stalled reader loses events, not the daemon's memory
                queue.put_nowait(record)

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self.token is None and not _local_peer(request):
            return web.json_response({"error": "only loopback clients are served unless daemon.api_token is set"},
                                     status=403)
        policy = self.policy or AccessPolicy(port=None, loopback=True, secret=self.secret, token=self.token)
        refusal = policy.check(request.method, request.headers, request.query.get("token"))
        if refusal is not None:
            log.warning("control API request refused", method=request.method, path=request.path,
                        status=refusal.status, reason=refusal.error)
            return web.json_response({"error": refusal.error}, status=refusal.status)
        response = await handler(request)
        # Never framed by another page (clickjacking of the buttons); no CORS headers, ever.
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response

    async def page(self, request: web.Request) -> web.Response:
        # The secret rides only in this same-origin answer: a foreign page can neither read
        # it (no CORS) nor fetch it through a rebound name (Host check).
        html = _page().replace('<meta name="syncd-secret" content="">',
                               f'<meta name="syncd-secret" content="{self.secret}">', 1)
        # The current state rides in the page too (drawn at once, before the first poll);
        # '<' escaped so no text in it can close the script element.
        state = _dumps(self.engine.status(last=200)).replace("<", "\\u003c")
        html = html.replace('<script id="initial-state" type="application/json"></script>',
                            f'<script id="initial-state" type="application/json">{state}</script>', 1)
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def status(self, request: web.Request) -> web.Response:
        last = int(request.query.get("last", "20"))
        return web.json_response(self.engine.status(last=max(0, min(last, 200))), dumps=_dumps)

    async def events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        queue: asyncio.Queue[dict] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            await resp.write(b": syncd events\n\n")
            while True:
                try:
                    record = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                kind = "action" if record.get("action") else "batch"
                await resp.write(f"event: {kind}\ndata: {_dumps(record)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return resp

    async def trigger(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        confirmed = request.query.get("yes") in ("1", "true")
        try:
            report = await self.actions.trigger(name, confirmed)
        except UnknownAction as e:
            return web.json_response({"error": str(e)}, status=404)
        except NeedsConfirmation as e:
            return web.json_response({"error": str(e), "confirm": e.names}, status=409)
        return web.json_response(report.as_dict(), dumps=_dumps)

    async def pause(self, request: web.Request) -> web.Response:
        self.engine.pause()
        return web.json_response({"paused": True, "queued_paths": self.engine.coalescer.pending})

    async def resume(self, request: web.Request) -> web.Response:
        self.engine.resume()
        return web.json_response({"paused": False})

    async def resync(self, request: web.Request) -> web.Response:
        target = request.query.get("target")
        if target is not None and target not in self.engine.targets:
            return web.json_response({"error": f"no target named '{target}' (known: {', '.join(self.engine.targets)})"},
                                     status=404)
        return web.json_response({"containers": self.engine.resync(target)})

    def _service(self, request: web.Request) -> str | None:
        name = request.match_info["service"]
        return name if any(s.name == name for s in self.engine.cfg.services) else None

    async def live_verify(self, request: web.Request) -> web.Response:
        from syncd import liveness

        service = self._service(request)
        if service is None:
            return web.json_response({"error": f"no service named '{request.match_info['service']}'"}, status=404)
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since: a time in seconds since the epoch"}, status=400)
        try:
            problem = await liveness.verify(self.engine, service, since, request.query.getall("gone", []))
        except TransportError as e:
            problem = str(e)
        return web.json_response({"problem": problem})

    async def live_probe(self, request: web.Request) -> web.Response:
        from syncd import liveness

        service = self._service(request)
        if service is None:
            return web.json_response({"error": f"no service named '{request.match_info['service']}'"}, status=404)
        try:
            ok, output = await liveness.probe(self.engine, service, request.query.get("marker"))
        except TransportError as e:
            ok, output = False, str(e)
        return web.json_response({"ok": ok, "output": output})

    async def prometheus(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def serve(self, address: str, state_dir: Path, stop: anyio.Event) -> None:
        """Serve until `stop`. A bind failure is logged (the daemon keeps syncing)."""
        try:
            sock, advertised = bind(address, state_dir)
        except OSError as e:
            log.error("control API not started", address=address, error=e.strerror or str(e),
                      hint="another daemon may be running here; set daemon.api to a free port or '127.0.0.1:0'")
            return
        if advertised.startswith("unix:"):
            self.policy = AccessPolicy(port=None, loopback=True, secret=self.secret, token=self.token)
        else:
            host, _, port = advertised.rpartition(":")
            self.policy = AccessPolicy(port=int(port), loopback=is_loopback(host.strip("[]")), secret=self.secret,
                                       token=self.token, hosts=self.hosts)
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=1.0)
        await site.start()
        state = state_dir / STATE_FILE
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(".tmp")  # written whole, then renamed: readers never see half
        with suppress(FileNotFoundError):
            tmp.unlink()
        # 0600 from the start: the secret in it lets its reader drive the daemon.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"address": advertised, "pid": os.getpid(), "started": time.time(), "secret": self.secret}, f)
        os.replace(tmp, state)
        entry = register(self.engine.cfg.file.resolve(), state_dir.resolve(), advertised)  # found without -c
        log.info("control API listening", address=advertised,
                 page=f"http://{advertised}/" if not advertised.startswith("unix:") else None)
        try:
            await stop.wait()
        finally:
            with anyio.CancelScope(shield=True):
                unregister(entry)
                with suppress(FileNotFoundError):
                    state.unlink()
                await runner.cleanup()


def _local_peer(request: web.Request) -> bool:
    peer = request.remote
    return not peer or is_loopback(peer)  # no peer address: the unix socket


def _page() -> str:
    from importlib.resources import files

    try:
        return files("syncd").joinpath("web/status.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "<!doctype html><title>syncd</title><p>status page not installed; see /api/status</p>"


def _dumps(obj: object) -> str:
    return json.dumps(obj, default=str)


async def call(daemon: RunningDaemon | str, method: str, path: str, timeout: float = 3600,
               token: str | None = None) -> tuple[int, dict]:
    """One request to a daemon's API (TCP or unix socket) -> (HTTP status, JSON body).

    Sends the daemon's secret (read from its api.json) so state-changing requests pass."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    address = daemon if isinstance(daemon, str) else daemon.address
    if not isinstance(daemon, str) and daemon.secret:
        headers[SECRET_HEADER] = daemon.secret

    if address.startswith("unix:"):
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=address[5:])
        base = "http://syncd"
    else:
        connector = aiohttp.TCPConnector()
        base = f"http://{address}"
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                     headers=headers) as session, session.request(method, base + path) as resp:
        return resp.status, await resp.json(content_type=None)
