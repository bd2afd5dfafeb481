"""`syncd smoke`: the headless CI loop. For each service: make a reversible edit, wait until it
is live (the batch done, the changed files with the local hash in every container, the
service's `ready` probe passing), restore it, wait again; repeat; report latencies, write
JUnit/JSON, and exit 0 (passed within budget), 3 (over budget) or 1 (a failure).

Edits are always reverted — after a failure, and on SIGINT/SIGTERM (the restore is synced
before exiting) — so a smoke run never leaves changes behind, locally or in containers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import anyio
import structlog

from syncd.config import Config, Service
from syncd.model import Kind
from syncd.steps import argv_of
from syncd.trace import TraceWriter, percentile, step_kind, step_order
from syncd.transports import make_transports

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
    """One reversible change: a marker line appended to a file, or a marker file."""

    def __init__(self, cfg: Config, svc: Service):
        if svc.smoke is not None:
            self.path = cfg.resolve(svc.smoke.path)
            self.comment = svc.smoke.comment
        else:
            dirs = [cfg.resolve(m.src) for m in svc.sync if cfg.resolve(m.src).is_dir()]
            if not dirs:
                raise ValueError(f"service '{svc.name}': no directory mapping to drop a marker file in; "
                                 f"set services.smoke = {{ path = \"FILE\", comment = \"#\" }}")
            self.path = dirs[0] / ".syncd-smoke"
            self.comment = ""
        self.marker_file = svc.smoke is None or self.path.is_dir()
        if self.marker_file and self.path.is_dir():
            self.path = self.path / ".syncd-smoke"
        self.original: bytes | None = None if self.marker_file else self.path.read_bytes()
        self.applied = False

    def apply(self, token: str) -> None:
        self.applied = True
        if self.marker_file:
            self.path.write_text(f"syncd smoke {token}\n")
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
        self.applied = False


# --- the run -----------------------------------------------------------------------------------


class Smoke:
    def __init__(self, cfg: Config, services: list[str] | None, iterations: int, timeout: float,
                 progress: Callable[[str], None] = lambda _m: None):
        from syncd.engine import Engine

        self.cfg = cfg
        self.services = [s for s in cfg.services if not services or s.name in services]
        self.iterations = iterations
        self.timeout = timeout
        self.progress = progress
        self.engine = Engine(cfg, make_transports(cfg), TraceWriter(cfg.resolve(cfg.daemon.trace)))
        self.edits: list[Edit] = []
        self.interrupted = False

    async def run(self) -> list[Sample]:
        samples: list[Sample] = []
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            tg.start_soon(self.engine.run, stop)
            await self.engine.started.wait()
            try:
                await self._until(self.engine.idle, self.timeout * 3, "the start-up sync")
                for svc in self.services:
                    edit = Edit(self.cfg, svc)
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
                await self._until(self.engine.idle, self.timeout, "the restore")
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
            ready_at = await self._wait_ready(svc, max(synced, t0))
        except (TimeoutError, AssertionError) as e:
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
        batch ended, its spans summed per step)."""
        deadline = time.monotonic() + self.timeout
        problem: str | None = None
        while True:
            records = [r for r in self.engine.trace.records if r.get("batch") and not r.get("reconcile")
                       and svc.name in r.get("services", []) and r["spans"][-1]["end"] >= t0]
            if records and self.engine.idle():
                failed = [e for r in records for e in r["errors"]]
                if failed:
                    raise AssertionError(f"the batch failed: {failed[0]}")
                problem = await self._verify(svc, edit, t0)
                if problem is None:
                    spans: dict[str, float] = {}
                    for r in records:
                        for s in r["spans"]:
                            spans[step_kind(s["name"])] = spans.get(step_kind(s["name"]), 0.0) + s["ms"]
                    return max(r["spans"][-1]["end"] for r in records), spans
            if time.monotonic() > deadline:
                why = problem or ("no batch picked the edit up (is the path watched and mapped, or a build trigger?)"
                                  if not records else "still syncing")
                raise TimeoutError(f"not live after {self.timeout:.0f}s: {why}")
            await anyio.sleep(0.02)

    async def _verify(self, svc: Service, edit: Edit, since: float) -> str | None:
        """Compare, in every container of the target, the service's files that changed since
        `since` (and a removed marker file) with the local state. None when all match."""
        target = self.engine.targets[svc.target]
        errors: list[tuple[str, str]] = []
        desired = await anyio.to_thread.run_sync(self.engine.desired_state, target, {svc.name}, errors)
        check: dict[str, str | None] = {}
        for dest, lf in desired.items():
            if lf is not None and lf.entry.kind is Kind.FILE and max(lf.mtime, lf.ctime) >= since - 1:
                check[dest] = lf.entry.digest
        if edit.marker_file and not edit.applied:
            runtime = next(s for s in self.engine.services if s.cfg.name == svc.name)
            mapping = next((m for m in runtime.mappings if m.contains(edit.path)), None)
            if mapping is not None:
                check[mapping.dest_of(edit.path)] = None  # must be gone
        if not check:
            return None
        if not target.workers:
            return f"target {svc.target} has no running container"
        for worker in list(target.workers.values()):
            found = await self._hashes(target.transport, worker.ref, list(check))
            for dest, digest in check.items():
                if found.get(dest, "missing") != digest:
                    return f"{worker.ref.label}:{dest} is {found.get(dest, 'unreadable')}, local {digest or 'absent'}"
        return None

    @staticmethod
    async def _hashes(transport, ref, dests: list[str]) -> dict[str, str | None]:  # noqa: ANN001
        """sha1 of each container path (None: absent), read by the container itself; a local
        target's "container" is a directory, read directly."""
        host_path = getattr(transport, "host_path", None)
        if host_path is not None:
            out: dict[str, str | None] = {}
            for dest in dests:
                p = host_path(dest)
                out[dest] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
            return out
        script = 'for p; do if [ -e "$p" ]; then sha1sum "$p"; else echo "- $p"; fi; done'
        res = await transport.run(ref, ["sh", "-c", script, "smoke", *dests])
        found: dict[str, str | None] = {}
        for line in res.output.splitlines():
            digest, _, path = line.partition("  ") if "  " in line else line.partition(" ")
            found[path.strip()] = None if digest == "-" else digest.lstrip("\\")
        return found

    async def _wait_ready(self, svc: Service, after: float) -> float:
        probe = svc.ready
        if probe is None:
            return after
        deadline = time.monotonic() + probe.timeout_s
        last = ""
        while time.monotonic() < deadline:
            ok, last = await self._probe(svc)
            if ok:
                return time.time()
            await anyio.sleep(0.02)
        raise TimeoutError(f"ready probe did not pass within {probe.timeout_s:.0f}s (last answer: {last[:200]!r})")

    async def _probe(self, svc: Service) -> tuple[bool, str]:
        probe = svc.ready
        assert probe is not None
        if probe.url is not None:
            def get() -> str:
                with urllib.request.urlopen(probe.url, timeout=2) as r:  # noqa: S310 - the user's own URL
                    return r.read().decode("utf-8", "replace")

            try:
                body = await anyio.to_thread.run_sync(get)
            except OSError as e:
                return False, str(e)
            return probe.expect in body, body
        target = self.engine.targets[svc.target]
        if not target.workers:
            return False, "no running container"
        outputs = []
        for worker in list(target.workers.values()):
            res = await target.transport.run(worker.ref, argv_of(probe.cmd or ""))
            outputs.append(res.output)
            if res.exit != 0 or probe.expect not in res.output:
                return False, res.output
        return True, "\n".join(outputs)

    async def _until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        with anyio.fail_after(timeout):
            while not cond():
                await anyio.sleep(0.02)


def write_reports(summary: dict, junit_path: Path | None, json_path: Path | None) -> None:
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_text(junit(summary))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2, default=str))
