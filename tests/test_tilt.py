"""The Tilt integration (deploy/tilt/syncd/Tiltfile, examples/fullstack/Tiltfile), its load
instructions (README.md, deploy/tilt/syncd/README.md) and the deploy/ files around it.

The Tiltfiles are evaluated by a real Starlark interpreter (starlark-pyo3: starlark-rust, the
Starlark implementation Buck2 uses) in its standard dialect, which is stricter than Tilt's (no
top-level if/for, no f-strings), so what passes here also parses in Tilt. Tilt's builtins are the
stand-ins of tests/tilt_standins.py: written from Tilt's source at tag v0.37.6, commit
76a6dd7d311178fe864baa22ce63a2f053764efc (tilt-dev/tilt), they take exactly Tilt's arguments
(go.starlark's UnpackArgs rules: required/optional, unknown keywords, the kinds of value), return
what Tilt returns (a Blob from read_file/kustomize/encode_yaml_stream, TRIGGER_MODE_* values that
are not strings, Probe/link values), resolve paths and load() the way Tilt does (relative to the
Tiltfile being executed; ext:// through v1alpha1.extension_repo/extension, file:// absolute and
without ref) and check what Tilt checks after the main Tiltfile ran. The self-test below feeds
them calls Tilt rejects (or reads differently) and asserts they are rejected with Tilt's error.
The last tests run the commands the extension registers: the daemon as Tilt would start it, its
readiness probe, an action's button.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

import starlark  # starlark-pyo3 (the `test` extra): starlark-rust, a real Starlark interpreter

# The pure-Python `starlark` package has the same import name but cannot evaluate a Tiltfile.
assert hasattr(starlark, "Globals"), "the `starlark` module here is not starlark-pyo3 (pip install -e '.[test]')"

from tilt_standins import (  # noqa: E402 - after the check above
    TILT_COMMIT, TILT_TAG, TRIGGER_MODE_MANUAL, Blob, Probe, Tilt, TiltError, kustomize_build,
)

REPO = Path(__file__).resolve().parents[1]
EXTENSION = REPO / "deploy" / "tilt" / "syncd" / "Tiltfile"
EXAMPLE = REPO / "examples" / "fullstack"
KUBE_CONFIG = EXAMPLE / "config" / "fullstack-kube.toml"
SYNCD = [sys.executable, "-m", "syncd"]  # the checkout under test (PYTHONPATH set when run)


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
    probe = daemon["readiness_probe"]
    assert isinstance(probe, Probe) and probe.exec is None
    http = probe.http_get
    assert (http.host, http.port, http.path) == ("127.0.0.1", 10351, "/api/status")
    assert [(l.url, l.name) for l in daemon["links"]] == [("http://127.0.0.1:10351/", "syncd status")]

    for action in ("db-migrate", "all-tests"):
        button = res[f"syncd:{action}"]
        assert button["cmd"] == ["syncd", "trigger", action, "-c", cfg]
        assert button["auto_init"] is False
        assert button["trigger_mode"] is TRIGGER_MODE_MANUAL  # Tilt's value, not the string
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
    assert res["sync"]["serve_env"] == {"PGPORT": "15432", "SYNCD_UNDER_TILT": "1"}  # a fallback script can tell
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
    http = daemon["readiness_probe"].http_get
    assert (http.host, http.port) == (host, port)
    assert daemon["links"][0].url == url


@pytest.mark.parametrize("api", ["127.0.0.1:0", "unix:.syncd/api.sock"])
def test_extension_without_a_fixed_port_probes_with_syncd_status(tmp_path: Path, api: str) -> None:
    main = _project(tmp_path, f'[daemon]\napi = "{api}"\n',
                    "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(config='syncd.toml')\n")
    daemon = Tilt(main).run().local_resources()["syncd"]
    probe = daemon["readiness_probe"]
    assert probe.http_get is None
    assert probe.exec.command == ["syncd", "status", "-c", str(tmp_path / "syncd.toml"), "--json", "--last", "0"]
    assert probe.timeout_secs >= 5  # the CLI takes about a second to start
    assert daemon["links"] == []


def test_extension_warns_when_api_disagrees_with_the_config(tmp_path: Path) -> None:
    main = _project(tmp_path, '[daemon]\napi = "127.0.0.1:0"\n',
                    "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(config='syncd.toml', api='127.0.0.1:10351')\n")
    tilt = Tilt(main).run()
    (warning,) = tilt.called("warn")
    assert "127.0.0.1:0" in warning.args[0] and "10351" in warning.args[0]
    assert tilt.local_resources()["syncd"]["readiness_probe"].http_get.port == 10351  # as told


def test_extension_rejects_a_malformed_api(tmp_path: Path) -> None:
    main = _project(tmp_path, None, "load('./deploy/tilt/syncd/Tiltfile', 'syncd')\nsyncd(api='localhost')\n")
    with pytest.raises(starlark.StarlarkError, match="is not HOST:PORT"):
        Tilt(main).run()


def test_docker_build_helper_drops_tilt_rebuilds_of_synced_paths(tmp_path: Path) -> None:
    main = _project(tmp_path, None, """
