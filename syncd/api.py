"""The daemon's local control API (aiohttp): what `syncd status` and `syncd trigger` talk to.

Bound to loopback TCP (`daemon.api`, port 0 picks a free one) or a unix socket (0600). The
address actually bound is written to `.syncd/api.json` beside the config, so commands run in
the same project find the daemon without being told the port.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog
from aiohttp import web

from syncd.actions import ActionRunner, NeedsConfirmation, UnknownAction

if TYPE_CHECKING:
    from syncd.engine import Engine

log = structlog.get_logger("syncd.api")

STATE_FILE = "api.json"


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
    def __init__(self, engine: Engine, actions: ActionRunner):
        self.engine = engine
        self.actions = actions
        self.app = web.Application()
        self.app.add_routes([
            web.get("/api/status", self.status),
            web.post("/api/actions/{name}", self.trigger),
        ])

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.engine.status(), dumps=_dumps)

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

    async def serve(self, address: str, state_dir: Path, stop: anyio.Event) -> None:
        """Serve until `stop`. A bind failure is logged (the daemon keeps syncing)."""
        try:
            sock, advertised = bind(address, state_dir)
        except OSError as e:
            log.error("control API not started", address=address, error=e.strerror or str(e),
                      hint="another daemon may be running here; set daemon.api to a free port or '127.0.0.1:0'")
            return
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.SockSite(runner, sock, shutdown_timeout=1.0)
        await site.start()
        state = state_dir / STATE_FILE
        state_dir.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"address": advertised, "pid": os.getpid()}))
        log.info("control API listening", address=advertised)
        try:
            await stop.wait()
        finally:
            with anyio.CancelScope(shield=True):
                with suppress(FileNotFoundError):
                    state.unlink()
                await runner.cleanup()


def _dumps(obj: object) -> str:
    return json.dumps(obj, default=str)


def find_daemon(state_dir: Path) -> str | None:
    """The address of the daemon running for this config, if one is (its pid is alive)."""
    try:
        info = json.loads((state_dir / STATE_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(info["address"])


async def call(address: str, method: str, path: str, timeout: float = 3600) -> tuple[int, dict]:
    """One request to a daemon's API (TCP or unix socket) -> (HTTP status, JSON body)."""
    import aiohttp

    if address.startswith("unix:"):
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=address[5:])
        base = "http://syncd"
    else:
        connector = aiohttp.TCPConnector()
        base = f"http://{address}"
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.request(method, base + path) as resp:
            return resp.status, await resp.json(content_type=None)
