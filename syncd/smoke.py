"""`syncd smoke`: the headless CI loop. For each service: make a reversible edit, wait until it
is live (the batch done, the changed files with the local hash in every container, the
service's `ready` probe passing), restore it, wait again; repeat; report latencies, write
JUnit/JSON, and exit 0 (passed within budget), 3 (over budget) or 1 (a failure).

Edits are always reverted — after a failure, and on SIGINT/SIGTERM (the restore is synced
before exiting) — so a smoke run never leaves changes behind, locally or in containers.
"""

from __future__ import annotations

import json
import math
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlencode
from xml.etree import ElementTree as ET

import anyio
import structlog

from syncd import liveness
from syncd.config import Config, Service
from syncd.trace import percentile, step_kind, step_order, trace_writer
from syncd.transports import make_transports

if TYPE_CHECKING:
    from syncd.daemons import RunningDaemon

log = structlog.get_logger("syncd.smoke")

EXIT_OK, EXIT_FAIL, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 3, 130
_BUDGET = re.compile(r"^(p50|p95|p99|max)=(\d+(?:\.\d+)?)(ms|s)$")


# --- pure: budgets, summaries, reports ---------------------------------------------------------


def parse_budget(text: str | None) -> dict[str, float]:
    """"p95=2s,max=5s" -> {"p95": 2000.0, "max": 5000.0} (milliseconds)."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        m = _BUDGET.match(part.strip())
        if m is None:
            raise ValueError(f"--budget: {part.strip()!r} is not STAT=TIME (STAT p50, p95, p99 or max; TIME like 2s or 800ms)")
        value = float(m.group(2)) * (1000.0 if m.group(3) == "s" else 1.0)
        out[m.group(1)] = value
    return out


def stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    return {"p50": percentile(samples, 50), "p95": percentile(samples, 95), "p99": percentile(samples, 99),
            "max": max(samples), "count": len(samples)}


def over_budget(samples: list[float], budget: dict[str, float]) -> list[str]:
    """Each breached budget as text ("p95 2410 ms > 2000 ms"); [] when within (or no budget)."""
    got = stats(samples)
    return [f"{k} {got[k]:.0f} ms > {limit:.0f} ms" for k, limit in budget.items() if got and got[k] > limit]


@dataclass
class Sample:
    service: str
    iteration: int
    phase: str  # "edit" or "restore"
    ok: bool
    live_ms: float = math.nan  # edit -> synced (and ready)
    sync_ms: float = math.nan  # edit -> the last batch touching the service ended
    ready_ms: float = math.nan  # synced -> probe passed
    spans: dict[str, float] = field(default_factory=dict)  # step kind -> ms (summed over the batches)
    error: str = ""


def summarize(samples: list[Sample], budget: dict[str, float]) -> dict:
    services: dict[str, dict] = {}
    for name in dict.fromkeys(s.service for s in samples):
        mine = [s for s in samples if s.service == name]
        live = [s.live_ms for s in mine if s.ok]
        kinds = sorted({k for s in mine for k in s.spans}, key=step_order)
        services[name] = {
            "live": stats(live),
            "spans": {k: stats([s.spans[k] for s in mine if s.ok and k in s.spans]) for k in kinds},
            "failures": [f"iteration {s.iteration} {s.phase}: {s.error}" for s in mine if not s.ok],
            "over_budget": over_budget(live, budget),
            "samples": [s.__dict__ for s in mine],
        }
    return {
        "budget_ms": budget,
        "services": services,
        "passed": all(not v["failures"] for v in services.values()),
        "within_budget": all(not v["over_budget"] for v in services.values()),
    }


def junit(summary: dict, suite: str = "syncd smoke") -> str:
    """JUnit XML: a testsuite per service, a testcase per iteration and phase, a failure per
    problem, and a `budget` testcase that fails when the service's latencies breach it."""
    root = ET.Element("testsuites", name=suite)
    for name, svc in summary["services"].items():
        cases = svc["samples"]
        failures = sum(not c["ok"] for c in cases) + bool(svc["over_budget"])
        ts = ET.SubElement(root, "testsuite", name=f"{suite}: {name}", tests=str(len(cases) + 1),
                           failures=str(failures), errors="0",
                           time=f"{sum(c['live_ms'] for c in cases if c['ok']) / 1000:.3f}")
        for c in cases:
            tc = ET.SubElement(ts, "testcase", classname=f"syncd.smoke.{name}",
                               name=f"iteration {c['iteration']} {c['phase']}",
                               time=f"{(c['live_ms'] if c['ok'] else 0) / 1000:.3f}")
            if not c["ok"]:
                ET.SubElement(tc, "failure", message=c["error"][:200], type="SmokeFailure").text = c["error"]
            else:
                out = ET.SubElement(tc, "system-out")
                out.text = ", ".join(f"{k} {v:.1f} ms" for k, v in c["spans"].items())
        budget = ET.SubElement(ts, "testcase", classname=f"syncd.smoke.{name}", name="budget", time="0")
        if svc["over_budget"]:
            msg = "; ".join(svc["over_budget"])
            ET.SubElement(budget, "failure", message=msg, type="BudgetExceeded").text = msg
    root.set("tests", str(sum(int(ts.get("tests", "0")) for ts in root)))
    root.set("failures", str(sum(int(ts.get("failures", "0")) for ts in root)))
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


