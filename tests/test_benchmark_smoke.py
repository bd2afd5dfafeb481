"""`python -m benchmarks --quick` runs end to end, docker and kube sections, and writes sane
JSON (no timing goals asserted: keys and plausibility only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = ("syncd", "docker_cp", "put_archive")
KUBE_METHODS = ("syncd", "kubectl_cp")


def check_section(s: dict, methods: tuple[str, ...], settings: dict) -> None:
    """single_file / burst / ratios / syncd_trace of one section are complete and plausible."""
    assert s["syncd_exit_code_on_sigterm"] == 0
    assert 0 < s["syncd_startup_s"] < 60 and 0 <= s["syncd_stop_s"] < 15
    for method in methods:
        single = s["single_file"][method]
        assert single["attempted"] > 0
        assert single["observed"] == single["attempted"] and single["missed"] == 0, (method, single)
        assert single["verified"], (method, "the container does not hold the last edit")
        assert 0 < single["p50_ms"] <= single["p95_ms"] <= single["max_ms"] < 10_000
        assert len(single["samples_ms"]) == single["attempted"]

        burst = s["burst"][method]
        assert burst["observed"] and burst["verified"], (method, burst)
        assert burst["files"] == settings["burst"] and 0 < burst["files_timed"] <= burst["files"]
        assert 0 < burst["seconds"] < 600 and burst["per_file_ms"] > 0
        assert burst["extrapolated"] == (burst["files_timed"] < burst["files"])

    assert s["single_file"]["syncd"]["attempted"] == settings["edits"]
    for method in methods[1:]:
        assert s["single_file"][method]["attempted"] == settings["baseline_runs"]
        assert s["burst"]["ratios"][method] > 0
        assert s["single_file_ratios"][method]["p50"] > 0 and s["single_file_ratios"][method]["p95"] > 0
    trace = s["syncd_trace"]
    assert trace["edits"]["batches"] > 0 and trace["edits"]["failed_batches"] == 0, trace["edits"]
    assert trace["burst"]["batches"] > 0 and trace["burst"]["failed_batches"] == 0, trace["burst"]
    assert trace["edits"]["steps_p50_ms"]["push"] > 0


@pytest.mark.docker
@pytest.mark.timeout(90)
def test_quick_benchmark_writes_plausible_json(docker_client, kubectl, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=85,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())

    assert {"timestamp", "machine", "settings", "single_file", "burst", "targets", "pass", "syncd_trace", "kube"} <= r.keys()
    assert r["settings"]["sections"] == ["docker", "kube"]
    assert r["machine"]["nproc"] >= 1 and r["machine"]["docker_server"]

    # docker section: top level, as before the kube section existed
    check_section(r, METHODS, r["settings"])
    for target in r["targets"].values():
        assert isinstance(target["pass"], bool) and target["value"] > 0
    assert isinstance(r["pass"], bool)
    assert "PASS" in proc.stdout or "MISSED" in proc.stdout

    # kube section: fixture pod, kubectl cp baseline, headline ratios; no goals
    k = r["kube"]
    check_section(k, KUBE_METHODS, r["settings"])
    assert k["fixture"]["pod"] == "dev/web-0" and k["kubectl"]["client_version"]
    assert k["burst"]["kubectl_cp"]["files_timed"] == min(r["settings"]["kubectl_sample"], r["settings"]["burst"])
    assert k["ratios"]["single_file_p50"] > 0 and k["ratios"]["burst"] > 0
    assert k["ratios"]["burst"] == k["burst"]["ratios"]["kubectl_cp"]
    assert "Kubernetes" in proc.stdout and "kubectl cp / file" in proc.stdout
    assert "extrapolated" in proc.stdout  # the quick run samples kubectl cp: the table must say so
