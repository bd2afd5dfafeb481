"""The `syncd` command (README: Commands). Exit codes: 0 ok, 1 runtime failure, 2 usage/config."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncd import __version__
from syncd.config import Config, ConfigError, find_config, load_compose_config, load_config
from syncd.logs import configure

if TYPE_CHECKING:
    from syncd.daemons import RunningDaemon
    from syncd.engine import Engine
    from syncd.statelock import StateLock

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
_log_format = "console"  # set from --log-format: progress shows as a bar or as log events

console = Console(stderr=False, highlight=False, soft_wrap=True)
errconsole = Console(stderr=True, highlight=False, soft_wrap=True)


def _config_arg(p: argparse.ArgumentParser, compose: bool = False) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="config file (default ./syncd.toml, else ./config/syncd.toml)")
    if compose:
        p.add_argument("--compose", metavar="FILE", nargs="?", const="", action="append",
                       help="read the compose file's develop.watch rules instead of a syncd config (no FILE: found as "
                            "`docker compose` finds it; repeat to merge files in order)")
        p.add_argument("-f", "--file", dest="compose", metavar="FILE", action="append",
                       help="a compose file, as with `docker compose -f` (implies --compose; repeatable)")
        p.add_argument("-p", "--project-name", metavar="NAME", help="the compose project name (default: Compose's rules)")
    p.add_argument("--log-format", choices=["console", "json"], default="console")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Sync source trees into running containers, live.")
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the daemon: reconcile, then watch and sync until SIGINT/SIGTERM")
    _config_arg(p, compose=True)

    p.add_argument("--no-build", action="store_true", help="skip the build steps normally run before the first sync")
    p.add_argument("--api", metavar="ADDR", help="control API address, overriding daemon.api (e.g. 127.0.0.1:10351)")

    p = sub.add_parser("sync", help="one reconcile pass, then exit (0 = converged)")
    _config_arg(p, compose=True)
    p.add_argument("--no-build", action="store_true", help="don't run build steps first")
    p.add_argument("--service", action="append", help="only this service (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (puts and deletes per container), change nothing")

    p = sub.add_parser("trigger", help="run a named action (and its deps) on the running daemon, or directly")
    _config_arg(p)
    p.add_argument("name", help="the action, as named in [actions.NAME]")
    p.add_argument("--yes", action="store_true", help="confirm a destructive action (confirm = true)")
    p.add_argument("--standalone", action="store_true", help="run here even when a daemon is running")

    p = sub.add_parser("status", help="what the running daemon is doing: targets, containers, builds, last batches")
    _config_arg(p)
    p.add_argument("--json", action="store_true", help="the raw status as JSON (for scripts)")
    p.add_argument("--watch", action="store_true", help="follow live (refreshes every second, Ctrl-C ends)")
    p.add_argument("--last", type=int, default=10, help="how many recent batches (default 10)")

    for name, text in (("pause", "stop sending (changes queue up, nothing is lost)"), ("resume", "send what queued up and go on"),
                       ("resync", "compare every container's tree again and send the difference")):
        p = sub.add_parser(name, help=f"running daemon: {text}")
        _config_arg(p)
        if name == "resync":
            p.add_argument("--target", help="only this target's containers")

    p = sub.add_parser("smoke", help="headless CI loop: reversible edits, wait until live, latency report; exit 3 over budget")
    _config_arg(p, compose=True)
    p.add_argument("--service", action="append", help="only this service (repeatable)")
    p.add_argument("--iterations", type=int, default=3, help="edit+restore rounds per service (default 3)")
    p.add_argument("--budget", help="latency budget for edit-to-live, e.g. p95=2s or p50=500ms,max=5s")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one edit to be live (default 120)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (a testcase per service, iteration and phase)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")

    p = sub.add_parser("doctor", help="check the world: config, engines, clusters, RBAC, tools in containers, inotify")
    _config_arg(p, compose=True)

    p = sub.add_parser("validate", help="check the config only; exit 2 listing every problem")
    _config_arg(p, compose=True)

    p = sub.add_parser("trace", help="summarize a trace file: per-step p50/p95/max, slowest batches")
    _config_arg(p, compose=True)
    p.add_argument("file", nargs="?", help="trace file (default: the config's daemon.trace)")
    p.add_argument("--top", type=int, default=5, help="how many slowest batches to show")
    p.add_argument("--since", help="only records since: a duration (90s, 10m, 2h, 1d) or an ISO time")
    p.add_argument("--service", help="only records touching this service")
    p.add_argument("--chrome", metavar="OUT", help="also write Chrome trace-event JSON (Perfetto, chrome://tracing)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("demo", help="the embedded default: an example app synced into local targets, live timings")
    _config_arg(p)
    p.add_argument("--dir", default="syncd-demo", help="where to lay out the demo workspace (default ./syncd-demo)")
    p.add_argument("--edits", type=int, default=12, help="scripted edits to make (default 12)")
    p.add_argument("--forever", action="store_true", help="keep running after the scripted edits; edit files yourself")
    return parser


def _compose_files(args: argparse.Namespace) -> list[str] | None:
    """The compose files given (`--compose` alone: [], found as Compose finds them), or None."""
    files = getattr(args, "compose", None)
    return None if files is None else [f for f in files if f]


def _load(args: argparse.Namespace) -> Config:
    files = _compose_files(args)
    if files is None:
        cfg = load_config(find_config(args.config))
    else:
        if args.config:
            raise ConfigError(args.config, ["give -c FILE or --compose, not both (a syncd config can `include` "
                                            "compose files)"])
        cfg = load_compose_config(files, args.project_name)
    for warning in (cfg.compose or {}).get("warnings", []):
        errconsole.print(f"[yellow]warning[/]: {escape(warning)}")
    return cfg


def _chosen(args: argparse.Namespace) -> tuple[Config, RunningDaemon | None]:
    """The config a command about the daemon means, and its daemon (see syncd/daemons.py)."""
    from syncd.daemons import choose, find_daemon

    if _compose_files(args) is not None:
        cfg = _load(args)
        return cfg, find_daemon(cfg.state_dir)
    choice = choose(args.config)
    if choice.note:
        errconsole.print(choice.note, markup=False)
    return load_config(choice.config), choice.daemon


def main(argv: list[str] | None = None) -> int:
    global _log_format
    args = build_parser().parse_args(argv)
    _log_format = getattr(args, "log_format", "console")
    configure(_log_format, getattr(args, "log_level", "info"))
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "doctor":
            from syncd.doctor import run_doctor

            files = _compose_files(args)
            return run_doctor(args.config if files is None else lambda: _load(args), console)
        if args.command == "trace":
            return cmd_trace(args)
        if args.command in ("status", "pause", "resume", "resync", "trigger", "smoke"):
            cfg, daemon = _chosen(args)
            if args.command == "smoke":
                return cmd_smoke(cfg, daemon, args)
            if args.command == "status":
                return anyio.run(_status, cfg, daemon, args.json, args.watch, args.last)
            if args.command in ("pause", "resume", "resync"):
                return anyio.run(_control, cfg, daemon, args.command, getattr(args, "target", None))
            return anyio.run(_trigger, cfg, daemon, args.name, args.yes, args.standalone)
        if args.command == "demo":
            from syncd.demo import run_demo

            return run_demo(Path(args.dir), args.edits, args.forever)
        cfg = _load(args)
        if args.command == "run":
            if args.api:
                cfg = _with_api(cfg, args.api)
            with _writer(cfg, "run") as lock:
                return anyio.run(_run, cfg, not args.no_build) if lock else EXIT_FAIL
        if args.command == "sync":
            if args.dry_run:  # reads only: fine beside a daemon
                return anyio.run(_sync, cfg, args.service, True, False)
            with _writer(cfg, "sync") as lock:
                return anyio.run(_sync, cfg, args.service, False, not args.no_build) if lock else EXIT_FAIL
    except ConfigError as e:
        errconsole.print(f"[bold red]invalid config[/]: {len(e.problems)} problem(s)")
        for line in e.lines():
            errconsole.print(f"  {line}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE


def _with_api(cfg: Config, address: str) -> Config:
    """The config with another control API address, validated like the file's own."""
    from syncd.config import DaemonConfig

    try:
        daemon = DaemonConfig.model_validate({**cfg.daemon.model_dump(), "api": address})
    except ValueError as e:
        raise ConfigError(cfg.file, [f"--api: {err['msg']}" for err in getattr(e, "errors", lambda: [])()] or [str(e)]) from None
    return cfg.model_copy(update={"daemon": daemon})


