"""`syncd trace` reports (syncd/report.py): filtering, the step table, the Chrome / Perfetto
export and the command, on records of a real engine run and hand-written edge cases."""

from __future__ import annotations

import io
import json
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from syncd.report import chrome_trace, cmd_trace, parse_since, select, slowest, step_kind, step_table
from tests.engine_harness import running, wait_until, write_config

# --- records: a real run --------------------------------------------------------------------

REAL_CONFIG = """
[daemon]
debounce_ms = 20

[targets.box]
kind = "local"
path = "box"

[[services]]
name = "api"
target = "box"
sync = [{ src = "api/src", dest = "/api/src" }, { src = "api/out", dest = "/api/bin" }]
build = [{ cmd = ["sh", "-c", "mkdir -p out && cp src/main.txt out/app.bin"], cwd = "api", trigger = ["api/src/**"] }]
run = [{ name = "check", cmd = "! grep -q BAD api/src/main.txt", trigger = ["api/src/**"] }]

[[services]]
name = "web"
target = "box"
sync = [{ src = "web/src", dest = "/web" }]

[actions.hello]
cmd = "echo hello"

[actions.broken]
cmd = "echo going wrong >&2; exit 3"
"""

_real: dict[str, object] = {}


async def _real_run(root: Path) -> list[dict]:
    from syncd.actions import ActionRunner

    (root / "api" / "src").mkdir(parents=True)
    (root / "api" / "src" / "main.txt").write_text("v1\n")
    (root / "web" / "src").mkdir(parents=True)
    (root / "web" / "src" / "index.txt").write_text("w1\n")
    cfg = write_config(root, textwrap.dedent(REAL_CONFIG))

    def box(rel: str) -> str | None:
        p = root / "box" / rel
        return p.read_text() if p.exists() else None

    async with running(cfg) as engine:
        for path, text, rel in [("api/src/main.txt", "v2\n", "api/bin/app.bin"), ("web/src/index.txt", "w2\n", "web/index.txt"),
                                ("web/src/index.txt", "w3\n", "web/index.txt"), ("api/src/main.txt", "BAD\n", "api/bin/app.bin"),
                                ("api/src/main.txt", "v3\n", "api/bin/app.bin")]:
            (root / path).write_text(text)
            await wait_until(lambda rel=rel, text=text: box(rel) == text, what=f"{path} = {text!r} live")
            await wait_until(engine.idle, what="idle")
        await wait_until(lambda: any(not r["ok"] for r in engine.trace.records), what="the failed run step's record")
        runner = ActionRunner(cfg, engine.transports, engine.trace)
        await runner.trigger("hello")
        await runner.trigger("broken")
        return list(engine.trace.records)


def real_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    """Records of a real engine run (reconcile, builds, pushes, run steps, a failed run step,
    two actions) and the trace file it wrote; made once per test session."""
    if not _real:
        root = tmp_path_factory.mktemp("real-trace")
        _real["records"] = anyio.run(_real_run, root)
        _real["file"] = root / ".syncd" / "trace.jsonl"
    return _real["records"], _real["file"]  # type: ignore[return-value]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    return real_trace(tmp_path_factory)


# --- records: by hand -----------------------------------------------------------------------

T0 = 1_795_000_000.0  # 2026-11-18


def span(name: str, start: float, ms: float, ok: bool = True, detail: object = None) -> dict:
    return {"name": name, "start": start, "end": start + ms / 1000, "ms": ms, "ok": ok, "detail": detail}


def record(batch: int | None, at: float, spans: list[dict], total_ms: float | None = None, *, reconcile: bool = False,
           ok: bool = True, errors: list[str] | None = None, services: list[str] | None = None,
           action: str | None = None) -> dict:
    """A record starting at `at` whose `total` ends with its last span (or lasts total_ms)."""
    end = max([s["end"] for s in spans] + [at])
    ms = total_ms if total_ms is not None else round((end - at) * 1000, 3)
    rec = {"batch": batch, "reconcile": reconcile, "ok": ok, "errors": errors or [], "services": services or [],
           "spans": spans + [span("total", at, ms, ok, {"paths": 1})]}
    if action is not None:
        rec["action"] = action
    return rec


