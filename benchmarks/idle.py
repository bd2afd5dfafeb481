"""The idle section: `syncd run` watching a large tree (100,000 small files by default) with
two sessions open, one per container: a docker target and a pod of the API-server fixture
(or two docker targets, `--idle-targets docker,docker`).

After the start-up reconcile of every container has written its trace record, wait
`idle_settle` s, then sample the daemon process over `idle_seconds`:
  - memory: /proc/PID/status VmRSS (steady: median of the samples, and the last) and VmHWM
    (the peak since start: the start-up reconcile's high-water mark, information only);
  - CPU: /proc/PID/stat utime+stime (all threads) at both ends of the window:
    idle CPU % = ticks / (window s x CLK_TCK) x 100;
  - context switches of all threads (/proc/PID/task/*/status) per second, and any trace
    records written during the window (an idle daemon writes none).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import docker

from benchmarks.common import (
    DEBOUNCE_MS, IMAGE, SYNC_DEST, Options, docker_target, read_trace, remove_container, stop_process, syncd_cli, tail,
)

FILES_PER_DIR = 100
IDLE_FILE_BYTES = 100
STARTUP_TIMEOUT = 600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def make_small_tree(root: Path, files: int) -> dict:
    t0 = time.time()
    dirs = max(1, (files + FILES_PER_DIR - 1) // FILES_PER_DIR)
    for d in range(dirs):
        (root / f"d{d:04d}").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        head = f"idle tree file {i:06d} "
        (root / f"d{i // FILES_PER_DIR:04d}" / f"f{i:06d}.txt").write_text(head + "x" * (IDLE_FILE_BYTES - len(head) - 1) + "\n")
    return {"files": files, "dirs": dirs, "file_bytes": IDLE_FILE_BYTES, "generate_s": time.time() - t0}


# --- /proc -------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "(comm)": state is fields[0] (field 3)
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    return out


def threads(pid: int) -> dict[str, tuple[str, int, int]]:
    """Per thread id: (name, utime+stime ticks, context switches voluntary + not). CPython 3.11
    does not name its threads: they all show the process name."""
    out: dict[str, tuple[str, int, int]] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
            name = raw[raw.index("(") + 1:raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                switches = sum(int(line.split(":")[1]) for line in f
                               if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
            out[tid] = (name, int(fields[11]) + int(fields[12]), switches)
        except (OSError, ValueError):
            continue
    return out


def sample(pid: int, seconds: float, every: float = 0.5) -> dict:
    rss: list[int] = []
    ticks0, th0, t0 = cpu_ticks(pid), threads(pid), time.monotonic()
    while True:
        rss.append(status_kb(pid)["VmRSS"])
        left = t0 + seconds - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(every, left))
    ticks1, th1, t1 = cpu_ticks(pid), threads(pid), time.monotonic()
    status = status_kb(pid)
    window = t1 - t0
    ticks = ticks1 - ticks0
    # Threads alive at the end: switches since the start (or since they began); threads that
    # ended inside the window take their counts with them (an undercount, said in the JSON).
    per_thread: dict[str, dict] = {}
    for tid, (name, t, n) in th1.items():
        _, t_before, n_before = th0.get(tid, (name, 0, 0))
        label = f"{tid} {name}" + (" (main)" if tid == str(pid) else "")
        per_thread[label] = {"cpu_ticks": t - t_before,
                             "ctx_switches_per_s": (n - n_before) / window if window > 0 else 0.0}
    switches = sum(n - th0.get(tid, ("", 0, 0))[2] for tid, (_, _, n) in th1.items())
    return {
        "window_s": window,
        "samples": len(rss),
        "rss_mib_median": statistics.median(rss) / 1024,
        "rss_mib_last": rss[-1] / 1024,
        "rss_mib_max": max(rss) / 1024,
        "rss_mib_min": min(rss) / 1024,
        "hwm_mib": status.get("VmHWM", 0) / 1024,
        "rss_anon_mib": status.get("RssAnon", 0) / 1024,
        "rss_file_mib": status.get("RssFile", 0) / 1024,
        "threads": status.get("Threads", 0),
        "cpu_ticks": ticks,
        "clk_tck": CLK_TCK,
        "cpu_pct": ticks / (window * CLK_TCK) * 100 if window > 0 else 0.0,
        "ctx_switches_per_s": switches / window if window > 0 else 0.0,
        "threads_started": len(th1.keys() - th0.keys()),
        "threads_ended": len(th0.keys() - th1.keys()),  # their switches are not counted
        "per_thread": dict(sorted(per_thread.items(), key=lambda kv: -kv[1]["ctx_switches_per_s"])),
    }


# --- the section -------------------------------------------------------------------------


def write_idle_config(work: Path, targets: dict[str, str]) -> Path:
    """One service per target, all syncing the same tree (`tree` -> /app/src)."""
    blocks = [f"[targets.{name}]\n{body.strip()}\n" for name, body in targets.items()]
    services = [f'[[services]]\nname = "{name}"\ntarget = "{name}"\nsync = [{{ src = "tree", dest = "{SYNC_DEST}" }}]\n'
                for name in targets]
    cfg = work / "syncd.toml"
    cfg.write_text(f"""[daemon]
