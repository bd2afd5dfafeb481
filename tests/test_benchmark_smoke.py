"""`python -m benchmarks --quick` runs end to end, all six sections (docker, kube, reconcile,
idle, fullstack, scale, compose; reconcile, idle and scale with tiny trees; remote, left out of --quick, has
its own run below), and writes sane JSON (no
timing goals asserted: keys and plausibility only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = ("syncd", "docker_cp", "put_archive")
KUBE_METHODS = ("syncd", "kubectl_cp")
GOALS = ("single_file_p50_ms", "single_file_p95_ms", "burst_ratio_vs_docker_cp", "kube_single_file_p50_ms",
         "kube_burst_ratio_vs_kubectl_cp", "reconcile_empty_s", "reconcile_nodiff_s", "idle_rss_mib", "idle_cpu_pct",
         "scale_startup_over_floor", "scale_restart_s", "scale_fanout_10_over_1", "scale_discovery_ms",
         "scale_idle_rss_mib", "fullstack_rust_overhead_ms", "fullstack_frontend_overhead_ms")
FULLSTACK_PARTS = {"rust": ("detect", "build", "push", "run", "restart", "ready"),
                   "frontend": ("detect", "build", "push", "ready")}
# Tiny reconcile/idle trees keep the whole run well inside the timeout (~45 s for docker, kube,
# reconcile and idle; the fullstack section's 1 + 3 edits per kind, its builds by hand and its
# set-up - PostgreSQL, two containers, cold cargo and esbuild builds - add ~20-30 s).
TINY = ["--reconcile-files", "300", "--idle-files", "500", "--idle-seconds", "2", "--idle-settle", "0.5",
        "--scale-files", "400", "--scale-idle-seconds", "1", "--scale-edits", "3"]


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
@pytest.mark.timeout(330)
def test_quick_benchmark_writes_plausible_json(docker_client, kubectl, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *TINY, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=320,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())

    assert {"timestamp", "machine", "settings", "single_file", "burst", "targets", "pass", "syncd_trace", "kube",
            "reconcile", "idle", "fullstack", "scale", "compose", "run_seconds"} <= r.keys()
    assert r["settings"]["sections"] == ["docker", "kube", "reconcile", "idle", "fullstack", "scale", "compose"]
    check_compose(r["compose"], r["settings"]["edits"])
    assert r["machine"]["nproc"] >= 1 and r["machine"]["docker_server"]

    # docker section: top level, as before the kube section existed
    check_section(r, METHODS, r["settings"])
    assert tuple(r["targets"]) == GOALS
    for name, target in r["targets"].items():
        assert isinstance(target["pass"], bool) and target["valid"], (name, target)
        # 0 % idle CPU is real; an overhead may be <= 0 (syncd no slower than the build by hand)
        assert target["value"] > 0 or name == "idle_cpu_pct" or name.startswith("fullstack_"), (name, target)
        # a quick run is smaller than the sizes (fan-out and discovery have one size)
        assert target["full_size"] is (name in ("scale_fanout_10_over_1", "scale_discovery_ms")), name
        assert target["goal"] and target["bound"]
        assert (target["missed_by"] is None) == target["pass"]
    assert r["targets"]["single_file_p50_ms"]["goal"] == "<= 20" and r["targets"]["single_file_p95_ms"]["goal"] == "<= 35"
    assert r["targets"]["burst_ratio_vs_docker_cp"]["goal"] == ">= 20"
    assert r["targets"]["kube_single_file_p50_ms"]["goal"] == "<= 45"
    assert isinstance(r["pass"], bool) and r["pass"] == all(t["pass"] for t in r["targets"].values())
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

    # reconcile: `syncd sync` into an empty container, again with nothing changed, again cold
    rec = r["reconcile"]
    assert rec["tree"]["files"] == 300 and rec["tree"]["bytes"] > 300 * 2048
    for case in ("empty", "nodiff", "nodiff_cold"):
        x = rec[case]
        assert x["exit_code"] == 0 and x["records"] == 1, (case, x)
        assert 0 < x["total_s"] < x["wall_s"] < 120 and x["scan_s"] > 0 and x["manifest_s"] > 0, (case, x)
        assert x["paths"] == 300 + rec["tree"]["dirs"] + 1, (case, x)
    assert rec["empty"]["verify"]["ok"], rec["empty"]["verify"]
    assert rec["empty"]["files_sent"] == 300 and rec["empty"]["bytes_sent"] >= rec["tree"]["bytes"]
    assert rec["nodiff"]["files_sent"] == 0
    assert rec["nodiff_cold"]["files_sent"] == 0 and rec["nodiff_cold"]["hashed_in_container"] > 0
    assert "Reconcile" in proc.stdout and "no diff, cold" in proc.stdout

    # idle: `syncd run` over a tree, two sessions (docker + fixture pod), /proc samples
    idle = r["idle"]
    assert idle["tree"]["files"] == 500 and idle["targets"] == {"docker0": "docker", "kube1": "kube"}
    assert idle["converged"] and set(idle["container_files"].values()) == {500}
    assert len(idle["startup_reconciles"]) == 2 and 0 < idle["startup_reconcile_s"] < 60
    assert all(x["files_sent"] == 500 for x in idle["startup_reconciles"])
    w = idle["idle"]
    assert 1.5 < w["window_s"] < 10 and w["samples"] >= 2
    assert 10 < w["rss_mib_min"] <= w["rss_mib_median"] <= w["rss_mib_max"] <= w["hwm_mib"] < 4096
    assert 0 <= w["cpu_pct"] < 100 and w["threads"] >= 2 and w["clk_tck"] > 0
    assert idle["batches_during_window"] == 0
    assert idle["syncd_exit_code_on_sigterm"] == 0
    assert "Idle" in proc.stdout and "VmHWM" in proc.stdout

    # scale: the tar floor beside syncd sync into 2 containers, restart, idle, edits; fan-out; discovery
    sc = r["scale"]
    c = sc["curve"]["400"]
    assert c["tree"]["files"] == 400 and c["floor_s"] > 0 and c["startup_over_floor"] > 0
    assert c["startup"]["exit_code"] == 0 and c["startup"]["complete"] and c["startup"]["container_files"] == [400, 400]
    assert c["floor_tmpfs_s"] > 0 and c["startup_tmpfs"]["complete"] and c["startup_over_floor_tmpfs"] > 0  # disk-free pair
    assert c["startup"]["peak_rss_mib"] > 10 and c["nodiff"]["exit_code"] == 0 and c["restart_converged_s"] > 0
    assert c["single_file"]["observed"] == 3 and c["single_file"]["verified"] and c["idle"]["rss_mib_median"] > 10
    fo = sc["fan_out"]
    assert set(fo["variants"]) == {"docker_tmpfs", "docker_overlay", "pods"} and fo["complete"]
    for v in fo["variants"].values():  # every replica of every count holds the burst; the floor ran
        assert set(v["rows"]) == {"1", "3", "10"} and v["floor_ten_over_one"] > 0, v
        assert all(x["complete"] and x["files_there"] == [1000] * x["replicas"] and x["floor_s"] > 0
                   for x in v["rows"].values()), v
    assert fo["ten_over_one"] == max(fo["variants"][k]["ten_over_one"] for k in fo["judged"])
    assert sc["discovery"]["observed"] == sc["discovery"]["runs"] and sc["discovery"]["p50_ms"] > 0
    assert "Scale" in proc.stdout and "fan-out" in proc.stdout

    # fullstack: the example app, Rust and frontend edits -> new HTTP answer, split by span; by-hand builds
    f = r["fullstack"]
    n = r["settings"]["fullstack_edits"]
    assert n == 3 and f["syncd_exit_code_on_sigint"] == 0 and f["failed_records"] == 0, f
    assert 0 < f["startup_s"] < 120 and f["startup_settled"] and f["app"]["binary_bytes"] > 0
    for kind, parts in FULLSTACK_PARTS.items():
        e, hand, o = f[kind]["edits"], f[kind]["by_hand"], f[kind]["overhead"]
        assert e["attempted"] == e["observed"] == e["records_found"] == n and e["missed"] == 0, (kind, e)
        assert e["records_ok"] and e["settled"], (kind, e["per_edit"])
        assert 0 < e["e2e_ms"]["p50"] <= e["e2e_ms"]["p95"] <= e["e2e_ms"]["max"] < 60_000, (kind, e["e2e_ms"])
        assert 0 < e["to_container_ms"]["p50"] < 60_000 and len(e["samples_ms"]) == n
        assert tuple(e["parts_p50_ms"]) == parts and e["parts_p50_ms"]["build"] > 0, (kind, e["parts_p50_ms"])
        for edit in e["per_edit"]:  # the parts split each edit's time exactly
            assert abs(sum(edit["parts_ms"].values()) - edit["e2e_ms"]) < 0.1, (kind, edit)
            assert sum(1 for rec in edit["records"] if rec["primary"]) == 1, (kind, edit)
        build = "build:cargo" if kind == "rust" else "build:esbuild"
        assert e["spans_p50_ms"][build] > 0 and e["spans_p50_ms"]["push"] > 0, (kind, e["spans_p50_ms"])
        if kind == "rust":
            assert e["spans_p50_ms"]["restart:backend"] > 0 and e["spans_p50_ms"]["run:check-binary"] > 0
        assert hand["ok"] and hand["runs"] == n and 0 < hand["ms"]["p50"] < 60_000, (kind, hand)
        assert o["limit_ms"] == max(0.05 * hand["ms"]["p50"], 50.0)
        assert abs(o["overhead_ms"] - (o["to_container_p50_ms"] - o["by_hand_build_p50_ms"])) < 1e-6
        t = r["targets"][f"fullstack_{kind}_overhead_ms"]
        assert t["value"] == o["overhead_ms"] and t["pass"] == (o["overhead_ms"] <= o["limit_ms"]), (t, o)
        assert t["goal"] == f"<= {o['limit_ms']:.4g}" and t["goal_how"] == o["limit_how"]
    assert "Full stack" in proc.stdout and "where the time goes" in proc.stdout


def check_compose(c: dict, edits: int) -> None:
    """The compose section: syncd --compose and the archive upload both seen every time; compose
    watch's figure is the upload plus its 500 ms debounce, so never below 500 ms."""
    assert c["edits"] == min(edits, 30)
    for method in ("syncd", "put_archive"):
        x = c[method]
        assert x["attempted"] == c["edits"] and x["observed"] == x["attempted"] and x["verified"], (method, x)
        assert 0 < x["p50_ms"] <= x["p95_ms"] <= x["max_ms"] < 10_000
    assert c["compose_debounce_ms"] == 500.0 and c["compose_watch_p50_ms"] > 500.0
    assert c["ratio_compose_watch_vs_syncd_p50"] == c["compose_watch_p50_ms"] / c["syncd"]["p50_ms"]
    assert c["syncd_trace"]["batches"] > 0 and c["syncd_trace"]["failed_batches"] == 0, c["syncd_trace"]


