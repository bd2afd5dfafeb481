"""Reports over trace records (docs/ARCHITECTURE.md, "The trace"): `syncd trace` and the Chrome / Perfetto export.

Everything but `cmd_trace` is a pure function over a list of records as `read_trace` returns
them: `{"batch", "reconcile", "ok", "errors", "services", "spans": [...], "action"?}` with the
`total` span last.

Steps are grouped per *kind* (`step_kind`): a span's name up to the first '/', so
`push:backend/app-1` and `push:backend/app-2` are one row, `push:backend` (one row per target),
while `build:api` and `run:migrate` keep their step's name and `detect`, `plan`, `pack`... are
rows of their own. `total` is always the last row.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from syncd.trace import percentile, read_trace, rotated_files, step_kind, step_order

SERVICE_STEPS = ("build", "run", "restart", "fallback")  # span names `<step>:<service>`
PLAIN: dict[str, Any] = {"markup": False, "highlight": False, "soft_wrap": True}  # console.print: text as is

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# --- records ---------------------------------------------------------------------------


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration back from `now` (`90s`, `10m`, `2h`, `1d`) or an ISO time
    (`2026-11-26T10:00:00`, `2026-11-26 10:00`, `...+01:00`, `...Z`; without a zone it is
    local time). Returns a Unix time; raises ValueError saying what is accepted."""
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected a duration (90s, 10m, 2h, 1d) "
            "or an ISO time (2026-11-26T10:00:00, optionally with a zone such as +01:00 or Z)"
        ) from None
    return when.timestamp()  # naive: local time


def total_span(record: dict) -> dict | None:
    """The record's `total` span (the last one), None for a record without one."""
    spans = record.get("spans") or []
    if spans and spans[-1].get("name") == "total":
        return spans[-1]
    return next((s for s in spans if s.get("name") == "total"), None)


def record_start(record: dict) -> float | None:
    total = total_span(record)
    return float(total["start"]) if total else None


def record_ms(record: dict) -> float:
    total = total_span(record)
    return float(total["ms"]) if total else 0.0


def record_label(record: dict) -> str:
    """`batch 12`, `reconcile 0`, `action db-reset`: how reports name a record."""
    if record.get("action") is not None:
        return f"action {record['action']}"
    if record.get("reconcile"):
        return f"reconcile {record.get('batch')}"
    return f"batch {record.get('batch')}"


def record_kind(record: dict) -> str:
    """`action`, `reconcile` or `batch`."""
    if record.get("action") is not None:
        return "action"
    return "reconcile" if record.get("reconcile") else "batch"


def is_record(record: Any) -> bool:
    """A well-formed trace record: a dict whose spans have a name, start, end and ms."""
    if not isinstance(record, dict) or not isinstance(record.get("spans"), list):
        return False
    for s in record["spans"]:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            return False
        if not all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool) for k in ("start", "end", "ms")):
            return False
    return total_span(record) is not None


def touches(record: dict, service: str) -> bool:
    """The record is about `service`: it lists it, or has a build/run/restart/fallback span for it."""
    if service in (record.get("services") or []):
        return True
    names = {f"{step}:{service}" for step in SERVICE_STEPS}
    return any(s.get("name") in names for s in record.get("spans") or [])


def select(records: list[dict], since: float | None = None, service: str | None = None) -> list[dict]:
    """The records whose `total` started at or after `since` and that touch `service`."""
    out = []
    for rec in records:
        if since is not None:
            start = record_start(rec)
            if start is None or start < since:
                continue
        if service is not None and not touches(rec, service):
            continue
        out.append(rec)
    return out


# --- the step table ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    step: str
    count: int
    p50: float  # milliseconds
    p95: float
    max: float

    def as_dict(self) -> dict:
        return asdict(self)


def step_table(records: list[dict]) -> list[StepRow]:
    """One row per step kind (see `step_kind`): count, p50, p95, max in ms; in the order steps
    happen in a batch, `total` last."""
    by_kind: dict[str, list[float]] = {}
    for rec in records:
        for span in rec.get("spans") or []:
            by_kind.setdefault(step_kind(span["name"]), []).append(float(span["ms"]))
    return [
        StepRow(kind, len(v), percentile(v, 50), percentile(v, 95), max(v))
        for kind, v in sorted(by_kind.items(), key=lambda kv: step_order(kv[0]))
    ]