debounce_ms = {DEBOUNCE_MS}
max_batch_wait_ms = 2000
trace = ".syncd/trace.jsonl"

""" + "\n".join(blocks) + "\n" + "\n".join(services))
    return cfg


def count_files(container) -> int:  # noqa: ANN001
    code, out = container.exec_run(["sh", "-c", f"find {SYNC_DEST} -type f | wc -l"])
    try:
        return int(out.decode().strip()) if code == 0 else -1
    except ValueError:
        return -1


def idle_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:  # noqa: ANN001
    load = list(os.getloadavg())
    kinds = opts.idle_targets
    progress(f"idle: generating {opts.idle_files:,} files of {IDLE_FILE_BYTES} B")
    info = make_small_tree(work / "tree", opts.idle_files)
    progress(f"idle: tree made in {info['generate_s']:.1f} s; targets {', '.join(kinds)}")
    containers: list = []
    fx = None
    env = dict(os.environ)
    targets: dict[str, str] = {}
    observed: dict[str, object] = {}  # target name -> the Docker container holding its files
    proc: subprocess.Popen | None = None
    try:
        for i, kind in enumerate(kinds):
            tname = f"{kind}{i}"
            if kind == "docker":
                name = f"syncd-bench-idle-{uuid.uuid4().hex[:8]}"
                c = client.containers.run(IMAGE, name=name, detach=True, labels={"syncd-bench": "1"})
                containers.append(c)
                targets[tname] = docker_target(name)
                observed[tname] = c
            else:
                from benchmarks.kube import CONTAINER, NAMESPACE, load_fixture

                if fx is not None:
                    raise RuntimeError("idle: one kube target at most")
                fx = load_fixture()(docker_client=client)
                fx.start()
                pod = f"idle-{i}"
                fx.create_pod(pod, namespace=NAMESPACE, labels={"app": "idle"},
                              containers=[{"name": CONTAINER, "image": IMAGE}])
                targets[tname] = (f'kind = "kubernetes"\nnamespace = "{NAMESPACE}"\nselector = "app=idle"\n'
                                  f'container = "{CONTAINER}"')
                observed[tname] = fx.docker_container(pod, CONTAINER, namespace=NAMESPACE)
                env["KUBECONFIG"] = str(fx.kubeconfig)
        cfg = write_idle_config(work, targets)
        trace = work / ".syncd" / "trace.jsonl"
        log_path = work / "syncd.log"
        progress(f"idle: syncd run over {opts.idle_files:,} files, {len(targets)} containers")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(syncd_cli("run", cfg), cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        t_start = time.time()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        records: list[dict] = []
        while True:
            records = [r for r in read_trace(trace) if r.get("reconcile")]
            if len(records) >= len(targets):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"syncd exited with {proc.returncode} during the start-up reconcile:\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"start-up reconcile not done after {STARTUP_TIMEOUT:.0f} s:\n{tail(log_path)}")
            time.sleep(0.1)
        startup_s = time.time() - t_start
        from benchmarks.reconcile import spans_of

        startup_records = [{"container": next((s["name"].split(":", 1)[1] for s in r["spans"]
                                               if s["name"].startswith("manifest:")), "?"), **spans_of(r)}
                           for r in records]
        hwm_after_startup = status_kb(proc.pid).get("VmHWM", 0) / 1024
        progress(f"idle: start-up reconcile done in {startup_s:.1f} s; settling {opts.idle_settle:g} s, "
                 f"then sampling {opts.idle_seconds:g} s")
        time.sleep(opts.idle_settle)
        n_before = len(read_trace(trace))
        stats = sample(proc.pid, opts.idle_seconds)
        batches_during = len(read_trace(trace)) - n_before
        progress(f"idle: RSS {stats['rss_mib_median']:.1f} MiB (peak {stats['hwm_mib']:.1f}), "
                 f"CPU {stats['cpu_pct']:.2f} %")
        t_stop = time.time()
        code = stop_process(proc)
        stop_s = time.time() - t_stop
        counts = {t: count_files(c) for t, c in observed.items()}
        return {
            "loadavg_at_section_start": load,
            "tree": info,
            "targets": {t: k for t, k in zip(targets, kinds)},
            "startup_reconcile_s": startup_s,
            "startup_reconciles": startup_records,
            "hwm_mib_after_startup": hwm_after_startup,
            "settle_s": opts.idle_settle,
            "idle": stats,
            "batches_during_window": batches_during,
            "container_files": counts,
            "converged": all(n == info["files"] for n in counts.values()),
            "syncd_exit_code_on_sigterm": code,
            "syncd_stop_s": stop_s,
            "how": "`syncd run` (one session per container); from the last start-up reconcile record + settle: "
                   "VmRSS sampled every 0.5 s, utime+stime (all threads) at both ends: ticks / (window x CLK_TCK)",
        }
    finally:
        if proc is not None:
            stop_process(proc)
        for c in containers:
            remove_container(c)
        if fx is not None:
            fx.stop()