def hand_records() -> list[dict]:
    a = T0
    return [
        record(0, a, [span("scan", a, 5), span("manifest:backend/api-1", a + 0.005, 2),
                      span("pack", a + 0.007, 1, detail={"container": "backend/api-1", "files": 3, "streamed": True}),
                      span("push:backend/api-1", a + 0.007, 10, detail={"files": 3, "deletes": 0, "bytes": 3000})],
               reconcile=True, services=["backend"]),
        record(1, a + 10, [span("detect", a + 10, 3), span("coalesce", a + 10.003, 20), span("plan", a + 10.023, 1),
                           span("build:backend", a + 10.024, 500),
                           span("push:backend/api-1", a + 10.524, 8, detail={"files": 1, "deletes": 1, "bytes": 1024}),
                           span("push:backend/api-2", a + 10.524, 12, detail={"files": 1, "deletes": 1, "bytes": 1024}),
                           span("restart:backend", a + 10.536, 30)],
               services=["backend"]),
        # a failed build: nothing pushed, the compiler's error kept
        record(2, a + 20, [span("detect", a + 20, 4), span("coalesce", a + 20.004, 20), span("plan", a + 20.024, 1),
                           span("build:backend", a + 20.025, 300, ok=False, detail={"exit": 101, "error": "error[E0308]"})],
               ok=False, errors=["build:backend failed (exit 101): error[E0308]: mismatched types\n --> src/main.rs:3:5"],
               services=["backend"]),
        # two builds in parallel (overlapping, not nested), then the frontend's fallback
        record(3, a + 30, [span("detect", a + 30, 2), span("plan", a + 30.002, 1),
                           span("build:backend", a + 30.003, 100), span("build:frontend", a + 30.05, 100),
                           span("push:frontend/web", a + 30.15, 5, detail={"files": 2, "deletes": 0, "bytes": 2048}),
                           span("fallback:frontend", a + 30.155, 40)],
               services=["backend", "frontend"]),
        # a manual action: batch null
        record(None, a + 40, [span("action:db-reset", a + 40, 250, detail={"exit": 0, "where": "db"})], action="db-reset"),
        # a failed action, its span failed but no error line (defensive rendering)
        record(None, a + 50, [span("action:broken", a + 50, 10, ok=False, detail={"exit": 3, "where": "local", "error": "boom"})],
               ok=False, action="broken"),
    ]


# --- parse_since ------------------------------------------------------------------------------


def test_parse_since_durations() -> None:
    now = 1_800_000_000.0
    assert parse_since("90s", now) == now - 90
    assert parse_since("10m", now) == now - 600
    assert parse_since("2h", now) == now - 7200
    assert parse_since("1d", now) == now - 86400
    assert parse_since(" 1.5h ", now) == now - 5400


def test_parse_since_iso_times() -> None:
    now = 0.0  # not used by absolute times
    local = datetime(2026, 11, 26, 10, 0, 0).timestamp()  # naive = local time
    assert parse_since("2026-11-26T10:00:00", now) == local
    assert parse_since("2026-11-26 10:00", now) == local
    assert parse_since("2026-11-26T10:00:00+01:00", now) == datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-26T10:00:00Z", now) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("bad", ["", "yesterday", "10", "10x", "-5m", "2026-13-01", "5 minutes"])
