"""What every benchmark section shares: options, measurements (latency of edits, bursts),
running `syncd run` on a scratch workspace, and reading its trace. The sections (harness.py's
docker section, kube.py, reconcile.py, idle.py, fullstack.py) import this module, never each
other's runner (harness.py), so the package has no import cycle (scripts/check_imports.py)."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.models.containers import Container

from benchmarks.baselines import Pusher, read_tree, syncd_pusher
from benchmarks.observer import Observer
from syncd.trace import read_trace as trace_records

IMAGE = "syncd-test/busybox:latest"
DEBOUNCE_MS = 20
WARMUP = 2  # first edits per method are not counted: image layers, exec paths, caches are cold
GAP = (0.10, 0.20)  # s between edits: well past the 20 ms quiet period, so batches never merge
EDIT_TIMEOUT = 10.0
BURST_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
FILE_BYTES = 100
SYNC_DEST = "/app/src"
SECTIONS = ("docker", "kube", "reconcile", "idle", "fullstack", "scale", "compose", "remote")
# --quick (the all-sections smoke run) leaves these out: smoke them with --only (tests do)
NOT_QUICK = ("remote",)
# Run only when asked (`--only delta`): minutes of transfers through simulated slow links.
EXTRA_SECTIONS = ("delta",)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Options:
    edits: int = 60
    burst: int = 1000
    out: Path = DEFAULT_OUT
    baseline_runs: int = 20
    cp_sample: int = 200  # docker cp per file is slow: time this many and extrapolate (0 = all)
    put_sample: int = 0  # put_archive: all files by default
    kubectl_sample: int = 200  # kubectl cp per file is slower still: time this many (0 = all)
    only: str | None = None  # one of SECTIONS: run that section only
    keep: bool = False
    reconcile_files: int = 20_000  # random-byte files of 2-18 KB: ~200 MB
    reconcile_repeats: int = 3  # no-diff passes; the median counts
    idle_files: int = 100_000  # files of 100 B watched by the idle daemon
    idle_seconds: float = 30.0  # the idle sampling window
    idle_settle: float = 5.0  # wait after the start-up reconcile before sampling
    idle_targets: tuple[str, ...] = ("docker", "kube")  # one session each
    fullstack_edits: int = 10  # counted edits per kind (Rust, frontend) and by-hand builds per kind
    scale_files: tuple[int, ...] = (10_000, 100_000)  # the scale curve's tree sizes (300,000: opt-in)
    scale_idle_seconds: float = 10.0  # idle sampling window per tree size
    scale_edits: int = 20  # single-file edits timed per tree size
    quick: bool = False
    remote_profiles: tuple[str, ...] = ("lan", "cloud", "home")  # tests/linksim.py PROFILES
    remote_edits: int = 20  # single-file edits per profile (syncd); kubectl cp: baseline_runs
    remote_burst: int = 1000  # files in the burst per profile
    remote_reconcile_files: int = 2000  # ~20 MB per profile; the 20000 (~205 MB) is opt-in; 0 = none
    remote_backend: bool = True  # the example backend's const and route edits per profile
    delta_bytes: int = 28_900_000  # the synthetic large binary (the real example backend's debug build size)
    delta_files: int = 20_000  # files in the delta section's trees (2-18 KB each: ~200 MB)
    delta_profiles: tuple[str, ...] = ("lan", "cloud", "home")  # tests/linksim.py profiles

    @property
    def sections(self) -> tuple[str, ...]:
        if self.only:
            return (self.only,)
        return tuple(s for s in SECTIONS if not (self.quick and s in NOT_QUICK))


@dataclass
class Latency:
    method: str
    samples_ms: list[float] = field(default_factory=list)
    attempted: int = 0
    missed: int = 0
    stream_lag_ms: list[float] = field(default_factory=list)
    verified: bool = False  # the container holds the last edit's content (checked untimed)
    container_clock: bool = True  # False: stamped on arrival at the host (engine on another kernel)
    observer_restarts: int = 0  # the observer's stream ended mid-run, or saw nothing, and was started again
    # Edits the observer did not report: what the container held then ("arrived unseen": the edit
    # landed and the watch was blind — it is measured again with a new one; else a real miss).
    misses: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        s = self.samples_ms
        return {
            "attempted": self.attempted,
            "observed": len(s),
            "missed": self.missed,
            "observer_restarts": self.observer_restarts,
            "misses": self.misses,
            "verified": self.verified,
            "warmup_discarded": WARMUP,
            "p50_ms": percentile(s, 50),
            "p95_ms": percentile(s, 95),
            "max_ms": max(s, default=0.0),
            "min_ms": min(s, default=0.0),
            "mean_ms": sum(s) / len(s) if s else 0.0,
            "observer_stream_lag_p50_ms": percentile(self.stream_lag_ms, 50),
            "samples_ms": [round(v, 2) for v in s],
        }


@dataclass
class Burst:
    method: str
    files_total: int
    files_timed: int
    seconds_timed: float = 0.0
    send_seconds: float = 0.0  # until the write loop (and, for baselines, the last push) returned
    observed: bool = False
    verified: bool = False
    container_clock: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        return self.files_timed < self.files_total

    @property
    def seconds(self) -> float:
        """All files: measured, or the sample's per-file cost x the total."""
        if not self.files_timed:
            return 0.0
        return self.seconds_timed * self.files_total / self.files_timed

    def summary(self) -> dict:
        return {
            "files": self.files_total,
            "files_timed": self.files_timed,
            "extrapolated": self.extrapolated,
            "how": (f"timed {self.files_timed} of {self.files_total}, per-file cost x {self.files_total}"
                    if self.extrapolated else f"timed all {self.files_total}"),
            "seconds": self.seconds,
            "seconds_timed": self.seconds_timed,
            "per_file_ms": self.seconds * 1000 / self.files_total if self.files_total else 0.0,
            "send_loop_seconds": self.send_seconds,
            "observed": self.observed,
            "verified": self.verified,
            "problems": self.problems[:10],
        }


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# --- measurements -------------------------------------------------------------------------


