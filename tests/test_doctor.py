"""`syncd doctor`: every check against real components (Docker engine, the API-server fixture,
the filesystem, PATH), asserted on the Check records and on the rendered text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from kube_support import NAMESPACE
from syncd.doctor import Check, count_dirs, doctor_checks, program_of, run_doctor

LOCAL = """
[targets.sandbox]
kind = "local"
path = ".syncd/sandbox"
[[services]]
name = "sandbox"
target = "sandbox"
sync = [{ src = "src", dest = "/app/src" }]
"""


def write(tmp_path: Path, text: str, dirs: int = 1) -> str:
    for i in range(dirs):
        (tmp_path / "src" / f"d{i}").mkdir(parents=True, exist_ok=True)
    (tmp_path / "syncd.toml").write_text(text)
    return str(tmp_path / "syncd.toml")


def limit(tmp_path: Path, value: int = 1_000_000) -> Path:
    """A stand-in for /proc/sys/fs/inotify/max_user_watches (the host's limit varies)."""
    path = tmp_path / "max_user_watches"
    path.write_text(f"{value}\n")
    return path


def doctor(config: str | None, limit_file: Path) -> tuple[int, str, list[Check]]:
    out = io.StringIO()
    code = run_doctor(config, Console(file=out, width=200), limit_file)
    return code, out.getvalue(), list(doctor_checks(config, limit_file))


def only(checks: list[Check], name: str) -> Check:
    [found] = [c for c in checks if c.name == name]
    return found


def docker_service(container: str) -> str:
    return f"""
[targets.web]
kind = "docker"
container = "{container}"
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
"""


# --- docker --------------------------------------------------------------------------------


@pytest.mark.docker
def test_all_good(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    c = make_container()
    config = write(tmp_path, docker_service(c.name) + LOCAL)
    code, text, checks = doctor(config, limit(tmp_path))
    assert code == 0, text
    assert all(check.ok for check in checks), checks
    lines = text.splitlines()
    assert all(line.startswith("✓ ") for line in lines[:-1]) and lines[-1] == f"all {len(checks)} checks passed"
    assert [c.name for c in checks] == ["config", "docker engine", "target web", f"tools in web/{c.name}",
                                        f"destinations in web/{c.name}", "target sandbox", "local tools", "inotify"]
    assert "/app/src writable by the exec user (uid=0 gid=0)" in text
    assert "2 target(s) (docker web, local sandbox), 2 service(s)" in text
    assert f"1 container(s) running: {c.name} (image syncd-test/busybox:latest)" in text
    assert "sh, tar, dd, sha1sum, find, xargs found" in text
    assert "2 directories under 1 watched root(s)" in text  # src and src/d0
    assert "fs.inotify.max_user_watches = 1000000" in text


def test_no_engine(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    code, text, checks = doctor(write(tmp_path, docker_service("app-web-1")), limit(tmp_path))
    assert code == 1
    engine = only(checks, "docker engine")
    assert engine.ok is False and "no answer at unix:///nonexistent.sock" in engine.detail
    assert "dockerd" in engine.remedy and "DOCKER_HOST (now unix:///nonexistent.sock)" in engine.remedy
    assert only(checks, "target web").ok is None  # not tried without an engine, and said so
    assert "✗ docker engine: no answer at unix:///nonexistent.sock" in text
    assert "    fix: start the Docker engine: `sudo systemctl start docker`" in text
    assert "– target web: skipped (no Docker engine)" in text
    assert text.splitlines()[-1] == f"1 of {len(checks)} checks failed (1 skipped)"


@pytest.mark.docker
def test_container_missing(docker_client, tmp_path: Path) -> None:  # noqa: ANN001
    code, text, checks = doctor(write(tmp_path, docker_service("syncd-test-no-such-container")), limit(tmp_path))
    target = only(checks, "target web")
    assert code == 1 and target.ok is False and "not found" in target.detail and "docker ps -a" in target.remedy


@pytest.mark.docker
def test_a_misspelt_container_name_gets_did_you_mean(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    c = make_container()
    typo = c.name[:-2] + c.name[-1]  # one character dropped, as in fullstack-backnd
    code, text, checks = doctor(write(tmp_path, docker_service(typo)), limit(tmp_path))
    target = only(checks, "target web")
    assert code == 1 and f"did you mean '{c.name}'?" in target.remedy, target


@pytest.mark.docker
@pytest.mark.parametrize("image, detail, fix", [
    ("notar", "missing in the container (image syncd-test/notar:latest): tar", "tar: nothing can be synced"),
    ("nodd", "missing in the container (image syncd-test/nodd:latest): dd", "dd: no session: one exec per batch"),
    ("nosh", "no 'sh' in the container (image syncd-test/nosh:latest)", "syncd needs a POSIX shell and tar in the image (e.g. add busybox)"),
])
def test_container_without_tools(make_container, tmp_path: Path, image: str, detail: str, fix: str) -> None:  # noqa: ANN001
    c = make_container(image)
    code, text, checks = doctor(write(tmp_path, docker_service(c.name)), limit(tmp_path))
    tools = only(checks, f"tools in web/{c.name}")
    assert code == 1 and tools.ok is False
    assert detail in tools.detail and fix in tools.remedy
    assert f"✗ tools in web/{c.name}: {detail}" in text and f"fix: {fix}" in text
    if image == "notar":
        assert "add tar to the image" in tools.remedy


@pytest.mark.docker
def test_destination_not_writable_by_the_exec_user(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    """A container running as uid 1000 whose /app belongs to root: doctor names the
    destination, the user and the fixes; after a chown it passes. A target `user` changes
    who the exec runs as."""
    c = make_container(user="1000:1000")
    code, text, checks = doctor(write(tmp_path, docker_service(c.name)), limit(tmp_path))
    dests = only(checks, f"destinations in web/{c.name}")
    assert code == 1 and dests.ok is False
    assert dests.detail == "not writable by the exec user (uid=1000 gid=1000): /app/src", dests
    assert dests.remedy.startswith("/app/src does not exist and the exec user (uid=1000 gid=1000) may not create it "
                                   "in /app (Permission denied): make /app/src writable by uid 1000 in the image "
                                   "(Dockerfile: RUN mkdir -p /app/src && chown 1000:1000 /app/src)"), dests.remedy
    assert 'targets.web.user = "UID[:GID]"' in dests.remedy
    as_root = write(tmp_path, docker_service(c.name).replace('container = ', 'user = "0"\ncontainer = '))
    code, text, checks = doctor(as_root, limit(tmp_path))
    assert only(checks, f"destinations in web/{c.name}").ok, text
    assert c.exec_run(["chown", "1000:1000", "/app"], user="0").exit_code == 0
    code, text, checks = doctor(write(tmp_path, docker_service(c.name)), limit(tmp_path))
    assert code == 0, text
    assert "/app/src writable by the exec user (uid=1000 gid=1000); temporary files can go to /app" in text


# --- kubernetes ----------------------------------------------------------------------------


def kube_service(extra: str = "") -> str:
    return f"""
[targets.web]
kind = "kubernetes"
namespace = "{NAMESPACE}"
selector = "app=doctor"
{extra}
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
"""


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_all_good(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    cluster.create_pod("doctor-0", {"app": "doctor"})
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    assert code == 0, text
    assert [c.name for c in checks] == ["config", "target web kubeconfig", "target web API server", "target web",
                                        "target web exec", "tools in web/doctor-0", "destinations in web/doctor-0",
                                        "local tools", "inotify"]
    assert f"from {cluster.kubeconfig}" in only(checks, "target web kubeconfig").detail
    assert "pod(s) matching app=doctor in dev running: doctor-0" in text
    assert "create pods/exec allowed (ran `true` in doctor-0)" in text


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_destination_not_writable_by_run_as_user(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    """runAsUser 1000 and /app on a read-only root: doctor says so, with the Kubernetes fixes
    (no exec user switch there); an emptyDir at /app makes it pass."""
    ro = {"securityContext": {"readOnlyRootFilesystem": True}}
    user = {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}
    cluster.create_pod("doctor-0", {"app": "doctor"}, pod_spec=user, container_spec=ro)
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    dests = only(checks, "destinations in web/doctor-0")
    assert code == 1 and dests.ok is False
    assert dests.detail == "not writable by the exec user (uid=1000 gid=1000): /app/src", dests
    assert "is on a read-only filesystem" in dests.remedy and "mount a writable volume at /app/src" in dests.remedy
    cluster.delete_pod("doctor-0")
    cluster.create_pod("doctor-1", {"app": "doctor"}, pod_spec={**user, "volumes": [{"name": "app", "emptyDir": {}}]},
                       container_spec={**ro, "volumeMounts": [{"name": "app", "mountPath": "/app"}]})
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    assert code == 0, text
    assert "/app/src writable by the exec user (uid=1000 gid=1000); temporary files can go to /app" in text


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_wrong_context(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    from kubernetes import config as kconfig

    names = [c["name"] for c in kconfig.list_kube_config_contexts(config_file=str(cluster.kubeconfig))[0]]
    code, text, checks = doctor(write(tmp_path, kube_service('context = "nope"')), limit(tmp_path))
    check = only(checks, "target web kubeconfig")
    assert code == 1 and check.ok is False and "nope" in check.detail
    assert f"available contexts: {', '.join(names)}" in check.remedy and "targets.web.context" in check.remedy
    assert f"fix: available contexts: {', '.join(names)}" in text
    assert "– API server, pods, exec and tools of target web: skipped (no kubeconfig context)" in text


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_no_pods(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    pods = only(checks, "target web")
    assert code == 1 and pods.ok is False and "no Running pod matches" in pods.detail
    assert f"`kubectl get pods -n {NAMESPACE} -l app=doctor`" in pods.remedy


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_rbac_denies_exec(cluster, tmp_path: Path) -> None:  # noqa: ANN001
    cluster.create_pod("doctor-0", {"app": "doctor"})
    cluster.deny("create", "pods/exec")  # the cluster fixture allows all again for the next test
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    assert code == 1
    assert only(checks, "target web").ok is True  # listing pods is still allowed
    exec_check = only(checks, "target web exec")
    assert exec_check.ok is False and "forbidden" in exec_check.detail
    assert f"`kubectl auth can-i create pods/exec -n {NAMESPACE}`" in exec_check.remedy
    assert 'resources: ["pods/exec"], verbs: ["create"]' in exec_check.remedy
    assert "✗ target web exec: exec into pod doctor-0 forbidden" in text
    assert "– tools in target web: skipped (exec not possible)" in text


# --- this machine --------------------------------------------------------------------------


def test_low_inotify_limit(tmp_path: Path) -> None:
    config = write(tmp_path, LOCAL, dirs=20)
    code, text, checks = doctor(config, limit(tmp_path, 10))
    check = only(checks, "inotify")
    assert code == 1 and check.ok is False
    assert "more than 10 directories" in check.detail and "fs.inotify.max_user_watches = 10" in check.detail
    assert "`sudo sysctl fs.inotify.max_user_watches=524288`" in check.remedy
    assert "/etc/sysctl.d/" in check.remedy
    assert "✗ inotify: more than 10 directories" in text and "fix: raise it: `sudo sysctl fs.inotify.max_user_watches=524288`" in text
    # within the limit but above 90% of it: still a failure (other watchers share the limit)
    code, _, checks = doctor(config, limit(tmp_path, 22))
    assert code == 1 and "21 directories" in only(checks, "inotify").detail
    code, _, checks = doctor(config, limit(tmp_path, 24))
    assert code == 0 and only(checks, "inotify").ok


def test_count_dirs_follows_symlinks_once(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")  # the watcher follows links; a loop counts once
    (tmp_path / "a" / "file").write_text("x")
    assert count_dirs([tmp_path / "a"], stop_after=100) == 2
    assert count_dirs([tmp_path / "missing"], stop_after=100) == 0


def test_build_tool_missing(tmp_path: Path) -> None:
    config = write(tmp_path, LOCAL + 'build = [{ cmd = ["definitely-not-a-tool-xyz"] }, { cmd = "cd src && ls" }]\n')
    code, text, checks = doctor(config, limit(tmp_path))
    check = only(checks, "local tool definitely-not-a-tool-xyz")
    assert code == 1 and check.ok is False
    assert check.detail == "definitely-not-a-tool-xyz not found (needed by services[sandbox].build[0] 'sandbox-1')"
    assert check.remedy == "install definitely-not-a-tool-xyz (it is looked up on PATH), or fix the command"
    assert "✗ local tool definitely-not-a-tool-xyz: definitely-not-a-tool-xyz not found" in text
    assert not [c for c in checks if c.name == "local tool cd"]  # a shell builtin: the shell has it


def test_local_target_not_writable(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the target directory should be")
    config = write(tmp_path, LOCAL.replace(".syncd/sandbox", "blocker"))
    code, _, checks = doctor(config, limit(tmp_path))
    check = only(checks, "target sandbox")
    assert code == 1 and check.ok is False and "is not a directory" in check.detail


@pytest.mark.parametrize("cmd, program", [
    (["cargo", "build"], "cargo"),
    ("npm run build", "npm"),
    ("CARGO_TERM_COLOR=never cargo build", "cargo"),
    ("cd backend && cargo build", None),
    ("'./my script.sh' --fast", "./my script.sh"),
])
def test_program_of(cmd: str | list[str], program: str | None) -> None:
    assert program_of(cmd) == program


def test_invalid_config(tmp_path: Path) -> None:
    config = write(tmp_path, LOCAL.replace("target = ", "tagret = "))
    code, text, checks = doctor(config, limit(tmp_path))
    assert code == 1
    assert [c.ok for c in checks] == [False, None]
    assert "services[sandbox].tagret: unknown key (did you mean 'target'?)" in checks[0].remedy
    assert f"✗ config: {config} is invalid (1 problem(s))" in text
    assert f"fix: fix in {config}:" in text and "- services[sandbox].tagret: unknown key (did you mean 'target'?)" in text
    assert "– targets, containers, local tools, inotify: skipped (they need a valid config)" in text


def test_no_config_found(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    code, text, _ = doctor(None, limit(tmp_path))
    assert code == 1 and "no config found" in text


@pytest.mark.docker
@pytest.mark.cluster
def test_kube_api_server_unreachable(cluster, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    if cluster.real:
        pytest.skip("fixture-only: rewrites the kubeconfig")
    import yaml

    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {"server": "http://127.0.0.1:9"}  # nothing listens there
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    code, text, checks = doctor(write(tmp_path, kube_service()), limit(tmp_path))
    check = only(checks, "target web API server")
    assert code == 1 and "API server unreachable at http://127.0.0.1:9" in check.detail
    assert "`kubectl cluster-info`" in check.remedy
    assert "– pods, exec and tools of target web: skipped (API server not reachable)" in text


@pytest.mark.docker
def test_container_without_gzip_is_said_and_still_passes(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    """gzip is optional: without it syncd sends raw, and doctor says so (issue #17)."""
    c = make_container("notar")  # dash as sh: busybox applets exist only through their links
    assert c.exec_run(["/bin/busybox", "rm", "/bin/gzip"]).exit_code == 0
    _code, _text, checks = doctor(write(tmp_path, docker_service(c.name)), limit(tmp_path))
    tools = only(checks, f"tools in web/{c.name}")
    assert "no gzip: syncd sends raw" in tools.remedy, tools  # (tar is missing too in this image)
    ok = make_container()
    _code, _text, checks = doctor(write(tmp_path, docker_service(ok.name)), limit(tmp_path))
    assert "gzip" not in only(checks, f"tools in web/{ok.name}").detail