# --- the edits ---------------------------------------------------------------------------------


class Edit:
    """One reversible change: a fresh marker in a pattern's group (changes what is deployed), a
    marker comment appended to a file, or a marker file."""

    def __init__(self, cfg: Config, svc: Service) -> None:
        self.pattern: re.Pattern[str] | None = None
        if svc.smoke is not None:
            self.path = cfg.resolve(svc.smoke.path)
            self.comment = svc.smoke.comment
            if svc.smoke.pattern is not None:
                self.pattern = re.compile(svc.smoke.pattern)
        else:
            dirs = [cfg.resolve(m.src) for m in svc.sync if cfg.resolve(m.src).is_dir()]
            if not dirs:
                raise ValueError(f"service '{svc.name}': no directory mapping to drop a marker file in; "
                                 f"set services.smoke = {{ path = \"FILE\", pattern = 'VERSION = \"([^\"]*)\"' }}")
            self.path = dirs[0] / ".syncd-smoke"
            self.comment = ""
        self.marker_file = svc.smoke is None or self.path.is_dir()
        if self.marker_file and self.path.is_dir():
            self.path = self.path / ".syncd-smoke"
        self.original: bytes | None = None if self.marker_file else self.path.read_bytes()
        self.original_marker: str | None = None
        if self.pattern is not None:
            found = self.pattern.search(self.original.decode("utf-8", "replace") if self.original else "")
            if found is None:
                raise ValueError(f"service '{svc.name}': smoke.pattern {self.pattern.pattern!r} matches nothing in {self.path}")
            self.original_marker = found.group(1)
        self.marker: str | None = self.original_marker  # what the deployed app should show now
        self.applied = False

    def apply(self, token: str) -> None:
        self.applied = True
        if self.marker_file:
            self.path.write_text(f"syncd smoke {token}\n")
        elif self.pattern is not None:
            assert self.original is not None
            text = self.original.decode("utf-8")
            m = self.pattern.search(text)
            assert m is not None
            self.marker = f"smoke-{token}"
            self.path.write_text(text[:m.start(1)] + self.marker + text[m.end(1):], encoding="utf-8")
        else:
            assert self.original is not None
            sep = b"" if self.original.endswith(b"\n") or not self.original else b"\n"
            self.path.write_bytes(self.original + sep + f"{self.comment} syncd smoke {token}\n".encode())

    def restore(self) -> None:
        if not self.applied:
            return
        if self.marker_file:
            self.path.unlink(missing_ok=True)
        else:
            assert self.original is not None
            self.path.write_bytes(self.original)
        self.marker = self.original_marker
        self.applied = False


# --- who syncs the edits: smoke's own engine, or the daemon already running ----------------------


class Driver(Protocol):
    """What the loop needs from the engine that syncs its edits."""

    def describe(self) -> str: ...
    async def check(self) -> None: ...  # ValueError: the run cannot start (said to the user)
    async def snapshot(self) -> tuple[list[dict], bool]:
        """The latest trace records and whether the engine is idle, read at one moment (two
        separate reads could see it idle after a batch whose record the first one missed)."""
        ...

    async def idle(self) -> bool: ...
    async def verify(self, service: str, since: float, gone: list[str]) -> str | None: ...
    async def probe(self, service: str, marker: str | None) -> tuple[bool, str]: ...


class OwnEngine:
    """No daemon runs for the config: smoke runs an engine of its own (stopped at the end)."""

    def __init__(self, cfg: Config) -> None:
        from syncd.engine import Engine

        self.engine = Engine(cfg, make_transports(cfg), trace_writer(cfg))

    def describe(self) -> str:
        return "its own engine (no daemon runs for this config)"

    async def check(self) -> None:
        return None

    async def snapshot(self) -> tuple[list[dict], bool]:
        return list(self.engine.trace.records), self.engine.idle()

    async def idle(self) -> bool:
        return self.engine.idle()

    async def verify(self, service: str, since: float, gone: list[str]) -> str | None:
        return await liveness.verify(self.engine, service, since, gone)

    async def probe(self, service: str, marker: str | None) -> tuple[bool, str]:
        return await liveness.probe(self.engine, service, marker)


