"""The Tilt integration (deploy/tilt/syncd/Tiltfile, examples/fullstack/Tiltfile) and the
deploy/ files around it.

The Tiltfiles are evaluated by a real Starlark interpreter (starlark-pyo3: starlark-rust,
the Starlark implementation Buck2 uses) in its standard dialect, which is stricter than Tilt's
(no top-level if/for, no f-strings), so what passes here also parses in Tilt. Tilt's builtins are
stand-ins that record their calls (`Tilt` below); `load()` is resolved the way Tilt resolves
it: a path relative to the loading file, or `ext://NAME` through v1alpha1.extension_repo /
v1alpha1.extension. The last tests run the commands the extension registers: the daemon as
Tilt would start it, its readiness probe, an action's button.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import starlark  # starlark-pyo3 (the `test` extra): starlark-rust, a real Starlark interpreter

# The pure-Python `starlark` package has the same import name but cannot evaluate a Tiltfile.
assert hasattr(starlark, "Globals"), "the `starlark` module here is not starlark-pyo3 (pip install -e '.[test]')"

REPO = Path(__file__).resolve().parents[1]
EXTENSION = REPO / "deploy" / "tilt" / "syncd" / "Tiltfile"
EXAMPLE = REPO / "examples" / "fullstack"
KUBE_CONFIG = EXAMPLE / "config" / "fullstack-kube.toml"
SYNCD = [sys.executable, "-m", "syncd"]  # the checkout under test (PYTHONPATH set when run)


# --- a recording stand-in for Tilt's Tiltfile API ----------------------------------------

@dataclass
class Call:
    fn: str
    args: tuple
    kwargs: dict
    file: Path  # the Tiltfile executing when the call was made


@dataclass
class Tilt:
    """Evaluates a Tiltfile (and whatever it loads) and records every Tilt builtin call."""

    main: Path
    env: dict = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    read_files: list[Path] = field(default_factory=list)
    _stack: list[Path] = field(default_factory=list)
    _loaded: dict = field(default_factory=dict)
    _repos: dict = field(default_factory=dict)
    _exts: dict = field(default_factory=dict)

    RECORDED = ("local_resource", "docker_build", "custom_build", "k8s_yaml", "k8s_resource",
                "watch_settings", "watch_file", "warn", "allow_k8s_contexts", "update_settings")

    def run(self, source: str | None = None) -> "Tilt":
        self._exec(self.main, self.main.read_text() if source is None else source)
        return self

    # -- evaluation and load() --
    def _exec(self, path: Path, source: str):
        module = starlark.Module()
        self._install(module)
        self._stack.append(path)
        try:
            ast = starlark.parse(str(path), source, starlark.Dialect.standard())
            globals_ = starlark.Globals.extended_by([starlark.LibraryExtension.StructType])
            starlark.eval(module, ast, globals_, starlark.FileLoader(self._load))
        finally:
            self._stack.pop()
        return module

    def _load(self, module_id: str):
        if module_id.startswith("ext://"):
            name = module_id[len("ext://"):]
            if name not in self._exts:
                raise ValueError(f"{module_id}: no v1alpha1.extension(name={name!r}) (this stand-in has no default repo)")
            repo_name, repo_path = self._exts[name]
            url = self._repos[repo_name]
            assert url.startswith("file://"), f"only file:// extension repos here: {url}"
            path = Path(url[len("file://"):]) / repo_path / "Tiltfile"
        else:  # relative to the directory of the file doing the load
            path = self._path(module_id)
        path = path.resolve()
        if path not in self._loaded:
            self.read_files.append(path)
            self._loaded[path] = self._exec(path, path.read_text()).freeze()
        return self._loaded[path]

    def _cwd(self) -> Path:
        return self._stack[-1].parent

    def _path(self, p: str) -> Path:
        return Path(os.path.normpath(os.path.join(self._cwd(), p)))

    # -- the builtins --
    def _install(self, m) -> None:
        for name in self.RECORDED:
            m.add_callable(name, self._recorder(name))

        def link(url, name=""):
            return {"_": "link", "url": url, "name": name}

        def probe(initial_delay_secs=0, timeout_secs=1, period_secs=10, success_threshold=1,
                  failure_threshold=3, exec=None, http_get=None, tcp_socket=None):
            given = [a for a in (exec, http_get, tcp_socket) if a is not None]
            if len(given) != 1:
                raise ValueError("probe: exactly one of exec, http_get, tcp_socket")
            return {"_": "probe", "timeout_secs": timeout_secs, "period_secs": period_secs,
                    "exec": exec, "http_get": http_get, "tcp_socket": tcp_socket}

        def http_get_action(port, host="localhost", scheme="http", path=""):
            assert isinstance(port, int), f"http_get_action: port must be an int, not {port!r}"
            return {"_": "http_get", "port": port, "host": host, "scheme": scheme, "path": path}

        def exec_action(command):
            assert isinstance(command, list) and all(isinstance(c, str) for c in command)
            return {"_": "exec", "command": command}

        def read_file(path, default=None):
            p = self._path(path)
            self.read_files.append(p)
            if not p.exists():
                if default is None:
                    raise FileNotFoundError(f"read_file: {p}")
                return default
            return p.read_text()

        def kustomize(path, kustomize_bin=None, flags=()):
            return _kustomize(self._path(path))

        def os_getenv(key, default=None):
            return self.env.get(key, os.environ.get(key, default))

        for name, fn in {
            "link": link, "probe": probe, "http_get_action": http_get_action, "exec_action": exec_action,
            "tcp_socket_action": lambda port, host="localhost": {"_": "tcp", "port": port, "host": host},
            "read_file": read_file, "kustomize": kustomize, "blob": str,
            "decode_yaml_stream": lambda s: [d for d in yaml.safe_load_all(s) if d is not None],
            "encode_yaml_stream": lambda objs: yaml.safe_dump_all(objs, sort_keys=False),
            "decode_yaml": yaml.safe_load, "encode_yaml": yaml.safe_dump,
            "decode_json": json.loads, "encode_json": json.dumps,
            "k8s_context": lambda: "kind-dev", "k8s_namespace": lambda: "default",
            "_os_getcwd": lambda: str(self._cwd()),
            "_os_getenv": os_getenv,
            "_os_path_join": lambda *parts: os.path.normpath(os.path.join(*parts)),
            "_os_path_abspath": lambda p: str(self._path(p)),
            "_os_path_exists": lambda p: self._path(p).exists(),
            "_os_path_dirname": os.path.dirname, "_os_path_basename": os.path.basename,
            "_os_path_relpath": lambda p, start=None: os.path.relpath(p, start or self._cwd()),
            "_extension_repo": self._extension_repo, "_extension": self._extension,
        }.items():
            m.add_callable(name, fn)
        m["TRIGGER_MODE_AUTO"] = "TRIGGER_MODE_AUTO"
        m["TRIGGER_MODE_MANUAL"] = "TRIGGER_MODE_MANUAL"
        m["_MAIN_DIR_VALUE"] = str(self.main.parent)
        m["_MAIN_PATH_VALUE"] = str(self.main)
        # Tilt's modules: struct values (Tilt's are builtin modules; attribute access is the same).
        starlark.eval(m, starlark.parse("<tilt-modules>", """
