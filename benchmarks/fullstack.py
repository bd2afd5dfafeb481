"""The fullstack section: the example app (examples/fullstack) on Docker targets, edited the
way a developer edits it, vs. the same builds run by hand.

- Rust: rewrite `backend/src/version.rs`; syncd runs `cargo build --bin api`, pushes the
  static binary, runs `check-binary` and restarts the process (SIGHUP to syncd-supervise).
  Timed from the local write until GET /version on the backend container answers the new
  version (polled every ~5 ms).
- Frontend: rewrite `frontend/src/version.js`; syncd runs `npm run --silent build` (esbuild)
  and pushes dist/ to busybox httpd. Timed until GET /app.js carries the new version.

Each edit's time is split on one clock (the host's `time.time()`, which the daemon's trace
uses too) at the ends of the batch's trace spans: detect (write -> end of `plan`), build,
push (scan after the build + pack + push), run, restart, ready (first correct answer - end
of the restart span, or of the push for the frontend).

Baselines: the same edit and build command by hand, in a second copy of the app that the
daemon does not watch, interleaved with syncd's edits (one by-hand build after each edit,
once the daemon is idle again), so both see the same load on a noisy machine. Goal
(harness.GOALS): syncd's time from the write until the new output is in the container,
minus the by-hand build, <= max(5 % of the by-hand build, 50 ms), p50 vs p50.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import docker

from benchmarks.common import Options, percentile, syncd_cli, tail
from benchmarks.example_app import BACKEND_BINARY, copy_example

REPO = Path(__file__).resolve().parents[1]
IMAGE = "syncd-test/fullstack:latest"
CONFIG = "config/fullstack.toml"
WARMUP = 1  # edits of each kind not counted: the first incremental build and push after start-up
POLL_S = 0.005  # HTTP poll interval
STARTUP_TIMEOUT = 180.0
EDIT_TIMEOUT = {"rust": 60.0, "frontend": 30.0}
RECORD_TIMEOUT = 15.0  # after the new answer: until the batch's trace record is written
QUIET_S = 0.3  # between edits: the daemon idle and no new trace record for this long
SETTLE_TIMEOUT = 20.0
GAP = (0.05, 0.15)  # s, random, after the daemon settled, before the next edit
OVERHEAD_FLOOR_MS = 50.0  # the goal: overhead <= max(5 % of the by-hand build, 50 ms)
OVERHEAD_FRACTION = 0.05


@dataclass
class Kind:
    """One kind of edit: the file, how to rewrite it, what proves it arrived, its spans."""

    name: str  # "rust" | "frontend"
    service: str  # the container to ask: backend | frontend
    rel: str  # the edited file, relative to the app
    pattern: str
    line: str  # format string with {v}
    port: int
    url: str
    build_span: str
    push_prefix: str  # "push:backend/" (the target's containers)
    expect: str  # format string with {v}: the answer's text (rust) or a substring (frontend)
    exact: bool
    by_hand: list[str]
    by_hand_cwd: str
    by_hand_proof: str  # format string with {v}: in the build's output file (checked untimed)
    by_hand_output: str  # the file the build writes, relative to the app


RUST = Kind("rust", "backend", "backend/src/version.rs", r'pub const VERSION: &str = "[^"]*";',
            'pub const VERSION: &str = "{v}";', 8080, "/version", "build:cargo", "push:backend/",
            "backend {v}\n", True, ["cargo", "build", "--bin", "api"], "backend", "{v}", BACKEND_BINARY)
FRONTEND = Kind("frontend", "frontend", "frontend/src/version.js", r'export const VERSION = "[^"]*";',
                'export const VERSION = "{v}";', 8081, "/app.js", "build:esbuild", "push:frontend/",
                "frontend {v}", False, ["npm", "run", "--silent", "build"], "frontend", "frontend {v}",
                "frontend/dist/app.js")
# The parts an edit's time is split into, in order (each ends at the end of a span).
PARTS = {"rust": ("detect", "build", "push", "run", "restart", "ready"),
         "frontend": ("detect", "build", "push", "ready")}


def load_pg():  # noqa: ANN201 - tests/pg.py's start_postgres, importable only from tests/
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    try:
        from pg import start_postgres
    except Exception as e:  # noqa: BLE001 - name the failing step
        raise RuntimeError(f"fullstack: cannot import tests/pg.py: {type(e).__name__}: {e}") from e
    return start_postgres


class TraceTail:
    """The daemon's trace file, read incrementally (complete lines only), across its rotations
    (`daemon.trace_max_mb`): a file renamed away is read to its end, then the new one."""

    def __init__(self, path: Path):
        self.path = path
        self.file: BinaryIO | None = None
        self.partial = b""
        self.records: list[dict] = []

    def poll(self) -> list[dict]:
        while True:
            if self.file is None:
                try:
                    self.file = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
                except FileNotFoundError:
                    return self.records
            # Asked before reading: once renamed away nothing more is appended to it, so what is
            # read after the answer is all of it.
            rotated = self._rotated()
            data = self.partial + self.file.read()
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                if line.strip():
                    self.records.append(json.loads(line))
            self.partial = data[end:]
            if not rotated:
                return self.records
            self.file.close()
            self.file, self.partial = None, b""

    def _rotated(self) -> bool:
        assert self.file is not None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # between the rename and the next record: not replaced yet
        mine = os.fstat(self.file.fileno())
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)


def http_get(ip: str, port: int, path: str, timeout: float = 1.0) -> str | None:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return body if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class Edit:
    version: str
    t_write: float
    first_ok: float | None = None
    polls: int = 0
    record: dict | None = None  # the edit's batch: the one that ran the build
    used: dict[str, dict] = field(default_factory=dict)  # part -> the span that ends it
    borrowed: list[str] = field(default_factory=list)  # parts whose span another batch carried
    records: list[dict] = field(default_factory=list)  # every record written for this edit
    settled: bool = True

    @property
    def e2e_ms(self) -> float | None:
        return (self.first_ok - self.t_write) * 1000 if self.first_ok is not None else None


class Daemon:
    """`syncd run -c config/fullstack.toml` (or `config`) in the app copy, its trace, its control API."""

    def __init__(self, app: Path, env: dict[str, str], log: Path, config: str = CONFIG):
        self.app = app
        self.cfg = app / config
        self.env = env
        self.log = log
        self.trace = TraceTail(self.cfg.parent / ".syncd" / "trace.jsonl")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            # Own session: a Ctrl-C in the terminal reaches the harness, which stops syncd itself.
            self.proc = subprocess.Popen(syncd_cli("run", self.cfg), cwd=self.app, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def check(self, what: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"syncd exited with {self.proc.returncode} {what}:\n{tail(self.log, 40)}")

    def status(self) -> dict | None:
        """GET /api/status of the control API (address in .syncd/api.json); None if unreachable."""
        try:
            state = json.loads((self.cfg.parent / ".syncd" / "api.json").read_text())
            addr = state.get("address") or state.get("api") or ""
            host, _, port = addr.rpartition(":")
            conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=2)
            try:
                conn.request("GET", "/api/status?last=0")
                return json.loads(conn.getresponse().read())
            finally:
                conn.close()
        except (OSError, ValueError, http.client.HTTPException, AttributeError):
            return None

    def idle(self) -> bool:
        """No build running or queued, nothing pending, every container idle, as far as the
        status API says; an unreachable API or an unknown shape counts as idle (the trace's
        quiet period then decides alone)."""
        s = self.status()
        try:
            builds = [v if isinstance(v, str) else str(v.get("state", "idle")) for v in s["builds"].values()]
            containers = [c.get("state") for t in s["targets"].values() for c in t["containers"].values()]
            return (all(v == "idle" or v.startswith("last build failed") for v in builds)
                    and all(c == "idle" for c in containers) and not s.get("pending_paths"))
        except (TypeError, KeyError, AttributeError):
            return True

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait until the daemon is idle and has written no trace record for QUIET_S."""
        deadline = time.monotonic() + timeout
        n = len(self.trace.poll())
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self.check("while settling")
            time.sleep(0.05)
            if len(self.trace.poll()) != n:
                n = len(self.trace.records)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S and self.idle():
                return True
        return False

    def stop(self) -> tuple[int | None, float]:
        """SIGINT, as Ctrl-C would; (exit code, seconds to exit)."""
        if self.proc is None:
            return None, 0.0
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9, time.time() - t0
        return self.proc.returncode, time.time() - t0


