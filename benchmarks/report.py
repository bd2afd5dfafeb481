"""The results as rich tables, plus the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

LABELS = {"syncd": "syncd (docker)", "docker_cp": "docker cp / file", "put_archive": "put_archive / file"}


def render(results: dict, console: Console) -> None:
    m = results["machine"]
    console.print(
        f"[bold]syncd {results['syncd_version']} benchmark[/] — {results['timestamp']}, {m['nproc']} CPU(s) {m['cpu']}, "
        f"docker {m['docker_server']} ({m['storage_driver']}), load {m['loadavg_at_start'][0]:.2f}"
    )
    single = Table(title="Single small file: local write → visible in the container", title_justify="left")
    for col in ("method", "seen", "p50 ms", "p95 ms", "max ms", "verified"):
        single.add_column(col, justify="left" if col == "method" else "right")
    for method, r in results["single_file"].items():
        seen = f"{r['observed']}/{r['attempted']}"
        single.add_row(LABELS.get(method, method), seen if not r["missed"] else f"[red]{seen}[/]",
                       f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['max_ms']:.1f}",
                       "yes" if r["verified"] else "[red]NO[/]")
    console.print(single)

    burst = results["burst"]
    n = burst["syncd"]["files"]
    table = Table(title=f"Burst: {n} files of {results['settings']['file_bytes']} B → all visible in the container",
                  title_justify="left")
    for col in ("method", "time s", "per file ms", "how", "× syncd", "verified"):
        table.add_column(col, justify="left" if col in ("method", "how") else "right")
    for method in ("syncd", "docker_cp", "put_archive"):
        r = burst[method]
        ratio = "1.0" if method == "syncd" else f"{burst['ratios'][method]:.1f}"
        ok = "yes" if r["verified"] else "[red]NO[/]"
        how = (f"[yellow]{r['files_timed']} timed, ×{r['files'] / r['files_timed']:g} extrapolated[/]"
               if r["extrapolated"] else f"all {r['files']} timed")
        table.add_row(LABELS[method], f"{r['seconds']:.2f}", f"{r['per_file_ms']:.2f}", how, ratio, ok)
    console.print(table)

    trace = results.get("syncd_trace", {})
    if trace:
        e, b = trace["edits"], trace["burst"]
        console.print(
            f"syncd's own trace: edit batches total p50 {e['total_ms']['p50']:.1f} ms "
            f"(steps p50: {', '.join(f'{k} {v:.1f}' for k, v in e['steps_p50_ms'].items())}); "
            f"burst in {b['batches']} batch(es), slowest {b['total_ms']['max']:.0f} ms "
            f"(steps p50: {', '.join(f'{k} {v:.0f}' for k, v in b['steps_p50_ms'].items())})",
            markup=False,
        )
    lag = results["single_file"]["syncd"]["observer_stream_lag_p50_ms"]
    clock = "container clock" if results["observer"].get("container_clock") else "host arrival time (clock skew)"
    console.print(f"observer: in-container poll loop, stamped with the {clock}; its stream to the host lags "
                  f"{lag:.1f} ms p50 (not counted)", markup=False)
    for name, t in results["targets"].items():
        verdict = "[bold green]PASS[/]" if t["pass"] else "[bold red]MISSED[/]"
        console.print(f"{verdict}  {name}: {t['value']:.1f} (goal {t['goal']})")


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