def transfers(records: list[dict]) -> list[dict]:
    """Per method a push used (raw, gzip, delta): pushes, bytes before (the content) and after
    (on the wire), their ratio, and for deltas the bytes copied from the container's copy vs
    sent as literals (push spans' details, syncd/push.py)."""
    rows: dict[str, dict] = {}
    for rec in records:
        for span in rec.get("spans") or []:
            detail = span.get("detail")
            if not span["name"].startswith("push:") or not isinstance(detail, dict) or "method" not in detail:
                continue
            row = rows.setdefault(detail["method"], {"method": detail["method"], "pushes": 0, "before": 0, "after": 0,
                                                     "copied": 0, "literal": 0})
            row["pushes"] += 1
            row["before"] += int(detail.get("before", 0))
            row["after"] += int(detail.get("after", 0))
            row["copied"] += int((detail.get("delta") or {}).get("copied", 0))
            row["literal"] += int((detail.get("delta") or {}).get("literal", 0))
    for row in rows.values():
        row["ratio"] = round(row["after"] / row["before"], 4) if row["before"] else None
    return sorted(rows.values(), key=lambda r: ("raw", "gzip", "delta").index(r["method"])
                  if r["method"] in ("raw", "gzip", "delta") else 9)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def slowest(records: list[dict], n: int) -> list[dict]:
    """The `n` records with the longest `total`, slowest first (each with all its spans)."""
    if n <= 0:
        return []
    return sorted(records, key=record_ms, reverse=True)[:n]


# --- Chrome trace-event JSON (Perfetto, chrome://tracing) --------------------------------


def _thread_name(record: dict) -> str:
    services = ", ".join(record.get("services") or [])
    return record_label(record) + (f" ({services})" if services else "")


def chrome_trace(records: list[dict]) -> dict:
    """The records as Chrome trace-event JSON (the JSON Object Format): load it in
    https://ui.perfetto.dev or chrome://tracing.

    One thread per record, named `batch 12 (backend)` / `reconcile 0 (db)` / `action NAME` and
    sorted by start, carrying one complete (`X`) event per span with `total` as the parent
    of the others. Spans that overlap without nesting (parallel builds or pushes) would not
    render on one thread, so they go to extra lanes of the same record (`batch 12 ... #2`).
    Times are integer microseconds from the earliest span of all the records; `args` holds
    the span's `ok` and `detail`, and on `total` the record's `errors` and what it was.
    """
    recs = sorted((r for r in records if is_record(r)), key=lambda r: record_start(r) or 0.0)
    events: list[dict] = [{"name": "process_name", "ph": "M", "cat": "__metadata", "ts": 0, "pid": 1, "tid": 0,
                           "args": {"name": "syncd"}}]
    spans_out: list[dict] = []
    if not recs:
        return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"source": "syncd", "records": 0}}
    t0 = min(float(s["start"]) for r in recs for s in r["spans"])

    def us(t: float) -> int:
        return round((float(t) - t0) * 1e6)

    next_tid = 1
    for rec in recs:
        total = total_span(rec)
        assert total is not None  # is_record() admits only records with one
        others = [s for s in rec["spans"] if s is not total]
        # (ts, end, span) in µs; place total first, then the rest by start, longer first
        timed = [(us(total["start"]), max(us(total["start"]), us(total["end"])), total)]
        timed += sorted(((us(s["start"]), max(us(s["start"]), us(s["end"])), s) for s in others),
                        key=lambda t: (t[0], -t[1]))
        lanes: list[list[tuple[int, int]]] = []  # per lane: the stack of open (start, end)
        placed: list[tuple[int, int, int, dict]] = []
        for ts, end, span in timed:
            for lane, stack in enumerate(lanes):
                while stack and stack[-1][1] <= ts and len(stack) > (lane == 0):  # total stays lane 0's root
                    stack.pop()
                if not stack or (stack[-1][0] <= ts and end <= stack[-1][1]):  # nests in what is open here
                    stack.append((ts, end))
                    break
            else:
                lane = len(lanes)
                lanes.append([(ts, end)])
            placed.append((lane, ts, end, span))
        name = _thread_name(rec)
        tids = list(range(next_tid, next_tid + len(lanes)))
        next_tid += len(lanes)
        for lane, tid in enumerate(tids):
            events.append({"name": "thread_name", "ph": "M", "cat": "__metadata", "ts": 0, "pid": 1, "tid": tid,
                           "args": {"name": name if lane == 0 else f"{name} #{lane + 1}"}})
            events.append({"name": "thread_sort_index", "ph": "M", "cat": "__metadata", "ts": 0, "pid": 1, "tid": tid,
                           "args": {"sort_index": tid}})
        for lane, ts, end, span in placed:
            args: dict[str, Any] = {"ok": bool(span.get("ok", True)), "ms": span.get("ms")}
            if span.get("detail") is not None:
                args["detail"] = span["detail"]
            if span is total:
                args.update({"record": record_label(rec), "kind": record_kind(rec), "ok": bool(rec.get("ok", True)),
                             "errors": list(rec.get("errors") or []), "services": list(rec.get("services") or [])})
            event = {"name": span["name"], "cat": span["name"].split(":", 1)[0], "ph": "X", "ts": ts, "dur": end - ts,
                     "pid": 1, "tid": tids[lane], "args": args}
            if not args["ok"]:
                event["cname"] = "terrible"  # red in chrome://tracing
            spans_out.append(event)
    spans_out.sort(key=lambda e: (e["ts"], -e["dur"]))
    return {"traceEvents": events + spans_out, "displayTimeUnit": "ms",
            "otherData": {"source": "syncd", "records": len(recs), "epoch": t0}}


