"""The scale section: a big tree of small files (100 B each, 100 per directory) and many replicas,
syncd beside the floor — C programs moving the same bytes — in the same run.

Per tree size (`--scale-files`, default 10,000 and 100,000; 300,000 opt-in):
  floor    — `tar -c -C TREE . | docker exec -i C tar -x -C /app/src`, into every container at once
             (fresh containers, as syncd gets): what the bytes cost without syncd;
  start-up — `syncd sync` into two fresh containers of one labelled target: wall clock, peak RSS;
             the ratio to the floor is the figure;
  no-diff  — `syncd sync` again, nothing changed;
  restart  — `syncd run` started over the unchanged tree: until every container's reconcile record;
             then the idle daemon sampled (RSS, CPU % over `--scale-idle-seconds`) and single-file
             edits timed in one replica (edit -> visible, observed inside the container).
Fan-out: a 1,000-file burst into 1 / 3 / 10 replicas of one target, until the last replica holds
every file (the median of 3 bursts), into Docker containers with /app on tmpfs and into pods of the
API-server fixture (judged: the worse of the two), and into Docker containers writing into overlayfs
(beside: this VM's disk); the figure is the 10-replica time over the 1-replica time, beside the same
ratio for the floor (C tar into every replica at once): what fan-out costs the machine without syncd.
Discovery: a labelled container started (`docker run`) under a running daemon, until its first file
is there (the engine's event stream wakes discovery; the poll is only a safety net).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.models.containers import Container

from benchmarks.baselines import kubectl_env, syncd_pusher
from benchmarks.common import (
    DEBOUNCE_MS,
    IMAGE,
    SYNC_DEST,
    Options,
    burst_files,
    measure_edits,
    percentile,
    read_trace,
    remove_container,
    stop_process,
    syncd_cli,
    tail,
)
from benchmarks.idle import make_small_tree, sample
from benchmarks.kube import CONTAINER, NAMESPACE, load_fixture

TIMEOUT = 1800.0
FANOUT = (1, 3, 10)
FANOUT_FILES = 1000
STARTUP_ROUNDS = 3  # floor / `syncd sync` pairs on tmpfs per tree size, alternated (--quick: 1)
FANOUT_ROUNDS = 3  # bursts per replica count (one daemon), and floors: the medians are the figures (--quick: 1)
DISCOVERY_TRIES = 5


def _docker_target(label: str) -> str:
    return f'kind = "docker"\nlabels = {{ "syncd-bench-scale" = "{label}" }}'


def _config(work: Path, label: str, target: str | None = None) -> Path:
    cfg = work / "syncd.toml"
    cfg.write_text(f"""[daemon]
debounce_ms = {DEBOUNCE_MS}
max_batch_wait_ms = 2000
trace = ".syncd/trace.jsonl"

[targets.web]
{target or _docker_target(label)}

