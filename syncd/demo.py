"""`syncd demo`: the embedded default. An example app (Rust backend, JS frontend, SQL
migrations) is laid out in a workspace and synced into three local targets while scripted
edits run, with every batch's timings shown live. Needs no cluster and no Docker."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import anyio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from syncd.config import load_config
from syncd.daemons import refusal
from syncd.engine import Engine
from syncd.known import container_key
from syncd.reconcile import compute_reconcile
from syncd.statelock import LOCK_FILE, StateBusy, acquire
from syncd.trace import percentile, span_step, trace_writer
from syncd.transports import make_transports

MARKER = ".syncd-demo"
CONFIG = """\
# Written by `syncd demo`. Local targets stand in for containers: each is a directory
# that plays the container's filesystem root (container path /app/src -> .syncd/containers/backend/app/src).
[daemon]
debounce_ms = 20
max_batch_wait_ms = 2000
trace = ".syncd/trace.jsonl"

[targets.backend]
kind = "local"
path = ".syncd/containers/backend"

[targets.frontend]
kind = "local"
path = ".syncd/containers/frontend"

[targets.db]
kind = "local"
path = ".syncd/containers/db"

[[services]]
name = "backend"
target = "backend"
ignore = ["*.swp"]
sync = [{ src = "app/backend/src", dest = "/app/src" }]

[[services]]
name = "frontend"
target = "frontend"
sync = [{ src = "app/frontend/src", dest = "/usr/share/app/src" }]

[[services]]
name = "migrations"
target = "db"
sync = [{ src = "app/migrations", dest = "/migrations" }]
"""

console = Console(highlight=False)
if not console.is_terminal:
    console = Console(highlight=False, width=max(console.width, 110))  # logs and CI: no squeezing


def refuse_foreign(workdir: Path) -> None:
    """Never overwrite a directory the demo did not create."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise SystemExit(f"{workdir} exists and is not a syncd demo workspace; pass --dir with an empty or new directory")


def lay_out(workdir: Path, keep: Path | None = None) -> Path:
    """Create (or re-create) the demo workspace (`refuse_foreign` first), leaving `keep` (the
    held state lock) in place."""
    _clear(workdir, keep)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("created by `syncd demo`; safe to delete\n")
    tree = resources.files("syncd") / "demo_tree"
    with resources.as_file(tree) as src:
        shutil.copytree(src, workdir / "app")
    (workdir / "app" / ".gitignore").write_text("*.log\n")
    (workdir / "syncd.toml").write_text(CONFIG)
    return workdir / "syncd.toml"


def scripted_edits(app: Path) -> list[tuple[str, Callable[[], object]]]:
    """Edits a developer makes, each a separate batch: code, new files, renames, deletes."""
    b, f, m = app / "backend/src", app / "frontend/src", app / "migrations"

    def bump(n: int) -> Callable[[], object]:
        return lambda: (b / "version.rs").write_text(f'pub const VERSION: &str = "{n}";\n')

    def make_executable() -> None:
        (b / "run.sh").write_text("#!/bin/sh\nexec ./api\n")
        (b / "run.sh").chmod(0o755)

    def burst() -> None:
        (f / "gen").mkdir(exist_ok=True)
        for i in range(200):
            (f / "gen" / f"icon{i}.js").write_text(f"export default {i};\n")

    edits: list[tuple[str, Callable[[], object]]] = [
        ("bump the backend version", bump(2)),
        ("add a frontend component",
         lambda: (f / "components/footer.js").write_text("export const footer = () => '<footer/>';\n")),
        ("add a migration", lambda: (m / "0002_posts.sql").write_text("CREATE TABLE posts (id INTEGER PRIMARY KEY);\n")),
        ("write a log file (ignored by .gitignore)", lambda: (b / "debug.log").write_text("not synced\n")),
        ("rename a component", lambda: (f / "components/footer.js").rename(f / "components/page-footer.js")),
        ("make a script executable", make_executable),
        ("add a symlink", lambda: (f / "latest.js").symlink_to("index.js")),
        ("save the same bytes again (costs a hash, not a transfer)",
         lambda: (f / "index.js").write_bytes((f / "index.js").read_bytes())),
        ("delete a migration", lambda: (m / "0002_posts.sql").unlink()),
        ("a burst: 200 generated files", burst),
        ("remove the generated directory", lambda: shutil.rmtree(f / "gen")),
    ]
    n = 3
    while len(edits) < 10_000:
        edits.append((f"bump the backend version to {n}", bump(n)))
        n += 1
    return edits


