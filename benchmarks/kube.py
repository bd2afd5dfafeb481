"""The kube section: syncd's `kind = "kubernetes"` target against one pod of the API-server
fixture (tests/kubefixture: pods are Docker containers, the real `kubectl` works against it),
vs. the baseline a user would script: `kubectl cp` per changed file.

The observer runs through `docker exec` into the pod's backing container, outside syncd and
the API server, exactly as in the docker section. Goals (harness.GOALS): single-file p50
<= 45 ms, burst >= 20x faster than `kubectl cp` per file.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker

from benchmarks.baselines import kubectl_cp_pusher, kubectl_env
from benchmarks.common import IMAGE, SYNC_DEST, Options, measure_burst, measure_edits, measure_syncd, section_results

REPO = Path(__file__).resolve().parents[1]
NAMESPACE, POD, CONTAINER, SELECTOR = "dev", "web-0", "app", "app=web"
KUBECTL_DEST = "/app/bench-kubectl"


def kube_target() -> str:
    return f'kind = "kubernetes"\nnamespace = "{NAMESPACE}"\nselector = "{SELECTOR}"\ncontainer = "{CONTAINER}"'


def load_fixture():  # noqa: ANN201 - kubefixture.KubeFixture, importable only from tests/
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    try:
        from kubefixture import KubeFixture
    except Exception as e:  # noqa: BLE001 - name the failing step
        raise RuntimeError(f"kube fixture: cannot import kubefixture from {tests}: {type(e).__name__}: {e}") from e
    return KubeFixture


def kubectl_info(env: dict[str, str]) -> dict:
    """kubectl's client version, and what a bare kubectl process costs here (`version --client`)."""
    try:
        out = subprocess.run(["kubectl", "version", "--client", "-o", "json"], env=env, capture_output=True,
                             text=True, timeout=30)
        version = json.loads(out.stdout).get("clientVersion", {}).get("gitVersion", "") if out.returncode == 0 else ""
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"kubectl is needed for the kube baseline: {e}") from e
    starts = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(["kubectl", "version", "--client"], env=env, capture_output=True, timeout=30)
        starts.append((time.perf_counter() - t0) * 1000)
    return {"client_version": version, "process_start_ms_median": statistics.median(starts)}


def kube_section(opts: Options, client: docker.DockerClient, work: Path, progress) -> dict:  # noqa: ANN001
    KubeFixture = load_fixture()  # noqa: N806
    load = list(os.getloadavg())
    fx = KubeFixture(docker_client=client)
    step = "start()"
    try:
        progress("kube: starting the API-server fixture")
        fx.start()
        step = f"create_pod({POD!r}, namespace={NAMESPACE!r})"
        t0 = time.time()
        fx.create_pod(POD, namespace=NAMESPACE, labels=dict([SELECTOR.split("=", 1)]),
                      containers=[{"name": CONTAINER, "image": IMAGE}])
        pod_s = time.time() - t0
        step = f"docker_container({POD!r}, {CONTAINER!r})"
        backing = fx.docker_container(POD, CONTAINER, namespace=NAMESPACE)
        step = "mkdir in the pod's backing container"
        code, out = backing.exec_run(["mkdir", "-p", f"{KUBECTL_DEST}/burst"])
        if code != 0:
            raise RuntimeError(out.decode(errors="replace"))
    except KeyboardInterrupt:
        fx.stop()
        raise
    except Exception as e:
        fx.stop()
        raise RuntimeError(f"kube fixture failed at {step}: {type(e).__name__}: {e}") from e
    try:
        progress(f"kube: pod {NAMESPACE}/{POD} up in {pod_s:.2f} s (backing container {backing.name})")
        env = dict(os.environ, KUBECONFIG=str(fx.kubeconfig))
        s = measure_syncd("syncd (kube)", work, kube_target(), backing, opts, progress, env=env)

        # Baseline: same pod, another directory, local files outside the synced tree; syncd is stopped.
        base = work / "baseline"
        base.mkdir(parents=True)
        kenv = kubectl_env(fx.kubeconfig, work / "kubectl-home")
        kubectl = kubectl_info(kenv)
        push = kubectl_cp_pusher(NAMESPACE, POD, CONTAINER, kenv)
        progress(f"kubectl_cp: {opts.baseline_runs} single-file copies")
        single = {"kubectl_cp": measure_edits("kubectl_cp", backing, base / "one.txt", f"{KUBECTL_DEST}/one.txt",
                                              push, opts.baseline_runs)}
        timed = opts.burst if opts.kubectl_sample <= 0 else min(opts.kubectl_sample, opts.burst)
        progress(f"kubectl_cp: burst, {timed} of {opts.burst} files timed")
        burst = {"kubectl_cp": measure_burst("kubectl_cp", backing, base / "burst", f"{KUBECTL_DEST}/burst",
                                             push, opts.burst, opts.kubectl_sample)}
        out = section_results(s, single, burst)
        sf = out["single_file"]
        return {
            "loadavg_at_section_start": load,
            "fixture": {
                "pod": f"{NAMESPACE}/{POD}", "container": CONTAINER, "selector": SELECTOR,
                "backing_container": backing.name, "pod_start_s": pod_s, "server": "tests/kubefixture (in-process)",
                "sync_dest": SYNC_DEST, "kubectl_dest": KUBECTL_DEST,
            },
            "kubectl": kubectl,
            "goals": "single-file p50 <= 45 ms, burst >= 20x kubectl cp per file (see targets.kube_*)",
            # The headline: kubectl cp time / syncd time (> 1: syncd is faster).
            "ratios": {
                "single_file_p50": out["single_file_ratios"]["kubectl_cp"]["p50"],
                "single_file_p95": out["single_file_ratios"]["kubectl_cp"]["p95"],
                "burst": out["burst"]["ratios"]["kubectl_cp"],
                "single_file_ms": {"kubectl_cp_p50": sf["kubectl_cp"]["p50_ms"], "syncd_p50": sf["syncd"]["p50_ms"]},
            },
            **out,
        }
    finally:
        fx.stop()
