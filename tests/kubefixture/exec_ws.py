"""Pod exec over WebSocket, as kube-apiserver v1.30+ and the kubelet answer it.

Two paths exist in the real system and both are emulated:
* the client offers v5.channel.k8s.io (and the fixture offers it): the apiserver's stream
  translator (KEP-4006) upgrades the WebSocket itself and talks SPDY to the kubelet, so kubelet
  failures arrive after the upgrade, as a Status on the error channel;
* otherwise the apiserver proxies the upgrade to the kubelet, whose wsstream server answers
  failures with plain-text HTTP errors and negotiates among the v4-and-older protocols.

Framing (binary, one channel byte first): 0 stdin, 1 stdout, 2 stderr, 3 error (a metav1.Status
when the command ends), 4 resize (JSON TerminalSize); v5 adds 255 = CLOSE(channel). On open the
server sends one empty frame on the lowest writable channel (stdout, else stderr, else error);
at the end it writes the status and closes with 1000."""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from . import status as st
from .context import CTX, Context
from .docker_backend import ExecStartError

V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_FRAME = 32 << 20  # x/net/websocket DefaultMaxPayloadBytes
# What runc writes when the exec'd binary cannot be started; Docker puts it on stdout and
# reports exit 126/127, containerd (what a real kubelet uses) reports it as an error instead.
_START_FAILED = b"OCI runtime exec failed"


@dataclass(frozen=True)
class ExecOptions:
    namespace: str
    pod: str
    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def _flag(value: str | None) -> bool:
    return value in ("1", "t", "T", "true", "True", "TRUE")  # strconv.ParseBool's true forms


def is_websocket(request: web.Request) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower())