def test_parse_since_rejects_with_what_is_accepted(bad: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_since(bad, 1e9)
    assert "--since" in str(e.value) and "10m" in str(e.value) and "2026-11-26T10:00:00" in str(e.value)


# --- select -----------------------------------------------------------------------------------


def test_select_by_since_uses_the_total_start() -> None:
    recs = hand_records()
    assert select(recs, None, None) == recs
    assert [r["batch"] for r in select(recs, T0 + 20, None)] == [2, 3, None, None]
    assert [r["batch"] for r in select(recs, T0 + 20.0001, None)] == [3, None, None]
    assert select(recs, T0 + 1000, None) == []


def test_select_by_service() -> None:
    recs = hand_records()
    assert [r["batch"] for r in select(recs, None, "backend")] == [0, 1, 2, 3]
    # `frontend` is listed only in batch 3's services
    assert [r["batch"] for r in select(recs, None, "frontend")] == [3]
    # span names count too: build:/run:/restart:/fallback:<service>, not a push's target
    only_spans = [{**r, "services": []} for r in recs]
    assert [r["batch"] for r in select(only_spans, None, "frontend")] == [3]  # build:frontend, fallback:frontend
    assert [r["batch"] for r in select(only_spans, None, "backend")] == [1, 2, 3]  # not 0: only push:backend/...
    assert select(recs, None, "nope") == []
    assert [r["batch"] for r in select(recs, T0 + 15, "backend")] == [2, 3]


def test_select_on_a_real_run(real: tuple[list[dict], Path]) -> None:
    records, _ = real
    web = select(records, None, "web")
    assert web and all("web" in r["services"] for r in web)
    api = select(records, None, "api")
    assert api and all("api" in r["services"] or any(s["name"] in ("build:api", "run:api") for s in r["spans"]) for r in api)
    assert any(r["services"] == ["web"] for r in web) and not any(r["services"] == ["api"] for r in web)
    assert any(r["services"] == ["api"] for r in api) and not any(r["services"] == ["web"] for r in api)
    starts = sorted(r["spans"][-1]["start"] for r in records)
    later = select(records, starts[len(starts) // 2], None)
    assert len(later) == len(starts) - len(starts) // 2


# --- the step table ---------------------------------------------------------------------------


def test_step_kind_groups_containers_of_a_target() -> None:
    assert step_kind("push:backend/api-1") == step_kind("push:backend/api-2") == "push:backend"
    assert step_kind("manifest:db/local") == "manifest:db"
    assert step_kind("build:backend") == "build:backend" and step_kind("detect") == "detect"


def test_step_table_against_a_hand_computation() -> None:
    recs = [
        record(i, T0 + i, [span("detect", T0 + i, ms), span(f"push:backend/api-{i % 2}", T0 + i + 0.05, push),
                           span("push:web/app", T0 + i + 0.05, 7)], total_ms=total)
        for i, (ms, push, total) in enumerate([(10, 5, 100), (20, 15, 200), (30, 25, 300), (40, 35, 400)])
    ]
    rows = {r.step: r for r in step_table(recs)}
    assert [r.step for r in step_table(recs)] == ["detect", "push:backend", "push:web", "total"]
    # inclusive percentiles (linear interpolation between closest ranks):
    # detect 10,20,30,40: p50 = 25, p95 = 30 + 0.85 * 10 = 38.5
    assert (rows["detect"].count, rows["detect"].p50, rows["detect"].p95, rows["detect"].max) == (4, 25.0, 38.5, 40.0)
    # push:backend/api-0 and /api-1 are one row: 5, 15, 25, 35
    assert (rows["push:backend"].count, rows["push:backend"].p50, rows["push:backend"].p95) == (4, 20.0, 33.5)
    assert (rows["push:web"].count, rows["push:web"].p50, rows["push:web"].max) == (4, 7.0, 7.0)
    assert (rows["total"].count, rows["total"].p50, rows["total"].p95, rows["total"].max) == (4, 250.0, 385.0, 400.0)
    assert rows["total"].as_dict() == {"step": "total", "count": 4, "p50": 250.0, "p95": 385.0, "max": 400.0}


def test_step_table_orders_steps_as_they_happen() -> None:
    steps = [r.step for r in step_table(hand_records())]
    assert steps == ["detect", "coalesce", "plan", "build:backend", "build:frontend", "scan", "manifest:backend",
                     "pack", "push:backend", "push:frontend", "restart:backend", "fallback:frontend",
                     "action:broken", "action:db-reset", "total"]
    assert step_table([]) == []


def test_step_table_on_a_real_run(real: tuple[list[dict], Path]) -> None:
    records, _ = real
    rows = step_table(records)
    assert rows[-1].step == "total" and rows[-1].count == len(records)
    for row in rows:
        values = [s["ms"] for r in records for s in r["spans"] if step_kind(s["name"]) == row.step]
        assert row.count == len(values) and row.max == max(values)
        assert min(values) <= row.p50 <= row.p95 <= row.max
    steps = {r.step for r in rows}
    assert {"scan", "manifest:box", "plan", "pack", "push:box", "build:api", "run:check",
            "action:hello", "action:broken"} <= steps


def test_slowest() -> None:
    recs = hand_records()
    top = slowest(recs, 3)
    assert [r["spans"][-1]["ms"] for r in top] == sorted((r["spans"][-1]["ms"] for r in recs), reverse=True)[:3]
    assert top[0]["batch"] == 1 and top[0]["spans"] == recs[1]["spans"]  # with all its spans
    assert slowest(recs, 0) == [] and len(slowest(recs, 100)) == len(recs)


# --- Chrome trace-event JSON ------------------------------------------------------------------


def check_chrome(doc: dict, records: list[dict]) -> list[dict]:
    """What Perfetto and chrome://tracing need, and that it is the records, readable: returns the X events."""
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, round-trips
    assert isinstance(doc["traceEvents"], list) and doc["displayTimeUnit"] == "ms"
    events = doc["traceEvents"]
    for e in events:
        assert e["ph"] in ("X", "M") and isinstance(e["name"], str)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
    xs = [e for e in events if e["ph"] == "X"]
    for e in xs:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert isinstance(e["ts"], int) and e["ts"] >= 0 and isinstance(e["dur"], int) and e["dur"] >= 0
        assert isinstance(e["cat"], str) and e["pid"] == 1 and isinstance(e["args"]["ok"], bool)
    assert [e["ts"] for e in xs] == sorted(e["ts"] for e in xs)  # monotonic
    assert len(xs) == sum(len(r["spans"]) for r in records)
    if not records:
        return xs
    t0 = min(s["start"] for r in records for s in r["spans"])
    assert min(e["ts"] for e in xs) == 0  # relative to the first record
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {e["tid"] for e in xs} <= set(names)
    # every span is there, at its own time
    want = sorted((s["name"], round((s["start"] - t0) * 1e6)) for r in records for s in r["spans"])
    assert sorted((e["name"], e["ts"]) for e in xs) == want
    for e in xs:
        assert abs(e["dur"] - next(s["end"] - s["start"] for r in records for s in r["spans"]
                                   if s["name"] == e["name"] and round((s["start"] - t0) * 1e6) == e["ts"]) * 1e6) <= 1
    # on each thread, events nest (what a flame-graph lane needs)
    for tid in {e["tid"] for e in xs}:
        stack: list[int] = []
        for e in (x for x in xs if x["tid"] == tid):
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            assert not stack or e["ts"] + e["dur"] <= stack[-1], (names[tid], e)
            stack.append(e["ts"] + e["dur"])
    # one `total` per record, first on its own thread, the parent of what is on that thread
    totals = [e for e in xs if e["name"] == "total"]
    assert len(totals) == len(records) and len({e["tid"] for e in totals}) == len(records)
    for t in totals:
        lane = [e for e in xs if e["tid"] == t["tid"]]
        assert lane[0] is t and all(t["ts"] <= e["ts"] and e["ts"] + e["dur"] <= t["ts"] + t["dur"] for e in lane)
        assert isinstance(t["args"]["errors"], list)
    return xs


def test_chrome_trace_of_hand_records() -> None:
    recs = hand_records()
    doc = chrome_trace(recs)
    xs = check_chrome(doc, recs)
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert {names[e["tid"]] for e in xs if e["name"] == "total"} == {
        "reconcile 0 (backend)", "batch 1 (backend)", "batch 2 (backend)", "batch 3 (backend, frontend)",
        "action db-reset", "action broken"}
    # the parallel builds overlap without nesting: the second goes to a second lane of batch 3
    b, f = (next(e for e in xs if e["name"] == n and e["ts"] >= 30_000_000) for n in ("build:backend", "build:frontend"))
    assert names[b["tid"]] == "batch 3 (backend, frontend)" and names[f["tid"]] == "batch 3 (backend, frontend) #2"
    # args: detail, ok, and the record's errors on total
    failed_total = next(e for e in xs if e["name"] == "total" and names[e["tid"]] == "batch 2 (backend)")
    assert failed_total["args"]["ok"] is False and "error[E0308]" in failed_total["args"]["errors"][0]
    failed_build = next(e for e in xs if e["name"] == "build:backend" and e["tid"] == failed_total["tid"])
    assert failed_build["args"]["ok"] is False and failed_build["args"]["detail"]["exit"] == 101
    push = next(e for e in xs if e["name"] == "push:backend/api-1")
    assert push["cat"] == "push" and push["args"]["detail"]["bytes"] == 3000
    # threads sorted by start
    sort = {e["tid"]: e["args"]["sort_index"] for e in doc["traceEvents"] if e["name"] == "thread_sort_index"}
    assert sorted(sort, key=sort.get) == sorted(sort)


def test_chrome_trace_spans_outside_total_get_their_own_lane() -> None:
    # A span that starts before `total` (or ends after it) cannot be its child on its thread.
    rec = record(9, T0, [span("plan", T0 + 0.001, 2), span("fallback:web", T0 + 0.050, 30)], total_ms=10)
    rec["spans"].insert(0, span("detect", T0 - 0.005, 6))
    doc = chrome_trace([rec])
    xs = check_chrome(doc, [rec])
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    lanes = {e["name"]: names[e["tid"]] for e in xs}
    assert lanes == {"total": "batch 9", "plan": "batch 9", "detect": "batch 9 #2", "fallback:web": "batch 9 #2"}
    assert min(e["ts"] for e in xs) == 0 and next(e for e in xs if e["name"] == "total")["ts"] == 5000


def test_chrome_trace_of_a_real_run(real: tuple[list[dict], Path]) -> None:
    records, _ = real
    check_chrome(chrome_trace(records), records)
    check_chrome(chrome_trace(records[::-1]), records)  # input order does not matter
    check_chrome(chrome_trace([]), [])


# --- the command ------------------------------------------------------------------------------


def run_cmd(path: Path, *, since: str | None = None, service: str | None = None, top: int = 5,
            chrome: Path | None = None, as_json: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = cmd_trace(path, Console(file=out, width=120, color_system=None), since, service, top, chrome, as_json,
                   errconsole=Console(file=err, width=120, color_system=None))
    return rc, out.getvalue(), err.getvalue()


def test_command_on_a_real_trace(real: tuple[list[dict], Path], tmp_path: Path) -> None:
    records, path = real
    rc, out, err = run_cmd(path, top=2)
    assert rc == 0 and err == ""
    assert f"{path}: {len(records)} records" in out
    for text in ("step", "count", "p50 ms", "p95 ms", "max ms", "push:box", "build:api", "run:check", "total",
                 "slowest 2:", "█"):
        assert text in out, text
    # the table's total row: count, p50, p95, max of the totals
    total = step_table(records)[-1]
    cells = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("│ total")).split("│")]
    assert cells[2:6] == [str(total.count), f"{total.p50:.1f}", f"{total.p95:.1f}", f"{total.max:.1f}"]
    # the slowest first, each with its spans as bars
    slow = slowest(records, 2)
    assert f"{slow[0]['spans'][-1]['ms']:.1f} ms" in out and f"{slow[1]['spans'][-1]['ms']:.1f} ms" in out
    # failures: the real failed run step and the failed action, with their errors
    assert "failed 2:" in out and "run:check failed" in out and "action broken" in out and "exit 3" in out


def test_waterfall_bars_are_offset_and_scaled() -> None:
    rec = record(5, T0, [span("detect", T0, 100), span("push:web/a", T0 + 0.1, 100)], services=["web"])
    path_out = io.StringIO()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "trace.jsonl"
        f.write_text(json.dumps(rec) + "\n")
        cmd_trace(f, Console(file=path_out, width=120, color_system=None), None, None, 1, None, False)
    lines = {line.split()[0]: line for line in path_out.getvalue().splitlines() if line.startswith("  ")}
    bar = {k: v[v.index("█"):] if "█" in v else "" for k, v in lines.items()}
    start = {k: v.index("█") for k, v in lines.items()}
    # 40 columns for the whole batch: detect the first half, the push the second
    assert bar["total"] == "█" * 40 and bar["detect"] == "█" * 20 and bar["push:web/a"] == "█" * 20
    assert start["detect"] == start["total"] and start["push:web/a"] == start["total"] + 20


def test_command_filters(real: tuple[list[dict], Path]) -> None:
    records, path = real
    rc, out, _ = run_cmd(path, service="web", as_json=True)
    data = json.loads(out)
    assert rc == 0 and data["records"] == len(select(records, None, "web")) > 0
    assert all("web" in r["services"] for r in data["slowest"])
    assert data["steps"] == [r.as_dict() for r in step_table(select(records, None, "web"))]
    # since: the future has nothing; a day back has everything
    rc, out, _ = run_cmd(path, since=(datetime.now() + timedelta(hours=1)).isoformat(timespec="seconds"))
    assert rc == 0 and "no records (since" in out
    rc, out, _ = run_cmd(path, since="1d", as_json=True)
    assert rc == 0 and json.loads(out)["records"] == len(records)


def test_command_json_summary(real: tuple[list[dict], Path], tmp_path: Path) -> None:
    records, path = real
    rc, out, err = run_cmd(path, top=3, as_json=True, chrome=tmp_path / "t.json")
    data = json.loads(out)  # stdout is only the JSON, even with --chrome
    assert rc == 0 and "wrote" in err
    assert data["records"] == len(records) and data["failed"] == 2 and data["actions"] == 2
    assert data["batches"] + data["reconciles"] + data["actions"] == len(records)
    assert [s["ms"] for s in data["slowest"]] == [r["spans"][-1]["ms"] for r in slowest(records, 3)]
    assert {f["record"] for f in data["failures"]} >= {"action broken"}
    assert data["steps"][-1]["step"] == "total" and data["steps"][-1]["count"] == len(records)


def test_command_writes_a_chrome_trace(real: tuple[list[dict], Path], tmp_path: Path) -> None:
    records, path = real
    out_file = tmp_path / "perfetto.json"
    rc, out, _ = run_cmd(path, chrome=out_file)
    assert rc == 0 and f"wrote {out_file}" in out and "ui.perfetto.dev" in out
    check_chrome(json.loads(out_file.read_text()), records)
    rc, out, _ = run_cmd(path, chrome=out_file, service="web")
    check_chrome(json.loads(out_file.read_text()), select(records, None, "web"))
    rc, _, err = run_cmd(path, chrome=tmp_path / "no" / "such" / "dir.json")
    assert rc == 1 and "dir.json" in err


def test_command_exit_codes(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.jsonl"
    rc, out, err = run_cmd(missing)
    assert rc == 1 and out == "" and str(missing) in err and "syncd run" in err
    rc, _, err = run_cmd(tmp_path)  # a directory
    assert rc == 1 and str(tmp_path) in err and "syncd run" in err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"batch": 1}\nnot json\n')
    rc, _, err = run_cmd(garbage)
    assert rc == 1 and f"{garbage}:2" in err
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00junk\n")
    rc, _, err = run_cmd(binary)
    assert rc == 1 and str(binary) in err
    # a bad --since is a usage error, before the file is even read
    rc, _, err = run_cmd(missing, since="last tuesday")
    assert rc == 2 and "--since" in err
    # an empty trace, and lines that are JSON but not records
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc, out, _ = run_cmd(empty)
    assert rc == 0 and "no records" in out
    odd = tmp_path / "odd.jsonl"
    odd.write_text('5\n{"batch": 1}\n' + json.dumps(hand_records()[1]) + "\n")
    rc, out, _ = run_cmd(odd)
    assert rc == 0 and "skipped 2 line(s)" in out and "1 batch" in out


def test_command_shows_failed_batches_errors(tmp_path: Path) -> None:
    f = tmp_path / "trace.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in hand_records()))
    rc, out, _ = run_cmd(f, top=1)
    assert rc == 0
    assert "6 records" in out and "4 batches" not in out and "3 batches, 1 reconcile, 2 actions, 2 failed" in out
    assert "slowest 1:" in out and out.split("slowest 1:")[1].splitlines()[1].startswith("batch 1 (backend)  566.0 ms  ok")
    failures = out.split("failed 2:")[1]
    assert "batch 2 (backend)" in failures and "error[E0308]: mismatched types" in failures
    assert "    --> src/main.rs:3:5" in failures  # later lines of an error indented
    assert "action:broken failed: boom" in failures  # a failed span without an error line
    rc, out, _ = run_cmd(f, since=datetime.fromtimestamp(T0 + 35).isoformat(), top=0)
    assert rc == 0 and "2 records" in out and "slowest" not in out


def test_now_is_the_default_for_durations(real: tuple[list[dict], Path]) -> None:
    _, path = real
    assert time.time() - max(json.loads(line)["spans"][-1]["start"] for line in path.read_text().splitlines()) < 300
    rc, out, _ = run_cmd(path, since="10m", as_json=True)
    assert rc == 0 and json.loads(out)["records"] > 0
