"""The compose section: one small file edited, write -> visible in the container, for syncd
reading a compose file's `develop.watch` rules (`syncd run --compose`, no syncd TOML) and for
what `docker compose watch` does per change.

`docker compose watch` waits for 500 ms of quiet (its debounce, pkg/watch/debounce.go
QuietPeriod), then sends the batch through the archive API (one `put_archive` / CopyToContainer
per batch). No Compose CLI is needed to measure that: the upload is timed here as Compose makes
it (one `put_archive` of a one-file tar, observed in the container like syncd's edits) and the
500 ms debounce is added to each sample — a lower bound for compose watch, which also walks its
rules and lists the containers before the upload. Same container, same observer, same run;
medians over the repeats.

The container is started as Compose starts it (its labels: project, service, container number,
one-off), and syncd finds it by those labels, as it does for a real Compose project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import docker

from benchmarks.baselines import put_archive_pusher, syncd_pusher
from benchmarks.common import (
    IMAGE, Options, measure_edits, percentile, read_trace, remove_container, stop_process, tail, trace_summary, wait_ready,
)

COMPOSE_DEBOUNCE_MS = 500.0  # docker/compose pkg/watch/debounce.go: QuietPeriod
DEST = "/app/src"
MAX_EDITS = 30  # the section stays well under a minute


def compose_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:  # noqa: ANN001
    project = f"syncdbench{os.getpid()}"
    work.mkdir(parents=True)
    (work / "src").mkdir()
    (work / "src" / "edit.txt").write_text("initial\n")
    (work / "base").mkdir()
    (work / "compose.yaml").write_text(textwrap.dedent(f"""
        name: {project}
        services:
          web:
            image: {IMAGE}
            develop:
              watch:
                - action: sync
                  path: ./src
                  target: {DEST}
    """))
    n = min(opts.edits, MAX_EDITS)
    load = list(os.getloadavg())
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "web",
              "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False",
              "com.docker.compose.project.config_files": str(work / "compose.yaml"),
              "com.docker.compose.project.working_dir": str(work)}
    container = client.containers.run(IMAGE, ["sh", "-c", f"mkdir -p {DEST} /app/base; exec sleep 86400"],
                                      name=f"{project}-web-1", labels=labels, detach=True)
    proc: subprocess.Popen | None = None
    try:
        exe = shutil.which("syncd")
        argv = [*([exe] if exe else [sys.executable, "-m", "syncd"]), "run", "--compose", "compose.yaml",
                "--api", "127.0.0.1:0", "--log-format", "json"]
        log_path, trace_path = work / "syncd.log", work / ".syncd" / "trace.jsonl"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")})
        t0 = time.time()
        wait_ready(proc, trace_path, log_path)
        progress(f"compose: syncd --compose ready in {time.time() - t0:.2f} s; {n} single-file edits")
        before = len(read_trace(trace_path))
        syncd = measure_edits("syncd", container, work / "src" / "edit.txt", f"{DEST}/edit.txt", syncd_pusher, n)
        records = read_trace(trace_path)[before:]
        code = stop_process(proc)
        if code != 0:
            progress(f"warning: syncd --compose exited with {code} on SIGTERM\n{tail(log_path)}")
        progress(f"compose: {n} put_archive uploads (what compose watch sends after its debounce)")
        upload = measure_edits("put_archive", container, work / "base" / "edit.txt", "/app/base/edit.txt",
                               put_archive_pusher(container), n)
    finally:
        if proc is not None:
            stop_process(proc)
        remove_container(container)
    s, u = syncd.summary(), upload.summary()
    watch = [v + COMPOSE_DEBOUNCE_MS for v in upload.samples_ms]
    watch_p50 = percentile(watch, 50)
    seen = bool(syncd.samples_ms and upload.samples_ms)
    return {
        "loadavg_at_section_start": load,
        "edits": n,
        "how": "syncd: `syncd run --compose` (develop.watch sync rule), write -> visible; compose watch: one "
               "put_archive of a one-file tar, write -> visible, + 500 ms (Compose's debounce) per sample: a lower "
               "bound (Compose also matches rules and lists containers first); same container and observer",
        "syncd": s,
        "put_archive": u,
        "compose_watch_p50_ms": watch_p50 if seen else 0.0,
        "compose_debounce_ms": COMPOSE_DEBOUNCE_MS,
        "ratio_compose_watch_vs_syncd_p50": watch_p50 / s["p50_ms"] if seen and s["p50_ms"] > 0 else 0.0,
        "ratio_upload_only_vs_syncd_p50": u["p50_ms"] / s["p50_ms"] if seen and s["p50_ms"] > 0 else 0.0,
        "syncd_trace": trace_summary(records),
        "container_clock": syncd.container_clock and upload.container_clock,
    }
