"""The status page (syncd/web/status.html) in a real headless Chromium against a real daemon.

Chromium is driven over the DevTools protocol (a loopback websocket) rather than with
`--dump-dom --virtual-time-budget`: the page keeps /api/events (server-sent events) open, and
headless Chromium's virtual time does not advance while a fetch is pending, so the budget never
runs out and `--dump-dom` hangs. Over the protocol the test waits for what it expects instead.

Under CI=true a missing chromium is a failure (scripts/test.sh installs Debian's), elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import aiohttp
import pytest
from conftest import IN_CI, REPO
from engine_harness import trace_records
from test_api import Daemon

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1400, 1000
ARTIFACTS = REPO / "tests" / "artifacts"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("CI=true but no chromium on PATH: scripts/test.sh installs Debian's")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return path


class Browser:
    """A headless Chromium and its one tab, driven over the DevTools protocol."""

    def __init__(self, exe: str, profile: Path, flags: tuple[str, ...] = ()):
        profile.mkdir(parents=True, exist_ok=True)
        self.log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, *FLAGS, *flags, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                      f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = 0
        try:
            self._connect(profile / "DevToolsActivePort")
        except BaseException:
            self.close()
            raise

    def _connect(self, port_file: Path) -> None:
        deadline = time.monotonic() + 30
        # "PORT\n/devtools/browser/ID": complete once it has its second line
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert self.proc.poll() is None, (port_file.parent.parent / "chromium.log").read_text()
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            ws_url = next(t["webSocketDebuggerUrl"] for t in json.load(r) if t["type"] == "page")

        async def connect() -> None:  # the session must be made inside the running loop
            self.session = aiohttp.ClientSession()
            self.ws = await self.session.ws_connect(ws_url, max_msg_size=0)

        self.run(connect())
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def run(self, coro):  # noqa: ANN001, ANN201
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def call(self, method: str, **params: object) -> dict:
        self.ids += 1
        msg_id = self.ids

        async def go() -> dict:
            await self.ws.send_json({"id": msg_id, "method": method, "params": params})
            while True:
                frame = await self.ws.receive()
                assert frame.type == aiohttp.WSMsgType.TEXT, f"DevTools connection lost ({frame.type.name})"
                msg = json.loads(frame.data)
                if msg.get("id") == msg_id:
                    assert "error" not in msg, f"{method}: {msg['error']}"
                    return msg["result"]

        return self.run(go())

    def eval(self, expr: str) -> object:
        result = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def wait_for(self, expr: str, timeout: float = 20) -> object:
        deadline = time.monotonic() + timeout
        while not (value := self.eval(expr)):
            assert time.monotonic() < deadline, f"never true in the page: {expr}\n\n{self.dom()[:4000]}"
            time.sleep(0.1)
        return value

    def dom(self) -> str:
        return str(self.eval("document.documentElement.outerHTML"))

    def hover(self, selector: str) -> None:
        box = self.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                        " return [r.left + Math.min(r.width / 2, 30), r.top + r.height / 2]; })()")
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])

    def screenshot(self, *paths: Path) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        return png

    def close(self) -> None:
        if self.ws is not None:
            self.run(self.ws.close())
        if self.session is not None:
            self.run(self.session.close())
        self.loop.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(chromium_path(), tmp_path / "chromium-profile")
    yield b
    b.close()


def push_records(root: Path) -> list[dict]:
    records = trace_records(root / ".syncd" / "trace.jsonl")
    return [r for r in records if not r["reconcile"] and any(s["name"] == "push:box/local" for s in r["spans"])]


def sync_a_file(d: Daemon, name: str) -> dict:
    """Write `src/<name>`, wait until it is in the box and its batch is in the trace file."""
    before = len(push_records(d.root))
    (d.root / "src" / name).write_text(f"{name}\n" * 200)
    d.wait_box(name, f"{name}\n" * 200)
    deadline = time.monotonic() + 20
    while len(records := push_records(d.root)) <= before:
        assert time.monotonic() < deadline, "no batch with a push reached the trace file"
        time.sleep(0.05)
    return records[-1]


def ms_text(v: float) -> str:
    """How the page writes a duration (JS toFixed: ties round up, on the float's exact value)."""
    def fixed(x: float, places: int) -> str:
        return str(Decimal(x).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))

    return fixed(v / 1000, 2) + " s" if v >= 1000 else fixed(v, 0 if v >= 100 else 1 if v >= 10 else 2) + " ms"