os = struct(getcwd=_os_getcwd, getenv=_os_getenv, name='posix',
            path=struct(join=_os_path_join, abspath=_os_path_abspath, exists=_os_path_exists,
                        dirname=_os_path_dirname, basename=_os_path_basename, relpath=_os_path_relpath))
config = struct(main_dir=_MAIN_DIR_VALUE, main_path=_MAIN_PATH_VALUE, tilt_subcommand='up')
v1alpha1 = struct(extension_repo=_extension_repo, extension=_extension)
"""), starlark.Globals.extended_by([starlark.LibraryExtension.StructType]))

    def _recorder(self, name):
        def record(*args, **kwargs):
            self.calls.append(Call(name, args, kwargs, self._stack[-1]))
        return record

    def _extension_repo(self, name, url, ref=None, load_host=None):
        self._repos[name] = url

    def _extension(self, name, repo_name, repo_path="", args=None):
        self._exts[name] = (repo_name, repo_path)

    # -- queries --
    def called(self, fn: str) -> list[Call]:
        return [c for c in self.calls if c.fn == fn]

    def local_resources(self) -> dict[str, dict]:
        return {c.args[0] if c.args else c.kwargs["name"]: c.kwargs for c in self.called("local_resource")}


def _kustomize(path: Path) -> str:
    """`kubectl kustomize` when kubectl is here; else the subset deploy/k8s uses
    (resources + namespace + labels without selectors)."""
    if shutil.which("kubectl"):
        return subprocess.run(["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    docs = []
    for res in k["resources"]:
        for doc in yaml.safe_load_all((path / res).read_text()):
            if doc["kind"] != "Namespace" and "namespace" in k:
                doc["metadata"]["namespace"] = k["namespace"]
            for group in k.get("labels", []):
                doc["metadata"].setdefault("labels", {}).update(group["pairs"])
            docs.append(doc)
    return yaml.safe_dump_all(docs)


def _project(tmp_path: Path, config_text: str | None, tiltfile: str) -> Path:
    """A project laid out like a repo that vendors the extension: Tiltfile at the root."""
    ext = tmp_path / "deploy" / "tilt" / "syncd" / "Tiltfile"
    ext.parent.mkdir(parents=True)
    shutil.copy(EXTENSION, ext)
    if config_text is not None:
        (tmp_path / "syncd.toml").write_text(config_text)
    (tmp_path / "Tiltfile").write_text(tiltfile)
    return tmp_path / "Tiltfile"


# --- the extension -----------------------------------------------------------------------

def test_extension_registers_daemon_and_action_buttons(tmp_path: Path) -> None:
    main = _project(tmp_path, '[daemon]\napi = "127.0.0.1:10351"\n', """