[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "{SYNC_DEST}" }}]
""")
    return cfg


def _containers(client: docker.DockerClient, label: str, n: int, tmpfs: bool = False) -> list[Container]:
    """`n` fresh containers; `tmpfs`: /app on tmpfs (the destination's writes cost no disk)."""
    return [client.containers.run(IMAGE, name=f"syncd-bench-scale-{uuid.uuid4().hex[:8]}", detach=True,
                                  labels={"syncd-bench-scale": label, "syncd-bench": "1"},
                                  tmpfs={"/app": "size=2g"} if tmpfs else {}) for _ in range(n)]


def _count(c: Container, path: str = SYNC_DEST) -> int:
    code, out = c.exec_run(["sh", "-c", f"find {path} -type f 2>/dev/null | wc -l"])
    try:
        return int(out.decode().strip()) if code == 0 else -1
    except ValueError:
        return -1


def _untar(dest: str) -> list[str]:
    return ["sh", "-c", f"mkdir -p {dest} && tar -x -C {dest}"]


def _floor(tree: Path, containers: list[Container], dest: str = SYNC_DEST) -> float:
    """Host `tar -c` piped into each container's `tar -x` under `dest`, all containers at once."""
    return _floor_into(tree, [["docker", "exec", "-i", c.id, *_untar(dest)] for c in containers])


def _floor_into(tree: Path, unpackers: list[list[str]], env: dict[str, str] | None = None) -> float:
    """Host `tar -c` of `tree` piped into each of `unpackers` (argv reading a tar on stdin), all at once."""
    procs = []
    t0 = time.monotonic()
    for argv in unpackers:
        pack = subprocess.Popen(["tar", "-c", "-C", str(tree), "."], stdout=subprocess.PIPE)
        unpack = subprocess.Popen(argv, stdin=pack.stdout, env=env)
        assert pack.stdout is not None
        pack.stdout.close()
        procs += [pack, unpack]
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
    seconds = time.monotonic() - t0
    if any(codes):
        raise RuntimeError(f"floor: tar pipelines exited {codes}")
    return seconds


def _timed_sync(cfg: Path, work: Path, label: str) -> dict:
    """`syncd sync` under a small wrapper that reports the child's peak RSS (ru_maxrss)."""
    log = work / f"sync-{label}.log"
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-c", wrapper, *syncd_cli("sync", cfg)], cwd=work, stdout=out,
                              stderr=subprocess.PIPE, timeout=TIMEOUT)
    wall = time.monotonic() - t0
    try:
        peak_mib = int(proc.stderr.decode().strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        peak_mib = 0.0
    if proc.returncode != 0:  # (a failed sync measures nothing: no figure is better than a wrong one)
        raise RuntimeError(f"syncd sync ({label}) exited with {proc.returncode}:\n{tail(log)}")
    return {"wall_s": wall, "exit_code": proc.returncode, "peak_rss_mib": peak_mib}


def _start_daemon(cfg: Path, work: Path, containers: int,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen, float]:
    """`syncd run`, until every container's start-up reconcile has written its record."""
    trace = work / ".syncd" / "trace.jsonl"
    before = len(read_trace(trace))
    log = work / "syncd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(syncd_cli("run", cfg), cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    t0 = time.monotonic()
    deadline = t0 + TIMEOUT
    while time.monotonic() < deadline:
        # one reconcile record per container; its manifest span names the container
        done = {s["name"] for r in read_trace(trace)[before:] if r.get("reconcile") for s in r.get("spans", [])
                if s["name"].startswith("manifest:")}
        if len(done) >= containers:
            return proc, time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"syncd exited with {proc.returncode} before reconciling:\n{tail(log)}")
        time.sleep(0.02)
    stop_process(proc)
    raise RuntimeError(f"syncd did not reconcile {containers} containers in {TIMEOUT:.0f} s:\n{tail(log)}")


def one_size(client: docker.DockerClient, work: Path, files: int, opts: Options, progress) -> dict:
    load = list(os.getloadavg())
    tree = work / "src"
    progress(f"scale: {files:,} files of 100 B")
    info = make_small_tree(tree, files)
    label = uuid.uuid4().hex[:8]
    containers: list[Container] = []
    proc: subprocess.Popen | None = None
    out: dict = {"files": files, "tree": info, "loadavg_at_start": load}
    try:
        containers = _containers(client, f"floor-{label}", 2)
        out["floor_s"] = _floor(tree, containers)
        progress(f"scale {files:,}: floor (tar | docker exec tar -x, 2 containers at once) {out['floor_s']:.2f} s")
        for c in containers:
            remove_container(c)
        containers = _containers(client, label, 2)
        cfg = _config(work, label)
        out["startup"] = _timed_sync(cfg, work, "startup")
        out["startup"]["container_files"] = [_count(c) for c in containers]
        out["startup"]["complete"] = all(n == files for n in out["startup"]["container_files"])
        out["startup_over_floor"] = out["startup"]["wall_s"] / out["floor_s"] if out["floor_s"] else 0.0
        progress(f"scale {files:,}: syncd sync into 2 containers {out['startup']['wall_s']:.2f} s "
                 f"({out['startup_over_floor']:.2f}x the floor), peak RSS {out['startup']['peak_rss_mib']:.0f} MiB")
        _on_tmpfs(client, work, tree, files, label, out, progress, 1 if opts.quick else STARTUP_ROUNDS)
        out["nodiff"] = _timed_sync(cfg, work, "nodiff")
        progress(f"scale {files:,}: syncd sync, nothing differs {out['nodiff']['wall_s']:.2f} s")
        proc, ready = _start_daemon(cfg, work, len(containers))
        out["restart_converged_s"] = ready
        progress(f"scale {files:,}: syncd run over the unchanged tree converged in {ready:.2f} s; idle sample")
        time.sleep(opts.idle_settle)
        out["idle"] = {k: v for k, v in sample(proc.pid, opts.scale_idle_seconds).items() if k != "per_thread"}
        edit = tree / "edit.txt"
        edit.write_text("start\n")
        time.sleep(0.5)
        lat = measure_edits("syncd", containers[0], edit, f"{SYNC_DEST}/edit.txt", syncd_pusher, opts.scale_edits)
        out["single_file"] = {k: v for k, v in lat.summary().items() if k != "samples_ms"}
        progress(f"scale {files:,}: idle RSS {out['idle']['rss_mib_median']:.0f} MiB, CPU {out['idle']['cpu_pct']:.2f} %; "
                 f"single file p50 {out['single_file']['p50_ms']:.1f} ms")
        return out
    finally:
        if proc is not None:
            stop_process(proc)
        for c in containers:
            remove_container(c)
        subprocess.run(["rm", "-rf", str(tree), str(work / ".syncd")], check=False)


