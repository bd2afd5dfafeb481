"""The control API and the commands that use it (`syncd status`, `pause`, `resume`, `resync`,
`trigger`), against a real daemon process: over TCP with and without a token, and over a
unix socket."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

CONFIG = """
[daemon]
debounce_ms = 10
api = "{api}"
{extra}

[targets.box]
kind = "local"
path = "box"

[[services]]
name = "app"
target = "box"
sync = [{{ src = "src", dest = "/app" }}]

[actions.hello]
cmd = "echo hello from the action"

[actions.pwn]
cmd = "touch PWNED"
"""


class Daemon:
    def __init__(self, root: Path, api: str, extra: str = "", env: dict[str, str] | None = None):
        self.root = root
        (root / "src").mkdir(exist_ok=True)
        (root / "src" / "a.txt").write_text("a\n")
        (root / "syncd.toml").write_text(CONFIG.format(api=api, extra=extra))
        self.env = {**os.environ, **(env or {})}
        self.log = open(root / "daemon.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", "-c", str(root / "syncd.toml")],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while (state := self._published()) is None:  # its own: a killed daemon's file may still be there
            assert self.proc.poll() is None, (root / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not publish its API address"
            time.sleep(0.05)
        self.address, self.secret = state["address"], state["secret"]

    def _published(self) -> dict | None:
        try:
            state = json.loads((self.root / ".syncd" / "api.json").read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("pid") == self.proc.pid else None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "syncd", *args, "-c", str(self.root / "syncd.toml")],
                              env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=60)

    def http(self, method: str, path: str, token: str | None = None, host: str | None = None,
             headers: dict[str, str] | None = None, data: bytes | None = None,
             secret: bool = True) -> tuple[int, str]:
        """One request as a local client would send it: with the daemon's write secret on a
        POST unless `secret=False` (what a foreign page cannot add)."""
        url = f"http://{host or self.address}{path}"
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        if secret and method != "GET":
            sent["X-Syncd-Secret"] = self.secret
        req = urllib.request.Request(url, method=method, headers={**sent, **(headers or {})}, data=data)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_box(self, rel: str, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        path = self.root / "box" / "app" / rel
        while not (path.exists() and path.read_text() == text):
            assert time.monotonic() < deadline, f"{rel} never became {text!r}"
            time.sleep(0.02)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        self.log.close()
        return code


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path, "127.0.0.1:0")
    yield d
    assert d.stop() == 0


def test_status_trigger_pause_resume_resync(daemon: Daemon) -> None:
    daemon.wait_box("a.txt", "a\n")
    out = daemon.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["targets"]["box"]["containers"]["local"]["state"] == "idle"
    assert status["paused"] is False and status["recent"][-1]["reconcile"] is True
    table = daemon.cli("status")
    assert table.returncode == 0 and "box" in table.stdout and "idle" in table.stdout and "reconcile" in table.stdout

    # pause: changes queue up, nothing reaches the box; resume sends them.
    assert daemon.cli("pause").returncode == 0
    (daemon.root / "src" / "a.txt").write_text("edited while paused\n")
    deadline = time.monotonic() + 5
    while json.loads(daemon.cli("status", "--json").stdout)["pending_paths"] < 1:
        assert time.monotonic() < deadline, "the edit was not queued"
        time.sleep(0.05)
    status = json.loads(daemon.cli("status", "--json").stdout)
    assert status["paused"] is True and (daemon.root / "box" / "app" / "a.txt").read_text() == "a\n"
    assert daemon.cli("resume").returncode == 0
    daemon.wait_box("a.txt", "edited while paused\n")

    # resync: a file changed behind syncd's back in the container is put right.
    (daemon.root / "box" / "app" / "a.txt").write_text("tampered\n")
    out = daemon.cli("resync")
    assert out.returncode == 0 and "1 container" in out.stdout
    daemon.wait_box("a.txt", "edited while paused\n")
    assert daemon.cli("resync", "--target", "nope").returncode == 2

    # trigger through the daemon
    out = daemon.cli("trigger", "hello")
    assert out.returncode == 0 and "hello from the action" in out.stdout and "ran by the daemon" in out.stdout


def test_events_stream_a_batch_as_it_completes(daemon: Daemon) -> None:
    daemon.wait_box("a.txt", "a\n")
    with urllib.request.urlopen(f"http://{daemon.address}/api/events", timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        (daemon.root / "src" / "b.txt").write_text("b\n")
        event = data = ""
        while not data:
            line = stream.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
    record = json.loads(data)
    assert event == "batch" and record["ok"] and any(s["name"] == "push:box/local" for s in record["spans"])


def test_metrics_count_the_batches_that_ran(daemon: Daemon) -> None:
    daemon.wait_box("a.txt", "a\n")
    for i in range(3):
        (daemon.root / "src" / f"m{i}.txt").write_text(f"{i}\n")
        daemon.wait_box(f"m{i}.txt", f"{i}\n")

    def read() -> tuple[list[dict], dict]:
        records = [json.loads(x) for x in (daemon.root / ".syncd" / "trace.jsonl").read_text().splitlines()]
        code, body = daemon.http("GET", "/metrics")
        assert code == 200
        return records, {f.name: f for f in text_string_to_metric_families(body)}

    deadline = time.monotonic() + 20
    while True:  # until the last batch's record is written (a file, then the metrics: read both again)
        records, families = read()
        counted = sum(s.value for s in families["syncd_span_seconds"].samples
                      if s.name == "syncd_span_seconds_count" and s.labels["span"] == "total")
        if sum(1 for r in records if not r["reconcile"]) >= 3 and counted == len(records):
            break
        assert time.monotonic() < deadline, (len(records), counted)
        time.sleep(0.05)
    totals = [s for s in families["syncd_span_seconds"].samples
              if s.name == "syncd_span_seconds_count" and s.labels["span"] == "total"]
    assert sum(s.value for s in totals) == len(records)
    sent = sum(s.value for s in families["syncd_bytes_sent"].samples if s.name == "syncd_bytes_sent_total")
    assert sent == sum(s["detail"]["bytes"] for r in records for s in r["spans"] if s["name"].startswith("push:"))


def test_status_page_is_served(daemon: Daemon) -> None:
    code, body = daemon.http("GET", "/")
    assert code == 200 and "<html" in body.lower() and "syncd" in body


def test_token_is_enforced(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "127.0.0.1:0", extra='api_token = "s3cret-token"')
    try:
        assert d.http("GET", "/api/status")[0] == 401
        assert d.http("GET", "/api/status", token="wrong")[0] == 401
        assert d.http("POST", "/api/pause")[0] == 401
        code, body = d.http("GET", "/api/status", token="s3cret-token")
        assert code == 200 and "targets" in json.loads(body)
        assert d.http("GET", "/api/status?token=s3cret-token")[0] == 200  # the page's way
        assert d.cli("status").returncode == 0  # the CLI reads the token from the config
        assert d.cli("pause", env={"SYNCD_API_TOKEN": "wrong"}).returncode == 1  # env wins over the file
        assert "s3cret-token" not in (tmp_path / "daemon.log").read_text()
        assert "s3cret-token" not in (tmp_path / ".syncd" / "api.json").read_text()
    finally:
        assert d.stop() == 0


def test_non_loopback_api_needs_a_token(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "syncd.toml").write_text(CONFIG.format(api="0.0.0.0:0", extra=""))
    out = subprocess.run([sys.executable, "-m", "syncd", "validate", "-c", str(tmp_path / "syncd.toml")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "daemon.api" in out.stderr and "api_token" in out.stderr


def test_unix_socket_is_private(tmp_path: Path) -> None:
    d = Daemon(tmp_path, "unix:.syncd/api.sock")
    try:
        sock = tmp_path / ".syncd" / "api.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600 and stat.S_ISSOCK(sock.stat().st_mode)
        out = d.cli("status", "--json")
        assert out.returncode == 0 and "box" in json.loads(out.stdout)["targets"]
        out = d.cli("trigger", "hello")
        assert out.returncode == 0 and "hello from the action" in out.stdout
    finally:
        assert d.stop() == 0
    assert not (tmp_path / ".syncd" / "api.json").exists()


def test_status_without_a_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "syncd.toml").write_text(CONFIG.format(api="127.0.0.1:0", extra=""))
    out = subprocess.run([sys.executable, "-m", "syncd", "status", "-c", str(tmp_path / "syncd.toml")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "no syncd daemon is running" in out.stderr and "syncd run" in out.stderr


def test_progress_of_a_large_reconcile_in_json_logs(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for i in range(700):
        (tmp_path / "src" / f"f{i:04}.txt").write_text(f"file {i}\n" * 50)
    (tmp_path / "syncd.toml").write_text(CONFIG.format(api="127.0.0.1:0", extra=""))
    out = subprocess.run([sys.executable, "-m", "syncd", "sync", "--log-format", "json", "-c", str(tmp_path / "syncd.toml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["files"] == progress[-1]["files_total"] == 700
    assert progress[-1]["bytes"] == progress[-1]["bytes_total"] > 700 * 400 and progress[-1]["percent"] == 100
