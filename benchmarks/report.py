"""The results as rich tables, plus the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

LABELS = {"syncd": "syncd", "docker_cp": "docker cp / file", "put_archive": "put_archive / file",
          "kubectl_cp": "kubectl cp / file"}


def render(results: dict, console: Console) -> None:
    m = results["machine"]
    console.print(
        f"[bold]syncd {results['syncd_version']} benchmark[/] — {results['timestamp']}, {m['nproc']} CPU(s) {m['cpu']}, "
        f"docker {m['docker_server']} ({m['storage_driver']}), load {m['loadavg_at_start'][0]:.2f}"
    )
    sections = results["settings"].get("sections", ["docker"])
    file_bytes = results["settings"]["file_bytes"]
    if "docker" in sections:
        render_section(results, console, "docker", "in the container", "syncd (docker)", file_bytes)
    if "kube" in sections:
        k = results["kube"]
        f = k["fixture"]
        console.print()
        console.print(f"[bold]Kubernetes[/]: pod {f['pod']} (container {f['container']}) of the API-server fixture, "
                      f"kubectl {k['kubectl']['client_version']} (a bare kubectl process: "
                      f"{k['kubectl']['process_start_ms_median']:.0f} ms)")
        render_section(k, console, "kube", f"in the pod {f['pod']}", "syncd (kubernetes)", file_bytes)
        r = k["ratios"]
        console.print(f"kubectl cp / syncd: single file {r['single_file_p50']:.1f}× at p50 "
                      f"({r['single_file_p95']:.1f}× at p95), {results['settings']['burst']}-file burst "
                      f"{r['burst']:.1f}×", markup=False)
    if "reconcile" in sections:
        render_reconcile(results["reconcile"], console)
    if "idle" in sections:
        render_idle(results["idle"], console)
    if "fullstack" in sections:
        render_fullstack(results["fullstack"], console)
    if "scale" in sections:
        render_scale(results["scale"], console)
    if "compose" in sections:
        render_compose(results["compose"], console)
    if "delta" in sections:
        render_delta(results["delta"], console)
    if "remote" in sections:
        render_remote(results["remote"], console)
    console.print()
    lags = [s["single_file"]["syncd"]["observer_stream_lag_p50_ms"]
            for s in ([results] if "docker" in sections else []) + ([results["kube"]] if "kube" in sections else [])]
    if lags:
        clock = "container clock" if results["observer"].get("container_clock") else "host arrival time (clock skew)"
        console.print(f"observer: in-container poll loop, stamped with the {clock}; its stream to the host lags "
                      f"{max(lags, default=0.0):.1f} ms p50 (not counted)", markup=False)
    load_end = results.get("loadavg_at_end")
    if "run_seconds" in results:
        console.print(f"run took {results['run_seconds']:.0f} s; load average at start "
                      f"{' '.join(f'{v:.2f}' for v in m['loadavg_at_start'])}"
                      + (f", at end {' '.join(f'{v:.2f}' for v in load_end)}" if load_end else ""), markup=False)
    render_goals(results, console)


def render_section(s: dict, console: Console, name: str, where: str, syncd_label: str, file_bytes: int) -> None:
    """One section's two tables (single file, burst) and syncd's own trace line."""
    labels = {**LABELS, "syncd": syncd_label}
    prefix = "Kubernetes — " if name == "kube" else ""
    single = Table(title=f"{prefix}Single small file: local write → visible {where}", title_justify="left")
    for col in ("method", "seen", "p50 ms", "p95 ms", "max ms", "p50 × syncd", "verified"):
        single.add_column(col, justify="left" if col == "method" else "right")
    for method, r in s["single_file"].items():
        seen = f"{r['observed']}/{r['attempted']}"
        times = "1.0" if method == "syncd" else f"{s['single_file_ratios'][method]['p50']:.2f}" if "single_file_ratios" in s else ""
        single.add_row(labels.get(method, method), seen if not r["missed"] else f"[red]{seen}[/]",
                       f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['max_ms']:.1f}", times,
                       "yes" if r["verified"] else "[red]NO[/]")
    console.print(single)

    burst = s["burst"]
    n = burst["syncd"]["files"]
    table = Table(title=f"{prefix}Burst: {n} files of {file_bytes} B → all visible {where}", title_justify="left")
    for col in ("method", "time s", "per file ms", "how", "× syncd", "verified"):
        table.add_column(col, justify="left" if col in ("method", "how") else "right")
    for method, r in burst.items():
        if method == "ratios":
            continue
        ratio = "1.0" if method == "syncd" else f"{burst['ratios'][method]:.1f}"
        ok = "yes" if r["verified"] else "[red]NO[/]"
        how = (f"[yellow]{r['files_timed']} timed, ×{r['files'] / r['files_timed']:g} extrapolated[/]"
               if r["extrapolated"] else f"all {r['files']} timed")
        table.add_row(labels.get(method, method), f"{r['seconds']:.2f}", f"{r['per_file_ms']:.2f}", how, ratio, ok)
    console.print(table)

    trace = s.get("syncd_trace", {})
    if trace:
        e, b = trace["edits"], trace["burst"]
        failed = e["failed_batches"] + b["failed_batches"]
        console.print(
            f"syncd's own trace ({name}): edit batches total p50 {e['total_ms']['p50']:.1f} ms "
            f"(steps p50: {', '.join(f'{k} {v:.1f}' for k, v in e['steps_p50_ms'].items())}); "
            f"burst in {b['batches']} batch(es), slowest {b['total_ms']['max']:.0f} ms "
            f"(steps p50: {', '.join(f'{k} {v:.0f}' for k, v in b['steps_p50_ms'].items())})"
            + (f"; {failed} FAILED batch(es)" if failed else "")
            + f"; started in {s['syncd_startup_s']:.2f} s, stopped on SIGTERM in {s.get('syncd_stop_s', 0):.2f} s"
            + ("" if s["syncd_exit_code_on_sigterm"] == 0 else f" with exit code {s['syncd_exit_code_on_sigterm']}"),
            markup=False,
        )


def render_goals(results: dict, console: Console) -> None:
    """PASS / MISSED per goal; a miss says by how much and what bounds it (from the trace)."""
    if not results["targets"]:
        console.print("goals: none (no section ran)", markup=False)
    for name, t in results["targets"].items():
        verdict = "[bold green]PASS[/]" if t["pass"] else "[bold red]MISSED[/]"
        unit = "" if t["unit"] == "x" else f" {t['unit']}"
        goal = f"{t['goal']}{unit}" + (f" = {t['goal_how']}" if t.get("goal_how") else "")
        line = f"{verdict}  {name}: {t['value']:.2f}{unit} (goal {goal})"
        if not t["pass"]:
            if not t.get("valid", True):
                line += " [red]— not all changes arrived / verified[/]"
            else:
                line += f" — missed by {abs(t['missed_by']):.2f}{unit} ({abs(t['missed_by_pct']):.0f} %)"
        if not t.get("full_size", True):
            line += " [yellow](run smaller than the issue's sizes: indicative only)[/]"
        console.print(line)
        if not t["pass"]:
            console.print(f"        bound: {t['bound']}", markup=False)


RECONCILE_ROWS = {"empty": "empty container", "nodiff": "no diff", "nodiff_cold": "no diff, cold"}


def render_reconcile(r: dict, console: Console) -> None:
    t = r["tree"]
    console.print()
    table = Table(title=f"Reconcile: `syncd sync` of {t['files']:,} files / {t['mb']:.0f} MB in {t['dirs']} dirs "
                        f"(random bytes, {t['file_size_range_bytes'][0] // 1024}–{t['file_size_range_bytes'][1] // 1024} KiB) "
                        f"→ docker container", title_justify="left")
    for col in ("case", "wall", "trace", "scan", "manifest", "hashed", "pack", "push", "gaps", "outside", "sent",
                "MB"):
        table.add_column(col, justify="left" if col == "case" else "right", no_wrap=True)
    for key, label in RECONCILE_ROWS.items():
        x = r[key]
        if key == "nodiff" and x.get("runs", 1) > 1:
            label = f"{label} (median)"
        if x["exit_code"] != 0:
            label = f"[red]{label} (exit {x['exit_code']})[/]"
        table.add_row(label, f"{x['wall_s']:.2f}", f"{x.get('total_s', 0):.2f}", f"{x.get('scan_s', 0):.2f}",
                      f"{x.get('manifest_s', 0):.2f}", f"{x.get('hashed_in_container', 0):,}", f"{x.get('pack_s', 0):.2f}",
                      f"{x.get('push_s', 0):.2f}", f"{x.get('gaps_s', 0):.2f}", f"{x.get('outside_trace_s', 0):.2f}",
                      f"{x.get('files_sent', 0):,}", f"{x.get('bytes_sent', 0) / 1e6:.0f}")
    console.print(table)
    v = r["empty"]["verify"]
    console.print(f"verified: {v['container_files']:,}/{v['expected_files']:,} files, {v['container_dirs']}/"
                  f"{v['expected_dirs']} dirs in the container, sha1 of {v['sampled']} sampled files "
                  + ("match" if not v["sample_mismatches"] else f"DIFFER: {v['sample_mismatches'][:3]}")
                  + (f"; no diff: {r['nodiff']['runs']} runs, wall {', '.join(f'{w:.2f}' for w in r['nodiff']['runs_wall_s'])} s"
                     if r["nodiff"].get("runs", 1) > 1 else "")
                  + f". Times in s; sent = files sent, MB = bytes sent; wall = process spawn to exit; trace = the reconcile's total span; gaps = trace "
                  f"time outside every span (diff, records saved); outside = wall − trace (process start, imports, "
                  f"discovery, exit; a bare `syncd validate` costs {r['syncd_validate_s']:.2f} s); pack is interleaved "
                  f"with push (own time only). no diff: `.syncd/known` kept; cold: deleted first, so files are hashed "
                  f"in the container (no goal)",
                  markup=False)


def render_idle(i: dict, console: Console) -> None:
    t, w = i["tree"], i["idle"]
    console.print()
    kinds = ", ".join(f"{name} ({kind})" for name, kind in i["targets"].items())
    table = Table(title=f"Idle: `syncd run` watching {t['files']:,} files of {t['file_bytes']} B in {t['dirs']:,} dirs, "
                        f"{len(i['targets'])} sessions ({kinds})", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    rec = "; ".join(f"{x['container']}: {x['total_s']:.1f} s (scan {x['scan_s']:.1f}, manifest {x['manifest_s']:.1f}, "
                    f"push {x['push_s']:.1f}, {x['files_sent']:,} files)" for x in i["startup_reconciles"])
    table.add_row("start-up reconcile", f"{i['startup_reconcile_s']:.1f} s", f"spawn → last reconcile record; {rec}")
    table.add_row("RSS (VmRSS, steady)", f"{w['rss_mib_median']:.1f} MiB",
                  f"median of {w['samples']} samples over {w['window_s']:.0f} s (min {w['rss_mib_min']:.1f}, "
                  f"max {w['rss_mib_max']:.1f}); anon {w['rss_anon_mib']:.1f}, file {w['rss_file_mib']:.1f}")
    table.add_row("peak (VmHWM)", f"{w['hwm_mib']:.1f} MiB", "since start: the start-up reconcile (information)")
    table.add_row("idle CPU", f"{w['cpu_pct']:.3f} %",
                  f"{w['cpu_ticks']} ticks / ({w['window_s']:.1f} s × {w['clk_tck']}); {w['threads']} threads, "
                  f"{w['ctx_switches_per_s']:.0f} context switches/s"
                  + (f"; threads started/ended in the window: {w['threads_started']}/{w['threads_ended']}"
                     if w.get("threads_started") or w.get("threads_ended") else ""))
    busy = [f"{name}: {t['cpu_ticks']} ticks, {t['ctx_switches_per_s']:.0f} switches/s"
            for name, t in list(w.get("per_thread", {}).items())[:3]]
    if busy:
        table.add_row("busiest threads", "", "; ".join(busy))
    table.add_row("batches while idle", str(i["batches_during_window"]), "trace records written during the window")
    conv = ", ".join(f"{k} {n:,}" for k, n in i["container_files"].items())
    table.add_row("containers hold", "yes" if i["converged"] else "[red]NO[/]", f"files: {conv}")
    console.print(table)


def render_scale(sc: dict, console: Console) -> None:
    console.print()
    table = Table(title="Scale: files of 100 B into 2 fresh containers; floor = tar -c | docker exec -i tar -x, both at once",
                  title_justify="left")
    for col in ("files", "floor", "syncd sync", "÷ floor", "peak RSS", "no-diff sync", "run → converged",
                "idle RSS", "idle CPU", "edit p50/p95"):
        table.add_column(col, justify="right")
    for n, c in sorted(sc["curve"].items(), key=lambda kv: int(kv[0])):
        st, idle, one = c["startup"], c["idle"], c["single_file"]
        table.add_row(f"{int(n):,}", f"{c['floor_s']:.2f} s", f"{st['wall_s']:.2f} s" + ("" if st["complete"] else " [red]incomplete[/]"),
                      f"{c['startup_over_floor']:.2f}×", f"{st['peak_rss_mib']:.0f} MiB", f"{c['nodiff']['wall_s']:.2f} s",
                      f"{c['restart_converged_s']:.2f} s", f"{idle['rss_mib_median']:.0f} MiB", f"{idle['cpu_pct']:.2f} %",
                      f"{one['p50_ms']:.1f}/{one['p95_ms']:.1f} ms")
    console.print(table)
    for n, c in sorted(sc["curve"].items(), key=lambda kv: int(kv[0])):
        if "startup_tmpfs" in c:
            console.print(f"{int(n):,} files, destination on tmpfs (no disk on either side): floor {c['floor_tmpfs_s']:.2f} s, "
                          f"syncd sync {c['startup_tmpfs']['wall_s']:.2f} s = {c['startup_over_floor_tmpfs']:.2f}× the floor",
                          markup=False)
    fo, d = sc["fan_out"], sc["discovery"]
    for v in fo["variants"].values():
        rows = ", ".join(f"{r['replicas']} → {r['seconds']:.2f} s (floor {r['floor_s']:.2f} s)" for r in v["rows"].values())
        console.print(f"fan-out, {fo['files']:,}-file burst into {v['about']}: {rows}; 10 replicas / 1 = "
                      f"{v['ten_over_one']:.2f}× (floor {v['floor_ten_over_one']:.2f}×)", markup=False)
    console.print(f"discovery, container running → its files there: p50 {d['p50_ms']:.0f} ms, max {d['max_ms']:.0f} ms "
                  f"({d['observed']}/{d['runs']} runs; from `docker run` called: p50 "
                  f"{d.get('p50_from_run_called_ms', 0):.0f} ms)", markup=False)


FULLSTACK_ROWS = {"rust": "Rust", "frontend": "frontend"}
PART_COLUMNS = ("detect", "build", "push", "run", "restart", "ready")


def render_fullstack(f: dict, console: Console) -> None:
    a = f["app"]
    console.print()
    table = Table(title="Full stack (examples/fullstack, Docker targets): edit → new answer, ms", title_justify="left")
    for col in ("edit", "seen", "e2e p50", "p95", "max", "→ pushed p50", "by hand p50", "overhead", "limit"):
        table.add_column(col, justify="left" if col == "edit" else "right", no_wrap=True)
    for kind, label in FULLSTACK_ROWS.items():
        e, h, o = f[kind]["edits"], f[kind]["by_hand"], f[kind]["overhead"]
        seen = f"{e['observed']}/{e['attempted']}"
        over = f"{o['overhead_ms']:.0f}"
        table.add_row(label, seen if not e["missed"] else f"[red]{seen}[/]", f"{e['e2e_ms']['p50']:.0f}",
                      f"{e['e2e_ms']['p95']:.0f}", f"{e['e2e_ms']['max']:.0f}", f"{o['to_container_p50_ms']:.0f}",
                      f"{h['ms']['p50']:.0f}" + ("" if h["ok"] else " [red]FAILED[/]"),
                      over if o["pass"] else f"[red]{over}[/]", f"{o['limit_ms']:.0f}")
    console.print(table)
    parts = Table(title="Full stack: where the time goes (p50 ms; consecutive parts on the host clock, "
                        "each ending where the batch's span ends)", title_justify="left")
    parts.add_column("edit")
    for col in PART_COLUMNS:
        parts.add_column(col, justify="right")
    parts.add_column("syncd's spans (p50 ms)")
    for kind, label in FULLSTACK_ROWS.items():
        e = f[kind]["edits"]
        spans = ", ".join(f"{k} {v:.0f}" for k, v in e["spans_p50_ms"].items())
        parts.add_row(label, *(f"{e['parts_p50_ms'][c]:.0f}" if c in e["parts_p50_ms"] else "–"
                                             for c in PART_COLUMNS), spans)
    console.print(parts)
    console.print(f"Rust: backend/src/version.rs → GET /version ({a['cargo'].split(' (')[0]}; static binary "
                  f"{a['binary_bytes'] / 1e6:.1f} MB pushed, check-binary, SIGHUP restart); frontend: "
                  f"frontend/src/version.js → GET /app.js (npm + esbuild, node {a['node']}; dist/ pushed)", markup=False)
    for kind in FULLSTACK_ROWS:
        e, o, h = f[kind]["edits"], f[kind]["overhead"], f[kind]["by_hand"]
        x = e["extra"]
        shapes = ", ".join(f"{sh['spans']} ×{sh['count']}" for sh in x.get("shapes", [])[:2])
        console.print(f"{kind}: syncd's build span p50 {o['syncd_build_p50_ms']:.0f} ms, by hand {h['ms']['p50']:.0f} ms "
                      f"(p95 {h['ms']['p95']:.0f}; paired, build span − the by-hand build after it: "
                      f"{o.get('build_minus_by_hand_paired_p50_ms', 0):+.0f} ms p50); syncd around its build (write → pushed − build span) "
                      f"{o['syncd_non_build_p50_ms']:.0f} ms p50; other batches during the edits: {x['records']}"
                      + (f" ({x.get('shared', 0)} waited for the edit's build and share its spans, "
                         f"{x.get('carried', 0)} pushed the edit's output before its own batch did; own work: "
                         f"{x['builds']} builds, {x['pushes']} pushes, {x['restarts']} restarts; {shapes})"
                         if x["records"] else ""), markup=False)
    console.print(f"e2e: host write → first correct HTTP answer (polled every {f['poll_interval_ms']:.0f} ms); → pushed: "
                  f"write → end of the push span; overhead = → pushed p50 − by-hand build p50 (by hand: "
                  f"{f['baseline_where']}). Served v1 {f['startup_s']:.1f} s after spawn; "
                  f"{f['trace_records']} trace records ({f['failed_records']} failed); stopped on SIGINT in "
                  f"{f['syncd_stop_s']:.2f} s"
                  + ("" if f["syncd_exit_code_on_sigint"] == 0 else f" with exit code {f['syncd_exit_code_on_sigint']}")
                  + f"; section {f['section_s']:.0f} s", markup=False)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)


def render_compose(c: dict, console: Console) -> None:
    console.print()
    table = Table(title=f"Compose develop.watch: single small file, write → visible, ms ({c['edits']} edits each, "
                        f"load {c['loadavg_at_section_start'][0]:.2f})", title_justify="left")
    for col in ("method", "seen", "p50", "p95", "max", "p50 × syncd"):
        table.add_column(col, justify="left" if col == "method" else "right")
    s, u = c["syncd"], c["put_archive"]
    table.add_row("syncd run --compose", f"{s['observed']}/{s['attempted']}", f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}",
                  f"{s['max_ms']:.1f}", "1.0")
    table.add_row("archive upload (put_archive)", f"{u['observed']}/{u['attempted']}", f"{u['p50_ms']:.1f}",
                  f"{u['p95_ms']:.1f}", f"{u['max_ms']:.1f}", f"{c['ratio_upload_only_vs_syncd_p50']:.2f}")
    table.add_row(f"compose watch (+{c['compose_debounce_ms']:.0f} ms debounce)", "", f"{c['compose_watch_p50_ms']:.1f}",
                  "", "", f"{c['ratio_compose_watch_vs_syncd_p50']:.1f}")
    console.print(table)
    console.print("compose watch = the upload it makes per batch, measured, + its 500 ms debounce, added (a lower bound: "
                  "no Compose CLI is run)", markup=False, style="dim")


def render_delta(d: dict, console: Console) -> None:
    console.print()
    table = Table(title=f"Large-file edits through simulated links: block deltas + compression off vs on (auto), "
                        f"write → new version in the container (load {d['loadavg_at_section_start'][0]:.2f})",
                  title_justify="left")
    for col in ("file", "link", "off s", "off wire", "on s", "on wire", "on wire / file", "on method", "on / off"):
        table.add_column(col, justify="left" if col in ("file", "link", "on method") else "right")
    for name, by_link in d["edits"].items():
        for link, modes in by_link.items():
            off, on = modes["off"], modes["on"]
            table.add_row(name, link, f"{off['seconds']:.2f}", f"{off['wire_bytes'] / 1e6:.2f} MB", f"{on['seconds']:.2f}",
                          f"{on['wire_bytes'] / 1e6:.3f} MB", f"{100 * on['wire_share']:.2f} %", ",".join(on["methods"]),
                          f"{on['seconds'] / off['seconds']:.2f}" if off["seconds"] else "-")
    console.print(table)
    if d["trees"]:
        trees = Table(title="Tree into an empty container through cloud, vs the link's time for the bytes sent and vs C "
                            "tools sending the same tree through the same link (the floor)", title_justify="left")
        for col in ("tree", "run", "files", "content", "wire", "s", "link time s", "× link time", "× floor", "method"):
            trees.add_column(col, justify="left" if col in ("tree", "run", "method") else "right")
        names = {"off": "syncd, off", "on": "syncd, on (auto)", "floor": "C tar (| gzip -1)",
                 "on_tmpfs": "syncd, on, dest on tmpfs"}
        for kind, rows in d["trees"].items():
            for run, t in rows.items():
                over_floor = t.get("over_floor")
                trees.add_row(kind, names.get(run, run), str(t["files"]), f"{t['bytes'] / 1e6:.1f} MB",
                              f"{t['wire_bytes'] / 1e6:.1f} MB", f"{t['seconds']:.2f}", f"{t['link_time_s']:.2f}",
                              f"{t['over_link_time']:.2f}", f"{over_floor:.2f}" if over_floor else "",
                              ",".join(t["methods"]))
        console.print(trees)
        console.print("the floor and syncd write into the container's own file system; where that disk is slower than "
                      "the compressed link, × link time measures the disk: the tmpfs row and × floor measure syncd",
                      markup=False, style="dim")
    cost = ", ".join(f"{name} {c['cpu_ms_per_mb']:.1f} ms/MB (literal {c['literal_bytes'] / 1e3:.1f} KB)"
                     for name, c in d["encode"].items())
    console.print(f"encoding on the host (CPU): {cost}", markup=False, style="dim")
def render_remote(r: dict, console: Console) -> None:
    """Per link profile: each figure beside the link's own time for the bytes it sent."""
    console.print()
    table = Table(title=f"Remote: the kube fixture behind a simulated link (load {r['loadavg_at_section_start'][0]:.2f}); "
                        "link = what the link alone needs for the bytes sent", title_justify="left")
    for col in ("profile", "1 file p50 ms", "p95", "link", "kubectl cp p50", "×", "burst s", "link", "× kubectl",
                "reconcile s", "MB", "link"):
        table.add_column(col, justify="left" if col == "profile" else "right")
    rows = {k: v for k, v in r["summary"].items() if k != "goals"}
    for name, row in rows.items():
        def f(key: str, scale: float = 1.0, fmt: str = ".1f", row: dict = row) -> str:
            v = row.get(key)
            return "" if v is None else format(v * scale, fmt)

        table.add_row(name, f("single_file_p50_ms"), f("single_file_p95_ms"), f("single_file_link_time_ms"),
                      f("kubectl_cp_p50_ms"), f("ratio_vs_kubectl_cp_p50"), f("burst_s", fmt=".2f"),
                      f("burst_link_time_ms", 1e-3, ".2f"), f("burst_ratio_vs_kubectl_cp"), f("reconcile_s", fmt=".2f"),
                      f("reconcile_mb_up"), f("reconcile_link_time_ms", 1e-3, ".2f"))
    console.print(table)
    edits = Table(title="Remote: the real backend (33 MB debug binary), edit → new HTTP answer, s", title_justify="left")
    for col in ("profile", "edit", "total", "detect", "build", "push", "run", "restart", "ready", "MB up", "link",
                "≤ 10 s"):
        edits.add_column(col, justify="left" if col in ("profile", "edit") else "right")
    for name, row in rows.items():
        for kind in ("const", "route"):
            if f"backend_{kind}_s" not in row:
                continue
            sp = row[f"backend_{kind}_split_s"] or {}
            edits.add_row(name, kind, f"{row[f'backend_{kind}_s']:.2f}",
                          *(f"{sp[k]:.2f}" if sp.get(k) is not None else "-"
                            for k in ("detect", "build", "push", "run", "restart", "ready")),
                          f"{row[f'backend_{kind}_mb_up']:.1f}", f"{row[f'backend_{kind}_link_time_ms'] / 1000:.2f}",
                          "yes" if row[f"backend_{kind}_s"] <= 10 else "NO")
    if edits.row_count:
        console.print(edits)
    for name, g in r["summary"].get("goals", {}).items():
        console.print(f"{name}: goal {g['goal']}: {'pass' if g['pass'] else 'MISSED'}", markup=False)