def _on_tmpfs(client: docker.DockerClient, work: Path, tree: Path, files: int, label: str, out: dict,
              progress, rounds: int = STARTUP_ROUNDS) -> None:
    """The floor and `syncd sync` again, each into 2 fresh containers whose destination is on
    tmpfs, alternated `rounds` times; the medians are the figures. Writing 100,000 files into
    overlayfs is this VM's disk, and it throttles sustained writes: the overlay floor measured
    9.9 s and 42 s in two runs back to back. On tmpfs both sides do the same work without it
    (the ratio judged against the goal) — yet one tmpfs floor still took 26 s where the others
    took 6-8: one pair of samples can say anything, so the pairs are repeated."""
    hashes = work / ".syncd" / "hashes"  # a first start hashes every file, as the overlay run did
    aside = hashes.with_name("hashes.aside")
    if hashes.exists():
        hashes.rename(aside)
    floors: list[float] = []
    runs: list[dict] = []
    try:
        for i in range(rounds):
            floor = _containers(client, f"floor-tmpfs-{label}-{i}", 2, tmpfs=True)
            try:
                floors.append(_floor(tree, floor))
            finally:
                for c in floor:
                    remove_container(c)
            mem = _containers(client, f"tmpfs-{label}-{i}", 2, tmpfs=True)
            try:
                hashes.unlink(missing_ok=True)  # (each start as cold as the first)
                run = _timed_sync(_config(work, f"tmpfs-{label}-{i}"), work, f"startup-tmpfs-{i}")
                run["container_files"] = [_count(c) for c in mem]
                run["complete"] = all(n == files for n in run["container_files"])
                runs.append(run)
            finally:
                for c in mem:
                    remove_container(c)
    finally:
        _config(work, label)
        hashes.unlink(missing_ok=True)
        if aside.exists():
            aside.replace(hashes)
    walls = [r["wall_s"] for r in runs]
    median_run = runs[walls.index(statistics.median_low(walls))]
    out["floor_tmpfs_s"] = statistics.median(floors)
    out["startup_tmpfs"] = {**median_run, "wall_s": statistics.median(walls), "complete": all(r["complete"] for r in runs),
                            "exit_code": max(r["exit_code"] for r in runs), "samples_s": [round(w, 2) for w in walls],
                            "floor_samples_s": [round(f, 2) for f in floors]}
    out["startup_over_floor_tmpfs"] = out["startup_tmpfs"]["wall_s"] / out["floor_tmpfs_s"] if floors else 0.0
    out["startup_over_floor_tmpfs_pairs"] = [round(w / f, 3) for w, f in zip(walls, floors, strict=True) if f]
    progress(f"scale {files:,}: on tmpfs, {rounds} pairs alternated: floor {out['floor_tmpfs_s']:.2f} s "
             f"({', '.join(f'{f:.2f}' for f in floors)}), syncd sync {out['startup_tmpfs']['wall_s']:.2f} s "
             f"({', '.join(f'{w:.2f}' for w in walls)}): {out['startup_over_floor_tmpfs']:.2f}x (medians)")