load('./deploy/tilt/syncd/Tiltfile', 'syncd')
syncd(config='syncd.toml', resources=['backend', 'frontend'], actions=['db-migrate', 'all-tests'])
""")
    tilt = Tilt(main).run()
    cfg = str(tmp_path / "syncd.toml")
    res = tilt.local_resources()
    assert list(res) == ["syncd", "syncd:db-migrate", "syncd:all-tests"]

    daemon = res["syncd"]
    assert daemon["serve_cmd"] == ["syncd", "run", "-c", cfg]
    assert "cmd" not in daemon  # nothing runs before the daemon: it is the whole resource
    assert daemon["resource_deps"] == ["backend", "frontend"]
    assert daemon["deps"] == [cfg]  # an edited config restarts the daemon
    assert daemon["labels"] == ["syncd"]
    http = daemon["readiness_probe"]["http_get"]
    assert (http["host"], http["port"], http["path"]) == ("127.0.0.1", 10351, "/api/status")
    assert [(l["url"], l["name"]) for l in daemon["links"]] == [("http://127.0.0.1:10351/", "syncd status")]

    for action in ("db-migrate", "all-tests"):
        button = res[f"syncd:{action}"]
        assert button["cmd"] == ["syncd", "trigger", action, "-c", cfg]
        assert button["auto_init"] is False
        assert button["trigger_mode"] == "TRIGGER_MODE_MANUAL"
        assert button["resource_deps"] == ["syncd"]
        assert "serve_cmd" not in button
    # the config is read (so Tilt re-runs the Tiltfile when it changes)
    assert Path(cfg) in tilt.read_files
    assert not tilt.called("warn")


def test_extension_options(tmp_path: Path) -> None:
    main = _project(tmp_path, '[daemon]\napi = "127.0.0.1:10999"\n', """
load('./deploy/tilt/syncd/Tiltfile', 'syncd')
syncd(config='syncd.toml', name='sync', actions=['db-reset', 'health'], yes=['db-reset'],
      syncd_cmd='python3 -m syncd', labels='dev', env={'PGPORT': '15432'}, resources='backend')