def container_ip(client: docker.DockerClient, name: str) -> str:
    c = client.containers.get(name)
    return next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]


def check_containers(client: docker.DockerClient, ids: dict[str, str]) -> None:
    """The app's containers are still the ones the run started with (scripts/down.sh and up.sh
    find them by name and label: another run of them, e.g. tests/test_fullstack.py, replaces them)."""
    for svc, cid in ids.items():
        try:
            c = client.containers.get(f"fullstack-{svc}")
            now, status = c.id, c.status
        except docker.errors.NotFound:
            now, status = "", "gone"
        if now != cid or status != "running":
            raise RuntimeError(f"fullstack: container fullstack-{svc} was removed or re-created during the run "
                               f"({status}; another scripts/down.sh or up.sh, e.g. tests/test_fullstack.py?): "
                               f"no valid result")


def answered(kind: Kind, body: str | None, version: str) -> bool:
    if body is None:
        return False
    want = kind.expect.format(v=version)
    return body == want if kind.exact else want in body


def write_version(app: Path, kind: Kind, version: str) -> tuple[float, float]:
    """Rewrite the version constant; returns (time.time(), perf_counter) taken just before the write."""
    path = app / kind.rel
    text = path.read_text()
    new, n = re.subn(kind.pattern, kind.line.format(v=version), text)
    if n != 1:
        raise RuntimeError(f"{kind.rel}: {kind.pattern!r} not found exactly once")
    t_wall, t_perf = time.time(), time.perf_counter()
    path.write_text(new)
    return t_wall, t_perf


