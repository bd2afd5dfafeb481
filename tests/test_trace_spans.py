"""The spans of a real batch add up: every step present, in order, the sequential ones
inside `total` without overlapping, and `detect` starting at the file's own change time."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.engine_harness import running, wait_until, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

# The steps a built, pushed, run batch goes through one after the other (pack streams
# inside push, so it is not one of them).
SEQUENTIAL = ["detect", "coalesce", "plan", "build:compile", "scan", "push", "run:check"]


async def test_spans_of_a_real_batch_add_up(tmp_path: Path, make_container) -> None:  # noqa: ANN001
    c = make_container()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.txt").write_text("v1\n")
    write_config(tmp_path, textwrap.dedent(f"""
        [daemon]
        debounce_ms = 20

        [targets.c]
        kind = "docker"
        container = "{c.name}"

        [[services]]
        name = "app"
        target = "c"
        sync = [{{ src = "src", dest = "/app/src" }}, {{ src = "out", dest = "/app/bin" }}]
        build = [{{ name = "compile", cmd = "mkdir -p out && sleep 0.05 && cp src/main.txt out/app", trigger = ["src/**"] }}]
        run = [{{ name = "check", cmd = "test -s /app/bin/app", trigger = ["out/**"] }}]
    """))
    from syncd.config import load_config

    async with running(load_config(tmp_path / "syncd.toml")) as engine:
        target = tmp_path / "src" / "main.txt"
        target.write_text("v2\n")
        changed_at = os.stat(target).st_ctime
        await wait_until(lambda: c.exec_run(["cat", "/app/bin/app"]).output == b"v2\n", what="the build output")
        await wait_until(engine.idle, what="idle")
        record = next(r for r in reversed(engine.trace.records) if any(s["name"] == "run:check" for s in r["spans"]))

    assert record["ok"] and record["services"] == ["app"], record
    spans = record["spans"]
    total = spans[-1]
    assert total["name"] == "total"
    by_kind = {}
    for s in spans[:-1]:
        kind = "push" if s["name"].startswith("push:") else s["name"]
        by_kind.setdefault(kind, s)
    missing = [k for k in SEQUENTIAL + ["pack"] if k not in by_kind]
    assert not missing, f"spans missing: {missing} in {[s['name'] for s in spans]}"
    seq = [by_kind[k] for k in SEQUENTIAL]
    # in order, one after the other, all inside total
    for a, b in zip(seq, seq[1:]):
        assert a["end"] <= b["start"] + 1e-6, (a["name"], a["end"], b["name"], b["start"])
    assert total["start"] <= seq[0]["start"] + 1e-6 and seq[-1]["end"] <= total["end"] + 1e-6
    assert total["ms"] >= sum(s["ms"] for s in seq) - 0.01
    # every span's ms is its own end - start; pack lies within push (streamed)
    for s in spans:
        assert abs(s["ms"] - (s["end"] - s["start"]) * 1000) < 0.01 and s["ms"] >= 0
    push = by_kind["push"]
    assert push["start"] - 1e-6 <= by_kind["pack"]["start"] and by_kind["pack"]["end"] <= push["end"] + 1e-6
    # detect starts when the file changed (its inode change time), and total with it
    assert abs(by_kind["detect"]["start"] - changed_at) < 0.002
    assert abs(total["start"] - changed_at) < 0.002
    assert by_kind["build:compile"]["ms"] >= 50
