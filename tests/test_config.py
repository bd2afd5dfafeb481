"""Config loading and validation (README: Config): every mistake is reported at once, each as
`key.path: what is wrong (hint)`, against real TOML files and real source trees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.config import Config, ConfigError, DockerTarget, KubernetesTarget, LocalTarget, find_config, load_config

# --- building blocks --------------------------------------------------------------------------

# Every test workspace has these, relative to the config file.
DIRS = ("backend/src", "backend/target/debug", "web")
FILES = ("backend/target/debug/api",)

TARGETS = """
[targets.backend]
kind = "kubernetes"
selector = "app=backend"

[targets.web]
kind = "docker"
container = "app-web-1"
"""

SYNC = '[{ src = "backend/src", dest = "/app/src" }]'


def service(name: str | None = "backend", target: str | None = "backend", sync: str | None = SYNC, extra: str = "") -> str:
    """A `[[services]]` table; pass None to leave a key out."""
    lines = ["", "[[services]]"]
    if name is not None:
        lines.append(f'name = "{name}"')
    if target is not None:
        lines.append(f'target = "{target}"')
    if sync is not None:
        lines.append(f"sync = {sync}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def target(name: str, body: str) -> str:
    return f"\n[targets.{name}]\n{body}\n"


OK = TARGETS + service()  # a minimal valid config; cases add one mistake to it

GOOD = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 2000
api = "127.0.0.1:10351"
trace = ".syncd/trace.jsonl"
trace_max_mb = 0.5
trace_keep = 3

[targets.backend]
kind = "kubernetes"
context = "kind-dev"
namespace = "dev"
selector = "app=backend"
container = "api"

[targets.web]
kind = "docker"
container = "app-frontend-1"
user = "1000:1000"

[targets.worker]
kind = "docker"
labels = { "com.docker.compose.service" = "worker" }

[targets.sandbox]
kind = "local"
path = ".syncd/sandbox/web"

[[services]]
name = "backend"
target = "backend"
ignore = ["target/", "**/*.swp"]
fall_back_on = ["backend/Cargo.toml", "backend/Cargo.lock"]
fallback = "tilt trigger backend"
sync = [{ src = "backend/src", dest = "/app/src" },
        { src = "backend/target/debug/api", dest = "/app/bin/api" }]
build = [{ cmd = ["cargo", "build"], cwd = "backend", trigger = ["backend/src/**", "backend/Cargo.*"], env = { RUSTFLAGS = "-g" } }]
run = [{ cmd = "kill -HUP 1", trigger = ["backend/src/**"] }]
restart = "process"

[[services]]
name = "web"
target = "web"
sync = [{ src = "web", dest = "/srv/www/" }]
restart = "container"

[[services]]
name = "worker"
target = "worker"
fallback = ["docker", "compose", "restart", "worker"]
sync = [{ src = "backend/src", dest = "/app/src" }]

[[services]]
name = "sandbox"
target = "sandbox"
sync = [{ src = "web", dest = "/site" }]
restart = "none"

[actions.db-migrate]
cmd = "psql -f migrations.sql"
target = "backend"
deps = ["dev-setup"]

[actions.dev-setup]
cmd = ["make", "setup"]
"""


def workspace(root: Path, text: str, name: str = "syncd.toml") -> Path:
    """Lay out the source tree and write `text` as the config; return the config path."""
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in FILES:
        (root / f).write_text("binary")
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.file == str(path)
    assert str(err).splitlines() == [f"{path}: {p}" for p in err.problems]  # every line names the file
    return err.problems


def split(problem: str) -> tuple[str, str]:
    key, sep, message = problem.partition(": ")
    assert sep, f"no 'key.path: ' prefix in {problem!r}"
    return key, message


# --- one case per kind of mistake -------------------------------------------------------------

