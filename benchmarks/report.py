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
                      f"{r['burst']:.1f}× — no goals set for kube yet", markup=False)
    console.print()
    lags = [s["single_file"]["syncd"]["observer_stream_lag_p50_ms"]
            for s in ([results] if "docker" in sections else []) + ([results["kube"]] if "kube" in sections else [])]
    clock = "container clock" if results["observer"].get("container_clock") else "host arrival time (clock skew)"
    console.print(f"observer: in-container poll loop, stamped with the {clock}; its stream to the host lags "
                  f"{max(lags, default=0.0):.1f} ms p50 (not counted)", markup=False)
    if not results["targets"]:
        console.print("goals: only the docker section has goals, and it was not run", markup=False)
    for name, t in results["targets"].items():
        verdict = "[bold green]PASS[/]" if t["pass"] else "[bold red]MISSED[/]"
        console.print(f"{verdict}  {name}: {t['value']:.1f} (goal {t['goal']})")


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


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