def _table(records: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    t.add_column("what", no_wrap=True, overflow="ellipsis", max_width=30)
    for col in ("files", "del", "detect", "coalesce", "plan", "pack", "push", "total ms"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in records[-14:]:
        spans: dict[str, float] = {}
        for s in r["spans"]:
            spans[span_step(s["name"])] = max(spans.get(span_step(s["name"]), 0.0), s["ms"])
        detail = r["spans"][-1]["detail"] or {}
        t.add_row(
            r.get("what", ""),
            str(detail.get("files", 0)),
            str(detail.get("deletes", 0)),
            *(f"{spans[k]:.1f}" if k in spans else "–" for k in ("detect", "coalesce", "plan", "pack", "push")),
            f"[{'green' if r['ok'] else 'red'}]{spans['total']:.1f}[/]",
        )
    return t


async def _demo(config: Path, edits: int, forever: bool) -> int:
    cfg = load_config(config)
    engine = Engine(cfg, make_transports(cfg), trace_writer(cfg))
    records: list[dict] = []
    current = {"what": "initial reconcile"}

    def on_record(rec: dict) -> None:
        rec["what"] = current["what"]
        records.append(rec)

    engine.on_record.append(on_record)
    stop = anyio.Event()
    app = config.parent / "app"
    script = scripted_edits(app)[:edits]
    converged = False
    first = _table(records, "syncd demo: starting")
    with (Live(first, console=console, refresh_per_second=8) if console.is_terminal else _Final(first)) as live:
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run, stop)
            await engine.started.wait()
            await _until(engine.idle)
            for i, (what, edit) in enumerate(script, 1):
                current["what"] = what
                edit()
                before = len(records)

                def recorded(n: int = before) -> bool:  # its batch is done (or it was ignored)
                    return engine.idle() and (len(records) > n or engine.coalescer.deadline() is None)

                await _until(recorded, 10)
                live.update(_table(records, f"syncd demo: edit {i}/{len(script)}: {what}"))
                await anyio.sleep(0.3)  # pacing, so a person can follow along
            converged = await _converged(engine)
            live.update(_table(records, "syncd demo: scripted edits done"))
            if forever:
                console.print(f"watching {app} — edit files there; Ctrl-C to stop")
                current["what"] = "your edit"
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async def refresh() -> None:
                        while True:
                            live.update(_table(records, "syncd demo: watching (Ctrl-C to stop)"))
                            await anyio.sleep(0.25)
                    tg.start_soon(refresh)
                    async for _ in signals:
                        break
            stop.set()
            tg.cancel_scope.cancel()
    _summary(records, cfg.resolve(cfg.daemon.trace), converged)
    return 0 if converged else 1


class _Final:
    """Live's stand-in when the output is not a terminal (a pipe, a CI log): redrawing makes no
    sense there, so only the last table is printed, once, on its own lines."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def update(self, table: Table) -> None:
        self.table = table

    def __enter__(self) -> _Final:
        return self

    def __exit__(self, *exc: object) -> None:
        console.print(self.table)


async def _until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await anyio.sleep(0.01)


async def _converged(engine: Engine) -> bool:
    """A dry reconcile of every target: nothing left to send means the trees are equal."""
    for target in engine.targets.values():
        for ref in await target.transport.containers():
            known = engine.known.load(container_key(ref.target, ref.id))
            delta = (await compute_reconcile(target, ref, known, engine.hashes, engine.clock)).delta
            if delta:
                console.print(f"[red]✗ {ref.label}: {len(delta.puts)} puts, {len(delta.deletes)} deletes pending[/]")
                return False
    return True


def _summary(records: list[dict], trace: Path, converged: bool) -> None:
    steps: dict[str, list[float]] = {}
    for r in records:
        if r["reconcile"]:
            continue
        for s in r["spans"]:
            steps.setdefault(span_step(s["name"]), []).append(s["ms"])
    t = Table(title="per step over the demo's batches (ms)", title_justify="left")
    for col in ("step", "count", "p50", "p95", "max"):
        t.add_column(col, justify="left" if col == "step" else "right")
    for name, values in steps.items():
        t.add_row(name, str(len(values)), f"{percentile(values, 50):.1f}", f"{percentile(values, 95):.1f}", f"{max(values):.1f}")
    console.print(t)
    mark = "[green]✓ every target matches the local tree[/]" if converged else "[red]✗ targets differ[/]"
    config = os.path.relpath(trace.parent.parent / "syncd.toml")
    console.print(f"{mark}; trace: {os.path.relpath(trace)} (try `syncd trace -c {config}`)")


def _clear(directory: Path, keep: Path | None) -> None:
    """Remove everything below `directory` but `keep` (a lock file must stay the same file)."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if keep is not None and child == keep:
            continue
        if child.is_dir() and not child.is_symlink():
            if keep is not None and keep.is_relative_to(child):
                _clear(child, keep)
            else:
                shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def run_demo(workdir: Path, edits: int, forever: bool) -> int:
    refuse_foreign(workdir)
    try:  # the demo writes its workspace's state like `syncd run`: one at a time
        lock = acquire((workdir / ".syncd").resolve(), "demo", (workdir / "syncd.toml").resolve())
    except StateBusy as busy:
        Console(stderr=True, highlight=False, soft_wrap=True).print(refusal(busy, "demo"), markup=False)
        return 1
    with lock:
        config = lay_out(workdir, keep=workdir / ".syncd" / LOCK_FILE)  # as iterdir() names it
        console.print(f"demo workspace: {workdir}/ (sources in app/, targets in .syncd/containers/)")
        return anyio.run(_demo, config, edits, forever)
