"""The files syncd keeps under `.syncd/` stay bounded and readable: the trace file rotates at
`daemon.trace_max_mb` and is read across its rotated files; `.syncd/known/` keeps the records of
the containers written to last."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_api import Daemon

from syncd.known import KnownStore
from syncd.trace import MB, TraceWriter, read_trace, rotated, rotated_files


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the trace file --------------------------------------------------------------------------


def test_the_writer_rotates_keeps_what_it_is_told_and_the_reader_reads_oldest_first(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    writer = TraceWriter(trace, max_bytes=1000, keep=3)
    for i in range(100):
        writer.write({"batch": i, "pad": "x" * 80})
    assert [p.name for p in rotated_files(trace)] == ["trace.jsonl.3", "trace.jsonl.2", "trace.jsonl.1"]
    assert not rotated(trace, 4).exists()
    for p in [*rotated_files(trace), trace]:
        assert 0 < p.stat().st_size <= 1000, p
    got = [r["batch"] for r in read_trace(trace)]
    assert got == list(range(got[0], 100)) and got[0] > 0  # the newest, in order, none missing; the oldest dropped
    assert len(got) == sum(len(lines_of(p)) for p in [*rotated_files(trace), trace])
    # a smaller keep later: the files beyond it go at the next rotation
    smaller = TraceWriter(trace, max_bytes=1000, keep=1)
    for i in range(100, 120):
        smaller.write({"batch": i, "pad": "x" * 80})
    assert [p.name for p in rotated_files(trace)] == ["trace.jsonl.1"]
    assert [r["batch"] for r in read_trace(trace)][-1] == 119


def test_a_record_larger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    writer = TraceWriter(trace, max_bytes=100, keep=5)
    for i in range(3):
        writer.write({"batch": i, "pad": "y" * 300})
    assert [len(lines_of(p)) for p in [*rotated_files(trace), trace]] == [1, 1, 1]
    assert [r["batch"] for r in read_trace(trace)] == [0, 1, 2]


def test_writers_in_two_processes_lose_and_double_nothing_across_rotations(tmp_path: Path) -> None:
    """The daemon and `syncd trigger --standalone` may append to one trace at once."""
    trace = tmp_path / "trace.jsonl"
    code = ("import sys; from pathlib import Path; from syncd.trace import TraceWriter\n"
            "w = TraceWriter(Path(sys.argv[1]), max_bytes=2000, keep=10_000)\n"
            "for i in range(300): w.write({'writer': sys.argv[2], 'i': i})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(trace), name]) for name in ("a", "b")]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert len(rotated_files(trace)) > 5  # it did rotate, many times
    records = read_trace(trace)
    for name in ("a", "b"):
        assert [r["i"] for r in records if r["writer"] == name] == list(range(300))


def test_a_torn_last_line_is_left_out_and_a_bad_line_is_named(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"batch": 1}\n{"batch": 2')  # a record being written (or cut by a crash)
    assert read_trace(trace) == [{"batch": 1}]
    rotated(trace, 1).write_text('{"batch": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"trace\.jsonl\.1:2: not a JSON trace record"):
        read_trace(trace)
    trace.unlink()
    rotated(trace, 1).unlink()
    with pytest.raises(FileNotFoundError):
        read_trace(trace)


def test_the_daemons_trace_rotates_under_a_burst_and_syncd_trace_reads_every_recent_batch(tmp_path: Path) -> None:
    limit = 0.004  # MiB: a few records per file
    d = Daemon(tmp_path, "127.0.0.1:0", extra=f"trace_max_mb = {limit}\ntrace_keep = 2")
    trace = tmp_path / ".syncd" / "trace.jsonl"
    try:
        d.wait_box("a.txt", "a\n")
        for i in range(40):  # one batch each: every edit is awaited in the box
            (tmp_path / "src" / "a.txt").write_text(f"edit {i}\n")
            d.wait_box("a.txt", f"edit {i}\n")
        deadline = time.monotonic() + 30
        while not (status := json.loads(d.cli("status", "--json").stdout))["idle"]:
            assert time.monotonic() < deadline, "the daemon did not settle"
            time.sleep(0.05)
        last = status["recent"][-1]["batch"]  # the daemon's own memory of what it wrote last
        out = d.cli("trace", "--json", "--top", "1000")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        table = d.cli("trace")
    finally:
        assert d.stop() == 0
    files = [*rotated_files(trace), trace]
    assert [p.name for p in files] == ["trace.jsonl.2", "trace.jsonl.1", "trace.jsonl"]  # bounded: keep 2
    for p in files:
        assert p.stat().st_size <= int(limit * MB), p
    assert report["files"] == [str(p) for p in files]
    batches = sorted(r["batch"] for r in report["slowest"] if r["kind"] == "batch")
    assert report["records"] == sum(len(lines_of(p)) for p in files)
    assert batches == list(range(batches[0], last + 1)), batches  # every recent batch, up to the last one
    assert batches[0] > 1  # and the oldest ones were rotated away
    assert table.returncode == 0 and f"{trace} (+2 rotated): " in table.stdout, table.stdout


# --- .syncd/known/ ---------------------------------------------------------------------------


def test_known_records_of_the_containers_written_to_last_are_kept(tmp_path: Path) -> None:
    store = KnownStore(tmp_path, keep=3)
    old = time.time() - 1000
    for i in range(6):
        store.save(f"web/container-{i}", {"/app/a": (f"digest{i}", 1, 2)})
        os.utime(store._path(f"web/container-{i}"), (old + i, old + i))  # written in this order
    assert len(list(store.dir.iterdir())) == 3
    assert [store.load(f"web/container-{i}") != {} for i in range(6)] == [False] * 3 + [True] * 3
    assert store.load("web/container-5") == {"/app/a": ("digest5", 1, 2)}


def test_known_records_round_trip_and_an_earlier_versions_json_is_read(tmp_path: Path) -> None:
    store = KnownStore(tmp_path)
    record = {"/app/a b": ("d" * 40, 12, 1_700_000_000), "/app/ü": ("e" * 40, 0, 0)}
    store.save("web/c1", record)
    assert store.load("web/c1") == record and store._path("web/c1").suffix == ".rec"
    legacy = store._path("web/c2", ".json")
    legacy.write_text(json.dumps({"container": "web/c2", "files": {"/app/x": ["f" * 40, 3, 4]}}))
    assert store.load("web/c2") == {"/app/x": ("f" * 40, 3, 4)}
    store.save("web/c2", {"/app/x": ("0" * 40, 5, 6)})
    assert not legacy.exists() and store.load("web/c2") == {"/app/x": ("0" * 40, 5, 6)}
    for bad in (b"", b"syncd-known 2\n", b"syncd-known 2\n\xff\xfe", b"not a record",
                b"syncd-known 2\n" + marshal.dumps({"paths": "/app/x\0/app/y", "values": [(1, 2, 3), "z"]}),
                b"syncd-known 2\n" + marshal.dumps({"paths": ["/app/x"], "values": [("d", 1, 2)]})):
        store._path("web/c3").write_bytes(bad)  # torn, foreign or ill-typed: nothing proven, hash instead
        assert store.load("web/c3") == {}