async def handle_exec(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    ns, name = request.match_info["namespace"], request.match_info["name"]
    # pod.ExecLocation: the pod must exist and the container must be one of its containers.
    pod = ctx.store.get(ns, name)
    if pod is None:
        return st.response(st.not_found("pods", name))
    names = [c["name"] for c in pod["spec"]["containers"]]
    container = request.query.get("container", "")
    if not container:
        if len(names) != 1:
            return st.response(st.bad_request(
                f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"))
        container = names[0]
    elif container not in names:
        return st.response(st.bad_request(f"container {container} is not valid for pod {name}"))
    # UpgradeAwareHandler with UpgradeRequired.
    if not is_websocket(request):
        if request.headers.get("Upgrade", "").lower().startswith("spdy"):
            return st.response(st.bad_request(
                "kubefixture: SPDY/3.1 streaming is not emulated; use a WebSocket client (v5.channel.k8s.io / v4.channel.k8s.io)"))
        return st.response(st.bad_request("Upgrade request required"))
    tty = _flag(request.query.get("tty"))
    opts = ExecOptions(ns, name, container, request.query.getall("command", []),
                       stdin=_flag(request.query.get("stdin")), stdout=_flag(request.query.get("stdout")),
                       # kubelet: "Access to exec with tty and stderr is not supported, bypassing stderr"
                       stderr=_flag(request.query.get("stderr")) and not tty, tty=tty)
    offered = [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", []) for p in h.split(",") if p.strip()]
    supported = tuple(ctx.protocols)

    if V5 in offered and V5 in supported:
        session = ExecSession(ctx, opts, V5)
        await session.open(request, announce_stderr=_flag(request.query.get("stderr")))
        failure = await _kubelet_prepare(ctx, opts)
        if isinstance(failure, tuple):
            # The translator's SPDY client saw a non-101 answer: "unable to upgrade connection: <body>",
            # reported as NewInternalError on the error channel.
            await session.finish(st.internal_error(f"unable to upgrade connection: {failure[1]}", typed=False))
            return session.ws
        return await session.run(failure)

    failure = await _kubelet_prepare(ctx, opts)
    if isinstance(failure, tuple):
        return web.Response(status=failure[0], text=failure[1], content_type="text/plain")
    # wsstream.handshake: the first protocol in the client's list that the server supports.
    chosen = next((p for p in offered if p in supported and p != V5), None)
    if chosen is None:
        # x/net/websocket answers a failed handshake with a bare 403 and no body.
        resp = web.Response(status=403, body=b"")
        resp.force_close()
        return resp
    session = ExecSession(ctx, opts, chosen)
    await session.open(request, announce_stderr=opts.stderr)
    return await session.run(failure)


async def _kubelet_prepare(ctx: Context, opts: ExecOptions) -> str | tuple[int, str]:
    """The kubelet's checks and the runtime's exec creation: an exec id, or (HTTP code, text)."""
    if not (opts.stdin or opts.stdout or opts.stderr):
        return 400, "you must specify at least 1 of stdin, stdout, stderr"
    docker_id = ctx.kubelet.docker_id(opts.namespace, opts.pod, opts.container)
    # Kubelet.GetExec finds only running containers; a CrashLoopBackOff one is "not found" (500).
    not_found = 500, f'container not found ("{opts.container}")'
    if docker_id is None or not ctx.kubelet.running(opts.namespace, opts.pod, opts.container):
        return not_found
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, lambda: ctx.kubelet.backend.exec_create(
            docker_id, opts.command, stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr, tty=opts.tty))
    except ExecStartError:
        return not_found


class ExecSession:
    def __init__(self, ctx: Context, opts: ExecOptions, protocol: str) -> None:
        self.ctx = ctx
        self.opts = opts
        self.protocol = protocol
        self.ws = web.WebSocketResponse(protocols=(protocol,), compress=False, max_msg_size=MAX_FRAME,
                                        autoping=True, heartbeat=None, timeout=10.0)
        self.stdin_closed = False

    async def open(self, request: web.Request, announce_stderr: bool) -> None:
        await self.ws.prepare(request)
        # "Send an empty message to the lowest writable channel to notify the client the
        # connection is established" (remotecommand createWebSocketStreams).
        first = STDOUT if self.opts.stdout else STDERR if announce_stderr else ERROR
        await self.ws.send_bytes(bytes([first]))

    async def finish(self, status: dict[str, object]) -> None:
        try:
            await self.ws.send_bytes(bytes([ERROR]) + st.dumps(status).encode())
            await self.ws.close(code=1000)
        except (ConnectionError, RuntimeError):
            pass  # client already gone

    async def run(self, exec_id: str) -> web.WebSocketResponse:
        task = asyncio.current_task()
        assert task is not None
        self.ctx.tasks.add(task)
        backend = self.ctx.kubelet.backend
        loop = asyncio.get_running_loop()
        writer = None
        pump_in: asyncio.Task[None] | None = None
        try:
            reader, writer = await backend.exec_attach(exec_id, self.opts.tty)
            pump_in = asyncio.create_task(self._pump_in(writer, exec_id))
            pump_out = asyncio.create_task(self._pump_out(reader))
            # Ends when the process's output ends (it exited) or when the client goes away.
            await asyncio.wait({pump_in, pump_out}, return_when=asyncio.FIRST_COMPLETED)
            if not pump_out.done():  # client disconnected: stop forwarding, leave the process be
                pump_out.cancel()
                return self.ws
            held = pump_out.result()
            pump_in.cancel()
            code = await loop.run_in_executor(None, backend.exec_exit_code, exec_id)
            if held is not None and code in (126, 127):
                await self.finish(self._start_failure(exec_id, held))
                return self.ws
            if held is not None:
                await self._send(STDOUT, held)
            await self.finish(st.SUCCESS if code == 0 else st.exit_code_status(code, self._exit_message(code)))
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if pump_in is not None:
                pump_in.cancel()
            if writer is not None:
                writer.close()
            self.ctx.tasks.discard(task)
        return self.ws

    def _exit_message(self, code: int) -> str:
        if self.protocol == V5:
            # The translator wraps the CodeExitError its SPDY client decoded from the kubelet.
            return f"command terminated with non-zero exit code: command terminated with exit code {code}"
        # The kubelet/containerd message, straight through (containerd's CodeExitError text).
        return f"command terminated with non-zero exit code: error executing command [{' '.join(self.opts.command)}], exit code {code}"

    def _start_failure(self, exec_id: str, text: bytes) -> dict[str, object]:
        cause = (f'error executing command in container: failed to exec in container: failed to start exec '
                 f'"{exec_id}": {text.decode(errors="replace").strip()}')
        if self.protocol == V5:
            # The kubelet's InternalError reaches the translator as a plain error and is wrapped again.
            return st.internal_error(f"Internal error occurred: {cause}", typed=False)
        return st.internal_error(cause, typed=False)

    async def _send(self, channel: int, data: bytes) -> None:
        await self.ws.send_bytes(bytes([channel]) + data)  # awaits the transport: backpressure

    async def _pump_out(self, reader: asyncio.StreamReader) -> bytes | None:
        """Docker's stream -> stdout/stderr frames. Returns a held-back first stdout chunk that
        looks like runc's start failure, for run() to judge once the exit code is known."""
        held: bytes | None = None
        first = True
        while True:
            if self.opts.tty:  # raw stream, no multiplexing headers
                chunk = await reader.read(32 << 10)
                if not chunk:
                    return held
                channel, payload = STDOUT, chunk
            else:
                try:
                    header = await reader.readexactly(8)
                    kind, size = header[0], struct.unpack(">I", header[4:])[0]
                    payload = await reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    return held
                channel = STDERR if kind == 2 else STDOUT
            if first and channel == STDOUT and payload.startswith(_START_FAILED):
                held, first = payload, False
                continue
            first = False
            if held is not None:
                await self._send(STDOUT, held)
                held = None
            if payload:
                await self._send(channel, payload)

    async def _pump_in(self, writer: asyncio.StreamWriter, exec_id: str) -> None:
        """Client frames -> the process's stdin (with drain: backpressure reaches the client
        through TCP), resize events -> the exec's tty, v5 CLOSE(0) -> stdin EOF."""
        loop = asyncio.get_running_loop()
        broken = False
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    data = msg.data
                elif msg.type == WSMsgType.TEXT:  # x/net/websocket takes text frames as bytes too
                    data = msg.data.encode()
                else:
                    continue
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == CLOSE and self.protocol == V5:
                    if len(payload) != 1:
                        break  # wsstream: "Single channel byte should follow stream close signal"
                    if payload[0] == STDIN and self.opts.stdin:
                        self._close_stdin(writer)
                elif channel == STDIN and self.opts.stdin and not self.stdin_closed and not broken:
                    try:
                        writer.write(payload)
                        await writer.drain()
                    except ConnectionError:
                        broken = True  # the process is gone; discard the rest as the real pipe would
                elif channel == RESIZE and self.opts.tty:
                    for size in _json_objects(payload):
                        await loop.run_in_executor(None, self.ctx.kubelet.backend.exec_resize, exec_id,
                                                   int(size.get("Width", 0)), int(size.get("Height", 0)))
        finally:
            # Connection gone: wsstream closes every channel, so the process sees stdin EOF.
            if self.opts.stdin and not broken:
                self._close_stdin(writer)

    def _close_stdin(self, writer: asyncio.StreamWriter) -> None:
        if not self.stdin_closed:
            self.stdin_closed = True
            try:
                writer.write_eof()  # shutdown(SHUT_WR) once the buffer is flushed
            except (ConnectionError, RuntimeError, OSError):
                pass


def _json_objects(data: bytes) -> list[dict[str, int]]:
    out, text, pos = [], data.decode(errors="replace"), 0
    decoder = json.JSONDecoder()
    while pos < len(text):
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        if isinstance(obj, dict):
            out.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out