load('./deploy/tilt/syncd/Tiltfile', 'syncd_docker_build')
syncd_docker_build('app/backend', 'backend', synced=['src', 'static'], ignore='*.md', target='dev')
""")
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "Dockerfile").write_text("FROM scratch\n")  # Tilt reads it when docker_build() runs
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
    (tmp_path / "deploy" / "backend.Dockerfile").write_text("FROM scratch\n")
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
    # the calls the extension's function makes belong to the Tiltfile that called it
    assert {c.file for c in tilt.called("local_resource")} == {main}


def _doc_tiltfile_blocks(markdown: Path, section: str) -> list[str]:
    """The ```python blocks of a section (## heading) that load() the extension."""
    text = markdown.read_text()
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    body = text[start:end if end >= 0 else None]
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", body, re.S)]
    return [b for b in blocks if "load(" in b]


@pytest.mark.parametrize(("markdown", "section"), [
    pytest.param(REPO / "README.md", "## Tilt and CI", id="README"),
    pytest.param(REPO / "deploy" / "tilt" / "syncd" / "README.md", "## Loading it", id="extension-README"),
])
def test_documented_load_instructions_work(markdown: Path, section: str) -> None:
    """Each way to load the extension that the docs give, run as written (the local-path
    placeholder made this checkout, the placeholder https repository standing for this checkout
    as Tilt's download of it), then used."""
    blocks = _doc_tiltfile_blocks(markdown, section)
    forms = {"checkout": "./deploy/tilt/syncd/Tiltfile", "file": "file:///abs/path/to/syncd",
             "https": "https://github.com/YOUR-ORG/syncd"}
    assert [next(f for f, marker in forms.items() if marker in b) for b in blocks] == ["checkout", "file", "https"]
    for block in blocks:
        source = block.replace("/abs/path/to/syncd", str(REPO)) + (
            "syncd(config='examples/fullstack/config/fullstack-kube.toml', actions=['health-check'])\n")
        tilt = Tilt(REPO / "Tiltfile", downloads={forms["https"]: REPO}).run(source)
        assert list(tilt.local_resources()) == ["syncd", "syncd:health-check"], block
        assert EXTENSION in tilt.read_files
    section_text = markdown.read_text().split(section, 1)[1]
    assert "pip install /path/to/syncd" in section_text and "syncd_cmd=" in section_text  # installing it


def test_extension_documents_no_stale_load_instructions() -> None:
    """The extension's own header: no ref= on a file:// repository, no OWNER placeholder, no
    claim that Tilt versions differ in what a relative path is relative to."""
    header = EXTENSION.read_text().split("\n_MAIN_DIR", 1)[0]
    assert "file:///abs/path/to/syncd')" in header and "OWNER" not in header
    assert "Tilt versions differ" not in header
    assert "syncd_cmd" in header and "pip install /path/to/syncd" in header


# --- the stand-ins themselves: what Tilt rejects, they reject --------------------------------

def _standin_project(tmp_path: Path) -> Path:
    """Files the calls below refer to."""
    (tmp_path / "f.txt").write_text("a\nb\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    app = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  selector: {matchLabels: {app: app}}\n"
           "  template:\n    metadata: {labels: {app: app}}\n    spec: {containers: [{name: app, image: app}]}\n")
    (tmp_path / "app.yaml").write_text(app)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (tmp_path / "k" / "app.yaml").write_text(app)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "helper.star").write_text("X = 1\n")
    return tmp_path / "Tiltfile"


# (the call Tilt rejects or reads differently, Tilt's error, the same call written right). Each
# Tiltfile runs in _standin_project(); {repo} is this checkout. A call Tilt reads differently
# from Python is written as the Tiltfile that relies on Python's reading, and fails.
REJECTED = [
    pytest.param("local_resource('x', cmd='true', bogus=1)",
                 r"local_resource: unexpected keyword argument bogus$", "local_resource('x', cmd='true')",
                 id="unknown-keyword"),
    pytest.param("local_resource('x', cmd='true', resource_dep=['y'])",
                 r"unexpected keyword argument resource_dep \(did you mean resource_deps\?\)",
                 "local_resource('x', cmd='true', resource_deps=['y'])", id="misspelled-keyword-hint"),
    pytest.param("local_resource('x')",
                 r"local_resource must have a cmd and/or a serve_cmd, but both were empty",
                 "local_resource('x', serve_cmd=['sleep', '1'])", id="local_resource-without-cmd"),
    pytest.param("local_resource('x', cmd='true', labels=['my label'])",
                 r"""local_resource: for parameter labels: Invalid label "my label": name part must consist of alphanumeric characters""",
                 "local_resource('x', cmd='true', labels=['my-label'])", id="invalid-label"),
    pytest.param("local_resource('x', cmd='true', resource_deps='y')",
                 r"local_resource: for parameter resource_deps: got string, want starlark.Sequence",
                 "local_resource('x', cmd='true', resource_deps=['y'])", id="resource_deps-string"),
    pytest.param("local_resource('x', cmd='true', trigger_mode='TRIGGER_MODE_MANUAL')",
                 r"local_resource: for parameter trigger_mode: got string, want TriggerMode",
                 "local_resource('x', cmd='true', trigger_mode=TRIGGER_MODE_MANUAL)", id="trigger_mode-string"),
    pytest.param("docker_build('app', '.', dockerfle='Dockerfile')",
                 r"docker_build: unexpected keyword argument dockerfle \(did you mean dockerfile\?\)",
                 "docker_build('app', '.', dockerfile='Dockerfile')", id="docker_build-misspelled-keyword"),
    pytest.param("docker_build('app', 'sub')",
                 r"error reading dockerfile: open .*/sub/Dockerfile: no such file or directory",
                 "docker_build('app', 'sub', dockerfile='Dockerfile')", id="missing-Dockerfile"),
    pytest.param("read_file('f.txt').splitlines()",
                 r"has no attribute `splitlines`",  # Tilt: blob has no .splitlines field or method
                 "str(read_file('f.txt')).splitlines()", id="string-method-on-a-Blob"),
    pytest.param("k8s_yaml('apiVersion: v1\\nkind: Namespace\\nmetadata: {name: n}\\n')",
                 r"error reading yaml file: open .*apiVersion: v1\nkind: Namespace.*: no such file or directory",
                 "k8s_yaml(blob('apiVersion: v1\\nkind: Namespace\\nmetadata: {name: n}\\n'))", id="k8s_yaml-str-is-a-path"),
    pytest.param("v1alpha1.extension_repo(name='syncd', url='file://{repo}', ref='main')\n"
                 "v1alpha1.extension(name='syncd', repo_name='syncd', repo_path='deploy/tilt/syncd')\n"
                 "load('ext://syncd', 'syncd')",
                 r"cannot load ext://syncd: loading extension repo syncd: spec.ref not supported on file:// repos",
                 "v1alpha1.extension_repo(name='syncd', url='file://{repo}')\n"
                 "v1alpha1.extension(name='syncd', repo_name='syncd', repo_path='deploy/tilt/syncd')\n"
                 "load('ext://syncd', 'syncd')", id="file-repo-with-ref"),
    pytest.param("p = os.path.join('/a', '/b')\n_ = p == '/b' or fail('joined: ' + p)",
                 r"joined: /a/b$",  # Go's filepath.Join; Python's os.path.join gives /b
                 "p = os.path.join('/a', 'b')\n_ = p == '/a/b' or fail('joined: ' + p)", id="join-absolute-second-part"),
    pytest.param("v1alpha1.extension_repo(name='syncd', url='file://deploy/tilt')",
                 r'spec.url: Invalid value: "file://deploy/tilt": file:// URLs must be absolute',
                 "v1alpha1.extension_repo(name='syncd', url='file://{repo}')", id="file-repo-relative"),
    pytest.param("os.path.relpath('/a/b', start='/a')",
                 r"os.path.relpath: unexpected keyword argument start$",
                 "os.path.relpath('/a/b', basepath='/a')", id="relpath-start"),
    pytest.param("_ = TRIGGER_MODE_MANUAL == 'TRIGGER_MODE_MANUAL' or fail('not a string: ' + type(TRIGGER_MODE_MANUAL))",
                 r"not a string: TriggerMode$",
                 "_ = str(TRIGGER_MODE_MANUAL) == 'TRIGGER_MODE_MANUAL' or fail('no')", id="trigger-mode-is-no-string"),
    pytest.param("encode_yaml_stream([{'a': 1}]).startswith('a')", r"has no attribute `startswith`",
                 "str(encode_yaml_stream([{'a': 1}])).startswith('a')", id="encode_yaml_stream-returns-a-Blob"),
    pytest.param("kustomize('k').split('---')",
                 r"has no attribute `split`", "decode_yaml_stream(kustomize('k'))", id="kustomize-returns-a-Blob"),
    pytest.param("encode_yaml_stream(({'a': 1},))", r"encode_yaml_stream: for parameter objs: got tuple, want list",
                 "encode_yaml_stream([{'a': 1}])", id="encode_yaml_stream-tuple"),
    pytest.param("read_file('missing.txt', default=1)",
                 r"read_file: for parameter default: expected starlark.String or None, got starlark.Int",
                 "read_file('missing.txt', default='')", id="read_file-default-not-a-string"),
    pytest.param("read_file('missing.txt')", r"open .*/missing.txt: no such file or directory",
                 "read_file('f.txt')", id="read_file-missing"),
    pytest.param("warn(read_file('f.txt'))", r"warn: for parameter msg: got blob, want string",
                 "warn(str(read_file('f.txt')))", id="warn-a-Blob"),
    pytest.param("local_resource('x', cmd='true', env={'N': 1})",
                 r"local_resource: for parameter env: value is not a string: starlark.Int \(1\)",
                 "local_resource('x', cmd='true', env={'N': '1'})", id="env-value-not-a-string"),
    pytest.param("local_resource('x', cmd='true', env=struct(N='1'))",
                 r"local_resource: for parameter env: expected dict, got \*starlarkstruct.Struct",
                 "local_resource('x', cmd='true', env={'N': '1'})", id="env-a-struct"),
    pytest.param("local_resource('a/b', cmd='true')", r"""local_resource: for parameter name: invalid value "a/b": may not contain '/'""",
                 "local_resource('a-b', cmd='true')", id="resource-name-with-slash"),
    pytest.param("local_resource('x', cmd='true')\nlocal_resource('x', cmd='false')",
                 r'local_resource named "x" already exists', "local_resource('x', cmd='true')", id="duplicate-resource"),
    pytest.param("local_resource('x', serve_cmd='sleep 9', dir='sub')",
                 r"'dir' only affects 'cmd', not 'serve_cmd'. Did you mean to use 'serve_dir' instead\?",
                 "local_resource('x', serve_cmd='sleep 9', serve_dir='sub')", id="dir-without-cmd"),
    pytest.param("local_resource('x', serve_cmd='sleep 9', readiness_probe=probe(exec=exec_action(['true']), "
                 "http_get=http_get_action(port=80)))",
                 r"exactly one of exec, http_get, or tcp_socket must be specified",
                 "local_resource('x', serve_cmd='sleep 9', readiness_probe=probe(http_get=http_get_action(port=80)))",
                 id="probe-two-actions"),
    pytest.param("http_get_action(port='80')", r"http_get_action: for parameter port: got string, want int",
                 "http_get_action(port=80)", id="http_get_action-port-string"),
    pytest.param("exec_action('true')", r"""exec_action: for parameter command: '"true"' is a starlark.String, not a sequence""",
                 "exec_action(['true'])", id="exec_action-string"),
    pytest.param("local_resource('x', cmd='true', links=[1])", r"Want a string, a link, or a sequence of these; found 1",
                 "local_resource('x', cmd='true', links=[link('localhost:1', 'ui')])", id="link-not-a-link"),
    pytest.param("docker_build('app')", r"docker_build: missing argument for context$",
                 "docker_build('app', '.')", id="missing-argument"),
    pytest.param("docker_build('App', '.')", r"can't parse \"App\": invalid reference format: repository name \(library/App\) must be lowercase",
                 "docker_build('app', '.')", id="image-ref-uppercase"),
    pytest.param("k8s_yaml('app.yaml')\nk8s_resource('ap', port_forwards='8080')",
                 r'k8s_resource specified unknown resource "ap". known k8s resources: app',
                 "k8s_yaml('app.yaml')\nk8s_resource('app', port_forwards='8080')", id="k8s_resource-unknown-workload"),
    pytest.param("k8s_yaml('app.yaml')\nk8s_resource('app', port_forwards='80:8080:8080:1')",
                 r'k8s_resource "app": portForward port value "8080:1" is not in the valid range',
                 "k8s_yaml('app.yaml')\nk8s_resource('app', port_forwards='localhost:8080:80')", id="port-forward"),
    pytest.param("load('./sub/lib.star', 'Y')",
                 r"cannot load ./sub/helper.star: error reading file .*/sub/sub/helper.star",
                 "load('./sub/good.star', 'Y')", id="load-is-relative-to-the-loading-file"),
    pytest.param("d = os.path.dirname('f.txt')\n_ = d == '' or fail('dirname: ' + d)", r"dirname: \.$",  # Python: ''
                 "d = os.path.dirname('a/f.txt')\n_ = d == 'a' or fail('dirname: ' + d)", id="dirname-of-a-bare-name"),
]


@pytest.mark.parametrize(("bad", "error", "good"), REJECTED)
def test_standins_reject_what_tilt_rejects(tmp_path: Path, bad: str, error: str, good: str) -> None:
    main = _standin_project(tmp_path)
    (tmp_path / "sub" / "lib.star").write_text("load('./sub/helper.star', 'X')\nY = X\n")   # relative to the main Tiltfile: wrong
    (tmp_path / "sub" / "good.star").write_text("load('./helper.star', 'X')\nY = X\n")     # relative to itself
    Tilt(main).run(good.replace("{repo}", str(REPO)))  # the right call passes: the stand-in is not just strict
    with pytest.raises((starlark.StarlarkError, TiltError)) as rejected:
        Tilt(main).run(bad.replace("{repo}", str(REPO)))
    message = str(rejected.value)
    found = re.search(r"^error: (?:TiltError: )?(.*?)\n  *-->", message, re.S | re.M)
    assert re.search(error, found.group(1) if found else message, re.M | re.S), message


def test_standins_follow_one_tilt_commit() -> None:
    import tilt_standins

    assert re.fullmatch("[0-9a-f]{40}", TILT_COMMIT) and TILT_TAG == "v0.37.6"
    for doc in (__doc__, tilt_standins.__doc__):
        assert TILT_COMMIT in doc and TILT_TAG in doc


def test_standins_values_as_tilt_gives_them(tmp_path: Path) -> None:
    """What the stand-ins hand back, seen from Starlark and from the test."""
    main = _standin_project(tmp_path)
    tilt = Tilt(main).run("""
print(type(read_file('f.txt')), type(kustomize('k')), type(encode_yaml_stream([])), type(blob('x')), type(encode_json({})))
print(type(TRIGGER_MODE_AUTO), TRIGGER_MODE_AUTO == TRIGGER_MODE_AUTO, TRIGGER_MODE_AUTO == TRIGGER_MODE_MANUAL)
print(os.path.join('/a', '/b'), os.path.join('a', '', 'b/'), os.path.join(), os.path.basename('a/b/'), os.path.dirname('/a'))
print(os.path.relpath('/a/b/c', '/a'), os.path.relpath('/x', basepath='/a/b'), os.path.abspath('sub'), os.getcwd())
print(str(read_file('missing', '')) == '', __file__ == config.main_path, config.main_dir == os.getcwd())
local_resource('x', serve_cmd=['sleep', '9'], readiness_probe=probe(tcp_socket=tcp_socket_action(9)), links='localhost:9')
""")
    d = str(tmp_path)
    assert tilt.printed == [
        "blob blob blob blob string",
        "TriggerMode True False",
        "/a/b a/b  b /",
        f"b/c ../../x {d}/sub {d}",
        "True True True",
    ]
    (res,) = tilt.called("local_resource")
    assert isinstance(res.params["readiness_probe"], Probe) and res.params["readiness_probe"].tcp_socket.port == 9
    assert res.params["links"] == "localhost:9"  # as given; Tilt adds no scheme to "localhost:9" (url.Parse reads one)
    assert res.file == main


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
    assert daemon["readiness_probe"].exec.command[:4] == ["syncd", "status", "-c", str(KUBE_CONFIG)]
    assert {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"} <= set(daemon["serve_env"])
    confirm = {a for a, spec in kube["actions"].items() if spec.get("confirm")}
    for action in kube["actions"]:
        button = res[f"syncd:{action}"]
        assert button["cmd"][:5] == ["syncd", "trigger", action, "-c", str(KUBE_CONFIG)]
        assert ("--yes" in button["cmd"]) == (action in confirm)
        assert button["auto_init"] is False and button["trigger_mode"] is TRIGGER_MODE_MANUAL

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
    assert isinstance(deploy.args[0], Blob)  # encode_yaml_stream's Blob: YAML, where a str would be a path
    objects = list(yaml.safe_load_all(deploy.args[0].text))
    images = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
              for o in objects if o["kind"] == "Deployment"}
    assert images == {"fullstack-backend": "syncd-dev/fullstack-backend", "fullstack-frontend": "syncd-dev/fullstack-frontend",
                      "postgres": "postgres:16", "redis": "redis:7"}
    forwards = {c.args[0]: (c.kwargs.get("new_name"), c.kwargs["port_forwards"]) for c in tilt.called("k8s_resource")}
    assert forwards == {"fullstack-backend": ("backend", "18080:8080"), "fullstack-frontend": ("frontend", "18081:8081"),
                        "postgres": (None, "15432:5432"), "redis": (None, "16379:6379")}
    assert daemon["serve_env"]["PGPORT"] == "15432"
    # every k8s_resource names a workload of the manifests (else Tilt fails after the Tiltfile
    # ran) and every resource_deps entry names a resource (else Tilt ignores it, with a warning)
    assert not tilt.warnings

    # every path the extension hands Tilt is absolute: Tilt resolves a relative one against the
    # Tiltfile being executed, and runs the readiness probe in its own working directory
    for c in tilt.called("local_resource"):
        argv = c.kwargs.get("serve_cmd") or c.kwargs["cmd"]
        assert os.path.isabs(argv[argv.index("-c") + 1])
    assert all(os.path.isabs(c.args[1]) and os.path.isabs(c.kwargs["dockerfile"]) for c in builds.values())
    assert all(os.path.isabs(p) for p in ignored)


def _manifests() -> list[dict]:
    return [d for d in yaml.safe_load_all(kustomize_build(REPO / "deploy" / "k8s")) if d]


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
    # the fallback (scripts/redeploy.sh) restarts a Deployment that exists, or under Tilt
    # (SYNCD_UNDER_TILT, set by the extension) triggers the Tilt resource of that name
    fallback = next(s["fallback"] for s in kube["services"] if s["name"] == "backend")
    assert fallback == ["sh", "../scripts/redeploy.sh", "backend"]
    script = (REPO / "examples" / "fullstack" / "scripts" / "redeploy.sh").read_text()
    assert 'deployment/fullstack-$svc' in script and ("Deployment", "fullstack-backend") in by
    assert 'tilt trigger "$svc"' in script

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
    http = daemon["readiness_probe"].http_get
    probe_url = f"{http.scheme or 'http'}://{http.host}:{http.port}{http.path}"  # Tilt's default scheme: HTTP
    assert probe_url == f"http://127.0.0.1:{port}/api/status"

    proc, log = _start(tilt)
    try:
        _wait_until(lambda: _http_ok(probe_url), "the readiness probe", proc, log)
        with urllib.request.urlopen(daemon["links"][0].url, timeout=5) as page:
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
    command = tilt.local_resources()["syncd"]["readiness_probe"].exec.command

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


def test_the_examples_fallback_asks_tilt_under_tilt_and_kubectl_otherwise(tmp_path: Path) -> None:
    """scripts/redeploy.sh with recording stand-ins for `tilt` and `kubectl` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tilt", "kubectl"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls\n')
        (bin_dir / tool).chmod(0o755)
    script = EXAMPLE / "scripts" / "redeploy.sh"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(["sh", str(script), "backend"], env={**env, "SYNCD_UNDER_TILT": "1"}, check=True)
    subprocess.run(["sh", str(script), "backend"], env=env, check=True)
    assert (tmp_path / "calls").read_text().splitlines() == [
        "tilt trigger backend", "kubectl -n dev rollout restart deployment/fullstack-backend"]