# (config text, the key path the problem must name, words its message must contain)
MISTAKES = [
    # unknown keys, with a did-you-mean when close and the valid keys otherwise
    pytest.param("[deamon]\ndebounce_ms = 5\n" + OK, "deamon", ["unknown key", "did you mean 'daemon'?"], id="unknown-top-level-table"),
    pytest.param('root = "/etc"\n' + OK, "root", ["unknown key", "valid keys", "daemon", "services"], id="unknown-top-level-internal-name"),
    pytest.param("[daemon]\ndebounce_msec = 5\n" + OK, "daemon.debounce_msec", ["unknown key", "did you mean 'debounce_ms'?"], id="unknown-daemon-key"),
    pytest.param(target("backend", 'kind = "kubernetes"\nselector = "app=x"\nnamespce = "dev"') + service(),
                 "targets.backend.namespce", ["unknown key", "did you mean 'namespace'?"], id="unknown-kubernetes-key"),
    pytest.param(target("web", 'kind = "docker"\ncontainer = "c"\ncolour = "red"') + service(target="web"),
                 "targets.web.colour", ["unknown key", "valid keys", "container", "labels"], id="unknown-docker-key-far-off"),
    pytest.param(target("web", 'kind = "docker"\ncontainer = "c"\nuser = "1000 1000"') + service(target="web"),
                 "targets.web.user", ["'1000 1000' is not a user", "UID[:GID]"], id="docker-user-malformed"),
    pytest.param(target("backend", 'kind = "kubernetes"\nselector = "app=x"\nuser = "1000"') + service(),
                 "targets.backend.user", ["not supported", "no user switch", "runAsUser"], id="kubernetes-user"),
    pytest.param(target("sandbox", 'kind = "local"\npath = "out"\npaht = "out"') + service(target="sandbox"),
                 "targets.sandbox.paht", ["unknown key", "did you mean 'path'?"], id="unknown-local-key"),
    pytest.param(TARGETS + service(target=None, extra='tagret = "backend"'),
                 "services[backend].tagret", ["unknown key", "did you mean 'target'?"], id="unknown-service-key"),
    pytest.param(TARGETS + service(extra='restrat = "none"'), "services[backend].restrat", ["did you mean 'restart'?"], id="unknown-service-key-optional"),
    pytest.param(TARGETS + service(sync='[{ src = "backend/src", dset = "/app/src" }]'),
                 "services[backend].sync[0].dset", ["unknown key", "did you mean 'dest'?"], id="unknown-sync-key"),
    pytest.param(TARGETS + service(extra='build = [{ cmd = "make", trigers = ["backend/**"] }]'),
                 "services[backend].build[0].trigers", ["did you mean 'trigger'?"], id="unknown-build-key"),
    pytest.param(TARGETS + service(extra='run = [{ cmd = "kill -HUP 1", trigger = [], evn = {} }]'),
                 "services[backend].run[0].evn", ["unknown key", "valid keys", "cmd", "trigger"], id="unknown-run-key"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = "x"\ndep = []\n', "actions.migrate.dep", ["did you mean 'deps'?"], id="unknown-action-key"),
    # missing required keys, each with what to write
    pytest.param(TARGETS + service(sync=None), "services[backend].sync", ["required key is missing", "src =", "dest ="], id="service-without-sync"),
    pytest.param(TARGETS + service(name=None), "services[0].name", ["required key is missing"], id="service-without-name"),
    pytest.param(TARGETS + service(target=None), "services[backend].target", ["required key is missing", "backend"], id="service-without-target"),
    pytest.param(TARGETS + service(sync='[{ src = "backend/src" }]'), "services[backend].sync[0].dest", ["required key is missing", "absolute"], id="sync-without-dest"),
    pytest.param(target("backend", 'selector = "app=backend"') + service(), "targets.backend.kind",
                 ["required key is missing", "kubernetes", "docker", "local"], id="target-without-kind"),
    pytest.param(target("backend", 'kind = "kubernetes"\nnamespace = "dev"') + service(), "targets.backend.selector",
                 ["required key is missing", "app=backend"], id="kubernetes-without-selector"),
    pytest.param(target("sandbox", 'kind = "local"') + service(target="sandbox"), "targets.sandbox.path", ["required key is missing"], id="local-without-path"),
    pytest.param(TARGETS, "services", ["required key is missing", "[[services]]"], id="no-services"),
    pytest.param(service(), "targets", ["required key is missing", "[targets."], id="no-targets"),
    pytest.param(OK + '\n[actions.migrate]\ntarget = "backend"\n', "actions.migrate.cmd", ["required key is missing", "sh -c"], id="action-without-cmd"),
    # wrong types: said in TOML terms, with what was given
    pytest.param('[daemon]\ndebounce_ms = "fast"\n' + OK, "daemon.debounce_ms", ["must be an integer", "got 'fast'"], id="debounce-not-a-number"),
    pytest.param('[daemon]\ndebounce_ms = "20"\n' + OK, "daemon.debounce_ms", ["must be an integer", "got '20'"], id="debounce-quoted-number"),
    pytest.param("[daemon]\ndebounce_ms = true\n" + OK, "daemon.debounce_ms", ["must be an integer", "got true"], id="debounce-bool"),
    pytest.param("[daemon]\ndebounce_ms = 1.5\n" + OK, "daemon.debounce_ms", ["must be an integer", "got 1.5"], id="debounce-float"),
    pytest.param(TARGETS + service(extra='ignore = "target/"'), "services[backend].ignore", ["must be a list", '["target/"]'], id="ignore-not-a-list"),
    pytest.param(TARGETS + service(sync='["backend/src"]'), "services[backend].sync[0]", ["must be a table", "src =", "dest ="], id="sync-entry-not-a-table"),
    pytest.param(TARGETS + service(sync='{ src = "backend/src", dest = "/app/src" }'), "services[backend].sync", ["must be a list"], id="sync-not-a-list"),
    pytest.param(TARGETS + '[services]\nname = "backend"\n', "services", ["must be a list", "[[services]]"], id="services-single-brackets"),
    pytest.param(TARGETS + service(sync="[]"), "services[backend].sync", ["must not be empty"], id="sync-empty"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = 5\n', "actions.migrate.cmd", ["string", "list of strings", "got 5"], id="cmd-wrong-type"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = ["psql", 5]\n', "actions.migrate.cmd", ["list of strings"], id="cmd-list-with-number"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = ""\n', "actions.migrate.cmd", ["must not be empty"], id="cmd-empty"),
    pytest.param(target("web", 'kind = "docker"\nlabels = { "com.docker.compose.service" = 1 }') + service(target="web"),
                 'targets.web.labels."com.docker.compose.service"', ["must be a string", "got 1"], id="label-value-not-a-string"),
    pytest.param('targets = "backend"\n' + service(), "targets", ["must be a table"], id="targets-not-a-table"),
    pytest.param('[targets]\nbackend = "kubernetes"\n' + service(), "targets.backend", ["must be a table", "kind ="], id="target-not-a-table"),
    # bad values
    pytest.param("[daemon]\ndebounce_ms = -5\n" + OK, "daemon.debounce_ms", [">= 0", "got -5"], id="negative-debounce"),
    pytest.param("[daemon]\ndebounce_ms = 500\nmax_batch_wait_ms = 100\n" + OK, "daemon.max_batch_wait_ms",
                 ["debounce_ms", "500"], id="max-wait-below-debounce"),
    pytest.param("[daemon]\ndebounce_ms = 5000\n" + OK, "daemon.max_batch_wait_ms", ["debounce_ms", "5000"], id="default-max-wait-below-debounce"),
    pytest.param('[daemon]\napi = "localhost"\n' + OK, "daemon.api", ["HOST:PORT", "unix:"], id="api-without-port"),
    pytest.param("[daemon]\ntrace_max_mb = 0\n" + OK, "daemon.trace_max_mb", ["> 0", "got 0"], id="trace-max-zero"),
    pytest.param('[daemon]\ntrace_max_mb = "10MB"\n' + OK, "daemon.trace_max_mb", ["must be a number", "got '10MB'"],
                 id="trace-max-with-unit"),
    pytest.param("[daemon]\ntrace_keep = 0\n" + OK, "daemon.trace_keep", [">= 1", "got 0"], id="trace-keep-zero"),
    pytest.param(target("backend", 'kind = "ssh"\nselector = "x"') + service(), "targets.backend.kind",
                 ["'ssh'", "kubernetes", "docker", "local"], id="unknown-kind"),
    pytest.param(target("backend", 'kind = "kubernets"\nselector = "x"') + service(), "targets.backend.kind",
                 ["did you mean 'kubernetes'?"], id="misspelt-kind"),
    pytest.param(target("web", 'kind = "docker"\ncontainer = "web-1"\nlabels = { "com.docker.compose.service" = "web" }') + service(target="web"),
                 "targets.web", ["'container'", "'labels'", "not both"], id="docker-container-and-labels"),
    pytest.param(target("web", 'kind = "docker"') + service(target="web"), "targets.web", ["'container'", "'labels'"], id="docker-neither"),
    pytest.param(target("backend", 'kind = "kubernetes"\nselector = ""') + service(), "targets.backend.selector",
                 ["empty", "every pod"], id="empty-selector"),
    pytest.param(target("sandbox", 'kind = "local"\npath = "."') + service(target="sandbox"), "targets.sandbox.path",
                 ["config directory"], id="local-target-is-config-dir"),
    pytest.param(TARGETS + service(sync='[{ src = "backend/src", dest = "app/src" }]'), "services[backend].sync[0].dest",
                 ["'app/src'", "absolute", "'/app/src'"], id="dest-relative"),
    pytest.param(TARGETS + service(sync='[{ src = "backend/src", dest = "/" }]'), "services[backend].sync[0].dest",
                 ["anywhere", "name a directory"], id="dest-root"),
    pytest.param(TARGETS + service(sync='[{ src = "backend/src", dest = "/app/../etc" }]'), "services[backend].sync[0].dest",
                 ["'..'"], id="dest-dotdot"),
    pytest.param(TARGETS + service(extra='restart = "reboot"'), "services[backend].restart",
                 ["'none'", "'container'", "'process'", "got 'reboot'"], id="restart-unknown"),
    pytest.param(TARGETS + service(extra='restart = "containr"'), "services[backend].restart", ["did you mean 'container'?"], id="restart-misspelt"),
    # references between tables and into the file system
    pytest.param(TARGETS + service() + service(name="api", sync='[{ src = "backend/srcc", dest = "/app/src" }]'),
                 "services[api].sync[0].src", ["path 'backend/srcc' does not exist (did you mean 'backend/src'?)"], id="src-missing-did-you-mean"),
    pytest.param(TARGETS + service(sync='[{ src = "nothing/here", dest = "/app/src" }]'), "services[backend].sync[0].src",
                 ["path 'nothing/here' does not exist", "relative to"], id="src-missing-no-guess"),
    pytest.param(TARGETS + service(target="bakend"), "services[backend].target", ["no target named 'bakend'", "did you mean 'backend'?"], id="unknown-target"),
    pytest.param(TARGETS + service(target="zzz"), "services[backend].target", ["no target named 'zzz'", "backend", "web"], id="unknown-target-lists-known"),
    pytest.param(TARGETS + service() + service(target="web"), "services[1].name",
                 ["'backend'", "services[0]", "unique"], id="duplicate-service-name"),
    pytest.param(TARGETS + service(extra='build = [{ cmd = "make", cwd = "backend/nope" }]'), "services[backend].build[0].cwd",
                 ["'backend/nope'", "does not exist"], id="build-cwd-missing"),
    pytest.param(TARGETS + service(extra='restart = "container"'), "services[backend].restart",
                 ["docker", "'process'"], id="restart-container-on-kubernetes"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = "x"\ndeps = ["setpu"]\n\n[actions.setup]\ncmd = "y"\n', "actions.migrate.deps[0]",
                 ["no action named 'setpu'", "did you mean 'setup'?"], id="action-unknown-dep"),
    pytest.param(OK + '\n[actions.migrate]\ncmd = "x"\ntarget = "bakend"\n', "actions.migrate.target",
                 ["no target named 'bakend'", "did you mean 'backend'?"], id="action-unknown-target"),
    pytest.param(OK + '\n[actions.a]\ncmd = "x"\ndeps = ["b"]\n\n[actions.b]\ncmd = "y"\ndeps = ["a"]\n', "actions.a.deps",
                 ["cycle", "a -> b -> a"], id="action-dep-cycle"),
    pytest.param(OK + '\n[actions."db migrate"]\ncmd = "x"\ndeps = ["nope"]\n', 'actions."db migrate".deps[0]',
                 ["no action named 'nope'"], id="quoted-action-name"),
]


@pytest.mark.parametrize(("text", "key", "words"), MISTAKES)
def test_each_mistake_is_one_problem_naming_key_and_fix(tmp_path: Path, text: str, key: str, words: list[str]) -> None:
    problems = problems_of(workspace(tmp_path, text))
    assert len(problems) == 1, problems
    where, message = split(problems[0])
    assert where == key, problems[0]
    for word in words:
        assert word in message, f"{word!r} not in {problems[0]!r}"
    # pydantic internals must not leak into what the user reads
    for internal in ("function-", "Mapping", "Target", "union", "Value error", "Input should"):
        assert internal not in problems[0], problems[0]


def test_all_problems_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = """
[daemon]
debounce_msec = 5

[targets.backend]
kind = "ssh"

[targets.web]
kind = "docker"

[[services]]
name = "backend"
target = "backend"
sync = [{ src = "backend/srcc", dest = "app" }]
restart = "reboot"

[[services]]
name = "backend"
target = "nowhere"
sync = [{ src = "web", dest = "/" }]

[actions.migrate]
cmd = "x"
deps = ["setup"]
"""
    problems = problems_of(workspace(tmp_path, text))
    keys = sorted(split(p)[0] for p in problems)
    assert keys == sorted([
        "daemon.debounce_msec",        # unknown key
        "targets.backend.kind",        # bad kind
        "targets.web",                 # docker with neither container nor labels
        "services[0].sync[0].dest",    # relative dest
        "services[0].restart",         # bad restart
        "services[0].sync[0].src",     # missing src: checked even though the schema failed
        "services[1].sync[0].dest",    # dest = "/"
        "services[1].name",            # duplicate
        "services[1].target",          # unknown target
        "actions.migrate.deps[0]",     # unknown dep
    ]), problems
    assert len(problems) == 10
    # listed in file order (by section, then by service), not schema problems first
    positions = [file_position(split(p)[0]) for p in problems]
    assert positions == sorted(positions), problems


def file_position(key: str) -> tuple[int, int]:
    section = re.match(r"[a-z_]+", key)
    service_index = re.match(r"services\[(\d+)\]", key)  # (these services share a name: by index)
    assert section
    return ["daemon", "targets", "services", "actions"].index(section[0]), int(service_index[1]) if service_index else -1


def test_problems_name_the_service_not_its_index(tmp_path: Path) -> None:
    text = TARGETS + service(name="web", target="web") + service(extra='build = [{ cmd = "make", triger = ["x"] }]')
    problems = problems_of(workspace(tmp_path, text))
    assert [split(p)[0] for p in problems] == ["services[backend].build[0].triger"], problems
    assert "did you mean 'trigger'?" in problems[0]


def test_a_typo_does_not_also_report_the_key_it_was_meant_to_be(tmp_path: Path) -> None:
    problems = problems_of(workspace(tmp_path, TARGETS + service(sync=None, extra=f"snyc = {SYNC}")))
    assert problems == ["services[backend].snyc: unknown key (did you mean 'sync'?)"]


def test_unknown_key_in_a_target_of_unknown_kind_is_still_about_the_kind(tmp_path: Path) -> None:
    problems = problems_of(workspace(tmp_path, target("backend", 'kind = "ssh"\nhost = "x"') + service()))
    assert [split(p)[0] for p in problems] == ["targets.backend.kind"]


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = workspace(tmp_path, '[daemon]\ndebounce_ms = 20\napi = 127.0.0.1:1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert len(info.value.problems) == 1
    assert "TOML syntax error" in info.value.problems[0]
    assert "line 3" in info.value.problems[0]
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_is_named_with_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.problems == ["file not found; pass -c FILE with an existing config"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.file == str(tmp_path)
    assert "not a file" in info.value.problems[0]


# --- what a good config gives the rest of syncd -----------------------------------------------


def test_every_documented_key_loads(tmp_path: Path) -> None:
    cfg = load_config(workspace(tmp_path, GOOD))
    assert isinstance(cfg, Config)
    assert cfg.root == tmp_path.resolve()
    assert cfg.file == tmp_path / "syncd.toml"
    assert (cfg.daemon.debounce_ms, cfg.daemon.max_batch_wait_ms, cfg.daemon.api) == (20, 2000, "127.0.0.1:10351")
    assert cfg.resolve(cfg.daemon.trace) == tmp_path.resolve() / ".syncd/trace.jsonl"
    assert (cfg.daemon.trace_max_mb, cfg.daemon.trace_keep) == (0.5, 3)
    backend, web, worker, sandbox = (cfg.targets[n] for n in ("backend", "web", "worker", "sandbox"))
    assert isinstance(backend, KubernetesTarget)
    assert (backend.context, backend.namespace, backend.selector, backend.container) == ("kind-dev", "dev", "app=backend", "api")
    assert isinstance(web, DockerTarget) and web.container == "app-frontend-1" and web.labels is None
    assert web.user == "1000:1000" and isinstance(worker, DockerTarget) and worker.user is None
    assert isinstance(worker, DockerTarget) and worker.labels == {"com.docker.compose.service": "worker"}
    assert isinstance(sandbox, LocalTarget) and sandbox.path == ".syncd/sandbox/web"
    svc = cfg.service("backend")
    assert svc.ignore == ["target/", "**/*.swp"]
    assert svc.fall_back_on == ["backend/Cargo.toml", "backend/Cargo.lock"]
    assert svc.fallback == "tilt trigger backend"
    assert [(m.src, m.dest) for m in svc.sync] == [("backend/src", "/app/src"), ("backend/target/debug/api", "/app/bin/api")]
    assert svc.build[0].cmd == ["cargo", "build"] and svc.build[0].cwd == "backend"
    assert svc.build[0].trigger == ["backend/src/**", "backend/Cargo.*"] and svc.build[0].env == {"RUSTFLAGS": "-g"}
    assert svc.run[0].cmd == "kill -HUP 1" and svc.run[0].trigger == ["backend/src/**"]
    assert svc.restart == "process"
    assert cfg.service("web").sync[0].dest == "/srv/www"  # normalized
    assert cfg.service("web").restart == "container"
    assert cfg.service("worker").fallback == ["docker", "compose", "restart", "worker"]
    assert cfg.service("sandbox").restart == "none"
    assert cfg.actions["db-migrate"].target == "backend" and cfg.actions["db-migrate"].deps == ["dev-setup"]
    assert cfg.actions["dev-setup"].cmd == ["make", "setup"] and cfg.actions["dev-setup"].target is None
    with pytest.raises(KeyError):
        cfg.service("nope")


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(workspace(tmp_path, OK))
    assert (cfg.daemon.debounce_ms, cfg.daemon.max_batch_wait_ms) == (20, 2000)
    assert (cfg.daemon.trace_max_mb, cfg.daemon.trace_keep) == (10, 2)
    assert cfg.targets["backend"].namespace == "default"
    assert cfg.services[0].restart == "none" and cfg.actions == {}


@pytest.mark.parametrize("api", ["127.0.0.1:0", "[::1]:10351", "unix:.syncd/api.sock"])
def test_api_forms_accepted(tmp_path: Path, api: str) -> None:
    assert load_config(workspace(tmp_path, f'[daemon]\napi = "{api}"\n' + OK)).daemon.api == api


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "app").mkdir()
    text = TARGETS + service(sync='[{ src = "app", dest = "/app" }]')
    cfg = load_config(workspace(tmp_path, text, name="config/syncd.toml"))
    assert cfg.root == (tmp_path / "config").resolve()
    assert cfg.resolve("app") == (tmp_path / "config" / "app").resolve()
    # `backend/src` exists beside the workspace root, not beside the config file
    problems = problems_of(workspace(tmp_path, OK, name="config/syncd.toml"))
    assert [split(p)[0] for p in problems] == ["services[backend].sync[0].src"]


def test_find_config_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        find_config(None)
    assert "syncd.toml" in info.value.problems[0] and "config/syncd.toml" in info.value.problems[0]
    assert "-c FILE" in info.value.problems[0]
    workspace(tmp_path, OK, name="config/syncd.toml")
    assert find_config(None) == Path("config/syncd.toml")
    workspace(tmp_path, OK)
    assert find_config(None) == Path("syncd.toml")
    assert find_config("other.toml") == Path("other.toml")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")  # from a subdirectory, as git finds its repository
    assert find_config(None) == tmp_path / "syncd.toml"


# --- `syncd validate` -------------------------------------------------------------------------


def validate(path: Path) -> tuple[int, str]:
    """Run the real CLI; return its exit code and output (stdout + stderr, unwrapped)."""
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "syncd", "validate", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_cli_validate_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = workspace(tmp_path, "[daemon]\ndebounce_msec = 5\n" + TARGETS
                     + service(sync='[{ src = "backend/srcc", dest = "/app/src" }]'))
    code, out = validate(path)
    assert code == 2, out
    assert "2 problem(s)" in out
    assert f"{path}: daemon.debounce_msec: unknown key (did you mean 'debounce_ms'?)" in out
    assert f"{path}: services[backend].sync[0].src: path 'backend/srcc' does not exist (did you mean 'backend/src'?)" in out


def test_cli_validate_syntax_error_and_missing_file_exit_2(tmp_path: Path) -> None:
    path = workspace(tmp_path, "[daemon\n")
    code, out = validate(path)
    assert code == 2 and str(path) in out and "TOML syntax error" in out and "line 1" in out
    code, out = validate(tmp_path / "missing.toml")
    assert code == 2 and str(tmp_path / "missing.toml") in out and "file not found" in out


def test_cli_validate_good_config_exits_0_with_summary(tmp_path: Path) -> None:
    path = workspace(tmp_path, GOOD)
    code, out = validate(path)
    assert code == 0, out
    assert f"{path}: ok" in out
    assert "4 target(s), 4 service(s), 5 mapping(s)" in out