""")
    res = Tilt(main).run().local_resources()
    cfg = str(tmp_path / "syncd.toml")
    assert res["sync"]["serve_cmd"] == ["python3", "-m", "syncd", "run", "-c", cfg]
    assert res["sync"]["serve_env"] == {"PGPORT": "15432"}
    assert res["sync"]["resource_deps"] == ["backend"]
    assert res["sync:db-reset"]["cmd"] == ["python3", "-m", "syncd", "trigger", "db-reset", "-c", cfg, "--yes"]
    assert res["sync:health"]["cmd"][-1] == cfg  # no --yes unless asked
    assert res["sync:health"]["env"] == {"PGPORT": "15432"}
    assert {tuple(r["labels"]) for r in res.values()} == {("dev",)}
    assert res["sync:db-reset"]["resource_deps"] == ["sync"]


@pytest.mark.parametrize(("daemon_table", "host", "port", "url"), [
    ('api = "127.0.0.1:12345"   # fixed', "127.0.0.1", 12345, "http://127.0.0.1:12345/"),
    ("api='127.0.0.1:23456'", "127.0.0.1", 23456, "http://127.0.0.1:23456/"),
    ('debounce_ms = 20', "127.0.0.1", 10351, "http://127.0.0.1:10351/"),  # syncd's default
    ('api = "[::1]:7000"', "::1", 7000, "http://[::1]:7000/"),
    ('api = "0.0.0.0:9000"\napi_token = "t"', "127.0.0.1", 9000, "http://127.0.0.1:9000/"),
])
def test_extension_reads_the_api_address_from_the_config(tmp_path: Path, daemon_table, host, port, url) -> None:
    config = f'[targets.x]\nkind = "local"\npath = "x"\n\n[daemon]\n{daemon_table}\n\n[[services]]\nname = "s"\n'
    main = _project(tmp_path, config, "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(config='syncd.toml')\n")
    daemon = Tilt(main).run().local_resources()["syncd"]
    http = daemon["readiness_probe"]["http_get"]
    assert (http["host"], http["port"]) == (host, port)
    assert daemon["links"][0]["url"] == url


@pytest.mark.parametrize("api", ["127.0.0.1:0", "unix:.syncd/api.sock"])
def test_extension_without_a_fixed_port_probes_with_syncd_status(tmp_path: Path, api: str) -> None:
    main = _project(tmp_path, f'[daemon]\napi = "{api}"\n',
                    "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(config='syncd.toml')\n")
    daemon = Tilt(main).run().local_resources()["syncd"]
    probe = daemon["readiness_probe"]
    assert probe["http_get"] is None
    assert probe["exec"]["command"] == ["syncd", "status", "-c", str(tmp_path / "syncd.toml"), "--json", "--last", "0"]
    assert probe["timeout_secs"] >= 5  # the CLI takes about a second to start
    assert daemon["links"] == []


def test_extension_warns_when_api_disagrees_with_the_config(tmp_path: Path) -> None:
    main = _project(tmp_path, '[daemon]\napi = "127.0.0.1:0"\n',
                    "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(config='syncd.toml', api='127.0.0.1:10351')\n")
    tilt = Tilt(main).run()
    (warning,) = tilt.called("warn")
    assert "127.0.0.1:0" in warning.args[0] and "10351" in warning.args[0]
    assert tilt.local_resources()["syncd"]["readiness_probe"]["http_get"]["port"] == 10351  # as told


def test_extension_rejects_a_malformed_api(tmp_path: Path) -> None:
    main = _project(tmp_path, None, "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(api='localhost')\n")
    with pytest.raises(starlark.StarlarkError, match="is not HOST:PORT"):
        Tilt(main).run()


def test_docker_build_helper_drops_tilt_rebuilds_of_synced_paths(tmp_path: Path) -> None:
    main = _project(tmp_path, None, """
load('./deploy/tilt/syncd/Tiltfile', 'syncd_docker_build')
syncd_docker_build('app/backend', 'backend', synced=['src', 'static'], ignore='*.md', target='dev')
""")
    tilt = Tilt(main).run()
    (build,) = tilt.called("docker_build")
    assert build.args == ("app/backend", str(tmp_path / "backend"))
    assert build.kwargs["ignore"] == ["src", "static", "*.md"]  # out of the context, never a trigger
    assert build.kwargs["target"] == "dev"
    assert "live_update" not in build.kwargs  # syncd is the live update
    assert not tilt.called("watch_settings")


def test_docker_build_helper_in_image_keeps_the_context_and_stops_the_watch(tmp_path: Path) -> None:
    main = _project(tmp_path, None, """