def _wait_all(containers: list[Container], path: str, want: int, timeout: float) -> float | None:
    """Seconds until every container holds `want` files under path (polled in parallel)."""
    t0 = time.monotonic()
    done: dict[str, float] = {}

    def watch(c: Container) -> None:
        while time.monotonic() - t0 < timeout:
            if _count(c, path) >= want:
                done[c.id] = time.monotonic()
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=watch, args=(c,), daemon=True) for c in containers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return max(done.values()) - t0 if len(done) == len(containers) else None


def _landed(trace: Path, since: float, labels: list[str], files: int, timeout: float) -> float | None:
    """The moment (time.time()) the last of `labels` answered for the last of `files` files sent
    since `since`: the end of its push spans in the daemon's trace (the container's tar has
    exited, as the floor's has when its pipeline ends). None: not all of them in `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got: dict[str, list[float]] = {label: [0, 0.0] for label in labels}
        for record in read_trace(trace):
            for span in record.get("spans", []):
                label = span["name"].removeprefix("push:").split("/", 1)[-1]
                if span["name"].startswith("push:") and label in got and span["start"] >= since:
                    got[label][0] += (span.get("detail") or {}).get("files", 0)
                    got[label][1] = max(got[label][1], span["end"])
        if all(n >= files for n, _ in got.values()):
            return max(end for _, end in got.values())
        time.sleep(0.1)
    return None


@dataclass
class Replica:
    """One replica of a fan-out: the name syncd's trace gives it, the Docker container behind it
    (files are counted there) and how the floor's `tar -x` gets into it."""

    label: str
    backing: Container
    unpack: Callable[[str], list[str]]  # dest -> argv reading a tar on stdin into dest


@dataclass
class Fleet:
    """Where a fan-out runs: how to make `n` replicas of one target and how syncd finds them."""

    name: str
    about: str
    target: Callable[[str], str]  # label -> the [targets.web] body
    make: Callable[[str, int], list[Replica]]
    remove: Callable[[Replica], None]
    env: dict[str, str] | None = None  # for syncd and the floor (a kubeconfig)


def _docker_fleet(client: docker.DockerClient, tmpfs: bool) -> Fleet:
    def make(label: str, n: int) -> list[Replica]:
        return [Replica(c.name, c, lambda dest, c=c: ["docker", "exec", "-i", c.id, *_untar(dest)])
                for c in _containers(client, label, n, tmpfs=tmpfs)]

    return Fleet("docker_tmpfs" if tmpfs else "docker_overlay",
                 "Docker containers, /app on tmpfs" if tmpfs else "Docker containers, /app in overlayfs (the disk)",
                 _docker_target, make, lambda r: remove_container(r.backing))


@contextmanager
def _pod_fleet(client: docker.DockerClient, work: Path) -> Iterator[Fleet]:
    """Pods of the API-server fixture (Docker containers behind a real API server's exec), /app
    an emptyDir (tmpfs, as the fixture's kubelet makes them); the floor is `kubectl exec -i`."""
    fx = load_fixture()(docker_client=client)
    fx.start()
    try:
        env = kubectl_env(fx.kubeconfig, work / "kubectl-home")

        def make(label: str, n: int) -> list[Replica]:
            out = []
            for i in range(n):
                name = f"fan-{label}-{i}"
                fx.create_pod(name, namespace=NAMESPACE, labels={"fan": label},
                              containers=[{"name": CONTAINER, "image": IMAGE,
                                           "volumeMounts": [{"name": "app", "mountPath": "/app"}]}],
                              volumes=[{"name": "app", "emptyDir": {}}])
                out.append(Replica(name, fx.docker_container(name, CONTAINER, namespace=NAMESPACE),
                                   lambda dest, name=name: ["kubectl", "exec", "-i", "-n", NAMESPACE, name, "-c",
                                                            CONTAINER, "--", *_untar(dest)]))
            return out

        def target(label: str) -> str:
            return (f'kind = "kubernetes"\nnamespace = "{NAMESPACE}"\nselector = "fan={label}"\n'
                    f'container = "{CONTAINER}"')

        yield Fleet("pods", "pods of the API-server fixture (kubectl accepts it), /app an emptyDir (tmpfs)",
                    target, make, lambda r: fx.delete_pod(r.label, NAMESPACE), env)
    finally:
        fx.stop()