def measure_edits(method: str, container: Container, local: Path, dest: str, push: Pusher, n: int) -> Latency:
    """Edit one small file n times (plus warm-up); each edit's content is unique, so the
    observer's event is the proof that exactly this edit is visible in the container."""
    result = Latency(method)
    token = uuid.uuid4().hex[:8]
    obs = Observer(container.id, "file", dest)
    blind = 0  # edits that landed unseen, measured again
    try:
        i = 0
        while i < WARMUP + n:
            if obs.ended:  # its exec ended (the engine dropped it): a blind observer measures nothing
                obs.close()
                obs = Observer(container.id, "file", dest)
                result.observer_restarts += 1
            content = f"{method} edit {i} {token}-{blind}"
            t0 = time.time()
            local.write_text(content + "\n")
            push(local, dest)
            event = obs.wait_content(content, EDIT_TIMEOUT)
            if event is None:
                held = _first_line(container, dest)
                if held == content and blind < MAX_BLIND:
                    # It landed and the watch did not say so: the watch failed, not the edit.
                    result.misses.append(f"edit {i}: arrived unseen; measured again with a new observer")
                    blind += 1
                    obs.close()
                    obs = Observer(container.id, "file", dest)
                    result.observer_restarts += 1
                    continue
                result.misses.append(f"edit {i}: not there after {EDIT_TIMEOUT:.0f} s (holds {held[:60]!r})")
            if i >= WARMUP:
                result.attempted += 1
                if event is None:
                    result.missed += 1
                else:
                    result.samples_ms.append((event.seen - t0) * 1000)
                    result.stream_lag_ms.append((event.arrived - event.seen) * 1000)
            i += 1
            time.sleep(random.uniform(*GAP))
        result.container_clock = obs.use_container_clock
    finally:
        obs.close()
    try:
        result.verified = read_tree(container, dest).get(Path(dest).name) == (content + "\n").encode()
    except docker.errors.NotFound:  # (never arrived at all)
        result.verified = False
    return result


MAX_BLIND = 2  # edits measured again after landing unseen, per run


def _first_line(container: Container, path: str) -> str:
    """The file's first line in the container now ("" when unreadable), read by a fresh exec."""
    try:
        code, out = container.exec_run(["head", "-n", "1", path])
    except docker.errors.DockerException:
        return ""
    return out.decode("utf-8", "replace").rstrip("\n") if code == 0 else ""


