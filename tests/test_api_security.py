"""The control API against pages in the developer's own browser: cross-site requests and DNS
rebinding (syncd/core/access.py), against a real daemon process and in headless Chromium.

Every attack aims at the config's `pwn` action (`touch PWNED`): the check that it did not run is
the file's absence, not the HTTP status alone."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api import Daemon
from test_status_page import Browser, chromium_path

from syncd.core.access import AccessPolicy, split_host


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, "127.0.0.1:0")
    yield d
    assert d.stop() == 0


def _pwned(d: Daemon) -> bool:
    # (No wait needed: the API answers an action only once it ran, so a refused request's
    # answer means it never started.)
    return (d.root / "PWNED").exists()


@pytest.mark.reliability("a web page's cross-origin 'simple' POST to run an action (Origin: evil, Origin: null, "
                         "text/plain and form bodies, no secret)", kind="security")
def test_cross_origin_requests_are_refused(daemon: Daemon, reliability) -> None:  # noqa: ANN001
    attacks = {
        "Origin http://evil.example, text/plain": ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, b"x"),
        "Origin null (sandboxed frame, data: URL)": ({"Origin": "null", "Content-Type": "text/plain"}, b"x"),
        "form-encoded body from evil": ({"Origin": "http://evil.example",
                                         "Content-Type": "application/x-www-form-urlencoded"}, b"a=1"),
        "another local origin (a dev server on another port)": (
            {"Origin": f"http://127.0.0.1:{int(daemon.address.rpartition(':')[2]) + 1}"}, b""),
        "Sec-Fetch-Site: cross-site without Origin": ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, b""),
    }
    answers = {}
    for what, (headers, body) in attacks.items():
        reliability.tried()
        # secret=True: even a request that somehow carried the secret is refused for its Origin
        answers[what] = daemon.http("POST", "/api/actions/pwn?yes=1", headers=headers, data=body)
    # the plain curl of the report: no Origin, but no secret either (what a no-cors page can send)
    reliability.tried()
    answers["no secret, no Origin"] = daemon.http("POST", "/api/actions/pwn?yes=1", headers={"Content-Type": "text/plain"},
                                                  data=b"x", secret=False)
    for what in ("pause", "resume", "resync"):
        reliability.tried()
        answers[f"POST /api/{what} without the secret"] = daemon.http("POST", f"/api/{what}", secret=False)
    assert {what: code for what, (code, _) in answers.items() if code != 403} == {}
    assert "Origin" in answers["Origin null (sandboxed frame, data: URL)"][1]
    assert "X-Syncd-Secret" in answers["no secret, no Origin"][1]
    assert not _pwned(daemon)
    assert json.loads(daemon.http("GET", "/api/status")[1])["paused"] is False
    reliability.lost = ["the action ran"] if (daemon.root / "PWNED").exists() else []
    reliability.outcome = f"{len(answers)} requests, each 403; PWNED not created, not paused"
    # ... while the same request from a local client (the CLI's way) runs it.
    code, _ = daemon.http("POST", "/api/actions/pwn?yes=1")
    assert code == 200 and (daemon.root / "PWNED").exists()


@pytest.mark.reliability("DNS rebinding: requests naming a foreign Host (evil.example:PORT, 127.0.0.1.evil.example:PORT)",
                         kind="security")
def test_foreign_host_names_are_refused(daemon: Daemon, reliability) -> None:  # noqa: ANN001
    port = daemon.address.rpartition(":")[2]
    refused = []
    for host in (f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", f"localhost.evil.example:{port}",
                 "evil.example", f"127.0.0.1:{int(port) + 1}", f"[::1]x:{port}"):
        for method, path in (("POST", "/api/actions/pwn?yes=1"), ("GET", "/api/status"), ("GET", "/"),
                             ("GET", "/metrics"), ("GET", "/api/events")):
            reliability.tried()
            code, body = daemon.http(method, path, headers={"Host": host})
            if code == 403 and "DNS rebinding" in body:
                refused.append((host, method, path))
            else:
                pytest.fail(f"{method} {path} with Host {host}: HTTP {code} {body[:200]}")
    assert not _pwned(daemon)
    # The names a local client uses are served (the port is the bound one).
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        code, body = daemon.http("GET", "/api/status", headers={"Host": host})
        assert code == 200 and "targets" in json.loads(body), host
    reliability.lost = ["the action ran"] if (daemon.root / "PWNED").exists() else []
    reliability.outcome = f"{len(refused)} requests (actions, status, page, metrics, events) refused with 403; " \
                          "127.0.0.1 and localhost with the bound port served"


def test_no_cors_headers_and_no_framing(daemon: Daemon) -> None:
    import urllib.request

    for method, path in (("GET", "/"), ("GET", "/api/status"), ("OPTIONS", "/api/actions/pwn")):
        req = urllib.request.Request(f"http://{daemon.address}{path}", method=method, headers={
            "Origin": f"http://{daemon.address}", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-syncd-secret"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                headers, status = r.headers, r.status
        except urllib.error.HTTPError as e:
            headers, status = e.headers, e.code
        assert not [h for h in headers if h.lower().startswith("access-control-allow")], (method, path, dict(headers))
        if method == "GET":
            assert status == 200 and headers["X-Frame-Options"] == "DENY"
        else:
            assert status >= 400  # no preflight is ever granted
    # The page carries the secret (same-origin answer), the API's JSON never does.
    assert daemon.secret in daemon.http("GET", "/")[1]
    assert daemon.secret not in daemon.http("GET", "/api/status")[1]


def test_state_file_with_the_secret_is_private(daemon: Daemon) -> None:
    state = daemon.root / ".syncd" / "api.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert daemon.secret not in (daemon.root / "daemon.log").read_text()


def test_cli_commands_carry_the_secret(daemon: Daemon) -> None:
    out = daemon.cli("trigger", "pwn")
    assert out.returncode == 0, out.stderr
    assert (daemon.root / "PWNED").exists()
    assert daemon.cli("pause").returncode == 0 and daemon.cli("resume").returncode == 0


def test_api_hosts_lets_a_named_host_in(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", extra='api_hosts = ["devbox.local"]')
    try:
        port = d.address.rpartition(":")[2]
        assert d.http("GET", "/api/status", headers={"Host": f"devbox.local:{port}"})[0] == 200
        assert d.http("GET", "/api/status", headers={"Host": f"other.local:{port}"})[0] == 403
    finally:
        assert d.stop() == 0


def test_token_satisfies_the_write_check_but_not_through_the_query(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", extra='api_token = "t0k"')
    try:
        assert d.http("POST", "/api/pause", token="t0k", secret=False)[0] == 200
        assert d.http("POST", "/api/resume?token=t0k", secret=False)[0] == 401  # a URL can be planted
        assert d.http("GET", "/api/status?token=t0k")[0] == 200  # EventSource's way, reads only
        assert d.http("POST", "/api/resume", token="t0k", headers={"Origin": "http://evil.example"})[0] == 403
    finally:
        assert d.stop() == 0


# --- pure decisions -----------------------------------------------------------------------------

POLICY = AccessPolicy(port=10351, loopback=True, secret="s", hosts=frozenset({"devbox"}))


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:10351", True), ("localhost:10351", True), ("[::1]:10351", True), ("127.8.9.1:10351", True),
    ("devbox:10351", True), ("10.0.0.5:10351", False), ("evil.example:10351", False), ("127.0.0.1:80", False),
    ("127.0.0.1", False), ("localhost.evil:10351", False), ("::1:10351", False), ("", False), ("127.0.0.1:x", False),
])
def test_host_rule(host: str, ok: bool) -> None:
    assert POLICY.host_allowed(host) is ok


def test_a_non_loopback_bind_serves_ip_literals_but_no_rebindable_names() -> None:
    remote = AccessPolicy(port=8, loopback=False, secret="s", token="t")
    assert remote.host_allowed("10.0.0.5:8") and remote.host_allowed("[fd00::1]:8")
    assert not remote.host_allowed("evil.example:8")


def test_navigation_from_another_site_may_read_the_page_but_not_write() -> None:
    nav = {"Host": "127.0.0.1:10351", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
           "Sec-Fetch-Dest": "document"}
    assert POLICY.check("GET", nav) is None  # a link from Tilt's UI to the status page
    assert POLICY.check("GET", {**nav, "Sec-Fetch-Dest": "iframe"}).status == 403
    assert POLICY.check("POST", {**nav, "X-Syncd-Secret": "s"}).status == 403  # a form posted at us


def test_split_host() -> None:
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("Example:8") == ("example", 8)
    assert split_host("name") == ("name", None)
    assert split_host("a:b:c") == ("", None)


# --- in a real browser --------------------------------------------------------------------------

ATTACK_PAGE = """<!doctype html><title>cat pictures</title>
<form id="f" method="POST" action="{api}/api/actions/pwn?yes=1" target="sink"><input name="a" value="1"></form>
<iframe name="sink"></iframe>
<script>
(async () => {{
  const results = [];
  for (const [path, init] of [["/api/actions/pwn?yes=1", {{mode: "no-cors", method: "POST", body: "x"}}],
                              ["/api/pause", {{mode: "no-cors", method: "POST"}}],
                              ["/api/actions/pwn?yes=1", {{mode: "cors", method: "POST",
                                                          headers: {{"X-Syncd-Secret": "guess"}}}}]]) {{
    try {{ const r = await fetch("{api}" + path, init); results.push(r.type + ":" + r.status); }}
    catch (e) {{ results.push("error:" + e.name); }}
  }}
  document.getElementById("f").submit();
  document.title = "done " + results.join(",");
}})();
</script>"""


@pytest.mark.reliability("in headless Chromium: a page from another local origin (no-cors fetch, CORS fetch, form "
                         "POST) and a page under a rebound name (evil.example -> 127.0.0.1) try to run an action",
                         kind="security")
def test_in_chromium_a_foreign_page_and_a_rebound_name_cannot_run_actions(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    exe = chromium_path()
    (tmp_path / "project").mkdir()
    d = Daemon(tmp_path / "project", "127.0.0.1:0")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(ATTACK_PAGE.format(api=f"http://{d.address}"))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(site))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = d.address.rpartition(":")[2]
    # evil.example resolves to 127.0.0.1 in this browser: the state after a DNS rebinding.
    b = Browser(exe, tmp_path / "chromium-profile", flags=("--host-resolver-rules=MAP evil.example 127.0.0.1",))
    try:
        b.open(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        title = b.wait_for("document.title.startsWith('done') && document.title")
        # no-cors answers are opaque (status 0) whatever the server said; the CORS one fails in the browser
        assert title == "done opaque:0,opaque:0,error:TypeError", title
        # the form's POST was answered (refused) once the daemon logged its 4th refusal from that origin
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        deadline = time.monotonic() + 20
        while (d.root / "daemon.log").read_text().count(f"Origin '{origin}' refused") < 4:
            assert time.monotonic() < deadline, (d.root / "daemon.log").read_text()[-2000:]
            time.sleep(0.05)
        assert not (d.root / "PWNED").exists()
        assert json.loads(d.http("GET", "/api/status")[1])["paused"] is False

        # A rebound page: same origin as the API under the attacker's name, so it could read answers.
        b.open(f"http://evil.example:{port}/api/status")
        assert "DNS rebinding protection" in str(b.eval("document.body.textContent"))
        got = b.wait_for("window.__r || (fetch('/api/actions/pwn?yes=1', {method: 'POST'})"
                         ".then(r => r.text()).then(t => window.__r = t), false)")
        assert "DNS rebinding" in str(got)
        assert not _pwned(d)
        reliability.tried(5)
        reliability.lost = ["the action ran"] if (d.root / "PWNED").exists() else []
        reliability.outcome = (f"foreign page: fetch answers {title[5:]} (opaque/blocked), form POST refused; "
                               "rebound page: 403 'DNS rebinding protection' for the page and its POST; "
                               "PWNED not created; the daemon's own page still pauses it")

        # The daemon's own page still drives it (its buttons carry the secret).
        b.open(f"http://{d.address}/")
        b.wait_for("document.getElementById('conn').textContent.includes('live')")
        b.wait_for("!document.getElementById('pause').disabled")  # enabled once the first status is drawn
        b.eval("document.getElementById('pause').click()")
        b.wait_for("document.getElementById('state').textContent === 'paused'")
        assert json.loads(d.http("GET", "/api/status")[1])["paused"] is True
    finally:
        b.close()
        server.shutdown()
        assert d.stop() == 0