def fan_out(client: docker.DockerClient, work: Path, progress, rounds: int = FANOUT_ROUNDS) -> dict:
    """A 1,000-file burst into 1 / 3 / 10 replicas: Docker containers with the destination on
    tmpfs and fixture pods (judged), and Docker containers writing into overlayfs (this VM's disk:
    its ext4 spends ~1 ms of kernel time creating each file in a container's upper layer, which
    no sender can avoid; shown beside)."""
    variants: dict[str, dict] = {}
    trees = _memory_dir(work)
    try:
        for fleet in (_docker_fleet(client, tmpfs=True), _docker_fleet(client, tmpfs=False)):
            variants[fleet.name] = _fan_out_into(fleet, trees, progress, rounds)
        with _pod_fleet(client, work) as pods:
            variants[pods.name] = _fan_out_into(pods, trees, progress, rounds)
    finally:
        if trees != work:
            shutil.rmtree(trees, ignore_errors=True)
    judged = ("docker_tmpfs", "pods")
    worst = max(judged, key=lambda k: variants[k]["ten_over_one"])
    return {"files": FANOUT_FILES, "variants": variants, "judged": list(judged),
            # the figure: the worse of the judged variants
            "ten_over_one": variants[worst]["ten_over_one"], "worst": worst,
            "complete": all(r["complete"] for v in variants.values() for r in v["rows"].values()),
            "how": "time from the first file written to the last replica's answer for the last of them (the "
                   "end of its push spans in the trace: its tar has exited; every replica's file count checked "
                   f"after); one daemon per replica count, the median of {rounds} bursts. floor: the same "
                   "number of files by `tar -c | docker exec -i tar -x` (pods: `kubectl exec -i`) into every "
                   "replica at once (after the daemon stopped), the median of as many: how the engine and the "
                   "containers' tar scale on this machine"}


def _memory_dir(work: Path) -> Path:
    """A new directory on tmpfs (/dev/shm) for the fan-out's local trees, else `work`. A burst
    is timed from its first write, and this VM's ext4 created 1,000 files in 0.2-0.7 s instead
    of 0.03 s for a while after many were deleted (an earlier section's trees): a 1-replica
    burst measured 0.6-0.8 s in full runs against 0.2 s alone."""
    shm = Path("/dev/shm")
    try:
        return Path(tempfile.mkdtemp(prefix="syncd-bench-fanout-", dir=shm)) if shm.is_dir() else work
    except OSError:
        return work