@contextmanager
def _writer(cfg: Config, command: str) -> Iterator[StateLock | None]:
    """Hold the lock of the config's state directory while `command` writes it (syncd/statelock.py);
    None when it cannot be held (another process holds it: named to the user)."""
    from syncd.daemons import refusal
    from syncd.statelock import StateBusy, acquire

    try:
        lock = acquire(cfg.state_dir, command, cfg.file.resolve())
    except StateBusy as busy:
        errconsole.print(refusal(busy, command), markup=False)
        yield None
        return
    except OSError as e:
        errconsole.print(f"syncd {command}: cannot lock {cfg.state_dir / 'state.lock'} ({e.strerror or e}); syncd keeps "
                         f"this project's state in {cfg.state_dir}: make it writable", markup=False)
        yield None
        return
    if lock.unguarded:
        errconsole.print(f"warning: {lock.unguarded}", markup=False)
    with lock:
        yield lock


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg.compose is not None:
        from syncd.compose import derived_toml

        console.print(derived_toml(cfg.model_dump(exclude_defaults=True), cfg.compose), markup=False, end="")
    console.print(
        f"{cfg.file}: ok — {len(cfg.targets)} target(s), {len(cfg.services)} service(s), "
        f"{sum(len(s.sync) for s in cfg.services)} mapping(s)",
        markup=False,
    )
    return EXIT_OK