def attribute(kind: Kind, records: list[dict], t_write: float) -> tuple[dict, dict[str, dict], list[str]] | None:
    """The edit's batch among `records` (the one whose build span started after the write) and
    the span that ends each part: detect (the last of detect/coalesce/plan), build, push (the
    first push to the service's target starting after the build ended), run, restart (the first
    after that push). Normally all are in the edit's batch; when another batch of the same edit
    got there first (one cut from the build's own output events, planned just as the build
    ended), its push is the one that carried the new output: taken from there, and named in
    `borrowed`. None until the build, the push and (Rust) the restart are all recorded."""
    rec, build = None, None
    for r in records:
        build = next((x for x in r["spans"] if x["name"] == kind.build_span and x["start"] >= t_write), None)
        if build is not None:
            rec = r
            break
    if rec is None or build is None:
        return None
    used: dict[str, dict] = {"build": build}
    plan = [x for x in rec["spans"] if x["name"] in ("detect", "coalesce", "plan")]
    if plan:
        used["detect"] = max(plan, key=lambda x: x["end"])
    borrowed: list[str] = []
    others = [r for r in records if r is not rec]

    def first(part: str, pred, after: float) -> None:  # noqa: ANN001
        for group in ([rec], others):  # the edit's own batch first
            found = [x for r in group for x in r["spans"][:-1] if pred(x["name"]) and x["start"] >= after]
            if found:
                used[part] = min(found, key=lambda x: x["start"])
                if group is others:
                    borrowed.append(part)
                return

    first("push", lambda n: n.startswith(kind.push_prefix), build["end"] - 0.002)
    if "push" not in used:
        return None
    if "push" in borrowed:  # its pack span (same start) goes with it
        pack = next((x for r in others for x in r["spans"]
                     if x["name"] == "pack" and x["start"] == used["push"]["start"]), None)
        if pack is not None:
            used["pack"] = pack
            borrowed.append("pack")
    if kind is RUST:
        first("run", lambda n: n.startswith("run:"), used["push"]["start"])
        first("restart", lambda n: n == "restart:backend", used["push"]["start"])
        if "restart" not in used:
            return None
    return rec, used, borrowed