def batch_row(batch: int) -> str:
    return f'#batches .batch[data-kind="batch"][data-batch="{batch}"]'


def test_status_page_shows_targets_waterfall_and_steps(tmp_path: Path, browser: Browser) -> None:
    (tmp_path / "project").mkdir()
    d = Daemon(tmp_path / "project", "127.0.0.1:0")
    try:
        d.wait_box("a.txt", "a\n")
        record = sync_a_file(d, "distinctive-status-page.txt")
        browser.open(f"http://{d.address}/")
        row = batch_row(record["batch"])
        browser.wait_for(f"!!document.querySelector('{row} .span[data-name=\"push:box/local\"]')")
        browser.wait_for("document.getElementById('conn').textContent.includes('live')")
        dom = browser.dom()

        # header, targets, builds
        assert browser.eval("document.getElementById('config').textContent") == str(d.root / "syncd.toml")
        assert browser.eval("document.getElementById('state').textContent") in ("idle", "syncing")
        (tmp_path / "status-page.html").write_text(dom)
        assert 'data-container="box/local"' in dom and f'data-batch="{record["batch"]}"' in dom
        assert 'data-name="push:box/local"' in dom and 'data-step="push"' in dom
        assert browser.eval("document.querySelector('tr.container[data-container=\"box/local\"] .state').textContent") == "idle"
        assert "state-idle" in browser.eval("document.querySelector('tr.container[data-container=\"box/local\"] .state').className")
        # the batch row: label, services, total ms, one bar per span (the total is the row itself)
        text = browser.eval(f"document.querySelector('{row}').textContent")
        total_ms = record["spans"][-1]["ms"]
        assert f"batch {record['batch']}" in text and "app" in text and "✓" in text
        assert ms_text(total_ms) in text, text
        bars = browser.eval(f"[...document.querySelectorAll('{row} .span')].map(b => b.dataset.name)")
        assert bars == [s["name"] for s in record["spans"][:-1]]
        assert {"detect", "coalesce", "plan", "pack", "push:box/local"} <= set(bars)
        # bars sit where the span started, inside the track
        lefts = browser.eval(f"[...document.querySelectorAll('{row} .span')].map(b => parseFloat(b.style.left))")
        assert lefts[0] == pytest.approx(0, abs=1) and all(0 <= x <= 100 for x in lefts)
        # per-step table, from the records the page has seen
        steps = browser.eval("Object.fromEntries([...document.querySelectorAll('#steps tr.step')]"
                             ".map(r => [r.dataset.step, [...r.cells].slice(1).map(c => c.textContent)]))")
        assert "push" in steps and "total" in steps and int(steps["push"][0]) >= 2  # the reconcile's and the batch's

        # live: a new batch arrives over the event stream without a reload
        second = sync_a_file(d, "distinctive-second.txt")
        browser.wait_for(f"!!document.querySelector('{batch_row(second['batch'])}')")
        browser.wait_for("+document.getElementById('conn').dataset.events >= 1")
        first_row = browser.eval("document.querySelector('#batches .batch').dataset.batch")
        assert first_row == str(second["batch"]), "the newest batch is on top"
        browser.wait_for("+document.getElementById('batch-count').textContent >= 2")  # the header follows
        # an action's record (event: action) gets a row of its own
        assert d.http("POST", "/api/actions/hello")[0] == 200
        browser.wait_for("!!document.querySelector('#batches .batch[data-kind=\"action\"][data-action=\"hello\"]"
                         " .span[data-name=\"action:hello\"]')")
        assert "action hello" in browser.eval("document.querySelector('#batches .batch').textContent")

        # the tooltip of the push bar, then the screenshot
        browser.hover('#batches .batch[data-kind="reconcile"] .span[data-name="push:box/local"]')
        tip = browser.wait_for("document.getElementById('tip').style.display === 'block' && document.getElementById('tip').textContent")
        assert "push:box/local" in tip and "bytes" in tip and "ok" in tip
        png = browser.screenshot(ARTIFACTS / "status-page.png", tmp_path / "status-page.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert (tmp_path / "status-page.png").stat().st_size > 10_000
        assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000
    finally:
        assert d.stop() == 0


def test_status_page_passes_its_token_on(tmp_path: Path, browser: Browser) -> None:
    (tmp_path / "project").mkdir()
    d = Daemon(tmp_path / "project", "127.0.0.1:0", extra='api_token = "t0ken"')
    try:
        d.wait_box("a.txt", "a\n")
        record = sync_a_file(d, "distinctive-with-token.txt")
        assert d.http("GET", "/")[0] == 401
        assert d.http("GET", "/api/status")[0] == 401
        browser.open(f"http://{d.address}/?token=t0ken")
        browser.wait_for(f"!!document.querySelector('{batch_row(record['batch'])} .span[data-name=\"push:box/local\"]')")
        browser.wait_for("document.getElementById('conn').textContent.includes('live')")  # the event stream too
        # and a POST: pause, then resume, through the page's button (enabled once status is drawn)
        browser.wait_for("!document.getElementById('pause').disabled")
        browser.eval("document.getElementById('pause').click()")
        browser.wait_for("document.getElementById('state').textContent === 'paused'")
        assert json.loads(d.http("GET", "/api/status", token="t0ken")[1])["paused"] is True
        browser.wait_for("!document.getElementById('pause').disabled")
        browser.eval("document.getElementById('pause').click()")
        browser.wait_for("document.getElementById('state').textContent !== 'paused'")
        assert json.loads(d.http("GET", "/api/status", token="t0ken")[1])["paused"] is False
    finally:
        assert d.stop() == 0



def test_the_first_response_alone_shows_targets_and_batches(tmp_path: Path, browser: Browser) -> None:
    """With every later request blocked (/api/status, /api/events), what the page shows at load
    comes from its first response only: targets, builds and the latest batches, no "connecting"."""
    (tmp_path / "project").mkdir()
    d = Daemon(tmp_path / "project", "127.0.0.1:0")
    try:
        d.wait_box("a.txt", "a\n")
        record = sync_a_file(d, "distinctive-first-paint.txt")
        browser.call("Network.enable")
        browser.call("Network.setBlockedURLs", urls=["*/api/*"])
        browser.open(f"http://{d.address}/")
        assert browser.eval("document.querySelector('tr.container[data-container=\"box/local\"] .state').textContent") == "idle"
        assert browser.eval(f"!!document.querySelector('{batch_row(record['batch'])} .span[data-name=\"push:box/local\"]')")
        assert browser.eval("document.getElementById('config').textContent") == str(d.root / "syncd.toml")
        png = browser.screenshot(ARTIFACTS / "status-page-first-paint.png", tmp_path / "first-paint.png")
        assert len(png) > 10_000
    finally:
        assert d.stop() == 0


def test_failed_batch_and_lost_daemon(tmp_path: Path, browser: Browser) -> None:
    """The page from a file (no daemon behind it): it says it is disconnected, and a failed
    record, handed to it as the event stream would, gets a red row with its first error."""
    page = REPO / "syncd" / "web" / "status.html"
    browser.open(page.as_uri())
    browser.wait_for("document.getElementById('conn').textContent.includes('disconnected, retrying')")
    t = time.time()
    record = {"batch": 7, "reconcile": False, "ok": False, "errors": ["push to box/local failed: disk full"],
              "services": ["app"], "spans": [
                  {"name": "plan", "start": t, "end": t + 0.001, "ms": 1.0, "ok": True, "detail": None},
                  {"name": "push:box/local", "start": t + 0.001, "end": t + 0.02, "ms": 19.0, "ok": False,
                   "detail": {"error": "disk full"}},
                  {"name": "total", "start": t, "end": t + 0.02, "ms": 20.0, "ok": False, "detail": {}}]}
    browser.eval(f"addRecord({json.dumps(record)}) && render()")
    row = browser.wait_for("document.querySelector('#batches .batch.failed[data-batch=\"7\"]') !== null")
    assert row
    assert "disk full" in browser.eval("document.querySelector('.batch.failed .error').textContent")
    assert browser.eval("document.querySelector('.batch.failed .span.failed').dataset.name") == "push:box/local"
    assert "✗" in browser.eval("document.querySelector('.batch.failed').textContent")