def _fan_out_into(fleet: Fleet, work: Path, progress, rounds: int) -> dict:
    rows: dict[str, dict] = {}
    for n in FANOUT:
        label = uuid.uuid4().hex[:8]
        replicas = fleet.make(label, n)
        proc = None
        sub = work / f"fanout-{fleet.name}-{n}"
        (sub / "src").mkdir(parents=True)
        (sub / "src" / "seed.txt").write_text("seed\n")
        try:
            cfg = _config(sub, label, fleet.target(label))
            proc, _ = _start_daemon(cfg, sub, n, fleet.env)
            walls, writes, complete, counts = [], [], True, []
            for i in range(rounds):
                burst = sub / "src" / f"burst{i}"
                burst.mkdir()
                t0 = time.time()
                for name, data in burst_files(FANOUT_FILES, f"{label}-{i}"):
                    (burst / name).write_bytes(data)
                writes.append(time.time() - t0)
                # Timed from the trace, not by polling: ten `docker exec find` pollers every 20 ms
                # loaded the engine the replicas' own execs go through (the floor ran without them).
                end = _landed(sub / ".syncd" / "trace.jsonl", t0, [r.label for r in replicas], FANOUT_FILES, 120.0)
                counts = [_count(r.backing, f"{SYNC_DEST}/burst{i}") for r in replicas]  # the trace, checked
                complete = complete and end is not None and all(n == FANOUT_FILES for n in counts)
                walls.append((end or time.time()) - t0)
            stop_process(proc)
            proc = None
            # The floor: the same number of files, C tar into every replica at once.
            floors = []
            for i in range(rounds):
                floor_tree = sub / f"floor{i}"
                floor_tree.mkdir()
                for name, data in burst_files(FANOUT_FILES, f"{label}-floor-{i}"):
                    (floor_tree / name).write_bytes(data)
                floors.append(_floor_into(floor_tree, [r.unpack(f"{SYNC_DEST}/floor{i}") for r in replicas], fleet.env))
            wall, floor = statistics.median(walls), statistics.median(floors)
            rows[str(n)] = {"replicas": n, "seconds": wall, "complete": complete, "floor_s": floor, "files_there": counts,
                            "samples_s": [round(w, 3) for w in walls], "floor_samples_s": [round(f, 3) for f in floors],
                            "write_samples_s": [round(w, 3) for w in writes]}  # (the burst's own writing, within samples_s)
            progress(f"scale: {FANOUT_FILES}-file burst into {n} replica(s), {fleet.about}: median {wall:.2f} s of "
                     f"{rounds} (floor, C tar into each at once: {floor:.2f} s)")
        finally:
            if proc is not None:
                stop_process(proc)
            for r in replicas:
                fleet.remove(r)
    one, ten = rows[str(FANOUT[0])], rows[str(FANOUT[-1])]
    return {"about": fleet.about, "rows": rows,
            "ten_over_one": ten["seconds"] / one["seconds"] if one["seconds"] else 0.0,
            "floor_ten_over_one": ten["floor_s"] / one["floor_s"] if one["floor_s"] else 0.0}


def discovery(client: docker.DockerClient, work: Path, progress) -> dict:
    """`docker run` of a labelled container under a running daemon -> its files are there."""
    label = uuid.uuid4().hex[:8]
    sub = work / "discovery"
    (sub / "src").mkdir(parents=True)
    for i in range(20):
        (sub / "src" / f"f{i:02d}.txt").write_text(f"file {i}\n")
    first = _containers(client, label, 1)
    made: list[Container] = list(first)
    proc = None
    samples: list[float] = []
    try:
        proc, _ = _start_daemon(_config(sub, label), sub, 1)
        started: list[float] = []  # `docker run` itself: create + start, before syncd can know
        for _ in range(DISCOVERY_TRIES):
            t0 = time.monotonic()
            [c] = _containers(client, label, 1)  # returns once the container runs
            t1 = time.monotonic()
            made.append(c)
            seconds = _wait_all([c], SYNC_DEST, 20, 30.0)
            if seconds is not None:
                samples.append(t1 - t0 + seconds)
                started.append(seconds)
            remove_container(c)
        p50 = statistics.median(samples) if samples else 0.0
        p50_running = statistics.median(started) if started else 0.0
        progress(f"scale: docker run -> 20 files there: p50 {p50 * 1000:.0f} ms ({p50_running * 1000:.0f} ms after "
                 f"the container runs) over {len(samples)} runs")
        return {"runs": DISCOVERY_TRIES, "observed": len(samples), "p50_ms": p50_running * 1000,
                "p50_from_run_called_ms": p50 * 1000, "max_ms": max(started, default=0.0) * 1000,
                "samples_ms": [round(s * 1000, 1) for s in started],
                "how": "from the container running (`docker run -d` returned) to all 20 files counted in it; "
                       "p50_from_run_called_ms adds docker's own create + start"}
    finally:
        if proc is not None:
            stop_process(proc)
        for c in made:
            remove_container(c)


def scale_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:
    curve = {str(n): one_size(client, work, n, opts, progress) for n in opts.scale_files}
    return {
        "loadavg_at_section_start": list(os.getloadavg()),
        "curve": curve,
        "fan_out": fan_out(client, work, progress, 1 if opts.quick else FANOUT_ROUNDS),
        "discovery": discovery(client, work, progress),
        "single_file_p50_ms": percentile([c["single_file"]["p50_ms"] for c in curve.values()], 50),
    }