def measure_edit(kind: Kind, daemon: Daemon, ip: str, version: str, progress,  # noqa: ANN001
                 check: Callable[[], None]) -> Edit:
    start_n = len(daemon.trace.poll())
    t_write, _ = write_version(daemon.app, kind, version)
    e = Edit(version, t_write)
    deadline = time.monotonic() + EDIT_TIMEOUT[kind.name]
    while time.monotonic() < deadline:
        t_poll = time.time()
        body = http_get(ip, kind.port, kind.url)
        e.polls += 1
        if answered(kind, body, version):
            e.first_ok = time.time()
            break
        if e.polls % 200 == 0:
            daemon.check(f"waiting for {kind.service} to serve {version}")
            check()
        time.sleep(max(0.0, t_poll + POLL_S - time.time()))
    if e.first_ok is None:
        check()
        progress(f"fullstack: {kind.name} edit {version}: not served within {EDIT_TIMEOUT[kind.name]:.0f} s")
    deadline = time.monotonic() + RECORD_TIMEOUT
    found = None
    while found is None and time.monotonic() < deadline:
        found = attribute(kind, daemon.trace.poll()[start_n:], t_write)
        if found is None:
            daemon.check("waiting for the batch's trace record")
            time.sleep(0.02)
    e.settled = daemon.settle()
    e.records = daemon.trace.poll()[start_n:]
    found = attribute(kind, e.records, t_write)  # again, with every record of the edit
    if found is not None:
        e.record, e.used, e.borrowed = found
    else:
        seen = "; ".join(", ".join(f"{s['name']} @{(s['start'] - t_write) * 1000:+.0f} ms" for s in r["spans"])
                         for r in e.records)
        progress(f"fullstack: {kind.name} edit {version}: no batch with {kind.build_span} after the write, a push"
                 + (" and restart:backend" if kind is RUST else "") + f"; records: {seen or 'none'}")
    return e


# --- splitting an edit's time -------------------------------------------------------------


def span_ends(kind: Kind, e: Edit) -> dict[str, float]:
    """The end of each part (a missing span, e.g. no run step: the previous part's end)."""
    ends: dict[str, float] = {}
    prev = e.record["spans"][-1]["start"] if e.record else e.t_write
    for part in PARTS[kind.name]:
        if part != "ready":
            prev = ends[part] = e.used[part]["end"] if part in e.used else prev
    return ends


def split(kind: Kind, e: Edit) -> dict[str, float] | None:
    """Consecutive parts of the edit's time on one clock: they add up to the e2e time."""
    if e.record is None or e.first_ok is None:
        return None
    ends = span_ends(kind, e)
    out: dict[str, float] = {}
    prev = e.t_write
    for part in PARTS[kind.name]:
        end = e.first_ok if part == "ready" else ends[part]
        out[part] = (end - prev) * 1000
        prev = end
    return out


def span_ms(kind: Kind, e: Edit) -> dict[str, float]:
    """syncd's own span durations for the edit: its batch's spans plus any borrowed one (a
    name seen twice: summed; the service's push is `push`)."""
    assert e.record is not None
    spans = e.record["spans"][:-1] + [e.used[p] for p in e.borrowed] + e.record["spans"][-1:]
    out: dict[str, float] = {}
    for x in spans:
        name = x["name"]
        if name.startswith(kind.push_prefix):
            name = "push"
        elif name.startswith("push:") or name.startswith("manifest:"):
            name = name.split("/", 1)[0]  # another target's push in the same batch
        out[name] = out.get(name, 0.0) + float(x["ms"])
    return out


def stats(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values, default=0.0),
            "min": min(values, default=0.0), "n": len(values)}