load('./deploy/tilt/syncd/Tiltfile', 'syncd_docker_build')
syncd_docker_build('app/backend', '.', dockerfile='deploy/backend.Dockerfile', synced=['backend/src'], in_image=True)
""")
    tilt = Tilt(main).run()
    (build,) = tilt.called("docker_build")
    assert build.kwargs["ignore"] == []
    assert build.kwargs["dockerfile"] == str(tmp_path / "deploy" / "backend.Dockerfile")
    (watch,) = tilt.called("watch_settings")
    assert watch.kwargs["ignore"] == [str(tmp_path / "backend" / "src"), str(tmp_path / "backend" / "src" / "**")]


def test_docker_build_helper_refuses_live_update(tmp_path: Path) -> None:
    main = _project(tmp_path, None, """
load('./deploy/tilt/syncd/Tiltfile', 'syncd_docker_build')
syncd_docker_build('app/backend', '.', live_update=[])
""")
    with pytest.raises(starlark.StarlarkError, match="no live_update"):
        Tilt(main).run()


def test_extension_loads_from_an_extension_repo() -> None:
    """The documented ext:// layout: repo_path deploy/tilt/syncd of the syncd repository."""
    main = REPO / "Tiltfile"  # virtual: only its directory matters
    tilt = Tilt(main).run(f"""
v1alpha1.extension_repo(name='syncd', url='file://{REPO}')
v1alpha1.extension(name='syncd', repo_name='syncd', repo_path='deploy/tilt/syncd')
load('ext://syncd', 'syncd', 'syncd_docker_build')
syncd(config='examples/fullstack/config/fullstack-kube.toml', actions=['health-check'])
""")
    assert list(tilt.local_resources()) == ["syncd", "syncd:health-check"]
    assert EXTENSION in tilt.read_files


# --- the example's Tiltfile and the manifests ----------------------------------------------

def test_example_tiltfile() -> None:
    tilt = Tilt(EXAMPLE / "Tiltfile").run()
    kube = tomllib.loads(KUBE_CONFIG.read_text())

    # syncd with every action of the config, as buttons
    res = tilt.local_resources()
    assert set(res) == {"syncd"} | {f"syncd:{a}" for a in kube["actions"]}
    daemon = res["syncd"]
    assert daemon["serve_cmd"] == ["syncd", "run", "-c", str(KUBE_CONFIG)]
    assert daemon["resource_deps"] == ["backend", "frontend", "postgres"]
    # fullstack-kube.toml binds any free port: readiness through `syncd status`, no link
    assert daemon["readiness_probe"]["exec"]["command"][:4] == ["syncd", "status", "-c", str(KUBE_CONFIG)]
    assert {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"} <= set(daemon["serve_env"])
    confirm = {a for a, spec in kube["actions"].items() if spec.get("confirm")}
    for action in kube["actions"]:
        button = res[f"syncd:{action}"]
        assert button["cmd"][:5] == ["syncd", "trigger", action, "-c", str(KUBE_CONFIG)]
        assert ("--yes" in button["cmd"]) == (action in confirm)
        assert button["auto_init"] is False and button["trigger_mode"] == "TRIGGER_MODE_MANUAL"

    # two dev images, no live_update, the synced sources are no build trigger
    builds = {c.args[0]: c for c in tilt.called("docker_build")}
    assert set(builds) == {"syncd-dev/fullstack-backend", "syncd-dev/fullstack-frontend"}
    for build in builds.values():
        assert "live_update" not in build.kwargs
        assert build.args[1] == str(EXAMPLE)
        assert Path(build.kwargs["dockerfile"]).is_file()
    ignored = [p for c in tilt.called("watch_settings") for p in c.kwargs["ignore"]]
    for src in ("backend/src", "frontend/src"):
        assert str(EXAMPLE / src) in ignored
    assert "backend/target" in builds["syncd-dev/fullstack-backend"].kwargs["ignore"]

    # the manifests, each app Deployment on its dev image
    (deploy,) = tilt.called("k8s_yaml")
    objects = list(yaml.safe_load_all(deploy.args[0]))
    images = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
              for o in objects if o["kind"] == "Deployment"}
    assert images == {"fullstack-backend": "syncd-dev/fullstack-backend", "fullstack-frontend": "syncd-dev/fullstack-frontend",
                      "postgres": "postgres:16", "redis": "redis:7"}
    forwards = {c.args[0]: (c.kwargs.get("new_name"), c.kwargs["port_forwards"]) for c in tilt.called("k8s_resource")}
    assert forwards == {"fullstack-backend": ("backend", "18080:8080"), "fullstack-frontend": ("frontend", "18081:8081"),
                        "postgres": (None, "15432:5432"), "redis": (None, "16379:6379")}
    assert daemon["serve_env"]["PGPORT"] == "15432"

    # every path the extension hands Tilt is absolute: it does not matter which Tiltfile
    # a given Tilt version resolves a relative path inside an extension against
    for c in tilt.called("local_resource"):
        argv = c.kwargs.get("serve_cmd") or c.kwargs["cmd"]
        assert os.path.isabs(argv[argv.index("-c") + 1])
    assert all(os.path.isabs(c.args[1]) and os.path.isabs(c.kwargs["dockerfile"]) for c in builds.values())
    assert all(os.path.isabs(p) for p in ignored)