def _engine(cfg: Config, build: bool = True, one_shot: bool = False) -> Engine:
    from syncd.engine import Engine
    from syncd.progress import Reporter
    from syncd.settings import DEFAULT_SETTINGS, ONE_SHOT_SETTINGS
    from syncd.trace import trace_writer
    from syncd.transports import make_transports

    engine = Engine(cfg, make_transports(cfg), trace_writer(cfg), ONE_SHOT_SETTINGS if one_shot else DEFAULT_SETTINGS)
    engine.build_first = build
    engine.progress = Reporter(_log_format)
    return engine


async def _run(cfg: Config, build: bool = True) -> int:
    from syncd.actions import ActionRunner
    from syncd.api import ControlAPI
    from syncd.memory import fix_mmap_threshold
    from syncd.otel import otel_exporter

    fix_mmap_threshold()  # before the hash cache is read: a daemon's big buffers stay out of its heap
    engine = _engine(cfg, build)
    stop = anyio.Event()
    api = ControlAPI(engine, ActionRunner(cfg, engine.transports, engine.trace), token=cfg.daemon.token,
                     hosts=cfg.daemon.api_hosts)
    export = otel_exporter()  # OpenTelemetry, when OTEL_* variables ask for it (syncd[otel])
    if export is not None:
        api.listeners.append(export)

    async def on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signal)
        tg.start_soon(api.serve, cfg.daemon.api, cfg.state_dir, stop)
        await engine.run(stop)
        tg.cancel_scope.cancel()
    return EXIT_OK


async def _sync(cfg: Config, services: list[str] | None, dry_run: bool, build: bool = True) -> int:
    wanted = set(services) if services else None
    if wanted:
        unknown = wanted - {s.name for s in cfg.services}
        if unknown:
            errconsole.print(f"unknown service(s): {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(s.name for s in cfg.services)}", markup=False)
            return EXIT_USAGE
    engine = _engine(cfg, build and not dry_run, one_shot=True)
    if dry_run:
        return await _dry_run(engine, wanted)
    try:
        ok = await engine.sync_once(wanted)
    finally:
        await engine.close()
    return EXIT_OK if ok else EXIT_FAIL