# --- the command --------------------------------------------------------------------------


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t is not None else "?"


def _records(n: int) -> str:
    return f"{n} record{'s' if n != 1 else ''}"


def waterfall(record: dict, width: int = 40) -> list[tuple[str, float, str, bool]]:
    """(name, ms, bar, ok) per span: a bar of `█` offset by the span's start and scaled to
    the record's total (its `total` span, widened to any span outside it)."""
    spans = record.get("spans") or []
    total = total_span(record)
    lo = min([float(s["start"]) for s in spans] + ([float(total["start"])] if total else []))
    hi = max([float(s["end"]) for s in spans] + ([float(total["end"])] if total else []))
    scale = width / (hi - lo) if hi > lo else 0.0
    rows = []
    for s in spans:
        # the cells the span touches (floor of its start, ceil of its end, float noise aside)
        a = math.floor((float(s["start"]) - lo) * scale + 1e-3)
        b = math.ceil((float(s["end"]) - lo) * scale - 1e-3)
        a, b = min(a, width - 1), min(max(b, a + 1), width)
        rows.append((s["name"], float(s["ms"]), " " * a + "█" * (b - a), bool(s.get("ok", True))))
    return rows


def summary(records: list[dict], top: int) -> dict:
    """What `syncd trace --json` prints."""
    def brief(rec: dict) -> dict:
        return {"record": record_label(rec), "kind": record_kind(rec), "batch": rec.get("batch"),
                "action": rec.get("action"), "ok": rec.get("ok", True), "start": record_start(rec),
                "ms": record_ms(rec), "services": rec.get("services") or [], "errors": rec.get("errors") or [],
                "spans": rec.get("spans") or []}

    kinds = [record_kind(r) for r in records]
    return {
        "records": len(records),
        "batches": kinds.count("batch"),
        "reconciles": kinds.count("reconcile"),
        "actions": kinds.count("action"),
        "failed": sum(1 for r in records if not r.get("ok", True)),
        "steps": [row.as_dict() for row in step_table(records)],
        "transfers": transfers(records),
        "slowest": [brief(r) for r in slowest(records, top)],
        "failures": [brief(r) for r in records if not r.get("ok", True)],
    }


