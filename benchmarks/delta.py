"""The delta section: large-file edits and big-tree reconciles through simulated links, with
block deltas and compression on (`auto`, as users get them) and off (`never`), same run.

`syncd run` runs as a user starts it, its Docker API traffic through tests/linksim.py's proxy
(`DOCKER_HOST=tcp://…`) shaped as `lan`, `cloud` or `home`.
For each (old, new) pair of a large file — the example backend (a `const` edit of the same length,
one that lengthens the string, a route-adding edit) and a synthetic ELF-like binary (~29 MB: 2
changed 4-KiB blocks; 10 KB inserted in the middle) — the old version is synced (the engine's
start-up reconcile), then the new one written: the figure is write -> the end of the push that
carried it (the container then holds the new version: checked), and the bytes the link carried up
meanwhile (its counter: everything on the wire, HTTP and exec framing included).

The tree case syncs a 20k-file tree (random bytes, which do not compress, and text-like files,
which do) into an empty container through `cloud`, against the link's own time for the bytes
actually sent (`link_time`). Beside it, in the same run: the floor — C tools sending the same
tree through the same link into the same kind of destination (`tar -c | gzip -1 | docker exec -i
… 'gzip -dc | tar -x'`, gzip where syncd's `auto` chose it) — and syncd into a destination on
tmpfs. The floor is needed because writing 20,000 files into a container's overlay file system is
itself slower than a compressed `cloud` link on some machines (this 2-core VM's disk: ~14 s for
the 205 MB tree, 1.3 s into tmpfs): there `× link time` measures the disk, `× floor` and the tmpfs
row measure syncd. Encoding cost on the host is measured apart (CPU ms per MB of the new file,
time.process_time).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker

from benchmarks.common import (
    IMAGE,
    REPO_ROOT,
    Options,
    read_trace,
    remove_container,
    stop_process,
    syncd_cli,
    tail,
    wait_ready,
)
from benchmarks.example_app import backend_edits, copy_example

PROFILES = ("lan", "cloud", "home")
MODES = {"off": ("never", "never"), "on": ("auto", "auto")}  # (delta, compress)
SYNTH_BYTES = 28_900_000
DEST = "/app/src"


def load_linksim():  # noqa: ANN201 - the linksim module, importable only from tests/
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    import linksim

    return linksim


def elf_like(size: int, seed: int = 7) -> bytes:
    """A binary's texture: random code, runs of zeros, repeated instruction patterns."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind, n = rng.random(), rng.randrange(1 << 10, 64 << 10)
        out += bytes(n) if kind < 0.15 else (b"\x48\x89\xe5\x90" * (n // 4)) if kind < 0.25 else rng.randbytes(n)
    return bytes(out[:size])


def synthetic_pairs(size: int) -> dict[str, tuple[bytes, bytes]]:
    old = elf_like(size)
    two = bytearray(old)
    for at in (size // 3, 2 * size // 3):
        two[at: at + 8] = b"CHANGED!"
    mid = size // 2
    return {"synthetic_2_blocks": (old, bytes(two)),
            "synthetic_insert_10k": (old, old[:mid] + random.Random(3).randbytes(10_000) + old[mid:])}


def backend_pairs(work: Path, progress) -> dict[str, tuple[bytes, bytes]]:  # noqa: ANN001
    """The example backend built as checked out, after a `const` edit of the same length, after
    one that lengthens the string, and after a route-adding edit, each pair against the build
    before it (benchmarks/example_app.py: a copy of the example, its target/ from the shared build)."""
    progress("delta: building the example backend (old, two const edits, a route edit)")
    app = work / "app"
    copy_example(app)
    built = backend_edits(app, "bench")
    return {"backend_const": (built["before"].binary, built["const"].binary),
            "backend_const_longer": (built["const"].binary, built["const_longer"].binary),
            "backend_route": (built["const_longer"].binary, built["route"].binary)}


class Run:
    """`syncd run` as a user starts it, in its own workspace, its Docker traffic through a shaped
    link (DOCKER_HOST), with deltas and compression `off` (never) or `on` (auto)."""

    def __init__(self, work: Path, container_name: str, mode: str, link_port: int) -> None:
        delta, compress = MODES[mode]
        if work.exists():
            shutil.rmtree(work)
        (work / "src").mkdir(parents=True)
        self.work, self.cfg = work, work / "syncd.toml"
        self.trace, self.log = work / ".syncd" / "trace.jsonl", work / "syncd.log"
        self.cfg.write_text(
            f'[daemon]\ndebounce_ms = 20\ntrace = ".syncd/trace.jsonl"\n[targets.web]\nkind = "docker"\n'
            f'container = "{container_name}"\ndelta = "{delta}"\ncompress = "{compress}"\n'
            f'[[services]]\nname = "web"\ntarget = "web"\nsync = [{{ src = "src", dest = "{DEST}" }}]\n')
        self.env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{link_port}", "PYTHONPATH": str(REPO_ROOT)}
        self.proc: subprocess.Popen | None = None

    def start(self) -> dict:
        """Start the daemon; return its start-up reconcile's record once written."""
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(syncd_cli("run", self.cfg), cwd=self.work, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_ready(self.proc, self.trace, self.log)
        return next(r for r in read_trace(self.trace) if r.get("reconcile"))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def pushes(self, since: int) -> list[dict]:
        return [sp for r in read_trace(self.trace)[since:] for sp in r.get("spans", []) if sp["name"].startswith("push:")]


def _until(cond, timeout: float, what: str, run: Run, container) -> None:
    """Poll `cond`; fail at once when the daemon exits or the container stops (another run
    restarting the Docker engine must not turn into a ten-minute wait)."""
    deadline, i = time.monotonic() + timeout, 0
    while not cond():
        i += 1
        if i % 20 == 0:
            container.reload()
            if container.status != "running" or (run.proc is not None and run.proc.poll() is not None):
                raise RuntimeError(f"delta: the container ({container.status}) or syncd stopped while waiting for "
                                   f"{what}:\n{tail(run.log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"delta: timed out after {timeout:.0f}s waiting for {what}:\n{tail(run.log)}")
        time.sleep(0.05)


def _container_sha1(container, path: str) -> str:
    out = container.exec_run(["sha1sum", path]).output.decode()
    return out.split()[0] if out else ""


def measure_edit(work: Path, container, link, profile: str, mode: str, old: bytes, new: bytes) -> dict:
    container.exec_run(["rm", "-rf", DEST])
    run = Run(work, container.name, mode, link.port)
    big = run.work / "src" / "big.bin"
    big.write_bytes(old)
    old_digest, new_digest = hashlib.sha1(old).hexdigest(), hashlib.sha1(new).hexdigest()
    try:
        run.start()
        if mode == "on":  # the base is kept after the push, off its path (only where deltas pay: not on a LAN)
            base = run.work / ".syncd" / "bases" / old_digest
            deadline = time.monotonic() + 5
            while not base.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.3)
        n = len(read_trace(run.trace))
        up0 = link.bytes_up
        t0 = time.time()
        big.write_bytes(new)

        def landed() -> bool:
            spans = [sp for sp in run.pushes(n) if sp.get("detail", {}).get("files")]
            return bool(spans) and _container_sha1(container, f"{DEST}/big.bin") == new_digest

        _until(landed, 600, "the new version in the container", run, container)
        wire = link.bytes_up - up0
        pushes = [sp for sp in run.pushes(n) if sp.get("detail", {}).get("files")]
        seconds = max(float(sp["end"]) for sp in pushes) - t0
    finally:
        run.stop()
    details = [sp["detail"] for sp in pushes]
    return {"seconds": round(seconds, 3), "wire_bytes": wire, "pushes": details, "verified": True,
            "link_time_s": round(load_linksim().PROFILES[profile].link_time(wire), 3),
            "methods": sorted({d.get("method", "?") for d in details})}


def text_like(rng: random.Random, n: int) -> bytes:
    words = [b"fn", b"let", b"mut", b"self", b"match", b"return", b"impl", b"pub", b"struct", b"=>", b"{", b"}",
             b"config", b"value", b"error", b"Result", b"Option", b"String", b"u64", b"//", b"TODO"]
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choice(words) for _ in range(rng.randrange(3, 12))) + b"\n"
    return bytes(out[:n])


def make_tree(root: Path, files: int, kind: str) -> int:
    rng = random.Random(11)
    total = 0
    for i in range(files):
        d = root / f"d{i // 200:03d}"
        if i % 200 == 0:
            d.mkdir(parents=True)
        size = rng.randrange(2048, 18 * 1024)
        data = rng.randbytes(size) if kind == "random" else text_like(rng, size)
        (d / f"f{i:05d}.dat").write_bytes(data)
        total += size
    return total


def measure_tree(work: Path, container, link, mode: str, kind: str, files: int) -> dict:
    """An empty container reconciled with a tree: the daemon's start-up reconcile (its record's
    total), against the link's own time for the bytes it carried."""
    container.exec_run(["rm", "-rf", DEST])
    run = Run(work, container.name, mode, link.port)
    size = make_tree(run.work / "src", files, kind)
    up0 = link.bytes_up
    try:
        record = run.start()
        wire = link.bytes_up - up0
    finally:
        run.stop()
    seconds = float(record["spans"][-1]["ms"]) / 1000
    methods = sorted({sp.get("detail", {}).get("method", "?") for sp in record["spans"] if sp["name"].startswith("push:")})
    return _tree_row(kind, files, size, seconds, wire, container, methods)


def _tree_row(kind: str, files: int, size: int, seconds: float, wire: int, container, methods: list[str]) -> dict:  # noqa: ANN001
    count = container.exec_run(["sh", "-c", f"find {DEST} -type f | wc -l"]).output.decode().strip()
    floor = load_linksim().PROFILES["cloud"].link_time(wire)
    return {"kind": kind, "files": files, "bytes": size, "seconds": round(seconds, 3), "wire_bytes": wire,
            "link_time_s": round(floor, 3), "over_link_time": round(seconds / floor, 3) if floor else None,
            "container_files": int(count or 0), "methods": methods}


def tree_floor(src: Path, container, link, kind: str, files: int, size: int, gzip: bool) -> dict:  # noqa: ANN001
    """The same tree sent by C tools alone through the same link: `tar -c` (| `gzip -1`) into
    `docker exec -i C sh -c '(gzip -dc |) tar -x'` (the docker CLI talking to the engine
    through the link)."""
    container.exec_run(["rm", "-rf", DEST])
    unpack = ("gzip -dc | " if gzip else "") + f"tar -x -C {DEST}"
    pipeline = (f"tar -c -C {src} . {'| gzip -1 ' if gzip else ''}| "
                f"docker exec -i {container.id} sh -c 'mkdir -p {DEST} && {unpack}'")
    env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{link.port}"}
    up0, t0 = link.bytes_up, time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], env=env, check=True, timeout=1800)
    seconds, wire = time.monotonic() - t0, link.bytes_up - up0
    return _tree_row(kind, files, size, seconds, wire, container, ["gzip" if gzip else "raw"])


def encode_cost(pairs: dict[str, tuple[bytes, bytes]]) -> dict:
    from syncd.core.delta import encode

    out = {}
    for name, (old, new) in pairs.items():
        t = time.process_time()
        e = encode(old, new)
        cpu = time.process_time() - t
        out[name] = {"bytes": len(new), "block": e.block, "literal_bytes": e.literal_bytes, "copied_bytes": e.copied_bytes,
                     "ops": len(e.ops), "cpu_ms_per_mb": round(cpu * 1000 / (len(new) / 1e6), 2)}
    return out


def delta_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:  # noqa: ANN001
    linksim = load_linksim()
    work.mkdir(parents=True, exist_ok=True)
    load = list(os.getloadavg())
    pairs = {**backend_pairs(work / "build", progress), **synthetic_pairs(opts.delta_bytes)}
    cost = encode_cost(pairs)
    container = client.containers.run(IMAGE, name=f"syncd-bench-delta-{uuid.uuid4().hex[:8]}", detach=True,
                                      labels={"syncd-bench": "1"})
    tmpfs = client.containers.run(IMAGE, name=f"syncd-bench-delta-{uuid.uuid4().hex[:8]}", detach=True,
                                  labels={"syncd-bench": "1"}, tmpfs={"/app": "size=2g"})
    results: dict = {"loadavg_at_section_start": load, "encode": cost, "edits": {}, "trees": {}}
    try:
        for profile in opts.delta_profiles:
            link = linksim.Link.from_profile(profile, "/var/run/docker.sock")
            try:
                for name, (old, new) in pairs.items():
                    for mode in MODES:
                        progress(f"delta: {name} through {profile}, delta/compression {mode}")
                        row = measure_edit(work / "run", container, link, profile, mode, old, new)
                        row["file_bytes"] = len(new)
                        row["wire_share"] = round(row["wire_bytes"] / len(new), 5)
                        results["edits"].setdefault(name, {}).setdefault(profile, {})[mode] = row
                if profile == "cloud":
                    for kind in ("random", "text"):
                        results["trees"][kind] = trees(work / "run", container, tmpfs, link, kind, opts.delta_files,
                                                       progress)
            finally:
                link.close()
    finally:
        remove_container(container)
        remove_container(tmpfs)
    return results


def trees(work: Path, container, tmpfs, link, kind: str, files: int, progress) -> dict:  # noqa: ANN001
    """A tree through the link: off, on, the C floor (with on's compression) into the same
    destination, and on into a destination on tmpfs (the container's disk out of the way)."""
    rows = {}
    for mode in MODES:
        progress(f"delta: {files}-file {kind} tree through cloud, {mode}")
        rows[mode] = measure_tree(work, container, link, mode, kind, files)
    progress(f"delta: {files}-file {kind} tree through cloud, C tools (the floor)")
    rows["floor"] = tree_floor(work / "src", container, link, kind, files, rows["on"]["bytes"],
                               gzip="gzip" in rows["on"]["methods"])
    rows["on"]["over_floor"] = round(rows["on"]["seconds"] / rows["floor"]["seconds"], 3)
    progress(f"delta: {files}-file {kind} tree through cloud, on, destination on tmpfs")
    rows["on_tmpfs"] = measure_tree(work, tmpfs, link, "on", kind, files)
    return rows