class RunningDaemonDriver:
    """A daemon runs for the config: the edits are timed by it, asked through its control API
    (never a second engine building and pushing the same edits)."""

    def __init__(self, cfg: Config, daemon: RunningDaemon) -> None:
        self.cfg = cfg
        self.daemon = daemon

    def describe(self) -> str:
        return f"the running daemon at {self.daemon.address} (pid {self.daemon.pid})"

    async def _call(self, method: str, path: str) -> dict:
        from syncd.api import call

        code, body = await call(self.daemon, method, path, timeout=120, token=self.cfg.daemon.token)
        if code != 200:
            raise AssertionError(f"daemon at {self.daemon.address}: HTTP {code}: {body.get('error', body)}")
        return body

    async def check(self) -> None:
        """Refuse a paused daemon: it would hold the edits, and smoke would only time out."""
        if (await self._call("GET", "/api/status?last=0"))["paused"]:
            raise ValueError(f"the daemon at {self.daemon.address} (pid {self.daemon.pid}) is paused: smoke's edits "
                             "would not be sent; `syncd resume` first")

    async def snapshot(self) -> tuple[list[dict], bool]:
        status = await self._call("GET", "/api/status?last=50")
        return list(status["recent"]), bool(status["idle"])

    async def idle(self) -> bool:
        return bool((await self._call("GET", "/api/status?last=0"))["idle"])

    async def verify(self, service: str, since: float, gone: list[str]) -> str | None:
        query = urlencode([("since", repr(since)), *(("gone", g) for g in gone)])
        return (await self._call("POST", f"/api/live/{quote(service)}/verify?{query}"))["problem"]

    async def probe(self, service: str, marker: str | None) -> tuple[bool, str]:
        ready = self.cfg.service(service).ready
        if ready is not None and ready.url is not None:  # a GET from this machine: no need to ask
            return await liveness.probe_url(ready.url, liveness.expected(ready.expect, marker))
        query = urlencode({"marker": marker}) if marker is not None else ""
        body = await self._call("POST", f"/api/live/{quote(service)}/probe?{query}")
        return bool(body["ok"]), str(body["output"])


# --- the run -----------------------------------------------------------------------------------