def burst_files(n: int, token: str) -> list[tuple[str, bytes]]:
    files = []
    for i in range(n):
        head = f"burst {token} file {i:05d} "
        files.append((f"f{i:05d}.txt", (head + "x" * (FILE_BYTES - len(head) - 1) + "\n").encode()))
    return files


def measure_burst(method: str, container: Container, local_dir: Path, dest_dir: str, push: Pusher,
                  total: int, sample: int) -> Burst:
    """Write (and push) `sample` of `total` files as fast as possible; time until the
    observer sees all of them, non-empty, in the container."""
    timed = total if sample <= 0 else min(sample, total)
    result = Burst(method, total, timed)
    files = burst_files(timed, uuid.uuid4().hex[:8])
    local_dir.mkdir(parents=True, exist_ok=True)
    with Observer(container.id, "count", dest_dir, timed) as obs:
        t0 = time.time()
        for name, data in files:
            path = local_dir / name
            path.write_bytes(data)
            push(path, f"{dest_dir}/{name}")
        result.send_seconds = time.time() - t0
        event = obs.wait_count(BURST_TIMEOUT)
        result.container_clock = obs.use_container_clock
    if event is None:
        result.problems.append(f"not all {timed} files seen within {BURST_TIMEOUT:.0f} s")
    else:
        result.observed = True
        result.seconds_timed = event.seen - t0
    got = read_tree(container, dest_dir)
    for name, data in files:
        if got.get(name) != data:
            result.problems.append(f"{dest_dir}/{name}: {'missing' if name not in got else 'wrong content'}")
    result.verified = not result.problems
    return result


# --- syncd as a subprocess ----------------------------------------------------------------


def write_config(work: Path, target: str) -> Path:
    """A user's syncd.toml: one target named `web` (the `target` TOML block), src -> /app/src."""
    cfg = work / "syncd.toml"
    cfg.write_text(
        f"""[daemon]
debounce_ms = {DEBOUNCE_MS}
max_batch_wait_ms = 2000
trace = ".syncd/trace.jsonl"

[targets.web]
{target.strip()}

[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "{SYNC_DEST}" }}]
"""
    )
    return cfg


def docker_target(container_name: str) -> str:
    return f'kind = "docker"\ncontainer = "{container_name}"'


def syncd_cli(command: str, cfg: Path) -> list[str]:
    """`syncd COMMAND -c CFG --log-format json`, through the installed entry point as a user runs it."""
    exe = shutil.which("syncd")
    base = [exe] if exe else [sys.executable, "-m", "syncd"]
    return [*base, command, "-c", str(cfg), "--log-format", "json"]


def syncd_argv(cfg: Path) -> list[str]:
    return syncd_cli("run", cfg)


def read_trace(path: Path) -> list[dict]:
    """The daemon's trace records so far, its rotated files included (none yet: [])."""
    try:
        return trace_records(path)
    except FileNotFoundError:
        return []


