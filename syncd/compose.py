"""A compose file's `develop.watch` rules as a syncd config (README: "Docker Compose").

The translation (`translate`) is pure: a merged compose model and where it came from in,
syncd's config tables (as TOML would hold them) and every problem and warning out. Reading the
files — Compose's lookup order, `-f` files merged in order, `include:`, `.env` and `${VAR}`
interpolation, the project name — is done by `load`, at the edge, the way Compose does it:

- files: the ones given, else `COMPOSE_FILE`, else the first of `DEFAULT_FILES` in the current
  directory or the nearest one above it, with its `compose.override.yml` (`OVERRIDE_FILES`);
- the project directory is the first file's; relative paths of every `-f` file are resolved
  against it (an `include:`d file's against its own directory);
- merge: mappings key by key, sequences appended (so `develop.watch` rules add up), scalars
  replaced — the Compose Specification's merge rules for the keys syncd reads;
- project name: `COMPOSE_PROJECT_NAME` (must already be valid, as Compose requires), else the
  last `name:` of the files, else the project directory's name, both normalized as Compose does
  (lowercase, only `[a-z0-9_-]`, no leading `-`/`_`).

What Compose's rules become (README has the table): each service with rules gets a docker
target selecting its containers by Compose's labels (every replica), and syncd services —
`S` (sync, sync+exec), `S+restart` (sync+restart), `S:rebuild` and `S:restart` (fallback-only
services running `docker compose up -d --build --no-deps S` / `docker compose restart S`). A
service's first one is named `S` itself; rules whose paths nest go to services of their own
(`S#<rule>`), so each rule's `ignore`/`include` applies to its own tree only.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.dockerignore import DockerPatterns, clean

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")
PROJECT_LABEL, SERVICE_LABEL, ONEOFF_LABEL = "com.docker.compose.project", "com.docker.compose.service", \
    "com.docker.compose.oneoff"
SYNC_ACTIONS = ("sync", "sync+restart", "sync+exec")
ACTIONS = (*SYNC_ACTIONS, "rebuild", "restart")
RULE_KEYS = ("path", "action", "target", "ignore", "include", "initial_sync", "exec")
USER_SPEC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?")  # a Docker exec's `user`
EXEC_KEYS = ("command", "user", "privileged", "working_dir", "environment")
# What `docker compose watch` never reacts to (its EphemeralPathMatcher, and `.git/`), for the
# globs of rebuild/restart rules; synced trees get syncd's own defaults, which cover these.
EPHEMERAL = ("**/*___jb_old___", "**/*___jb_tmp___", "**/.idea/**", "**/.#*", "**/#*#", "**/4913", "**/*~",
             "**/.*.swp", "**/.*.swx", "**/.*.swo", "**/.*.swn", "**/.*.kate-swp", "**/*-go-tmp-umask", "**/.git/")


class ComposeError(Exception):
    """Problems found reading compose files; each names its file and key and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --- project name -----------------------------------------------------------------------