class Smoke:
    def __init__(self, cfg: Config, services: list[str] | None, iterations: int, timeout: float,
                 progress: Callable[[str], None] = lambda _m: None, daemon: RunningDaemon | None = None) -> None:
        self.cfg = cfg
        if services:
            self.services = [s for s in cfg.services if s.name in services]
        else:
            # Left out unless named: a service without mappings (it only runs its fallback), and
            # one of single files without a `smoke` setting (nowhere to drop a marker file):
            # compose's `sync+restart` of a config file, say.
            self.services = [s for s in cfg.services if s.smoke is not None or any(cfg.resolve(m.src).is_dir() for m in s.sync)]
            for s in cfg.services:
                if s not in self.services and s.sync:
                    progress(f"service {s.name} not smoked: only single files are mapped (name it with --service and "
                             "set its smoke = {{ path = ..., comment = ... }} to smoke it)")
        self.iterations = iterations
        self.timeout = timeout
        self.progress = progress
        self.own: OwnEngine | None = None
        self.driver: Driver
        if daemon is None:
            self.own = self.driver = OwnEngine(cfg)
        else:
            self.driver = RunningDaemonDriver(cfg, daemon)
        self.edits: list[Edit] = []
        self.interrupted = False

    async def run(self) -> list[Sample]:
        samples: list[Sample] = []
        edits = {svc.name: Edit(self.cfg, svc) for svc in self.services}  # bad smoke settings fail before anything runs
        await self.driver.check()
        stop = anyio.Event()
        self.progress(f"edits synced by {self.driver.describe()}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            if self.own is not None:
                tg.start_soon(self.own.engine.run, stop)
                await self.own.engine.started.wait()
            try:
                await self._until(self.driver.idle, self.timeout * 3, "the start-up sync")
                for svc in self.services:
                    edit = edits[svc.name]
                    self.edits.append(edit)
                    for i in range(1, self.iterations + 1):
                        if self.interrupted:
                            break
                        samples.append(await self._phase(svc, edit, i, "edit"))
                        samples.append(await self._phase(svc, edit, i, "restore"))
                        if not samples[-1].ok or not samples[-2].ok:
                            break  # the next iteration would measure a broken state
            finally:
                with anyio.CancelScope(shield=True):
                    await self._restore_all()
                stop.set()
                tg.cancel_scope.cancel()
        return samples

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.interrupted:  # a second Ctrl-C: put the files back, stop waiting
                    for edit in self.edits:
                        edit.restore()
                    scope.cancel()
                    return
                self.interrupted = True
                self.progress("interrupted: restoring the edits (Ctrl-C again to stop waiting)")

    async def _restore_all(self) -> None:
        pending = [e for e in self.edits if e.applied]
        for edit in pending:
            edit.restore()
        if pending:
            t0 = time.time()
            with anyio.move_on_after(self.timeout):
                await anyio.sleep(0.3)  # let the watcher see the restore
                await self._until(self.driver.idle, self.timeout, "the restore")
            log.info("edits restored", files=[str(e.path) for e in pending], ms=round((time.time() - t0) * 1000))

    async def _phase(self, svc: Service, edit: Edit, iteration: int, phase: str) -> Sample:
        token = f"{iteration}-{time.time_ns()}"
        t0 = time.time()
        if phase == "edit":
            edit.apply(token)
        else:
            edit.restore()
        try:
            synced, spans = await self._wait_synced(svc, edit, t0)
            ready_at = await self._wait_ready(svc, edit, max(synced, t0))
        except (TimeoutError, AssertionError, OSError) as e:
            self.progress(f"✗ {svc.name} #{iteration} {phase}: {e}")
            return Sample(svc.name, iteration, phase, False, error=str(e))
        live = (max(ready_at, synced) - t0) * 1000
        sample = Sample(svc.name, iteration, phase, True, live, (synced - t0) * 1000,
                        (ready_at - synced) * 1000 if ready_at > synced else 0.0, spans)
        self.progress(f"✓ {svc.name} #{iteration} {phase}: live in {live:.0f} ms")
        return sample

    async def _wait_synced(self, svc: Service, edit: Edit, t0: float) -> tuple[float, dict[str, float]]:
        """Until a batch that touched the service after t0 is done, the engine idle, and the
        changed files hold the local hash in every container. Returns (when the last such
        batch ended, its spans summed per step). A service with a build must have pushed
        something: an edit that deploys nothing new measured nothing."""
        deadline = time.monotonic() + self.timeout
        problem: str | None = None
        records: list[dict] = []
        while True:
            recent, idle = await self.driver.snapshot()
            records = [r for r in recent if r.get("batch") and not r.get("reconcile")
                       and svc.name in r.get("services", []) and r["spans"][-1]["end"] >= t0]
            if records and idle:
                failed = [e for r in records for e in r["errors"]]
                if failed:
                    raise AssertionError(f"the batch failed: {failed[0]}")
                gone = [str(edit.path)] if edit.marker_file and not edit.applied else []
                problem = await self.driver.verify(svc.name, t0, gone)
                if problem is None:
                    if svc.build and not _pushed(records):
                        raise AssertionError(
                            "nothing was pushed: the edit changed no build output, so nothing new was deployed "
                            "(give the service a smoke.pattern that changes a constant the build embeds, and check "
                            "it with {marker} in ready.expect)")
                    spans: dict[str, float] = {}
                    for r in records:
                        for s in r["spans"]:
                            spans[step_kind(s["name"])] = spans.get(step_kind(s["name"]), 0.0) + s["ms"]
                    return max(r["spans"][-1]["end"] for r in records), spans
            if time.monotonic() > deadline:
                why = problem or ("no batch picked the edit up (is the path watched and mapped, or a build trigger?)"
                                  if not records else "still syncing")
                raise TimeoutError(f"not live after {self.timeout:.0f}s: {why}")
            await anyio.sleep(0.02 if self.own is not None else 0.05)

    async def _wait_ready(self, svc: Service, edit: Edit, after: float) -> float:
        probe = svc.ready
        if probe is None:
            return after
        deadline = time.monotonic() + probe.timeout_s
        last = ""
        while time.monotonic() < deadline:
            ok, last = await self.driver.probe(svc.name, edit.marker)
            if ok:
                return time.time()
            await anyio.sleep(0.02)
        want = liveness.expected(probe.expect, edit.marker)
        raise TimeoutError(f"ready probe did not pass within {probe.timeout_s:.0f}s (expected {want!r}; "
                           f"last answer: {last[:200]!r})")

    async def _until(self, cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
        with anyio.fail_after(timeout):
            while not await cond():
                await anyio.sleep(0.02 if self.own is not None else 0.05)


def _pushed(records: list[dict]) -> bool:
    """Did any of these batches change something in a container (files sent or deleted)?"""
    return any(s["name"].startswith("push:") and isinstance(s.get("detail"), dict)
               and (s["detail"].get("files") or s["detail"].get("deletes"))
               for r in records for s in r["spans"])


def write_reports(summary: dict, junit_path: Path | None, json_path: Path | None) -> None:
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_text(junit(summary))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2, default=str))