def wait_ready(proc: subprocess.Popen, trace: Path, log: Path) -> None:
    """The daemon is ready once its initial reconcile has written its trace record."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(r.get("reconcile") for r in read_trace(trace)):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"syncd exited with {proc.returncode} before reconciling:\n{tail(log)}")
        time.sleep(0.05)
    raise RuntimeError(f"no reconcile record in {trace} after {READY_TIMEOUT:.0f} s:\n{tail(log)}")


def stop_process(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    return proc.returncode


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def trace_summary(records: list[dict]) -> dict:
    """syncd's own view of the same batches (from mtime of the write to the container's ack)."""
    totals = [r["spans"][-1]["ms"] for r in records if r.get("spans")]
    steps: dict[str, list[float]] = {}
    for r in records:
        for s in r.get("spans", [])[:-1]:
            steps.setdefault(s["name"].split(":", 1)[0], []).append(float(s["ms"]))
    return {
        "batches": len(records),
        "failed_batches": sum(1 for r in records if not r.get("ok")),
        "errors": [e for r in records for e in r.get("errors", [])][:10],
        "total_ms": {"p50": percentile(totals, 50), "p95": percentile(totals, 95), "max": max(totals, default=0.0)},
        "steps_p50_ms": {k: percentile(v, 50) for k, v in steps.items()},
        "steps_p95_ms": {k: percentile(v, 95) for k, v in steps.items()},
    }


@dataclass
class SyncdRun:
    single: Latency
    burst: Burst
    startup_s: float
    exit_code: int
    trace: dict
    stop_s: float  # SIGTERM -> exited


def measure_syncd(label: str, work: Path, target: str, container: Container, opts: Options, progress,  # noqa: ANN001
                  env: dict[str, str] | None = None) -> SyncdRun:
    """Start `syncd run` in its own workspace `work` (src -> /app/src on `target`), as a user
    would; time single-file edits and the burst, observed in `container`; stop it (SIGTERM)."""
    src = work / "src"
    (src / "burst").mkdir(parents=True)
    (src / "edit.txt").write_text("initial\n")
    cfg = write_config(work, target)
    trace_path = work / ".syncd" / "trace.jsonl"
    log_path = work / "syncd.log"
    proc: subprocess.Popen | None = None
    try:
        with open(log_path, "wb") as log:
            # Own session: a Ctrl-C in the terminal reaches the harness, which stops syncd itself.
            proc = subprocess.Popen(syncd_argv(cfg), cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        t_start = time.time()
        wait_ready(proc, trace_path, log_path)
        startup = time.time() - t_start
        progress(f"{label}: ready in {startup:.2f} s; {opts.edits} single-file edits")
        n_before = len(read_trace(trace_path))
        single = measure_edits("syncd", container, src / "edit.txt", f"{SYNC_DEST}/edit.txt", syncd_pusher, opts.edits)
        n_edits = len(read_trace(trace_path))
        progress(f"{label}: {opts.burst}-file burst")
        burst = measure_burst("syncd", container, src / "burst", f"{SYNC_DEST}/burst", syncd_pusher, opts.burst, 0)
        time.sleep(0.5)  # let the burst's trace record(s) land
        records = read_trace(trace_path)
        trace = {"edits": trace_summary(records[n_before + WARMUP:n_edits]), "burst": trace_summary(records[n_edits:])}
        t_stop = time.time()
        code = stop_process(proc)
        stop_s = time.time() - t_stop
        if code != 0:
            progress(f"warning: {label} exited with {code} on SIGTERM\n{tail(log_path)}")
        return SyncdRun(single, burst, startup, code, trace, stop_s)
    finally:
        if proc is not None:
            stop_process(proc)


def ratio(baseline: float, syncd: float, both_seen: bool) -> float:
    """baseline time / syncd time (> 1: syncd is faster); 0.0 when either was not observed."""
    return baseline / syncd if both_seen and syncd > 0 else 0.0


def section_results(s: SyncdRun, single: dict[str, Latency], burst: dict[str, Burst]) -> dict:
    """One section's JSON: the syncd run plus its baselines, with baseline/syncd ratios."""
    single = {"syncd": s.single, **single}
    burst = {"syncd": s.burst, **burst}
    baselines = [m for m in single if m != "syncd"]
    out = {
        "syncd_startup_s": s.startup_s,
        "syncd_exit_code_on_sigterm": s.exit_code,
        "syncd_stop_s": s.stop_s,
        "single_file": {m: r.summary() for m, r in single.items()},
        "burst": {m: r.summary() for m, r in burst.items()},
        "syncd_trace": s.trace,
        "container_clock": all(r.container_clock for r in [*single.values(), *burst.values()]),
    }
    sf = out["single_file"]
    out["single_file_ratios"] = {
        m: {q: ratio(sf[m][f"{q}_ms"], sf["syncd"][f"{q}_ms"], sf[m]["observed"] > 0 and sf["syncd"]["observed"] > 0)
            for q in ("p50", "p95")}
        for m in baselines
    }
    out["burst"]["ratios"] = {m: ratio(burst[m].seconds, s.burst.seconds, burst[m].observed and s.burst.observed)
                              for m in burst if m != "syncd"}
    return out


def remove_container(container) -> None:  # noqa: ANN001
    """Remove a benchmark container, quietly: cleanup must not mask the run's own outcome."""
    if container is None:
        return
    try:
        container.remove(force=True)
    except docker.errors.DockerException:
        pass