async def _dry_run(engine: Engine, wanted: set[str] | None) -> int:
    from syncd.known import container_key
    from syncd.reconcile import compute_reconcile
    from syncd.transports.base import TransportError

    ok = True
    for target in engine.targets.values():
        try:
            refs = await target.transport.containers()
        except TransportError as e:
            console.print(f"[red]✗[/] target {target.name}: {e}")
            ok = False
            continue
        for ref in refs:
            known = engine.known.load(container_key(ref.target, ref.id))
            found = await compute_reconcile(target, ref, known, engine.hashes, engine.clock, wanted)
            delta, errors = found.delta, found.errors
            table = Table(title=f"plan for {ref.label} (extract at {target.root})", title_justify="left")
            table.add_column("action")
            table.add_column("container path", overflow="fold")
            table.add_column("from", overflow="fold")
            for d in delta.deletes:
                table.add_row("[red]delete[/]", d, "")
            for put in delta.puts:
                kind = {"f": "put", "d": "mkdir", "l": "link"}[put.source.entry.kind.value]
                table.add_row(f"[green]{kind}[/]", put.dest, str(Path(put.source.path).relative_to(engine.cfg.root))
                              if put.source.path.startswith(str(engine.cfg.root)) else put.source.path)
            if not delta:
                console.print(f"{ref.label}: up to date (nothing to send)")
            else:
                console.print(table)
            for path, message in errors:
                console.print(f"[red]✗[/] cannot read {path}: {message}")
                ok = False
    return EXIT_OK if ok else EXIT_FAIL


async def _trigger(cfg: Config, daemon: RunningDaemon | None, name: str, yes: bool, standalone: bool) -> int:
    """Run an action: through the daemon when one runs for this config (it holds the
    sessions and records the trace), else here. Prints each action's status and output."""
    from syncd.actions import ActionRunner, NeedsConfirmation, UnknownAction
    from syncd.api import call
    from syncd.trace import trace_writer
    from syncd.transports import make_transports

    address = None if standalone else daemon
    if address is not None:
        try:
            status, body = await call(address, "POST", f"/api/actions/{name}" + ("?yes=1" if yes else ""),
                                      token=cfg.daemon.token)
        except OSError as e:
            errconsole.print(f"daemon at {address} did not answer ({e}); running here instead", markup=False)
        else:
            if status != 200:
                errconsole.print(body.get("error", f"HTTP {status}"), markup=False)
                return EXIT_USAGE if status in (404, 409) else EXIT_FAIL
            console.print(f"(ran by the daemon at {address})", style="dim", markup=False)
            return _print_action(body, show_output=True)
    transports = make_transports(cfg)
    runner = ActionRunner(cfg, transports, trace_writer(cfg))  # appends beside a daemon's records: safe
    try:
        report = await runner.trigger(
            name, yes, on_line=lambda who, line: console.print(f"{who} | {line}", markup=False, style="dim"))
    except (UnknownAction, NeedsConfirmation) as e:
        errconsole.print(str(e), markup=False)
        return EXIT_USAGE
    finally:
        for t in transports.values():
            await t.close()
    return _print_action(report.as_dict(), show_output=False)


def cmd_smoke(cfg: Config, daemon: RunningDaemon | None, args: argparse.Namespace) -> int:
    from syncd.smoke import EXIT_BUDGET, EXIT_INTERRUPTED, Smoke, parse_budget, summarize, write_reports

    try:
        budget = parse_budget(args.budget)
    except ValueError as e:
        errconsole.print(str(e), markup=False)
        return EXIT_USAGE
    unknown = set(args.service or []) - {s.name for s in cfg.services}
    if unknown or args.iterations < 1:
        errconsole.print(f"unknown service(s): {', '.join(sorted(unknown))}" if unknown else "--iterations must be >= 1",
                         markup=False)
        return EXIT_USAGE
    smoke = Smoke(cfg, args.service, args.iterations, args.timeout, progress=lambda m: console.print(m, markup=False),
                  daemon=daemon)
    # Without a daemon smoke runs an engine of its own: it writes the state like `syncd run`.
    with _writer(cfg, "smoke") if smoke.own is not None else nullcontext(True) as writing:
        if not writing:
            return EXIT_FAIL
        try:
            samples = anyio.run(smoke.run)
        except ValueError as e:  # a service with nothing to edit
            errconsole.print(str(e), markup=False)
            return EXIT_USAGE
    summary = summarize(samples, budget)
    write_reports(summary, Path(args.junit) if args.junit else None, Path(args.json) if args.json else None)
    table = Table(title="syncd smoke: edit-to-live latency (ms)", title_justify="left")
    for col in ("service", "step", "count", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col in ("service", "step") else "right")
    for name, svc in summary["services"].items():
        rows = [("live", svc["live"]), *list(svc["spans"].items())]
        for step, st in rows:
            if st:
                table.add_row(name if step == "live" else "", step, str(st["count"]), f"{st['p50']:.0f}",
                              f"{st['p95']:.0f}", f"{st['max']:.0f}")
    console.print(table)
    for name, svc in summary["services"].items():
        for failure in svc["failures"]:
            console.print(f"[red]✗[/] {name}: {failure}")
        for breach in svc["over_budget"]:
            console.print(f"[yellow]over budget[/] {name}: {breach}")
    if smoke.interrupted:
        return EXIT_INTERRUPTED
    if not summary["passed"]:
        return EXIT_FAIL
    return EXIT_OK if summary["within_budget"] else EXIT_BUDGET