@pytest.mark.docker
@pytest.mark.timeout(120)
def test_compose_section_alone(docker_client, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's syncd (the section runs the `syncd` entry point)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "compose", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=110, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["settings"]["sections"] == ["compose"] and r["targets"] == {}
    check_compose(r["compose"], r["settings"]["edits"])
    assert "Compose develop.watch" in proc.stdout and "debounce" in proc.stdout


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_delta_section_alone(docker_client, tmp_path: Path) -> None:  # noqa: ANN001
    """Block deltas and compression, off vs on, through simulated links (issue #17)."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "delta", "--delta-files", "600",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=290, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    d = r["delta"]
    assert r["settings"]["sections"] == ["delta"] and r["settings"]["delta_profiles"] == ["lan", "cloud"]
    assert set(d["edits"]) == {"backend_const", "backend_const_longer", "backend_route", "synthetic_2_blocks",
                               "synthetic_insert_10k"}
    for name, by_link in d["edits"].items():
        assert set(by_link) == {"lan", "cloud"}
        for link, modes in by_link.items():
            for mode, row in modes.items():
                assert row["verified"] and row["seconds"] > 0 and row["wire_bytes"] > 0, (name, link, mode, row)
                if mode == "off":
                    assert row["methods"] == ["raw"] and row["wire_bytes"] >= row["file_bytes"], (name, link, row)
    # cloud is slower than the encoder: auto sends deltas, far fewer bytes than the file
    synth = d["edits"]["synthetic_2_blocks"]["cloud"]["on"]
    assert synth["methods"] == ["delta"] and synth["wire_share"] < 0.05, synth
    for kind in ("random", "text"):
        for run in ("off", "on", "floor", "on_tmpfs"):  # syncd off/on, C tools through the same link, on into tmpfs
            t = d["trees"][kind][run]
            assert t["container_files"] == 600 and t["over_link_time"] > 0, (kind, run, t)
        assert d["trees"][kind]["on"]["over_floor"] > 0
    text = d["trees"]["text"]
    assert text["on"]["wire_bytes"] < text["off"]["wire_bytes"] / 2 and text["floor"]["methods"] == ["gzip"]
    assert text["on_tmpfs"]["wire_bytes"] < text["off"]["wire_bytes"] / 2
    assert {"delta_text_tree_over_link", "delta_random_tree_over_link", "delta_text_tree_over_floor"} <= set(r["targets"])
    for c in d["encode"].values():
        assert c["cpu_ms_per_mb"] > 0 and c["literal_bytes"] <= c["bytes"]
    assert "Large-file edits" in proc.stdout and "encoding on the host" in proc.stdout
@pytest.mark.timeout(420)
def test_remote_section_alone(docker_client, kubectl, tmp_path: Path) -> None:  # noqa: ANN001
    """`--only remote` with small counts and two profiles: syncd and kubectl cp through the same
    link, every edit seen; a reconcile; the backend's const and route edits answered, split, and
    the link's bytes and own time beside each figure."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "remote", "--remote-profiles",
                           "lan,cloud", "--remote-edits", "3", "--remote-burst", "20", "--baseline-runs", "3",
                           "--kubectl-sample", "5", "--remote-reconcile-files", "60", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["settings"]["sections"] == ["remote"] and r["targets"] == {}
    remote = r["remote"]
    assert list(remote["profiles"]) == ["lan", "cloud"]
    for name, p in remote["profiles"].items():
        e = p["edits"]
        for method in KUBE_METHODS:
            single = e["single_file"][method]
            assert single["observed"] == single["attempted"] > 0 and single["verified"], \
                (name, method, single["misses"], single["verified"], single["observer_restarts"])
            assert e["burst"][method]["observed"] and e["burst"][method]["verified"], (name, method)
        assert e["link"]["profile"] == name
        for key, w in e["wire"].items():
            assert w["bytes_up"] > 0 and w["link_time_ms"] >= e["link"]["rtt_ms"], (name, key, w)
        rec = p["reconcile"]
        assert rec["exit_code"] == 0 and rec["wire"]["bytes_up"] > rec["tree"]["bytes"], (name, rec)
        assert "backend" in p, p.get("backend_error")
        for kind in ("const", "route"):
            b = p["backend"][kind]
            # A new binary reached the pod (its answer came back); how much of it crossed the
            # link depends on block deltas (issue 17): a const edit is a few KB of a 33 MB binary.
            assert b["e2e_s"] > 0 and b["binary_bytes"] > 1_000_000 and 0 < b["wire"]["bytes_up"], (name, kind, b)
            assert b["split_s"] is not None and abs(sum(b["split_s"].values()) - b["e2e_s"]) < 0.05, (name, kind, b)
        row = remote["summary"][name]
        assert row["ratio_vs_kubectl_cp_p50"] > 0 and row["single_file_link_time_ms"] > 0
    assert set(remote["summary"]["goals"]) == {"cloud_single_file_p50_ms", "cloud_ratio_vs_kubectl_cp"}
    assert "Remote: the kube fixture behind a simulated link" in proc.stdout
    assert "Remote: the real backend" in proc.stdout