def normalize_project_name(name: str) -> str:
    """Compose's NormalizeProjectName: lowercase, only [a-z0-9_-], no leading '-' or '_'."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def project_name(env: Mapping[str, str], names_in_files: list[tuple[str, str]], project_dir: Path,
                 explicit: str | None = None) -> tuple[str, str]:
    """(name, where it came from). `names_in_files`: (file, `name:`) in file order. Raises
    ComposeError as Compose refuses: an explicit or COMPOSE_PROJECT_NAME name that is not
    valid as written, or a name that normalizes to nothing."""
    for value, source in ((explicit, "--project-name"), (env.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME")):
        if value:
            fixed = normalize_project_name(value)
            if fixed != value:
                hint = f"use {fixed!r}" if fixed else "use lowercase letters, digits, '-' and '_'"
                raise ComposeError([f"{source}: invalid project name {value!r}: only lowercase letters, digits, "
                                    f"'-' and '_', starting with a letter or digit ({hint})"])
            return value, source
    named = [(f, n) for f, n in names_in_files if n]
    if named:
        file, name = named[-1]
        source = f"name: in {file}"
    else:
        name, source = project_dir.name, f"the directory name ({project_dir})"
    fixed = normalize_project_name(name)
    if not fixed:
        raise ComposeError([f"{source}: project name {name!r} has no letter or digit left once normalized "
                            "(set `name:` in the compose file or COMPOSE_PROJECT_NAME)"])
    return fixed, source


# --- interpolation and merging ------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?\})", re.DOTALL)


def _closing(text: str, start: int) -> int:
    """Index of the `}` closing the `${` that starts at `start` (nested `${…}` allowed)."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def interpolate(text: str, env: Mapping[str, str], where: str, warnings: list[str]) -> str:
    """Compose's `${VAR}` syntax: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}`, `$$` for a `$`."""
    out: list[str] = []
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        if text.startswith("${", j):
            end = _closing(text, j)
            if end < 0:
                raise ComposeError([f"{where}: unclosed '${{' in {text!r} (close it with '}}', or write '$$' for a '$')"])
            m = _VAR.fullmatch(text[j:end + 1])
            if m is None:
                raise ComposeError([f"{where}: invalid interpolation {text[j:end + 1]!r} (e.g. ${{VAR}} or ${{VAR:-default}})"])
            out.append(_substitute(m[3], m[4], m[5], env, where, warnings))
            i = end + 1
            continue
        m = _VAR.match(text, j)
        if m is None:
            raise ComposeError([f"{where}: invalid '$' in {text!r} (write '$$' for a literal '$')"])
        out.append("$" if m[1] else _substitute(m[2], None, None, env, where, warnings))
        i = m.end()


def _substitute(name: str, op: str | None, arg: str | None, env: Mapping[str, str], where: str,
                warnings: list[str]) -> str:
    value = env.get(name)
    if op is None:
        if value is None:
            warnings.append(f"{where}: variable {name} is not set, using an empty string (as Compose does)")
        return value or ""
    empty_counts = op.startswith(":")
    unset = value is None or (empty_counts and value == "")
    rest = interpolate(arg or "", env, where, warnings) if op[-1] != "?" or unset else ""
    if op[-1] == "-":
        return rest if unset else str(value)
    if op[-1] == "+":
        return "" if unset else rest
    if unset:  # `?`
        message = interpolate(arg or "", env, where, warnings) or "not set"
        raise ComposeError([f"{where}: required variable {name} is missing a value: {message} (set it in the "
                            "environment or in .env)"])
    return str(value)