def _no_daemon(cfg: Config) -> int:
    errconsole.print(f"no syncd daemon is running for {cfg.file} (start one: syncd run -c {cfg.file})", markup=False)
    return EXIT_FAIL


async def _status(cfg: Config, address: RunningDaemon | None, as_json: bool, watch: bool, last: int) -> int:
    import json

    from rich.live import Live

    from syncd.api import call
    from syncd.status_view import render

    if address is None:
        return _no_daemon(cfg)

    async def fetch() -> dict | None:
        try:
            code, body = await call(address, "GET", f"/api/status?last={last}", timeout=10, token=cfg.daemon.token)
        except OSError as e:
            errconsole.print(f"daemon at {address} did not answer: {e}", markup=False)
            return None
        if code != 200:
            errconsole.print(f"daemon at {address}: HTTP {code}: {body.get('error', '')}", markup=False)
            return None
        return body

    body = await fetch()
    if body is None:
        return EXIT_FAIL
    if as_json:
        console.print_json(json.dumps(body, default=str))
        return EXIT_OK
    if not watch:
        console.print(render(body, address.address))
        return EXIT_OK
    with Live(render(body, address.address), console=console, refresh_per_second=4) as live:
        try:
            while body is not None:
                await anyio.sleep(1.0)
                body = await fetch()
                if body is not None:
                    live.update(render(body, address.address))
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_FAIL


async def _control(cfg: Config, address: RunningDaemon | None, what: str, target: str | None) -> int:
    from syncd.api import call

    if address is None:
        return _no_daemon(cfg)
    path = f"/api/{what}" + (f"?target={target}" if target else "")
    try:
        code, body = await call(address, "POST", path, timeout=10, token=cfg.daemon.token)
    except OSError as e:
        errconsole.print(f"daemon at {address} did not answer: {e}", markup=False)
        return EXIT_FAIL
    if code != 200:
        errconsole.print(body.get("error", f"HTTP {code}"), markup=False)
        return EXIT_USAGE if code == 404 else EXIT_FAIL
    said = {"pause": f"paused ({body.get('queued_paths', 0)} path(s) queued)", "resume": "resumed",
            "resync": f"resync requested for {body.get('containers', 0)} container(s)"}[what]
    console.print(said, markup=False)
    return EXIT_OK


def _print_action(body: dict, show_output: bool) -> int:
    for r in body["results"]:
        mark = "[green]✓[/]" if r["ok"] else "[red]✗[/]"
        exit_ = "" if r["ok"] else f" (exit {r['exit']})" if r["exit"] is not None else " (did not start)"
        console.print(f"{mark} {r['action']} [dim]{r['where']}[/] {r['ms'] / 1000:.2f}s{exit_}")
        if show_output and r["output"]:
            console.print(r["output"], markup=False, style="dim")
        if not r["ok"] and r["error"]:
            console.print("\n".join(r["error"]), markup=False, style="red")
    skipped = [a for a in body["order"] if a not in {r["action"] for r in body["results"]}]
    if skipped:
        console.print(f"not run (an earlier action failed): {', '.join(skipped)}", markup=False)
    return EXIT_OK if body["ok"] else EXIT_FAIL


def cmd_trace(args: argparse.Namespace) -> int:
    from syncd.report import cmd_trace as report

    if args.file:
        path = Path(args.file)
    else:
        cfg, _ = _chosen(args)
        path = cfg.resolve(cfg.daemon.trace)
    return report(path, console, args.since, args.service, args.top, Path(args.chrome) if args.chrome else None,
                  args.json, errconsole=errconsole)


if __name__ == "__main__":
    sys.exit(main())
