"""`syncd status`: the daemon's /api/status as rich tables (pure: a dict in, renderables out)."""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from syncd.trace import step_order


def _saved(c: dict) -> str:
    """ " (3.2 % of 27.6 MiB)" when compression or block deltas sent less than the content."""
    content = c.get("content_sent", 0)
    if not content or content <= c["bytes_sent"]:
        return ""
    return f" ({100 * c['bytes_sent'] / content:.1f} % of {_size(content)})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _ago(ts: float, now: float) -> str:
    s = max(0.0, now - ts)
    return f"{s:.0f}s ago" if s < 90 else f"{s / 60:.0f}m ago" if s < 5400 else f"{s / 3600:.1f}h ago"


def render(status: dict, address: str, now: float | None = None) -> RenderableType:
    now = time.time() if now is None else now
    state = "[yellow]paused[/]" if status["paused"] else "[green]idle[/]" if status["idle"] else "[cyan]syncing[/]"
    head = Text.from_markup(
        f"syncd at {address} — {state} — up {_ago(status['started'], now).removesuffix(' ago')}, "
        f"{status['batches']} batch(es), {status['pending_paths']} path(s) queued — {status['config']}")

    containers = Table(title="targets", title_justify="left", expand=False)
    for col in ("target", "container", "state", "channel", "sent", "queued", "error"):
        containers.add_column(col, overflow="fold")
    for name, t in status["targets"].items():
        if not t["containers"]:
            containers.add_row(name, "—", "[red]down[/]" if t["error"] else "no containers", "", "", "", t["error"])
        for cname, c in t["containers"].items():
            st = c["state"]
            style = "green" if st == "idle" else "red" if st.startswith(("error", "retrying")) else "cyan"
            containers.add_row(name, cname, f"[{style}]{st}[/]", c["channel"],
                               f"{c['files_sent']} files, {_size(c['bytes_sent'])}{_saved(c)}", str(c["queued_paths"]),
                               c["error"])
    parts: list[RenderableType] = [head, containers]

    if status.get("builds"):
        builds = Table(title="builds", title_justify="left")
        builds.add_column("service")
        builds.add_column("state", overflow="fold")
        for svc, st in status["builds"].items():
            builds.add_row(svc, f"[red]{st}[/]" if "failed" in st else st)
        parts.append(builds)

    recent = status.get("recent") or []
    if recent:
        batches = Table(title=f"last {len(recent)} batch(es)", title_justify="left")
        for col in ("batch", "when", "ok", "total ms", "steps (ms)"):
            batches.add_column(col, overflow="fold", justify="right" if col == "total ms" else "left")
        for r in reversed(recent[-10:]):
            total = r["spans"][-1]
            label = f"action {r['action']}" if r.get("action") else ("reconcile" if r.get("reconcile") else str(r["batch"]))
            steps = ", ".join(f"{s['name']} {s['ms']:.0f}" for s in _ordered(r["spans"][:-1]))
            batches.add_row(label, _ago(total["end"], now), "[green]✓[/]" if r["ok"] else "[red]✗[/]",
                            f"{total['ms']:.0f}", steps)
        parts.append(batches)
    if status.get("errors"):
        parts.append(Text("recent errors:\n" + "\n".join(f"  {e}" for e in status["errors"][-5:]), style="red"))
    return Group(*parts)


def _ordered(spans: list[dict]) -> list[dict]:
    return sorted(spans, key=lambda s: (step_order(s["name"])[:2], s["start"]))