def interpolate_all(value: Any, env: Mapping[str, str], where: str, warnings: list[str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env, where, warnings)
    if isinstance(value, dict):
        return {k: interpolate_all(v, env, f"{where}.{k}" if where else str(k), warnings) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_all(v, env, f"{where}[{i}]", warnings) for i, v in enumerate(value)]
    return value


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of one file over the ones before it: mappings key by key, sequences
    appended, anything else replaced. A `build:` string is its `context`."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if key == "build" and key in out:
                value = {"context": value} if isinstance(value, str) else value
                out[key] = merge({"context": out[key]} if isinstance(out[key], str) else out[key], value)
            else:
                out[key] = merge(out[key], value) if key in out else value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    return override


def parse_dotenv(text: str) -> dict[str, str]:
    """A `.env` file as Compose reads the common forms: `KEY=value`, `export KEY=value`,
    quotes, `#` comments."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
            if line.split("=", 1)[1].strip()[0] == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0]
        env[key.strip()] = value
    return env


# --- the translation ----------------------------------------------------------------------


@dataclass
class Context:
    """Where the model came from, for paths and messages. Paths in the model are absolute
    (`absolutize` made them so, file by file)."""

    project: str
    project_dir: Path
    files: list[Path]
    root: Path  # the syncd config's directory: derived paths are written relative to it
    env: Mapping[str, str] = field(default_factory=dict)  # exec `environment` entries without a value
    exists: Callable[[Path], bool] = os.path.exists
    read: Callable[[Path], str | None] = lambda p: p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
    # id(rule) -> "file: services.S.develop.watch[i]"; ("service", S) -> the file that defined S
    origins: dict[object, str] = field(default_factory=dict)
    project_source: str = ""


@dataclass
class Translation:
    targets: dict[str, dict] = field(default_factory=dict)
    services: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per rule: what syncd does with it

    @property
    def raw(self) -> dict:
        return {"targets": self.targets, "services": self.services}


def _close(word: str, choices: tuple[str, ...]) -> str:
    found = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{found[0]}'?" if found else f"valid: {', '.join(choices)}"


def _strings(value: Any) -> list[str] | None:
    """Compose's string_or_list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _glob_path(path: Path, root: Path) -> str:
    """`path` as an anchored gitignore glob relative to `root` (glob characters escaped)."""
    rel = re.sub(r"([*?\[\]\\])", r"\\\1", _rel(path, root))
    return rel if rel.startswith("../") else "/" + ("" if rel == "." else rel)


def _glob_lines(base: Path, patterns: list[str], root: Path, negate: bool) -> list[str]:
    """Docker-style patterns anchored at `base` as gitignore lines (a pattern or any parent)."""
    lines = []
    anchor = _glob_path(base, root).rstrip("/")
    for raw in patterns:
        exception = raw.startswith("!")
        p = clean(raw[1:] if exception else raw).lstrip("/")
        if p in ("", "."):
            continue
        bang = "!" if negate != exception else ""
        lines += [f"{bang}{anchor}/{p}", f"{bang}{anchor}/{p}/**"]
    return lines


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _compose_cmd(ctx: Context, *args: str) -> list[str]:
    files = [a for f in ctx.files for a in ("-f", _rel(f, ctx.root))]
    return ["docker", "compose", "-p", ctx.project, *files, *args]


def _exec_argv(hook: dict, where: str, env: Mapping[str, str], problems: list[str]) -> list[str] | None:
    """A sync+exec `exec` as the argv of a run step: `env K=V …` and `cd DIR` wrap the command."""
    for key in hook:
        if key not in EXEC_KEYS and not str(key).startswith("x-"):
            problems.append(f"{where}.exec.{key}: unknown key ({_close(str(key), EXEC_KEYS)})")
    command = hook.get("command")
    if isinstance(command, str):
        try:
            argv = shlex.split(command)  # Compose splits a string command into words, no shell
        except ValueError as e:
            problems.append(f"{where}.exec.command: cannot split {command!r} into words ({e}); use a list")
            return None
    elif isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        argv = list(command)
    else:
        problems.append(f"{where}.exec.command: required (a string or a list of strings, e.g. command: app reload)")
        return None
    if not argv:
        problems.append(f"{where}.exec.command: must not be empty (e.g. command: app reload)")
        return None
    user = hook.get("user")
    if user not in (None, "") and not (isinstance(user, str | int) and USER_SPEC.fullmatch(str(user))):
        problems.append(f"{where}.exec.user: {user!r} is not a user (a name, UID or UID:GID, e.g. user: \"1000:1000\")")
    if hook.get("privileged") not in (None, False, "false"):
        problems.append(f"{where}.exec.privileged: not supported: syncd runs steps without extra privileges "
                        "(remove `privileged`, or run the command from the container's own entrypoint)")
    workdir = hook.get("working_dir")
    if workdir not in (None, ""):
        if not isinstance(workdir, str) or not workdir.startswith("/"):
            problems.append(f"{where}.exec.working_dir: must be an absolute container path (got {workdir!r})")
            return None
        argv = ["sh", "-c", 'cd "$0" && exec "$@"', workdir, *argv]
    environment = hook.get("environment")
    pairs: list[str] = []
    if isinstance(environment, dict):
        for k, v in environment.items():
            if v is None:
                if k in env:
                    pairs.append(f"{k}={env[k]}")
            else:
                pairs.append(f"{k}={'true' if v is True else 'false' if v is False else v}")
    elif isinstance(environment, list) and all(isinstance(e, str) for e in environment):
        for item in environment:
            k, sep, _v = item.partition("=")
            if sep:
                pairs.append(item)
            elif k in env:  # `- KEY` takes it from here, as `docker exec -e KEY` does
                pairs.append(f"{k}={env[k]}")
    elif environment is not None:
        problems.append(f"{where}.exec.environment: must be a list of KEY=VALUE or a mapping")
        return None
    return ["env", *pairs, *argv] if pairs else argv


def _bind_sources(svc: dict) -> list[Path]:
    """Host directories bind-mounted into the service (absolute: `absolutize` made them so)."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            source = v.split(":", 1)[0] if ":" in v else ""
            if source.startswith("/"):
                out.append(Path(source))
        elif isinstance(v, dict) and v.get("type") == "bind" and isinstance(v.get("source"), str):
            out.append(Path(v["source"]))
    return out


def _dockerignore(svc: dict, ctx: Context) -> list[str] | None:
    """The .dockerignore that Compose applies to the service's rules: its build context's
    `<Dockerfile>.dockerignore`, else `.dockerignore`; none without `build`."""
    build = svc.get("build")
    if build is None:
        return []
    context_value = build if isinstance(build, str) else build.get("context") or str(ctx.project_dir)
    if not isinstance(context_value, str) or "://" in context_value:
        return []  # a remote context (git URL): no local .dockerignore
    context = Path(context_value)
    dockerfile = "Dockerfile" if isinstance(build, str) else str(build.get("dockerfile") or "Dockerfile")
    specific = context / f"{dockerfile}.dockerignore"
    return [_rel(specific if ctx.exists(specific) else context / ".dockerignore", ctx.root)]


@dataclass
class _Group:
    kind: str  # "sync" (sync, sync+exec) | "sync+restart" | "rebuild" | "restart"
    rules: list[tuple[int, dict, Path]] = field(default_factory=list)
    name: str = ""


def translate(model: dict, ctx: Context) -> Translation:
    """Every service's `develop.watch` rules as syncd targets and services."""
    out = Translation()
    services = model.get("services")
    if not isinstance(services, dict):
        out.problems.append(f"{ctx.files[0]}: services: required (a mapping of services)")
        return out
    used: set[str] = set()
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        develop = svc.get("develop")
        where_svc = f"services.{name}.develop"
        if develop is None and isinstance(svc.get("x-develop"), dict):
            develop = svc["x-develop"]
            out.warnings.append(f"{_origin(ctx, name)}: services.{name}.x-develop is deprecated, read as `develop`")
        if develop is None:
            continue
        if not isinstance(develop, dict):
            out.problems.append(f"{_origin(ctx, name)}: {where_svc}: must be a mapping with `watch`")
            continue
        for key in develop:
            if key != "watch" and not str(key).startswith("x-"):
                out.warnings.append(f"{_origin(ctx, name)}: {where_svc}.{key}: unknown key, ignored "
                                    f"(syncd reads `watch`; {_close(str(key), ('watch',))})")
        rules = develop.get("watch")
        if rules is None:
            continue
        if not isinstance(rules, list):
            out.problems.append(f"{_origin(ctx, name)}: {where_svc}.watch: must be a list of rules")
            continue
        _translate_service(str(name), svc, rules, ctx, out, used)
    if not out.services and not out.problems:
        files = ", ".join(str(f) for f in ctx.files)
        out.problems.append(f"{files}: no service has develop.watch rules (add e.g. `develop: {{watch: [{{action: sync, "
                            "path: ./src, target: /app/src}]}}` to a service)")
    return out


def _origin(ctx: Context, service: str) -> str:
    return ctx.origins.get(("service", service), str(ctx.files[0]))


def _translate_service(name: str, svc: dict, rules: list, ctx: Context, out: Translation, used: set[str]) -> None:
    groups: list[_Group] = []
    binds = _bind_sources(svc)
    for i, rule in enumerate(rules):
        where = ctx.origins.get(id(rule), f"{ctx.files[0]}: services.{name}.develop.watch[{i}]")
        if not isinstance(rule, dict):
            out.problems.append(f"{where}: must be a mapping with path and action")
            continue
        checked = _check_rule(name, svc, rule, where, out)
        if checked is None:
            continue
        action, path = checked
        if action in SYNC_ACTIONS and not ctx.exists(path):
            out.problems.append(f"{where}.path: {_rel(path, ctx.project_dir)} does not exist (paths are relative to the "
                                f"project directory {ctx.project_dir})")
            continue
        if action in SYNC_ACTIONS and any(path == b or b in path.parents for b in binds):
            out.warnings.append(f"{where}.path: {_rel(path, ctx.root)} is also bind-mounted into the service: "
                                "not synced, as Compose skips it (remove the bind mount to sync it)")
            continue
        if rule.get("initial_sync") is False:
            out.warnings.append(f"{where}.initial_sync: false is not honoured: syncd compares the container's tree "
                                "with yours at start (and after each restart) and sends the difference")
        kind = "sync" if action in ("sync", "sync+exec") else action
        # Fallback rules share one service per action; sync rules whose paths nest get one each.
        home = next((g for g in groups if g.kind == kind and (kind in ("rebuild", "restart")
                                                                 or not any(_nested(path, p) for _, _, p in g.rules))),
                    None)
        if home is None:
            home = _Group(kind)
            groups.append(home)
        home.rules.append((i, rule, path))
    if not groups:
        return
    out.targets[name] = {"kind": "docker", "labels": {PROJECT_LABEL: ctx.project, SERVICE_LABEL: name,
                                                      ONEOFF_LABEL: "False"}}
    user = _exec_user(name, groups, ctx, out)
    if user:
        out.targets[name]["user"] = user
    suffix = {"sync": "", "sync+restart": "+restart", "rebuild": ":rebuild", "restart": ":restart"}
    for n, g in enumerate(groups):
        candidates = [name] if n == 0 else []
        candidates += [f"{name}{suffix[g.kind]}", f"{name}{suffix[g.kind]}#{g.rules[0][0]}"]
        g.name = next(c for c in candidates if c not in used)
        used.add(g.name)
        out.services.append(_service(name, svc, g, ctx, out))


def _exec_user(name: str, groups: list[_Group], ctx: Context, out: Translation) -> str:
    """The `exec.user` of the service's sync+exec rules, for its target: a Docker exec cannot
    switch users halfway, so syncd runs all of its execs in the service's containers (the sync
    too, not only the command, unlike Compose) as that user. Rules that disagree are a problem."""
    users: dict[str, int] = {}
    for g in groups:
        for i, rule, _path in g.rules:
            hook = rule.get("exec")
            user = hook.get("user") if rule.get("action") == "sync+exec" and isinstance(hook, dict) else None
            if user not in (None, ""):
                users.setdefault(str(user), i)
    if len(users) > 1:
        listed = ", ".join(f"watch[{i}] {u!r}" for u, i in sorted(users.items(), key=lambda ui: ui[1]))
        out.problems.append(f"{_origin(ctx, name)}: services.{name}.develop.watch: exec.user differs between rules "
                            f"({listed}): syncd runs every exec in a container as one user (use one `user`)")
        return ""
    for user, i in users.items():
        out.notes.append(f"services.{name}.develop.watch[{i}].exec.user {user!r} -> targets.{name}.user: syncd's "
                         "sync and steps in these containers run as that user (its files are that user's)")
        return user
    return ""


def _check_rule(name: str, svc: dict, rule: dict, where: str, out: Translation) -> tuple[str, Path] | None:
    bad = False
    for key in rule:
        if key not in RULE_KEYS and not str(key).startswith("x-"):
            out.problems.append(f"{where}.{key}: unknown key ({_close(str(key), RULE_KEYS)})")
            bad = True
    if "initial_sync" in rule and not isinstance(rule["initial_sync"], bool):
        out.problems.append(f"{where}.initial_sync: must be true or false (got {rule['initial_sync']!r})")
        bad = True
    if rule.get("x-initialSync") is True:
        out.warnings.append(f"{where}.x-initialSync: deprecated, read as initial_sync")
    action = rule.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        hint = _close(action, ACTIONS) if isinstance(action, str) else f"one of {', '.join(ACTIONS)}"
        what = f"unknown action {action!r}" if isinstance(action, str) else "required"
        out.problems.append(f"{where}.action: {what} ({hint})")
        return None
    path = rule.get("path")
    if not isinstance(path, str) or not path:
        out.problems.append(f"{where}.path: required (the local path to watch, relative to the project directory)")
        return None
    for key in ("ignore", "include"):
        if key in rule:
            patterns = _strings(rule[key])
            if patterns is None:
                out.problems.append(f"{where}.{key}: must be a string or a list of strings (.dockerignore syntax)")
                bad = True
                continue
            for pattern, why in DockerPatterns(patterns).invalid:
                out.problems.append(f"{where}.{key}: invalid pattern {pattern!r}: {why} (.dockerignore syntax)")
                bad = True
    if action in SYNC_ACTIONS:
        target = rule.get("target")
        if not isinstance(target, str) or not target:
            out.problems.append(f"{where}.target: required for action {action} (the container path to sync to, "
                                "e.g. target: /app/src)")
            bad = True
        elif not target.startswith("/"):
            out.problems.append(f"{where}.target: {target!r} must be an absolute container path (e.g. '/{target}')")
            bad = True
        elif os.path.normpath(target) in ("/", "//"):
            out.problems.append(f"{where}.target: syncd never syncs into the container's root '/' "
                                "(name a directory, e.g. /app)")
            bad = True
        elif ".." in target.split("/"):
            out.problems.append(f"{where}.target: {target!r} must not contain '..' (name the directory directly)")
            bad = True
    if action == "sync+exec" and not isinstance(rule.get("exec"), dict):
        out.problems.append(f"{where}.exec: required for action sync+exec (e.g. exec: {{command: app reload}})")
        bad = True
    elif "exec" in rule and action != "sync+exec":
        out.warnings.append(f"{where}.exec: ignored: only action sync+exec runs it (as in Compose)")
    if action == "rebuild" and svc.get("build") is None:
        out.problems.append(f"{where}.action: rebuild needs a `build` section in service {name} "
                            "(Compose refuses it too; add build: or use sync)")
        bad = True
    if not Path(path).is_absolute():  # `absolutize` resolved it; a bare test dict may not have
        out.problems.append(f"{where}.path: {path!r} was not resolved against the project directory")
        return None
    return None if bad else (action, Path(os.path.normpath(path)))


def _service(compose_name: str, svc: dict, g: _Group, ctx: Context, out: Translation) -> dict:
    s: dict[str, Any] = {"name": g.name, "target": compose_name}
    if g.kind in ("rebuild", "restart"):
        lines: list[str] = []
        for _i, rule, path in g.rules:
            include = _strings(rule.get("include")) or []
            lines += _glob_lines(path, include, ctx.root, negate=False) if include else [_glob_path(path, ctx.root)]
            lines += _glob_lines(path, _strings(rule.get("ignore")) or [], ctx.root, negate=True)
        for file in _dockerignore(svc, ctx) or []:  # the build context's .dockerignore applies to these too
            text = ctx.read(ctx.root / file)
            excluded = [p.text for p in DockerPatterns.from_text(text).patterns if not p.exception] if text else []
            lines += _glob_lines((ctx.root / file).parent, excluded, ctx.root, negate=True)
        lines += [f"!{p}" for p in EPHEMERAL]
        s["sync"] = []
        s["fall_back_on"] = lines
        s["fallback"] = _compose_cmd(ctx, "up", "-d", "--build", "--no-deps", compose_name) if g.kind == "rebuild" \
            else _compose_cmd(ctx, "restart", compose_name)
        for i, _rule, path in g.rules:
            out.notes.append(f"services.{compose_name}.develop.watch[{i}] ({g.kind} {_rel(path, ctx.root)}) -> "
                             f"service {g.name}: a change runs `{shlex.join(s['fallback'])}`, then the containers are "
                             "compared again")
        return s
    s["sync"] = []
    runs = []
    for i, rule, path in g.rules:
        m: dict[str, Any] = {"src": _rel(path, ctx.root), "dest": os.path.normpath(rule["target"])}
        for key in ("ignore", "include"):
            patterns = _strings(rule.get(key)) or []
            if patterns:
                m[key] = patterns
        s["sync"].append(m)
        what = f"{rule['action']} {m['src']} -> {m['dest']}"
        if rule["action"] == "sync+exec":
            argv = _exec_argv(rule["exec"], ctx.origins.get(id(rule), f"services.{compose_name}.develop.watch[{i}]"),
                              ctx.env, out.problems)
            if argv is not None:
                runs.append({"name": f"{compose_name}.watch[{i}]", "cmd": argv, "trigger": [_glob_path(path, ctx.root)]})
                what += f", then `{shlex.join(argv)}` in each container"
        if rule["action"] == "sync+restart":
            what += ", then the container restarts"
        out.notes.append(f"services.{compose_name}.develop.watch[{i}] ({what}) -> service {g.name}")
    if runs:
        s["run"] = runs
    if g.kind == "sync+restart":
        s["restart"] = "container"
    dockerignore = _dockerignore(svc, ctx)
    if dockerignore is not None:
        s["dockerignore"] = dockerignore
    return s


# --- reading the files (the edge) -------------------------------------------------------------


def find_files(explicit: list[str], cwd: Path, env: Mapping[str, str]) -> list[Path]:
    """The compose files to read: given, else COMPOSE_FILE, else Compose's lookup from `cwd` up."""
    if explicit:
        return [Path(f) for f in explicit]
    if env.get("COMPOSE_FILE"):
        sep = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [Path(f) for f in env["COMPOSE_FILE"].split(sep) if f]
    for d in [cwd, *cwd.parents]:
        found = [d / n for n in DEFAULT_FILES if (d / n).is_file()]
        if found:
            overrides = [d / n for n in OVERRIDE_FILES if (d / n).is_file()]
            return [found[0], *overrides[:1]]
    raise ComposeError([f"no compose file found ({', '.join(DEFAULT_FILES)} in {cwd} and every directory above it); "
                        "pass --compose FILE"])


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComposeError([f"{path}: file not found (pass --compose FILE with an existing compose file)"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ComposeError([f"{path}: cannot read: {getattr(e, 'strerror', None) or e}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ComposeError([f"{path}: YAML syntax error: {e}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ComposeError([f"{path}: must be a mapping at the top level (services: …)"])
    return data


def absolutize(model: dict, base: Path) -> None:
    """Resolve, in place, the relative paths syncd reads (watch paths, build contexts, bind
    sources) against `base`, as Compose resolves them against the project directory."""

    def resolve(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    for svc in (model.get("services") or {}).values() if isinstance(model.get("services"), dict) else ():
        if not isinstance(svc, dict):
            continue
        for key in ("develop", "x-develop"):
            develop = svc.get(key)
            rules = develop.get("watch") if isinstance(develop, dict) else None
            for rule in rules if isinstance(rules, list) else ():
                if isinstance(rule, dict) and isinstance(rule.get("path"), str) and rule["path"]:
                    rule["path"] = resolve(rule["path"])
        build = svc.get("build")
        if isinstance(build, str):
            svc["build"] = {"context": resolve(build)}
        elif isinstance(build, dict):
            context = build.get("context", ".")
            if isinstance(context, str) and "://" not in context:
                build["context"] = resolve(context)
        volumes: list = svc["volumes"] if isinstance(svc.get("volumes"), list) else []
        for k, v in enumerate(volumes):
            if isinstance(v, str) and ":" in v and v.split(":", 1)[0].startswith((".", "/", "~")):
                source, rest = v.split(":", 1)
                volumes[k] = f"{resolve(source)}:{rest}"
            elif isinstance(v, dict) and v.get("type") == "bind" and isinstance(v.get("source"), str):
                v["source"] = resolve(v["source"])


@dataclass
class Loaded:
    model: dict
    files: list[Path]
    project_dir: Path
    project: str
    project_source: str
    env: dict[str, str]
    origins: dict[object, str]
    warnings: list[str]


def load(files: list[Path], environ: Mapping[str, str], explicit_name: str | None = None) -> Loaded:
    """Read, interpolate and merge the compose files (and what they `include:`)."""
    files = [Path(os.path.abspath(f)) for f in files]
    project_dir = files[0].parent
    env = dict(environ)
    dotenv = project_dir / ".env"
    if dotenv.is_file():
        env = {**parse_dotenv(dotenv.read_text(encoding="utf-8", errors="replace")), **environ}
    warnings: list[str] = []
    origins: dict[object, str] = {}
    model: dict = {}
    names: list[tuple[str, str]] = []
    problems: list[str] = []
    for f in files:
        one = _load_one(f, project_dir, env, warnings, origins, problems, seen=set())
        if isinstance(one.get("name"), str):
            names.append((str(f), one["name"]))
        model = merge(model, one)
    if problems:
        raise ComposeError(problems)
    name, source = project_name(env, names, project_dir, explicit_name)
    return Loaded(model, files, project_dir, name, source, env, origins, warnings)


def _load_one(path: Path, base: Path, env: dict[str, str], warnings: list[str], origins: dict[object, str],
              problems: list[str], seen: set[Path]) -> dict:
    raw = _read_yaml(path)
    said: list[str] = []
    try:
        model = interpolate_all(raw, env, "", said)
    except ComposeError as e:
        raise ComposeError([f"{path}: {p}" for p in e.problems]) from None
    warnings += [f"{path}: {w}" for w in said]
    absolutize(model, base)
    services: dict = model["services"] if isinstance(model.get("services"), dict) else {}
    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        for key in ("develop", "x-develop"):
            rules = svc[key].get("watch") if isinstance(svc.get(key), dict) else None
            for i, rule in enumerate(rules if isinstance(rules, list) else ()):
                origins[id(rule)] = f"{path}: services.{name}.{key}.watch[{i}]"
        extends = svc.get("extends")
        if extends is not None:
            base_name = extends if isinstance(extends, str) else extends.get("service") if isinstance(extends, dict) else None
            if isinstance(extends, dict) and extends.get("file"):
                problems.append(f"{path}: services.{name}.extends.file: not supported: syncd reads extends within one "
                                "file (copy the base service's develop section into this service, or pass that file "
                                "with --compose as well)")
            elif base_name in services and isinstance(services[base_name], dict):
                inherited = {k: v for k, v in services[base_name].items() if k not in ("extends",)}
                services[name] = merge(inherited, {k: v for k, v in svc.items() if k != "extends"})
            else:
                problems.append(f"{path}: services.{name}.extends: no service named {base_name!r} in this file")
    for k, inc in enumerate(model.get("include") or []):
        spec = {"path": inc} if isinstance(inc, str) else inc if isinstance(inc, dict) else {}
        paths = _strings(spec.get("path"))
        if not paths:
            problems.append(f"{path}: include[{k}].path: required (a compose file to include)")
            continue
        if spec.get("env_file"):
            problems.append(f"{path}: include[{k}].env_file: not supported (set the variables in the environment or "
                            "in the project's .env)")
        for p in paths:
            inc_path = Path(os.path.normpath(os.path.join(path.parent, p)))
            if inc_path in seen:
                problems.append(f"{path}: include[{k}]: {p} includes itself")
                continue
            inc_dir = Path(os.path.join(path.parent, spec["project_directory"])) if spec.get("project_directory") \
                else inc_path.parent
            sub = _load_one(inc_path, inc_dir, env, warnings, origins, problems, seen | {path})
            for name, svc in (sub.get("services") or {}).items():
                if name in services:
                    problems.append(f"{path}: services.{name}: also defined by the included {inc_path} "
                                    "(Compose refuses it too; rename one)")
                else:
                    services[name] = svc
    model["services"] = services
    model.pop("include", None)
    for name in services:
        origins.setdefault(("service", name), str(path))
    return model


# --- the derived config, shown (`syncd validate --compose`) ------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def _table(header: str, table: dict, out: list[str], arrays: tuple[str, ...] = ()) -> None:
    out.append(header)
    for k, v in table.items():
        if k not in arrays:
            out.append(f"{_key(k)} = {_toml_value(v)}")
    for k in arrays:
        for item in table.get(k) or []:
            out.append("")
            _table(f"[[{header.strip('[]')}.{k}]]", item, out)


def to_toml(data: dict) -> str:
    """A config (as `Config.model_dump` gives it) as TOML a user could save as syncd.toml."""
    out: list[str] = []
    if data.get("include"):
        out += [f"include = {_toml_value(data['include'])}", ""]
    if data.get("daemon"):
        _table("[daemon]", data["daemon"], out)
        out.append("")
    for name, target in (data.get("targets") or {}).items():
        _table(f"[targets.{_key(name)}]", target, out)
        out.append("")
    for svc in data.get("services") or []:
        _table("[[services]]", svc, out, arrays=("build", "run"))
        out.append("")
    for name, action in (data.get("actions") or {}).items():
        _table(f"[actions.{_key(name)}]", action, out)
        out.append("")
    return "\n".join(out)


def derived_toml(data: dict, info: dict) -> str:
    """The config syncd derived from compose files, with what each rule became and what was
    not honoured as comments on top."""
    files = " + ".join(info.get("files", []))
    head = [f"# derived from {files}", f"# project {info.get('project')!r} (from {info.get('project_source')})"]
    head += [f"# {note}" for note in info.get("notes", [])]
    head += [f"# warning: {w}" for w in info.get("warnings", [])]
    body = {k: v for k, v in data.items() if k not in ("root", "file", "compose", "include")}  # include: expanded
    return "\n".join(head) + "\n\n" + to_toml(body)
