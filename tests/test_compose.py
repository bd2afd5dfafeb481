"""Compose's develop.watch rules read as a syncd config (syncd/compose.py): each action, ignore
and include rules, several -f files, the project name, what cannot be honoured — without
Docker. The same rules against containers started as Compose starts them:
tests/test_compose_docker.py."""

from __future__ import annotations

import os
import textwrap
import tomllib
from pathlib import Path

import pytest
import structlog

from syncd.cli import main
from syncd.config import ConfigError, load_compose_config, load_config
from syncd.core.plan import ServicePlanInput, fallback_reason
from syncd.services import service_runtimes
from tests.engine_harness import running, wait_until

LABELS = ("com.docker.compose.project", "com.docker.compose.service", "com.docker.compose.oneoff")


@pytest.fixture(autouse=True)
def _no_compose_env(monkeypatch):
    for var in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PATH_SEPARATOR"):
        monkeypatch.delenv(var, raising=False)
    yield
    structlog.reset_defaults()  # main() pointed the log at a captured stderr that is gone now


def project(root: Path, text: str, name: str = "compose.yaml", files: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{rel}\n")
    (root / name).write_text(textwrap.dedent(text))
    return root / name


def derived(path: Path, *more: Path, name: str | None = None) -> tuple[dict, dict]:
    """(services by name, targets) of the config syncd derives."""
    cfg = load_compose_config([str(path), *map(str, more)], name)
    return {s.name: s for s in cfg.services}, cfg.targets


def problems(*paths: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_compose_config([str(p) for p in paths])
    return e.value.problems


EVERY_ACTION = """
    services:
      web:
        build: ./web
        develop:
          watch:
            - action: sync
              path: ./web/src
              target: /app/src
              ignore: ["*.test.js", generated/]
            - action: sync+exec
              path: ./web/config
              target: /app/config
              exec:
                command: app reload --soft
                working_dir: /app
                environment: {MODE: dev}
            - action: rebuild
              path: ./web/package.json
      proxy:
        image: nginx
        deploy: {replicas: 3}
        develop:
          watch:
            - action: sync+restart
              path: ./proxy/nginx.conf
              target: /etc/nginx/conf.d/default.conf
            - action: restart
              path: ./proxy/certs
"""
FILES = ("web/src/app.js", "web/config/app.toml", "web/package.json", "proxy/nginx.conf", "proxy/certs/a.pem")


def test_each_action_becomes_targets_and_services(tmp_path: Path) -> None:
    services, targets = derived(project(tmp_path / "shop", EVERY_ACTION, files=FILES))
    # Containers are found by Compose's labels: every replica of the service, no one-off `run`.
    assert targets["web"].labels == dict(zip(LABELS, ("shop", "web", "False"), strict=True))
    assert targets["proxy"].labels == dict(zip(LABELS, ("shop", "proxy", "False"), strict=True))
    assert sorted(services) == ["proxy", "proxy:restart", "web", "web:rebuild"]
    web = services["web"]
    assert [(m.src, m.dest, m.ignore) for m in web.sync] == [("web/src", "/app/src", ["*.test.js", "generated/"]),
                                                            ("web/config", "/app/config", [])]
    assert web.restart == "none" and web.dockerignore == ["web/.dockerignore"]
    # sync+exec: a run step of that rule's tree only, the command split into words (no shell),
    # working_dir and environment wrapped around it
    [step] = web.run
    assert step.trigger == ["/web/config"]
    assert step.cmd == ["env", "MODE=dev", "sh", "-c", 'cd "$0" && exec "$@"', "/app", "app", "reload", "--soft"]
    rebuild = services["web:rebuild"]
    assert rebuild.sync == [] and rebuild.fall_back_on[0] == "/web/package.json"
    assert rebuild.fallback == ["docker", "compose", "-p", "shop", "-f", "compose.yaml", "up", "-d", "--build", "--no-deps",
                                "web"]
    proxy = services["proxy"]
    assert proxy.restart == "container" and [m.dest for m in proxy.sync] == ["/etc/nginx/conf.d/default.conf"]
    assert services["proxy:restart"].fallback == ["docker", "compose", "-p", "shop", "-f", "compose.yaml", "restart",
                                                  "proxy"]


def test_exec_user_becomes_the_targets_user(tmp_path: Path) -> None:
    """Compose's `exec.user` runs the command as that user; a Docker exec cannot switch users
    halfway, so syncd runs all of its execs in the service's containers (the sync too) as it —
    said in a note. Rules that disagree, or a user that is no user, are problems."""
    text = """
        services:
          web:
            image: x
            develop:
              watch:
                - {action: sync, path: ./src, target: /app/src}
                - {action: sync+exec, path: ./etc, target: /app/etc, exec: {command: reload, user: "1000:1000"}}
    """
    path = project(tmp_path / "shop", text, files=("src/a", "etc/b"))
    services, targets = derived(path)
    assert targets["web"].user == "1000:1000"
    assert services["web"].run[0].cmd == ["reload"]
    cfg = load_compose_config([str(path)])
    notes = cfg.compose["notes"] if cfg.compose else []
    assert any("exec.user '1000:1000' -> targets.web.user" in n for n in notes), notes
    two = text.replace("target: /app/src}", "target: /app/src}\n                - {action: sync+exec, path: ./src/x, "
                       "target: /app/src/x, exec: {command: a, user: www}}")
    (tmp_path / "shop" / "src" / "x").mkdir()
    said = problems(project(tmp_path / "shop", two))
    assert any("exec.user differs between rules (watch[1] 'www', watch[2] '1000:1000')" in p for p in said), said
    bad = problems(project(tmp_path / "shop", text.replace('"1000:1000"', '"a b"')))
    assert any("[1].exec.user: 'a b' is not a user" in p for p in bad), bad


def test_rules_whose_paths_nest_get_services_of_their_own(tmp_path: Path) -> None:
    """Each rule's ignore applies to its own tree only, and a sync rule's change does not restart
    what a sync+restart rule restarts: nested paths and different actions never share a service."""
    path = project(tmp_path / "p", """
        services:
          web:
            image: x
            develop:
              watch:
                - {action: sync, path: ./web, target: /app, ignore: [static/]}
                - {action: sync, path: ./web/static, target: /srv/static}
                - {action: sync, path: ./docs, target: /docs}
                - {action: sync+restart, path: ./web/conf.py, target: /etc/conf.py}
    """, files=("web/a.js", "web/static/s.css", "docs/d.md", "web/conf.py"))
    services, _ = derived(path)
    assert {n: [m.src for m in s.sync] for n, s in services.items()} == {
        "web": ["web", "docs"], "web#1": ["web/static"], "web+restart": ["web/conf.py"]}
    assert services["web+restart"].restart == "container" and services["web"].restart == "none"


def runtime(path: Path, service: str):
    cfg = load_compose_config([str(path)])
    return next(r for r in service_runtimes(cfg) if r.name == service)


def test_ignore_and_include_mean_what_compose_documents(tmp_path: Path) -> None:
    """.dockerignore syntax anchored at the rule's path; `include` keeps only what it matches;
    the service's build context's .dockerignore applies, another directory's does not; the
    editor files Compose leaves out are left out."""
    root = tmp_path / "p"
    path = project(root, """
        services:
          web:
            build: {context: ./web}
            develop:
              watch:
                - {action: sync, path: ./web/src, target: /app/src, ignore: ["*.test.js", generated]}
                - {action: sync, path: ./web/static, target: /srv, include: "*.css"}
                - {action: sync, path: ./web/deep, target: /deep, include: ["**/*.css", "!**/skip.css"]}
    """, files=("web/src/a.js", "web/static/a.css", "web/deep/x/a.css"))
    (root / ".dockerignore").write_text("web\n")  # another context's (the project root's): not this service's
    (root / "web" / ".dockerignore").write_text("src/secret.txt\n")
    rules = runtime(path, "web").rules
    src, static, deep = root / "web/src", root / "web/static", root / "web/deep"

    def ignored(base: Path, rel: str, is_dir: bool = False) -> bool:
        return rules.ignored(base / rel, is_dir, base)

    assert not ignored(src, "a.js") and not ignored(src, "sub/b.js")
    assert ignored(src, "a.test.js") and not ignored(src, "sub/a.test.js")  # anchored at the rule's path
    assert ignored(src, "generated", True) and ignored(src, "generated/x.js")
    assert ignored(src, "secret.txt")  # web/.dockerignore, the build context's
    assert ignored(src, ".idea", True) and ignored(src, "a.js___jb_tmp___") and ignored(src, ".a.js.swp")
    assert not ignored(static, "a.css") and ignored(static, "a.js") and ignored(static, "sub/b.css")
    assert ignored(static, "sub", True) and not rules.open_below(static / "sub", static)  # nothing inside can match
    assert not ignored(deep, "x/y/a.css") and ignored(deep, "x/a.js") and ignored(deep, "x/skip.css")
    assert rules.open_below(deep / "x", deep)  # an ignored directory that .css files below it re-include


def test_a_dockerfile_specific_dockerignore_wins(tmp_path: Path) -> None:
    root = tmp_path / "p"
    path = project(root, """
        services:
          web:
            build: {context: ., dockerfile: dev.Dockerfile}
            develop:
              watch: [{action: sync, path: ./src, target: /app}]
    """, files=("src/a.txt",))
    (root / ".dockerignore").write_text("src/a.txt\n")
    (root / "dev.Dockerfile.dockerignore").write_text("src/b.txt\n")
    services, _ = derived(path)
    assert services["web"].dockerignore == ["dev.Dockerfile.dockerignore"]
    rules = runtime(path, "web").rules
    assert rules.ignored(root / "src/b.txt", False, root / "src") and not rules.ignored(root / "src/a.txt", False, root / "src")


def test_rebuild_rules_fall_back_on_their_tree_less_ignores_and_editor_files(tmp_path: Path) -> None:
    path = project(tmp_path / "p", """
        services:
          api:
            build: ./api
            develop:
              watch:
                - {action: rebuild, path: ./api, ignore: ["*.md", docs]}
    """, files=("api/main.go",))
    (tmp_path / "p/api/.dockerignore").write_text("testdata\n")
    services, _ = derived(path)
    svc = services["api"]  # a service's first (here: only) syncd service is named after it
    plan = ServicePlanInput(svc.name, svc.target, (), tuple(svc.fall_back_on), svc.fallback)

    def falls_back(*rels: str) -> bool:
        return fallback_reason(plan, list(rels)) is not None

    assert falls_back("api/main.go") and falls_back("api/pkg/x.go") and falls_back("api/README.txt")
    assert not falls_back("api/README.md") and not falls_back("api/docs/x.go") and not falls_back("api/testdata/a")
    assert not falls_back("api/.main.go.swp") and not falls_back("api/main.go~") and not falls_back("api/.git/index")
    assert not falls_back("web/main.go") and not falls_back("apix/main.go")
    assert fallback_reason(plan, ["api/main.go"]) == "api/main.go matches fall_back_on '/api'"


def test_several_files_merge_in_order_paths_relative_to_the_first(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    base = project(root, """
        name: First
        services:
          web:
            image: x
            develop:
              watch: [{action: sync, path: ./src, target: /app/src}]
    """, files=("src/a.js", "assets/logo.svg"))
    override = project(root / "overrides", """
        name: ${STAGE:-dev}-shop
        services:
          web:
            develop:
              watch: [{action: sync, path: ./assets, target: /app/assets}]
          worker:
            build: .
            develop:
              watch: [{action: rebuild, path: ./src}]
    """, name="dev.yaml")
    services, targets = derived(base, override)
    # rules add up; `./assets` of the second file is the first file's directory's (Compose's rule)
    assert [(m.src, m.dest) for m in services["web"].sync] == [("src", "/app/src"), ("assets", "/app/assets")]
    assert targets["web"].labels["com.docker.compose.project"] == "dev-shop"  # the last name: wins, interpolated
    assert services["worker"].fallback[:8] == ["docker", "compose", "-p", "dev-shop", "-f", "compose.yaml", "-f",
                                               "overrides/dev.yaml"]


@pytest.mark.parametrize(("env", "name_line", "dirname", "expected"), [
    ({}, "", "My_Shop.App", "my_shopapp"),  # directory name, normalized as Compose does
    ({}, "name: Web Shop!", "x", "webshop"),
    ({}, "name: __Odd-Name", "x", "odd-name"),
    ({"COMPOSE_PROJECT_NAME": "from-env"}, "name: ignored", "x", "from-env"),
    ({"COMPOSE_PROJECT_NAME": ""}, "", "Dir", "dir"),  # empty: not set
], ids=["directory", "name-key", "leading-underscores", "env-wins", "empty-env"])
def test_project_name_rules(tmp_path: Path, monkeypatch, env: dict, name_line: str, dirname: str, expected: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = project(tmp_path / dirname, f"""
        {name_line}
        services:
          web: {{image: x, develop: {{watch: [{{action: sync, path: ., target: /app}}]}}}}
    """)
    _, targets = derived(path)
    assert targets["web"].labels["com.docker.compose.project"] == expected


def test_project_names_compose_refuses(tmp_path: Path, monkeypatch) -> None:
    path = project(tmp_path / "___", """
        services:
          web: {image: x, develop: {watch: [{action: sync, path: ., target: /app}]}}
    """)
    [said] = problems(path)
    assert "has no letter or digit left" in said and "COMPOSE_PROJECT_NAME" in said
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "My Project")
    [said] = problems(path)
    assert said.startswith("COMPOSE_PROJECT_NAME: invalid project name 'My Project'") and "use 'myproject'" in said
    assert derived(path, name="explicit")[1]["web"].labels["com.docker.compose.project"] == "explicit"


def test_files_are_found_as_compose_finds_them(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "p"
    rule = "services: {web: {image: x, develop: {watch: [{action: sync, path: ./src, target: /%s}]}}}\n"
    project(root, rule % "from-docker-compose-yml", name="docker-compose.yml", files=("src/a",))
    project(root, rule % "from-compose-yaml", name="compose.yaml")
    (root / "compose.override.yml").write_text(
        "services: {web: {develop: {watch: [{action: sync, path: ./src, target: /from-override}]}}}\n")
    (root / "src" / "deeper").mkdir()
    cfg = load_compose_config([], cwd=root / "src" / "deeper")  # from a subdirectory, like docker compose
    assert cfg.file == root / "compose.yaml"
    assert [m.dest for s in cfg.services for m in s.sync] == ["/from-compose-yaml", "/from-override"]
    monkeypatch.setenv("COMPOSE_FILE", str(root / "docker-compose.yml"))
    assert [m.dest for s in load_compose_config([], cwd=tmp_path).services for m in s.sync] == ["/from-docker-compose-yml"]
    monkeypatch.delenv("COMPOSE_FILE")
    with pytest.raises(ConfigError) as e:
        load_compose_config([], cwd=tmp_path)
    assert "no compose file found" in e.value.problems[0] and "--compose FILE" in e.value.problems[0]


def test_interpolation_and_dotenv(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "p"
    path = project(root, """
        services:
          web:
            image: x
            develop:
              watch:
                - {action: sync, path: "./${SRC_DIR}", target: "${APP_ROOT:-/app}/src"}
                - {action: sync+exec, path: ./etc, target: /etc/app, exec: {command: ["sh", "-c", "echo $$HOME"]}}
    """, files=("code/a.js", "etc/app.conf"))
    (root / ".env").write_text("# comment\nSRC_DIR=code\nexport APP_ROOT='/srv'\n")
    monkeypatch.setenv("APP_ROOT", "/from-env")  # the environment wins over .env
    services, _ = derived(path)
    assert [(m.src, m.dest) for m in services["web"].sync] == [("code", "/from-env/src"), ("etc", "/etc/app")]
    assert services["web"].run[0].cmd == ["sh", "-c", "echo $HOME"]
    path.write_text(path.read_text().replace("${SRC_DIR}", "${MISSING:?set MISSING first}"))
    [said] = problems(path)
    assert said.startswith(f"{path}: services.web.develop.watch[0].path: required variable MISSING")
    assert "set MISSING first" in said


def test_what_cannot_be_honoured_is_named_with_a_fix(tmp_path: Path) -> None:
    path = project(tmp_path / "p", """
        services:
          web:
            image: x
            develop:
              watch:
                - {action: synk, path: ./src, target: /app}
                - {action: sync, path: ./src}
                - {action: sync, path: ./src, target: app}
                - {action: sync, path: ./src, target: /}
                - {action: sync+exec, path: ./src, target: /app, exec: {command: reload, user: www, privileged: true}}
                - {action: sync, path: ./src, target: /app, ignor: [x]}
                - {action: rebuild, path: ./src}
                - {action: sync, path: ./nope, target: /app}
                - {action: sync+exec, path: ./src, target: /app}
                - {action: sync, path: ./src, target: /app, ignore: ["[z-a]"]}
                - {action: sync, target: /app}
    """, files=("src/a",))
    said = problems(path)
    rule = f"{path}: services.web.develop.watch"
    expected = [
        f"{rule}[0].action: unknown action 'synk' (did you mean 'sync'?)",
        f"{rule}[1].target: required for action sync",
        f"{rule}[2].target: 'app' must be an absolute container path (e.g. '/app')",
        f"{rule}[3].target: syncd never syncs into the container's root '/'",
        f"{rule}[4].exec.privileged: not supported",
        f"{rule}[5].ignor: unknown key (did you mean 'ignore'?)",
        f"{rule}[6].action: rebuild needs a `build` section in service web",
        f"{rule}[7].path: nope does not exist",
        f"{rule}[8].exec: required for action sync+exec",
        f"{rule}[9].ignore: invalid pattern '[z-a]'",
        f"{rule}[10].path: required",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in said), (start, said)
    assert len(said) == len(expected), said


def test_warnings_for_what_is_read_differently(tmp_path: Path, capsys) -> None:
    path = project(tmp_path / "p", """
        services:
          web:
            image: x
            volumes: ["./mounted:/app/mounted", "data:/data"]
            develop:
              extra: 1
              watch:
                - {action: sync, path: ./src, target: /app/src, initial_sync: false}
                - {action: sync, path: ./mounted, target: /app/mounted}
                - {action: rebuild, path: ./x, exec: {command: y}}
            build: .
    """, files=("src/a", "mounted/b"))
    cfg = load_compose_config([str(path)])
    warnings = cfg.compose["warnings"]
    assert any("develop.extra: unknown key, ignored" in w for w in warnings)
    assert any("watch[0].initial_sync: false is not honoured" in w for w in warnings)
    assert any("watch[1].path: mounted is also bind-mounted" in w for w in warnings)
    assert any("watch[2].exec: ignored" in w for w in warnings)
    assert [m.src for s in cfg.services for m in s.sync] == ["src"]  # the bind-mounted rule is skipped, as Compose does
    assert main(["validate", "--compose", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "develop.extra" in err


def test_validate_prints_the_derived_config_which_loads_as_a_syncd_toml(tmp_path: Path, capsys) -> None:
    root = tmp_path / "shop"
    path = project(root, EVERY_ACTION, files=FILES)
    assert main(["validate", "--compose", str(path)]) == 0
    out = capsys.readouterr().out
    assert "# project 'shop' (from the directory name" in out
    assert "services.web.develop.watch[2] (rebuild web/package.json) -> service web:rebuild" in out
    toml = out[: out.rindex("\n", 0, out.rindex(": ok"))]
    (root / "syncd.toml").write_text(toml)
    again, original = load_config(root / "syncd.toml"), load_compose_config([str(path)])
    assert again.services == original.services and again.targets == original.targets
    assert tomllib.loads(toml)["services"][0]["name"] == "web"


def test_bad_compose_files_exit_2_naming_file_and_key(tmp_path: Path, capsys) -> None:
    path = project(tmp_path / "p", """
        services:
          web: {image: x, develop: {watch: [{action: sync, path: ., target: relative}]}}
    """)
    assert main(["validate", "--compose", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: services.web.develop.watch[0].target: 'relative' must be an absolute" in err
    (tmp_path / "p" / "compose.yaml").write_text("services: [\n")
    assert main(["validate", "-f", str(path)]) == 2
    assert "YAML syntax error" in capsys.readouterr().err
    (tmp_path / "p" / "compose.yaml").write_text("services: {web: {image: x}}\n")
    assert main(["validate", "--compose", str(path)]) == 2
    assert "no service has develop.watch rules" in capsys.readouterr().err
    assert main(["validate", "--compose", str(path), "-c", "syncd.toml"]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_syncd_toml_includes_a_compose_file_and_adds_to_it(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    project(root, EVERY_ACTION, files=(*FILES, "web/build.sh"))
    (root / "config").mkdir()
    (root / "config" / "syncd.toml").write_text(textwrap.dedent("""
        include = "../compose.yaml"

        [[services]]
        name = "web"
        build = [{ cmd = "sh build.sh", cwd = "../web", trigger = ["../web/src/**"] }]
        smoke = { path = "../web/src/app.js", comment = "//" }

        [actions.hello]
        cmd = "echo hello"
    """))
    cfg = load_config(root / "config" / "syncd.toml")
    web = cfg.service("web")
    assert [m.src for m in web.sync] == ["../web/src", "../web/config"]  # relative to the TOML, derived from compose
    assert web.build[0].cmd == "sh build.sh" and web.smoke is not None and "hello" in cfg.actions
    assert cfg.targets["web"].labels["com.docker.compose.project"] == "shop"
    assert cfg.resolve(web.sync[0].src) == root / "web" / "src"


def test_include_and_extends_in_compose_files(tmp_path: Path) -> None:
    root = tmp_path / "p"
    project(root / "sub", """
        services:
          worker:
            image: x
            develop: {watch: [{action: sync, path: ./jobs, target: /jobs}]}
    """, files=("jobs/a.py",))
    path = project(root, """
        include: [sub/compose.yaml]
        services:
          base:
            image: x
            develop: {watch: [{action: sync, path: ./shared, target: /shared}]}
          web:
            extends: base
            develop: {watch: [{action: sync, path: ./web, target: /web}]}
    """, files=("shared/s", "web/w"))
    services, _ = derived(path)
    assert [m.src for m in services["web"].sync] == ["shared", "web"]  # the base's rules, then its own
    assert [m.src for m in services["worker"].sync] == ["sub/jobs"]  # an included file's paths: its own directory's


def test_fall_back_on_takes_paths_back_out_with_bang_lines() -> None:
    svc = ServicePlanInput("s", "t", (), ("/api", "!/api/*.md", "!**/.*.swp"), "true")
    assert fallback_reason(svc, ["api/x.go"]) == "api/x.go matches fall_back_on '/api'"
    assert fallback_reason(svc, ["api/x.md", "api/.x.go.swp"]) is None



@pytest.mark.anyio
async def test_a_fallback_only_service_runs_its_command_and_syncs_nothing(tmp_path: Path) -> None:
    """A rebuild rule's service has no mapping: a change in its tree runs the fallback (once per
    batch), an editor's swap file does not; the target it names is never synced."""
    (tmp_path / "api").mkdir()
    (tmp_path / "web").mkdir()
    (tmp_path / "syncd.toml").write_text(textwrap.dedent("""
        [daemon]
        debounce_ms = 20
        [targets.box]
        kind = "local"
        path = "box"
        [targets.nothing]
        kind = "local"
        path = "nothing"
        [[services]]
        name = "web"
        target = "box"
        sync = [{ src = "web", dest = "/web", include = ["*.js"] }]
        [[services]]
        name = "api:rebuild"
        target = "nothing"
        fall_back_on = ["/api", "!**/.*.swp"]
        fallback = "echo rebuilt >> rebuilds.log"
    """))
    cfg = load_config(tmp_path / "syncd.toml")
    async with running(cfg) as engine:
        assert "nothing" not in engine.targets
        (tmp_path / "api" / ".main.go.swp").write_text("swap")
        (tmp_path / "web" / "a.js").write_text("js")
        (tmp_path / "web" / "a.txt").write_text("txt")  # not included
        await wait_until(lambda: (tmp_path / "box/web/a.js").exists(), what="a.js synced")
        await wait_until(engine.idle, what="idle")
        assert not (tmp_path / "rebuilds.log").exists() and not (tmp_path / "box/web/a.txt").exists()
        (tmp_path / "api" / "main.go").write_text("package main")
        await wait_until(lambda: (tmp_path / "rebuilds.log").exists(), what="the fallback")
        await wait_until(engine.idle, what="idle")
        assert (tmp_path / "rebuilds.log").read_text() == "rebuilt\n"
        record = next(r for r in reversed(engine.trace.records) if "api:rebuild" in r["services"])
        assert any(s["name"] == "fallback:api:rebuild" and s["ok"] for s in record["spans"]), record
    assert not (tmp_path / "nothing").exists()
    assert os.listdir(tmp_path / "box/web") == ["a.js"]


@pytest.mark.anyio
async def test_a_rebuild_rule_runs_docker_compose_up_for_its_service(tmp_path: Path, monkeypatch) -> None:
    """The fallback is Compose's own command, with the project's files and name (a stand-in
    `docker` on PATH records it: no engine is needed for a service that only falls back)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/docker.log\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = project(tmp_path / "shop", """
        services:
          api:
            build: ./api
            develop:
              watch: [{action: rebuild, path: ./api, ignore: ["*.md"]}]
    """, files=("api/main.go",))
    cfg = load_compose_config([str(path)])
    async with running(cfg) as engine:
        (tmp_path / "shop/api/README.md").write_text("docs")  # ignored by the rule
        (tmp_path / "shop/api/main.go").write_text("package main // v2")
        await wait_until(lambda: (tmp_path / "docker.log").exists(), what="the fallback")
        await wait_until(engine.idle, what="idle")
    assert (tmp_path / "docker.log").read_text() == "compose -p shop -f compose.yaml up -d --build --no-deps api\n"
    record = next(r for r in engine.trace.records if r["services"] == ["api"])
    fallback = next(s for s in record["spans"] if s["name"] == "fallback:api")
    assert fallback["detail"]["reason"] == "api/main.go matches fall_back_on '/api'"


def test_the_example_apps_compose_file(tmp_path: Path) -> None:
    """examples/fullstack/compose.yaml runs the example without a syncd TOML."""
    root = tmp_path / "fullstack"
    root.mkdir()
    (root / "compose.yaml").write_text((Path(__file__).parents[1] / "examples/fullstack/compose.yaml").read_text())
    for d in ("backend/target/x86_64-unknown-linux-gnu/debug", "migrations", "runtime", "frontend/dist"):
        (root / d).mkdir(parents=True)
    (root / "backend/target/x86_64-unknown-linux-gnu/debug/api").write_text("binary")
    services, targets = derived(root / "compose.yaml")
    assert targets["backend"].labels["com.docker.compose.project"] == "fullstack"
    assert [(m.src, m.dest) for m in services["backend"].sync] == [("backend/target/x86_64-unknown-linux-gnu/debug/api", "/app/bin/api"),
                                                                  ("migrations", "/app/migrations")]
    assert services["backend"].run[0].cmd == ["kill", "-HUP", "1"]
    assert services["backend:restart"].fallback[-2:] == ["restart", "backend"]
    assert [(m.src, m.dest) for m in services["frontend"].sync] == [("frontend/dist", "/srv/www")]


def test_the_daemon_watches_inside_the_project_only(tmp_path: Path) -> None:
    """Fallback globs are anchored (`/web/package.json`) and carry `!` lines: neither may make
    the watcher climb to the file system's root."""
    from syncd.core.paths import watch_sources
    from syncd.watch import watch_roots

    root = tmp_path / "shop"
    cfg = load_compose_config([str(project(root, EVERY_ACTION, files=FILES))])
    roots = watch_roots(watch_sources(service_runtimes(cfg), cfg.resolve))
    assert roots and all(r == root or root in r.parents for r in roots), roots