def _manifests() -> list[dict]:
    return [d for d in yaml.safe_load_all(_kustomize(REPO / "deploy" / "k8s")) if d]


def test_k8s_manifests_match_the_kube_config() -> None:
    objects = _manifests()
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert ("Namespace", "dev") in by
    assert all(o["metadata"].get("namespace") == "dev" for o in objects if o["kind"] != "Namespace")
    assert {name for kind, name in by if kind == "Deployment"} == {"fullstack-backend", "fullstack-frontend", "postgres", "redis"}
    assert {name for kind, name in by if kind == "Service"} == {"fullstack-backend", "fullstack-frontend", "postgres", "redis"}

    kube = tomllib.loads(KUBE_CONFIG.read_text())
    for target in ("backend", "frontend"):
        spec = kube["targets"][target]
        key, _, value = spec["selector"].partition("=")
        (deploy,) = [o for o in objects if o["kind"] == "Deployment" and o["spec"]["selector"]["matchLabels"] == {key: value}]
        assert deploy["metadata"]["namespace"] == spec["namespace"]
        assert deploy["spec"]["template"]["metadata"]["labels"][key] == value
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        assert container["name"] == spec["container"]
        assert container["image"] == "syncd-test/fullstack"
        assert container["imagePullPolicy"] == "IfNotPresent"  # loaded into the cluster, never pulled
    backend = by[("Deployment", "fullstack-backend")]["spec"]["template"]["spec"]["containers"][0]
    assert backend["command"] == ["/usr/local/bin/syncd-supervise", "/app/bin/api"]
    assert backend["ports"][0]["containerPort"] == 8080
    frontend = by[("Deployment", "fullstack-frontend")]["spec"]["template"]["spec"]["containers"][0]
    assert frontend["command"] == ["httpd", "-f", "-p", "8081", "-h", "/srv/www"]
    # the rollout-restart fallback names a Deployment that exists
    fallback = next(s["fallback"] for s in kube["services"] if s["name"] == "backend")
    assert fallback[-1] == "deployment/fullstack-backend"

    for (kind, name), o in by.items():
        if kind == "Deployment":
            pod = o["spec"]["template"]
            assert o["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
            for c in pod["spec"]["containers"]:
                assert c["resources"]["requests"], name
                assert "readinessProbe" in c, name
        if kind == "Service":
            (deploy,) = [d for (k, n), d in by.items() if k == "Deployment" and n == name]
            assert o["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
            container_ports = {p["name"] for c in deploy["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in o["spec"]["ports"]} <= container_ports


def test_ci_workflow_runs_the_smoke_and_keeps_its_reports() -> None:
    wf = yaml.safe_load((REPO / "deploy" / "ci" / "github-actions.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert ("syncd smoke -c examples/fullstack/config/fullstack-kube.toml --iterations 5 "
            "--budget p95=3s --junit smoke.xml --json smoke.json") in scripts
    assert "kind load docker-image syncd-test/fullstack" in scripts
    assert "kubectl apply -k deploy/k8s" in scripts
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"
    paths = upload["with"]["path"].split()
    assert {"smoke.xml", "smoke.json", "examples/fullstack/config/.syncd/trace.jsonl"} <= set(paths)
    assert any("junit" in s.get("uses", "") and s.get("if") == "always()" for s in steps)


# --- the registered commands, run -----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live_project(tmp_path: Path, api: str) -> Tilt:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.html").write_text("<p>hi</p>\n")
    config = f"""
[daemon]
debounce_ms = 20
api = "{api}"

[targets.box]
kind = "local"
path = "box"

[[services]]
name = "web"
target = "box"
sync = [{{ src = "src", dest = "/srv/www" }}]

[actions.hello]
cmd = ["sh", "-c", "echo hello-from-action in $PWD"]
"""
    main = _project(tmp_path, config, f"""
load('./deploy/tilt/syncd/Tiltfile', 'syncd')
syncd(config='syncd.toml', actions=['hello'], syncd_cmd={json.dumps(SYNCD)})
""")
    return Tilt(main).run()


def _env(extra: dict | None) -> dict:
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _start(tilt: Tilt, name: str = "syncd") -> tuple[subprocess.Popen, Path]:
    """Start the serve_cmd as Tilt does: argv as given, in serve_dir (default: the Tiltfile's dir)."""
    spec = tilt.local_resources()[name]
    log = tilt.main.parent / "daemon.log"
    proc = subprocess.Popen(spec["serve_cmd"], cwd=spec.get("serve_dir") or tilt.main.parent,
                            env=_env(spec.get("serve_env")), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, log


def _stop(proc: subprocess.Popen, log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"the daemon ignored SIGINT:\n{log.read_text()}")
    assert proc.returncode == 0, log.read_text()


def _wait_until(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the daemon exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= r.status < 400  # Tilt's http_get probe passes on 2xx/3xx
    except OSError:
        return False


def _press(tilt: Tilt, button: str) -> subprocess.CompletedProcess:
    """Run a button's cmd as Tilt does: argv as given, in `dir` (default: the Tiltfile's dir)."""
    spec = tilt.local_resources()[button]
    return subprocess.run(spec["cmd"], cwd=spec.get("dir") or tilt.main.parent, env=_env(spec.get("env")),
                          capture_output=True, text=True, timeout=60)


def test_registered_commands_run_the_daemon_probe_and_action(tmp_path: Path) -> None:
    port = _free_port()
    tilt = _live_project(tmp_path, f"127.0.0.1:{port}")
    daemon = tilt.local_resources()["syncd"]
    http = daemon["readiness_probe"]["http_get"]
    probe_url = f"{http['scheme']}://{http['host']}:{http['port']}{http['path']}"
    assert probe_url == f"http://127.0.0.1:{port}/api/status"

    proc, log = _start(tilt)
    try:
        _wait_until(lambda: _http_ok(probe_url), "the readiness probe", proc, log)
        with urllib.request.urlopen(daemon["links"][0]["url"], timeout=5) as page:
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        # the daemon synced into the local target
        _wait_until(lambda: (tmp_path / "box" / "srv" / "www" / "index.html").exists(), "the first sync", proc, log)

        pressed = _press(tilt, "syncd:hello")
        assert pressed.returncode == 0, pressed.stdout + pressed.stderr
        assert f"hello-from-action in {tmp_path}" in pressed.stdout
        assert f"ran by the daemon at 127.0.0.1:{port}" in pressed.stdout  # not a standalone run
    finally:
        _stop(proc, log)


def test_registered_commands_run_with_any_free_port(tmp_path: Path) -> None:
    """api port 0: the exec probe (`syncd status`) finds the daemon through .syncd/api.json."""
    tilt = _live_project(tmp_path, "127.0.0.1:0")
    command = tilt.local_resources()["syncd"]["readiness_probe"]["exec"]["command"]

    def probe_passes() -> bool:
        return subprocess.run(command, env=_env(None), capture_output=True, timeout=30).returncode == 0

    assert not probe_passes()  # nothing runs yet: the probe must fail, not pass vacuously
    proc, log = _start(tilt)
    try:
        _wait_until(probe_passes, "the exec readiness probe", proc, log, timeout=60)
        pressed = _press(tilt, "syncd:hello")
        assert pressed.returncode == 0, pressed.stdout + pressed.stderr
        assert "ran by the daemon" in pressed.stdout and "hello-from-action" in pressed.stdout
    finally:
        _stop(proc, log)
