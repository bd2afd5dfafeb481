"""`python -m benchmarks --quick` runs end to end and writes sane JSON (no timing goals)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = ("syncd", "docker_cp", "put_archive")


@pytest.mark.docker
@pytest.mark.timeout(90)
def test_quick_benchmark_writes_plausible_json(docker_client, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())

    assert {"timestamp", "machine", "settings", "single_file", "burst", "targets", "pass", "syncd_trace"} <= r.keys()
    assert r["machine"]["nproc"] >= 1 and r["machine"]["docker_server"]
    assert r["syncd_exit_code_on_sigterm"] == 0

    for method in METHODS:
        single = r["single_file"][method]
        assert single["attempted"] > 0
        assert single["observed"] == single["attempted"] and single["missed"] == 0, (method, single)
        assert single["verified"], (method, "the container does not hold the last edit")
        assert 0 < single["p50_ms"] <= single["p95_ms"] <= single["max_ms"] < 10_000
        assert len(single["samples_ms"]) == single["attempted"]

        burst = r["burst"][method]
        assert burst["observed"] and burst["verified"], (method, burst)
        assert burst["files"] == r["settings"]["burst"] and 0 < burst["files_timed"] <= burst["files"]
        assert 0 < burst["seconds"] < 600 and burst["per_file_ms"] > 0

    assert r["single_file"]["syncd"]["attempted"] == r["settings"]["edits"]
    assert r["burst"]["ratios"]["docker_cp"] > 0 and r["burst"]["ratios"]["put_archive"] > 0
    assert r["syncd_trace"]["edits"]["batches"] > 0 and r["syncd_trace"]["edits"]["failed_batches"] == 0
    for target in r["targets"].values():
        assert isinstance(target["pass"], bool) and target["value"] > 0
    assert "PASS" in proc.stdout or "MISSED" in proc.stdout