def cmd_trace(path: Path, console: Console, since: str | None, service: str | None, top: int,
              chrome: Path | None, as_json: bool, *, errconsole: Console | None = None,
              now: float | None = None) -> int:
    """`syncd trace [FILE] --since --service --top --chrome OUT --json`: the per-step table,
    the slowest records as text waterfalls, the errors of failed ones.
    Exit 0; 1 when the file is missing or unreadable (or OUT cannot be written); 2 for a bad --since.
    Problems go to `errconsole` (default: `console`)."""
    import time

    err = errconsole or console
    path = Path(path)
    try:
        since_t = parse_since(since, time.time() if now is None else now) if since else None
    except ValueError as e:
        err.print(str(e), **PLAIN)
        return 2
    try:
        raw = read_trace(path)
    except FileNotFoundError:
        err.print(f"{path}: no trace file yet; run `syncd run` (or `syncd demo`) first to record one",
                  **PLAIN)
        return 1
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        err.print(f"{path}: cannot read the trace file ({reason}); run `syncd run` first to record one",
                  **PLAIN)
        return 1
    except ValueError as e:  # a line that is not JSON
        err.print(f"{e}; is this a trace file? `syncd run` writes one", **PLAIN)
        return 1
    records = [r for r in raw if is_record(r)]
    skipped = len(raw) - len(records)
    chosen = select(records, since_t, service)
    older = rotated_files(path)  # read too, oldest first (daemon.trace_keep)
    named = f"{path} (+{len(older)} rotated)" if older else str(path)

    if chrome is not None:
        doc = chrome_trace(chosen)
        try:
            Path(chrome).write_text(json.dumps(doc), encoding="utf-8")
        except OSError as e:
            err.print(f"{chrome}: cannot write the Chrome trace ({e.strerror or e})", **PLAIN)
            return 1
        n = sum(1 for e in doc["traceEvents"] if e["ph"] == "X")
        (err if as_json else console).print(
            f"wrote {chrome}: {n} spans of {_records(len(chosen))}; open it in https://ui.perfetto.dev or chrome://tracing",
            **PLAIN)

    if as_json:
        out = {"file": str(path), "files": [str(p) for p in [*older, path] if p.exists()], "since": since_t,
               "service": service, "skipped": skipped, **summary(chosen, top)}
        console.print(json.dumps(out, default=str), **PLAIN)
        return 0

    filters = []
    if since_t is not None:
        filters.append(f"since {_when(since_t)}")
    if service is not None:
        filters.append(f"service {service}")
    where = f" ({', '.join(filters)})" if filters else ""
    if skipped:
        console.print(f"{named}: skipped {skipped} line(s) that are not trace records", **PLAIN)
    if not chosen:
        console.print(f"{named}: no records{where} out of {len(records)}", **PLAIN)
        return 0
    s = summary(chosen, 0)
    counts = ", ".join(f"{s[k]} {k if s[k] != 1 else one}" for k, one in
                       (("batches", "batch"), ("reconciles", "reconcile"), ("actions", "action")) if s[k])
    starts = [t for t in (record_start(r) for r in chosen) if t is not None]
    failed_note = f", {s['failed']} failed" if s["failed"] else ""
    title = f"{named}: {_records(len(chosen))}{where}: {counts}{failed_note}; {_when(min(starts))} .. {_when(max(starts))}"
    console.print(title, **PLAIN)
    table = Table()
    table.add_column("step")
    for col in ("count", "p50 ms", "p95 ms", "max ms"):
        table.add_column(col, justify="right")
    for row in step_table(chosen):
        table.add_row(row.step, str(row.count), f"{row.p50:.1f}", f"{row.p95:.1f}", f"{row.max:.1f}")
    console.print(table)
    moved = transfers(chosen)
    if moved:
        sent = Table(title="how pushes travelled (bytes on the wire / bytes of content)")
        for col in ("method", "pushes", "content", "on the wire", "ratio", "delta copied / literal"):
            sent.add_column(col, justify="left" if col == "method" else "right")
        for way in moved:
            split = f"{_size(way['copied'])} / {_size(way['literal'])}" if way["method"] == "delta" else ""
            ratio = f"{100 * way['ratio']:.2f} %" if way["ratio"] is not None else "-"
            sent.add_row(way["method"], str(way["pushes"]), _size(way["before"]), _size(way["after"]), ratio, split)
        console.print(sent)

    slow = slowest(chosen, top)
    if slow:
        console.print(f"\nslowest {len(slow)}:", **PLAIN)
    for rec in slow:
        ok = rec.get("ok", True)
        console.print(Text(f"{_thread_name(rec)}  {record_ms(rec):.1f} ms  {'ok' if ok else 'FAILED'}  "
                           f"{_when(record_start(rec))}", style="bold" if ok else "bold red"))
        rows = waterfall(rec)
        name_w = max(len(r[0]) for r in rows)
        ms_w = max(len(f"{r[1]:.1f}") for r in rows)
        for name, ms, bar, span_ok in rows:
            line = Text(f"  {name:<{name_w}} {ms:>{ms_w}.1f} ")
            line.append(bar.rstrip(), style="green" if span_ok else "red")
            console.print(line, soft_wrap=True)

    failed = [r for r in chosen if not r.get("ok", True)]
    if failed:
        shown = failed[-20:]
        console.print(f"\nfailed {len(failed)}:" + (f" (the last {len(shown)})" if len(shown) < len(failed) else ""),
                      markup=False, highlight=False, style="red")
        for rec in shown:
            console.print(f"{_thread_name(rec)} at {_when(record_start(rec))}:", **PLAIN)
            errors: list[str] = [str(e) for e in rec.get("errors") or []]
            if not errors:  # a failed span that added no error line
                errors = [f"{sp['name']} failed" + (f": {sp['detail']['error']}" if isinstance(sp.get("detail"), dict)
                                                    and sp["detail"].get("error") else "")
                          for sp in rec["spans"] if not sp.get("ok", True) and sp["name"] != "total"]
            for message in errors or ["(no error recorded)"]:
                first, *more = str(message).splitlines() or [""]
                console.print("  " + first, **PLAIN)
                for rest in more:
                    console.print("    " + rest, **PLAIN)
    return 0