def summarize_edits(kind: Kind, edits: list[Edit]) -> dict:
    seen = [e for e in edits if e.first_ok is not None]
    with_record = [e for e in seen if e.record is not None]
    parts = [split(kind, e) for e in with_record]
    parts = [p for p in parts if p]
    spans = [span_ms(kind, e) for e in with_record]
    names = sorted({k for s in spans for k in s}, key=lambda n: min(
        (i for sp in spans for i, k in enumerate(sp) if k == n), default=99))
    to_container = [(span_ends(kind, e)["push"] - e.t_write) * 1000 for e in with_record]
    builds = [s.get(kind.build_span, 0.0) for s in spans]
    per_edit = []
    # Other records written during the edit. A batch that came in while the build ran waits for
    # it and carries the same build/scan/push/restart spans (same name and start): "shared"; one
    # whose push delivered the edit's output (see attribute): "carried". Neither is counted as
    # work again; only spans of their own are (a double build or push would show there).
    extra: dict = {"records": 0, "shared": 0, "carried": 0, "builds": 0, "pushes": 0, "restarts": 0, "runs": 0}
    shapes: dict[str, int] = {}
    for e in edits:
        others = [r for r in e.records if r is not e.record]
        mine = {(x["name"], x["start"]) for x in (e.record or {}).get("spans", [])[:-1]}
        lent = {(e.used[p]["name"], e.used[p]["start"]) for p in e.borrowed}
        extra["records"] += len(others)
        for r in others:
            keys = [(x["name"], x["start"]) for x in r["spans"][:-1]]
            own = [name for name, start in keys if (name, start) not in mine | lent]
            how = ("carried" if any(k in lent for k in keys) else "shared" if any(k in mine for k in keys) else "")
            if how:
                extra[how] += 1
            shape = ", ".join(own) + {"carried": " + the push of the edit's output", "shared":
                                      " + the edit's build/push spans", "": ""}[how]
            shapes[shape or "(no spans)"] = shapes.get(shape or "(no spans)", 0) + 1
            extra["builds"] += sum(1 for n in own if n.startswith("build:"))
            extra["pushes"] += sum(1 for n in own if n.startswith("push:"))
            extra["restarts"] += sum(1 for n in own if n.startswith("restart:"))
            extra["runs"] += sum(1 for n in own if n.startswith("run:"))
        per_edit.append({
            "version": e.version,
            "e2e_ms": round(e.e2e_ms, 2) if e.e2e_ms is not None else None,
            "polls": e.polls,
            "settled": e.settled,
            "parts_ms": {k: round(v, 2) for k, v in (split(kind, e) or {}).items()},
            "record_ok": e.record.get("ok") if e.record else None,
            "borrowed": e.borrowed,
            "records": [{"batch": r.get("batch"), "ok": r.get("ok"), "primary": r is e.record,
                         "spans": [f"{s['name']} {s['ms']:.1f}" for s in r["spans"]],
                         "errors": r.get("errors", [])[:3]} for r in e.records],
        })
    extra["shapes"] = [{"spans": k, "count": v} for k, v in sorted(shapes.items(), key=lambda kv: -kv[1])]
    e2e = [e.e2e_ms for e in seen]  # type: ignore[misc]
    return {
        "attempted": len(edits),
        "observed": len(seen),
        "missed": len(edits) - len(seen),
        "records_found": len(with_record),
        "records_ok": all(e.record.get("ok") for e in with_record),  # type: ignore[union-attr]
        "settled": all(e.settled for e in edits),
        "warmup_discarded": WARMUP,
        "e2e_ms": stats(e2e),
        "samples_ms": [round(v, 2) for v in e2e],
        "to_container_ms": stats(to_container),
        # what syncd adds around its own build, per edit: write -> pushed, minus the build span
        "syncd_non_build_ms": stats([t - b for t, b in zip(to_container, builds)]),
        "parts_p50_ms": {p: percentile([x[p] for x in parts], 50) for p in PARTS[kind.name]},
        "parts_p95_ms": {p: percentile([x[p] for x in parts], 95) for p in PARTS[kind.name]},
        "spans_p50_ms": {n: percentile([s[n] for s in spans if n in s], 50) for n in names},
        "spans_in_batches": {n: sum(1 for s in spans if n in s) for n in names},
        "extra": extra,  # records, builds, pushes, restarts, run steps beyond the edit's own batch
        # edits whose new output another batch of theirs pushed (part -> how many edits)
        "borrowed": {p: sum(1 for e in with_record if p in e.borrowed) for p in ("push", "run", "restart")},
        "polls_per_edit_p50": percentile([float(e.polls) for e in edits], 50),
        "per_edit": per_edit,
    }


# --- by hand -------------------------------------------------------------------------------


def by_hand_once(kind: Kind, app: Path, env: dict[str, str], version: str) -> tuple[float, str]:
    """The same edit, then the build command the config runs (same cwd, argv, stdin closed,
    output piped, as the daemon runs it): (ms, problem or "")."""
    write_version(app, kind, version)
    t0 = time.perf_counter()
    p = subprocess.run(kind.by_hand, cwd=app / kind.by_hand_cwd, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        return ms, f"{version}: exit {p.returncode}: {p.stdout.decode(errors='replace')[-300:]}"
    if kind.by_hand_proof.format(v=version).encode() not in (app / kind.by_hand_output).read_bytes():
        return ms, f"{version}: {kind.by_hand_output} lacks {kind.by_hand_proof.format(v=version)!r}"
    return ms, ""


def summarize_hand(kind: Kind, runs: list[tuple[float, str]], warm: list[str]) -> dict:
    samples = [ms for ms, _ in runs]
    problems = [*warm, *(p for _, p in runs if p)]
    return {"command": " ".join(kind.by_hand), "cwd": kind.by_hand_cwd, "runs": len(samples),
            "warmup_discarded": WARMUP, "ms": stats(samples), "samples_ms": [round(v, 2) for v in samples],
            "ok": not problems, "problems": problems[:5]}


def overhead(edits: dict, hand: dict, paired: list[float]) -> dict:
    to_c, build = edits["to_container_ms"]["p50"], hand["ms"]["p50"]
    value = to_c - build
    limit = max(OVERHEAD_FRACTION * build, OVERHEAD_FLOOR_MS)
    return {"to_container_p50_ms": to_c, "by_hand_build_p50_ms": build, "overhead_ms": value, "limit_ms": limit,
            "limit_how": f"max({OVERHEAD_FRACTION * 100:g} % of {build:.0f} ms, {OVERHEAD_FLOOR_MS:g} ms)",
            "pass": value <= limit,
            "syncd_build_p50_ms": edits["spans_p50_ms"].get(next(iter(k for k in edits["spans_p50_ms"]
                                                                     if k.startswith("build:")), ""), 0.0),
            "syncd_non_build_p50_ms": edits["syncd_non_build_ms"]["p50"],
            # each edit's build span minus the by-hand build right after it (information)
            "build_minus_by_hand_paired_p50_ms": percentile(paired, 50)}


# --- the section ---------------------------------------------------------------------------


def tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return ""


def fullstack_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:  # noqa: ANN001
    for tool in ("cargo", "npm", "node"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"fullstack: {tool} is needed for the example app")
    if not client.images.list(name=IMAGE):
        raise RuntimeError(f"image {IMAGE} is missing: build it with `bash scripts/build-test-images.sh`")
    start_postgres = load_pg()
    load = list(os.getloadavg())
    t_section = time.time()
    n = opts.fullstack_edits
    work.mkdir(parents=True, exist_ok=True)
    app, hand = work / "app", work / "hand"  # hand: the by-hand copy, not watched by the daemon
    copy_example(app)
    copy_example(hand)
    pg = None
    daemon: Daemon | None = None
    env: dict[str, str] = {}
    try:
        progress("fullstack: starting PostgreSQL (the migrations service needs it)")
        pg = start_postgres()
        env = {**os.environ, **pg.env, "BACKEND_PORT": "0", "FRONTEND_PORT": "0"}
        env.pop("CI", None)
        for script in ("down.sh", "up.sh"):
            p = subprocess.run(["sh", str(app / "scripts" / script)], env=env, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"fullstack: scripts/{script} failed: {p.stdout}{p.stderr}")
        # The by-hand copy's first (cold) builds: set-up, not timed.
        for kind in (RUST, FRONTEND):
            p = subprocess.run(kind.by_hand, cwd=hand / kind.by_hand_cwd, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"fullstack: `{' '.join(kind.by_hand)}` in the by-hand copy failed: "
                                   f"{(p.stdout + p.stderr)[-500:]}")
        daemon = Daemon(app, env, work / "syncd.log")
        t0 = time.time()
        daemon.start()
        ips: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        first = {"backend": False, "frontend": False}
        while not all(first.values()):
            daemon.check("before serving v1")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fullstack: not serving v1 after {STARTUP_TIMEOUT:.0f} s:\n{tail(daemon.log, 40)}")
            for svc, kind in (("backend", RUST), ("frontend", FRONTEND)):
                if not first[svc]:
                    try:
                        ips[svc] = ips.get(svc) or container_ip(client, f"fullstack-{svc}")
                    except (docker.errors.DockerException, StopIteration, KeyError):
                        continue
                    first[svc] = answered(kind, http_get(ips[svc], kind.port, kind.url), "v1")
            time.sleep(0.05)
        startup = time.time() - t0
        ids = {svc: client.containers.get(f"fullstack-{svc}").id for svc in ("backend", "frontend")}
        settled = daemon.settle(60)
        startup_records = len(daemon.trace.poll())
        progress(f"fullstack: serving v1 {startup:.1f} s after spawn ({startup_records} trace records)")

        results: dict = {}
        version = 1
        for kind in (RUST, FRONTEND):
            progress(f"fullstack: {WARMUP} + {n} {kind.name} edits, each followed by the same edit and "
                     f"`{' '.join(kind.by_hand)}` by hand in the second copy")
            edits: list[Edit] = []
            runs: list[tuple[float, str]] = []
            warm: list[str] = []
            for i in range(WARMUP + n):
                version += 1
                e = measure_edit(kind, daemon, ips[kind.service], f"v{version}", progress,
                                 lambda: check_containers(client, ids))
                time.sleep(random.uniform(*GAP))
                version += 1
                h = by_hand_once(kind, hand, env, f"v{version}")
                if i >= WARMUP:
                    edits.append(e)
                    runs.append(h)
                elif h[1]:
                    warm.append(h[1])
                time.sleep(random.uniform(*GAP))
            results[kind.name] = {"edits": summarize_edits(kind, edits), "by_hand": summarize_hand(kind, runs, warm)}
            paired = [e.used["build"]["ms"] - ms for e, (ms, _) in zip(edits, runs) if "build" in e.used]
            results[kind.name]["overhead"] = overhead(results[kind.name]["edits"], results[kind.name]["by_hand"], paired)
        check_containers(client, ids)
        binary = (app / RUST.by_hand_output).stat().st_size
        bundle = (app / FRONTEND.by_hand_output).stat().st_size
        all_records = daemon.trace.poll()
        code, stop_s = daemon.stop()
        if code != 0:
            progress(f"warning: fullstack: syncd exited with {code} on SIGINT\n{tail(daemon.log)}")
        return {
            "loadavg_at_section_start": load,
            "app": {"example": "examples/fullstack", "config": CONFIG, "image": IMAGE,
                    "cargo": tool_version(["cargo", "--version"]), "node": tool_version(["node", "--version"]),
                    "binary_bytes": binary, "bundle_bytes": bundle},
            "startup_s": startup,
            "startup_settled": settled,
            "startup_records": startup_records,
            "trace_records": len(all_records),
            "failed_records": sum(1 for r in all_records if not r.get("ok")),
            "syncd_exit_code_on_sigint": code,
            "syncd_stop_s": stop_s,
            "baseline_where": "a second copy of the app (not watched), one by-hand build after each syncd edit",
            "poll_interval_ms": POLL_S * 1000,
            "section_s": time.time() - t_section,
            **results,
        }
    finally:
        if daemon is not None:
            daemon.stop()
        if env:
            subprocess.run(["sh", str(app / "scripts" / "down.sh")], env=env, capture_output=True, check=False)
        if pg is not None:
            pg.stop()
