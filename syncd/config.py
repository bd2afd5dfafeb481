"""Load and validate `syncd.toml`.

Every problem is collected and reported at once, each as `file: key.path: message (hint)`,
so a user fixes a config in one round trip. Unknown keys are errors: a typo must not pass.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import posixpath
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from syncd.compose import USER_SPEC

DEFAULT_PATHS = ("syncd.toml", "config/syncd.toml")


def _invalid(message: str, key: str = "") -> PydanticCustomError:
    """A validation problem worded for the user; `key` narrows the key path below the table."""
    return PydanticCustomError("syncd", "{message}", {"message": message, "key": key})


def _shown(value: Any) -> str:
    """A value as the user wrote it in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _command(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value.strip():
            raise _invalid("must not be empty (a shell command, run with sh -c)")
        return value
    if isinstance(value, list):
        if not value:
            raise _invalid('must not be empty (a list is argv, e.g. ["make", "build"])')
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _invalid(f"must be a list of strings (item {i} is {_shown(item)})")
        return value
    raise _invalid(f"must be a string for sh -c or a list of strings for argv (got {_shown(value)})")


# A string runs with `sh -c`; a list is argv.
Command = Annotated[str | list[str], PlainValidator(_command)]


class _Strict(BaseModel):
    # strict: TOML has real types, so `debounce_ms = "20"` or `= true` is a mistake, not an int.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DaemonConfig(_Strict):
    debounce_ms: int = Field(20, ge=0, le=60_000)
    max_batch_wait_ms: int = Field(2000, ge=1, le=600_000)
    api: str = "127.0.0.1:10351"
    # Bearer token the control API asks for (env SYNCD_API_TOKEN wins). Required to listen
    # beyond loopback. Never logged, never written to .syncd/.
    api_token: str | None = Field(None, repr=False)
    # Host names (besides IP literals and localhost) the API answers to, e.g. a name in
    # /etc/hosts that points here. Anything else is refused: DNS rebinding protection.
    api_hosts: list[str] = Field(default_factory=list)
    trace: str = ".syncd/trace.jsonl"
    # The trace file is rotated when a record would take it past this many MiB (`trace.jsonl.1`
    # the newest of the rotated ones); `trace_keep` rotated files are kept, so the trace takes at
    # most (trace_keep + 1) * trace_max_mb on disk. `syncd trace` reads them all.
    trace_max_mb: float = Field(10.0, gt=0, le=100_000)
    trace_keep: int = Field(2, ge=1, le=100)

    @field_validator("api_hosts")
    @classmethod
    def _host_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", name):
                raise _invalid(f"{name!r} is not a host name: give names only, without scheme or port "
                               "(e.g. api_hosts = [\"devbox.local\"])")
        return [name.lower() for name in v]

    @field_validator("api")
    @classmethod
    def _api_address(cls, v: str) -> str:
        if v.startswith("unix:"):
            if v != "unix:":
                return v
        else:
            host, sep, port = v.rpartition(":")
            if sep and host and port.isdigit() and int(port) <= 65535:
                return v
        raise _invalid(
            f"must be 'HOST:PORT' or 'unix:PATH' (got {v!r}; e.g. '127.0.0.1:10351', port 0 picks a free one)"
        )

    @model_validator(mode="after")
    def _remote_api_needs_token(self) -> DaemonConfig:
        if not self.api.startswith("unix:") and not is_loopback(self.api.rpartition(":")[0]) and not self.token:
            raise _invalid(
                f"{self.api!r} listens beyond this machine: set daemon.api_token (or SYNCD_API_TOKEN), "
                "or use 127.0.0.1 / a unix: socket", key="api")
        return self

    @property
    def token(self) -> str | None:
        return os.environ.get("SYNCD_API_TOKEN") or self.api_token

    @model_validator(mode="after")
    def _wait_covers_debounce(self) -> DaemonConfig:
        if self.max_batch_wait_ms < self.debounce_ms:
            default = "" if "max_batch_wait_ms" in self.model_fields_set else " (the default)"
            raise _invalid(
                f"{self.max_batch_wait_ms}{default} is below debounce_ms ({self.debounce_ms}); "
                f"set it to at least {self.debounce_ms}",
                key="max_batch_wait_ms",
            )
        return self


class _Remote(_Strict):
    """How a remote target's bytes travel (syncd/core/transfer.py): large files as block
    deltas against the version the container has, and gzip-compressed streams. "auto": when
    the throughput syncd measures on the channel is below what the work costs."""

    delta: Literal["auto", "always", "never"] = "auto"
    compress: Literal["auto", "always", "never"] = "auto"


class KubernetesTarget(_Remote):
    kind: Literal["kubernetes"]
    context: str | None = None
    namespace: str = "default"
    selector: str
    container: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_user(cls, data: Any) -> Any:
        if isinstance(data, dict) and "user" in data:
            raise _invalid("not supported: Kubernetes exec has no user switch, syncd runs as the container's user "
                           "(set securityContext.runAsUser / runAsGroup in the pod spec, or make the destination "
                           "writable by that user)", key="user")
        return data

    @field_validator("selector")
    @classmethod
    def _non_empty_selector(cls, v: str) -> str:
        if not v.strip():
            raise _invalid("must not be empty: an empty selector matches every pod (e.g. 'app=backend')")
        return v


class DockerTarget(_Remote):
    kind: Literal["docker"]
    container: str | None = None
    labels: dict[str, str] | None = None
    # The user syncd's execs run as (`docker exec --user`): "UID[:GID]", or names the image's
    # /etc/passwd and /etc/group know. None: the container's own user.
    user: str | None = None

    @field_validator("user")
    @classmethod
    def _user_spec(cls, v: str | None) -> str | None:
        if v is not None and not USER_SPEC.fullmatch(v):
            raise _invalid(f"{_shown(v)} is not a user: use \"UID[:GID]\" (e.g. user = \"1000:1000\", or \"0\" for root)")
        return v

    @model_validator(mode="after")
    def _one_selector(self) -> DockerTarget:
        if self.container and self.labels:
            raise _invalid("set 'container' or 'labels', not both")
        if not self.container and not self.labels:
            raise _invalid(
                "needs 'container' (name or id, e.g. container = \"app-web-1\") "
                "or 'labels' (e.g. labels = { \"com.docker.compose.service\" = \"web\" })"
            )
        return self


class LocalTarget(_Strict):
    kind: Literal["local"]
    path: str


Target = Annotated[KubernetesTarget | DockerTarget | LocalTarget, Field(discriminator="kind")]


class Mapping(_Strict):
    src: str
    dest: str
    # Docker (.dockerignore) syntax, anchored at `src` — what compose's develop.watch `ignore`
    # and `include` mean: left out below `src`; with `include`, only what it matches is synced.
    ignore: list[str] = []
    include: list[str] = []

    @field_validator("ignore", "include")
    @classmethod
    def _docker_patterns(cls, v: list[str]) -> list[str]:
        from syncd.dockerignore import DockerPatterns

        bad = DockerPatterns(v).invalid
        if bad:
            pattern, why = bad[0]
            raise _invalid(f"pattern {pattern!r}: {why} (.dockerignore syntax, relative to src)")
        return v

    @field_validator("dest")
    @classmethod
    def _absolute_dest(cls, v: str) -> str:
        if not v.startswith("/"):
            raise _invalid(f"path '{v}' must be absolute in the container (e.g. '/{v.lstrip('./')}')")
        if ".." in v.split("/"):
            raise _invalid(f"path '{v}' must not contain '..' (name the directory directly)")
        norm = posixpath.normpath(v)
        if norm in ("/", "//"):
            raise _invalid(f"'{v}' would let syncd write anywhere in the container (name a directory, e.g. '/app')")
        return norm


class BuildStep(_Strict):
    cmd: Command
    cwd: str | None = None
    trigger: list[str] = []
    env: dict[str, str] = {}
    name: str | None = None


class RunStep(_Strict):
    cmd: Command
    trigger: list[str] = []
    name: str | None = None


class SmokeEdit(_Strict):
    """What `syncd smoke` edits for a service. Always reverted.

    `pattern`: a regular expression with one group, e.g. `VERSION: &str = "([^"]*)"`; each
    edit puts a fresh marker into the group, so the build output (and what the app answers)
    changes — the ready probe can check it with `{marker}` in `expect`. Without it a marker
    comment is appended (changes the sources only: a service with a build then fails the
    iteration, as nothing new was deployed), or a marker file is written into a directory."""

    path: str  # relative to the config file
    comment: str = "#"  # line-comment prefix for the appended marker (e.g. "//" for Rust/JS)
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            groups = re.compile(v).groups
        except re.error as e:
            raise _invalid(f"not a regular expression ({e}); e.g. pattern = 'VERSION = \"([^\"]*)\"'") from None
        if groups != 1:
            raise _invalid(f"needs exactly one group, the text each edit replaces (has {groups}); "
                           "e.g. pattern = 'VERSION = \"([^\"]*)\"'")
        return v


class ReadyProbe(_Strict):
    """When is a change live beyond the files? An HTTP GET from here, or a command in every
    container of the service's target; `expect` must appear in the answer."""

    url: str | None = None
    cmd: Command | None = None
    expect: str = ""  # `{marker}` stands for the smoke edit's current marker (see SmokeEdit.pattern)
    timeout_s: float = Field(60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_way(self) -> ReadyProbe:
        if (self.url is None) == (self.cmd is None):
            raise _invalid("give exactly one of url (HTTP GET from this machine) or cmd (run in each container)")
        return self


class Service(_Strict):
    name: str
    target: str
    sync: list[Mapping] = []  # empty only with fall_back_on (a service that only runs its fallback)
    ignore: list[str] = []
    # The .dockerignore files that apply (paths relative to the config file, each anchored at its
    # own directory; a Dockerfile-specific `X.dockerignore` too). Absent: every `.dockerignore`
    # from the config directory down.
    dockerignore: list[str] | None = None
    fall_back_on: list[str] = []
    fallback: Command | None = None
    build: list[BuildStep] = []
    run: list[RunStep] = []
    restart: Literal["none", "container", "process"] = "none"
    smoke: SmokeEdit | None = None  # default: a marker file in the first directory mapping
    ready: ReadyProbe | None = None

    @model_validator(mode="after")
    def _syncs_or_falls_back(self) -> Service:
        if not self.sync and not self.fall_back_on:
            what = "must not be empty" if "sync" in self.model_fields_set else "required key is missing"
            raise _invalid(f"{what} (add a mapping, e.g. sync = [{_MAPPING_EXAMPLE}]; only a service "
                           "with fall_back_on may have none)", key="sync")
        return self


class Action(_Strict):
    cmd: Command | None = None  # None: a group action that only runs its deps
    target: str | None = None  # run in every container of that target; locally when absent
    deps: list[str] = []
    cwd: str | None = None  # local actions: relative to the config file (default: its directory)
    env: dict[str, str] = {}
    confirm: bool = False  # destructive: `syncd trigger NAME` asks for --yes
    description: str = ""


class Config(_Strict):
    # Compose files whose develop.watch rules this config starts from (relative to it, merged
    # in order like `docker compose -f`); the tables below add to what they derive.
    include: list[str] = []
    daemon: DaemonConfig = DaemonConfig()
    targets: dict[str, Target]
    services: list[Service] = Field(min_length=1)
    actions: dict[str, Action] = {}

    # Not part of the TOML: where the file was, so relative paths can be resolved.
    root: Path = Path(".")
    file: Path = Path("syncd.toml")
    # Derived from compose files: {"project", "project_source", "files", "warnings", "notes"}.
    compose: dict[str, Any] | None = None

    def resolve(self, rel: str) -> Path:
        return _resolve(self.root, rel)

    @property
    def state_dir(self) -> Path:
        return self.root / ".syncd"

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)


_INTERNAL_FIELDS = ("root", "file", "compose")  # Config fields that are not TOML keys


def _resolve(root: Path, rel: str) -> Path:
    return (root / rel).resolve() if not os.path.isabs(rel) else Path(rel)


class ConfigError(Exception):
    """All problems of one config file (`file` empty: each problem names its own file, as
    those of several compose files do). `str()` is the user-facing report."""

    def __init__(self, file: Path | str, problems: list[str]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.file}: {p}" if self.file else p for p in self.problems]


def nearby_configs(start: Path) -> list[Path]:
    """`syncd.toml` / `config/syncd.toml` in `start` and every directory above it, nearest first
    (as git finds its repository: a command works from any subdirectory of the project)."""
    found = []
    for d in [start, *start.parents]:
        for rel in DEFAULT_PATHS:
            if (d / rel).is_file():
                found.append(d / rel)
    return found


def searched(start: Path) -> str:
    return f"{' and '.join(DEFAULT_PATHS)} in {start} and every directory above it"


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    cwd = Path.cwd()
    found = nearby_configs(cwd)
    if found:
        # Named as the user would: relative when it is here, absolute when found above.
        return found[0].relative_to(cwd) if found[0].parent in (cwd, cwd / "config") else found[0]
    raise ConfigError(
        DEFAULT_PATHS[0],
        [f"no config found (looked for {searched(cwd)}); pass -c FILE or run `syncd demo`"],
    )


def load_config(path: Path | str) -> Config:
    path = Path(path)
    if is_compose_file(path):  # a daemon started with --compose registers its compose file
        return load_compose_config([str(path)])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found; pass -c FILE with an existing config"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a directory, not a file; pass -c FILE naming the config file"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["is not UTF-8 text; save the config as UTF-8"]) from None
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"TOML syntax error: {e}"]) from None
    root = path.resolve().parent
    compose: dict[str, Any] | None = None
    if isinstance(raw.get("include"), str):
        raw["include"] = [raw["include"]]
    if isinstance(raw.get("include"), list) and raw["include"] and all(isinstance(f, str) for f in raw["include"]):
        derived, compose = _derive([str(_resolve(root, f)) for f in raw["include"]], root, None)
        raw = _add_to(derived, raw)
    return _validated(raw, root, path, compose)


def load_compose_config(files: list[str], project_name: str | None = None, cwd: Path | None = None) -> Config:
    """A config made of compose files' develop.watch rules alone (`syncd … --compose`)."""
    from syncd.compose import ComposeError, find_files

    try:
        paths = find_files(files, cwd or Path.cwd(), os.environ)
    except ComposeError as e:
        raise ConfigError("", e.problems) from None
    root = paths[0].resolve().parent
    raw, compose = _derive([str(p) for p in paths], root, project_name)
    return _validated(raw, root, paths[0], compose)


def _derive(files: list[str], root: Path, project_name: str | None) -> tuple[dict, dict[str, Any]]:
    """The syncd tables compose files' develop.watch rules make (syncd/compose.py)."""
    from syncd.compose import ComposeError, Context, load, translate

    try:
        loaded = load([Path(f) for f in files], os.environ, project_name)
    except ComposeError as e:
        raise ConfigError("", e.problems) from None
    ctx = Context(loaded.project, loaded.project_dir, loaded.files, root, loaded.env, origins=loaded.origins,
                  project_source=loaded.project_source)
    found = translate(loaded.model, ctx)
    if found.problems:
        raise ConfigError("", found.problems)
    info = {"project": loaded.project, "project_source": loaded.project_source,
            "files": [str(f) for f in loaded.files], "warnings": [*loaded.warnings, *found.warnings],
            "notes": found.notes}
    return found.raw, info


def _add_to(derived: dict, raw: dict) -> dict:
    """A TOML that includes compose files, over what they derive: its targets replace derived
    ones of the same name; a service of a derived name adds to it (lists appended, other keys
    replaced); other services and tables are its own."""
    out = dict(raw)
    targets: dict = raw["targets"] if isinstance(raw.get("targets"), dict) else {}
    out["targets"] = {**derived["targets"], **targets}
    services: list[Any] = [dict(s) for s in derived["services"]]
    by_name = {s["name"]: s for s in services}
    own: list = raw["services"] if isinstance(raw.get("services"), list) else []
    for svc in own:
        base = by_name.get(svc.get("name")) if isinstance(svc, dict) else None
        if base is None:
            services.append(svc)
            continue
        for key, value in svc.items():
            base[key] = [*base[key], *value] if isinstance(value, list) and isinstance(base.get(key), list) else value
    out["services"] = services
    return out


def _validated(raw: dict, root: Path, path: Path, compose: dict[str, Any] | None = None) -> Config:
    # Schema problems and cross-references are both checked, so one run reports everything.
    problems: list[str] = []
    top_level = [n for n in Config.model_fields if n not in _INTERNAL_FIELDS]
    for name in _INTERNAL_FIELDS:
        if name in raw:
            problems.append(f"{name}: {_unknown_key(name, top_level)}")
    data = {k: v for k, v in raw.items() if k not in _INTERNAL_FIELDS}
    cfg: Config | None = None
    try:
        cfg = Config.model_validate({**data, "root": root, "file": path, "compose": compose})
    except ValidationError as e:
        problems += _format_pydantic(e, raw)
    problems += _cross_check(raw, root)
    problems = sorted(dict.fromkeys(problems), key=lambda p: _file_order(p, raw))
    if problems or cfg is None:
        raise ConfigError(path, problems)
    return cfg


def is_compose_file(path: Path | str) -> bool:
    return Path(path).suffix in (".yaml", ".yml")


# --- error formatting -------------------------------------------------------------------

_KINDS: dict[str, type[_Strict]] = {"kubernetes": KubernetesTarget, "docker": DockerTarget, "local": LocalTarget}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _service_ref(raw: dict, i: int) -> str:
    """`[backend]` for the service table at index i when it has a name unique in the file
    (what the user looks for), else `[i]`."""
    services = raw.get("services")
    if isinstance(services, list) and i < len(services) and isinstance(services[i], dict):
        name = services[i].get("name")
        names = [s.get("name") for s in services if isinstance(s, dict)]
        if isinstance(name, str) and name and names.count(name) == 1:
            return f"[{name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)}]"
    return f"[{i}]"


def _render(parts: list[str | int], raw: dict | None = None) -> str:
    """Key path as the user would write it: `services[backend].sync[0].src`, `labels."a.b"`."""
    out = ""
    for n, part in enumerate(parts):
        if isinstance(part, int) and n == 1 and parts[0] == "services" and raw is not None:
            out += _service_ref(raw, part)
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
            out += ("." if out else "") + key
    return out or "(top level)"


_LEAD = re.compile(r'([A-Za-z0-9_-]+)(?:\[(\d+|[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")\]|\.([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"))?')


def _file_order(problem: str, raw: dict) -> tuple[int, int]:
    """Sort key putting problems in the order of the tables they are about in the file."""
    m = _LEAD.match(problem)
    if not m:
        return (-1, -1)
    top = list(raw)
    section = top.index(m[1]) if m[1] in top else -1
    if m[2] is not None:
        if m[2].isdigit():
            return (section, int(m[2]))
        name = json.loads(m[2]) if m[2].startswith('"') else m[2]
        tables: list = raw[m[1]] if isinstance(raw.get(m[1]), list) else []
        names = [t.get("name") if isinstance(t, dict) else None for t in tables]
        return (section, names.index(name) if name in names else -1)
    if m[3] is not None and isinstance(raw.get(m[1]), dict):
        name = json.loads(m[3]) if m[3].startswith('"') else m[3]
        inner = list(raw[m[1]])
        return (section, inner.index(name) if name in inner else -1)
    return (section, -1)


def _unwrap(ann: Any) -> Any:
    """Strip `Annotated[...]` and `X | None`."""
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
        return ann


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _walk(loc: tuple[Any, ...]) -> tuple[list[str | int], Any, Any]:
    """Follow a pydantic error location through the schema.

    Returns the keys the user wrote (pydantic's union member tags dropped), the model whose
    table holds the last key (or None), and the type expected at the location."""
    parts: list[str | int] = []
    ann: Any = Config
    holder: Any = None
    for part in loc:
        ann = _unwrap(ann)
        holder = None
        origin = get_origin(ann)
        if _is_model(ann):
            holder = ann
            parts.append(part)
            field = ann.model_fields.get(part) if isinstance(part, str) else None
            ann = field.annotation if field else None
        elif origin is list or origin is dict:
            parts.append(part)
            ann = get_args(ann)[-1]
        elif origin in (Union, types.UnionType):
            ann = _KINDS.get(part)  # a discriminator tag or a member tag: not a key the user wrote
        else:
            parts.append(part)
            ann = None
    return parts, holder, _unwrap(ann)


def _keys_of(model: Any) -> list[str]:
    return [n for n in model.model_fields if n not in _INTERNAL_FIELDS] if _is_model(model) else []


def _close(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1)
    return found[0] if found else None


def _unknown_key(name: str, valid: list[str]) -> str:
    close = _close(name, valid)
    if close:
        return f"unknown key (did you mean '{close}'?)"
    return f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key (remove it)"


_CMD_HINT = 'a string (run with sh -c) or a list (argv), e.g. cmd = "make"'
_REQUIRED_HINTS: dict[tuple[Any, str], str] = {
    (Config, "targets"): 'add a [targets.NAME] table with kind = "kubernetes", "docker" or "local"',
    (Config, "services"): "add a [[services]] table with name, target and sync",
    (Service, "name"): 'a unique name, e.g. name = "backend"',
    (Service, "sync"): 'e.g. sync = [{ src = "backend/src", dest = "/app/src" }]',
    (Mapping, "src"): 'a path relative to the config file, e.g. src = "backend/src"',
    (Mapping, "dest"): 'an absolute path in the container, e.g. dest = "/app/src"',
    (KubernetesTarget, "selector"): 'a pod label selector, e.g. selector = "app=backend"',
    (LocalTarget, "path"): 'the directory to copy into, e.g. path = ".syncd/sandbox/web"',
    (BuildStep, "cmd"): _CMD_HINT,
    (RunStep, "cmd"): _CMD_HINT,
    (Action, "cmd"): _CMD_HINT,
}
_KIND_HINT = 'kind = "kubernetes", "docker" or "local"'
_MAPPING_EXAMPLE = '{ src = "backend/src", dest = "/app/src" }'


def _table_example(ann: Any) -> str:
    if ann is Mapping:
        return _MAPPING_EXAMPLE
    if ann is Service:
        return "a [[services]] table"
    if get_origin(ann) in (Union, types.UnionType) or ann in _KINDS.values():
        return f"[targets.NAME] with {_KIND_HINT}"
    if get_origin(ann) is dict and get_args(ann)[-1] is not str:
        return "[NAME.KEY] tables"
    return ""


def _describe(e: Any, parts: list[str | int], holder: Any, ann: Any, raw: dict) -> tuple[list[str | int], str]:
    """(key path, message) for one pydantic error."""
    kind, got, ctx = e["type"], e.get("input"), e.get("ctx") or {}
    field = parts[-1] if parts else ""
    if kind == "syncd":
        return parts + ([ctx["key"]] if ctx.get("key") else []), ctx["message"]
    if kind == "extra_forbidden":
        return parts, _unknown_key(str(field), _keys_of(holder))
    if kind == "missing":
        hint = _REQUIRED_HINTS.get((holder, str(field)))
        if (holder, field) == (Service, "target"):
            known = list(raw["targets"]) if isinstance(raw.get("targets"), dict) else []
            hint = f"one of the targets: {', '.join(known)}" if known else "the name of a [targets.NAME] table"
        return parts, "required key is missing" + (f" ({hint})" if hint else "")
    if kind == "union_tag_not_found":
        return [*parts, "kind"], f"required key is missing ({_KIND_HINT})"
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", got))
        close = _close(tag, list(_KINDS))
        hint = f"did you mean '{close}'?" if close else "use 'kubernetes', 'docker' or 'local'"
        return [*parts, "kind"], f"unknown kind '{tag}' ({hint})"
    if kind == "literal_error":
        choices = [str(c) for c in get_args(ann)] if get_origin(ann) is Literal else []
        close = _close(str(got), choices) if isinstance(got, str) else None
        hint = f"; did you mean '{close}'?" if close else ""
        allowed = ", ".join(f"'{c}'" for c in choices) or str(ctx.get("expected"))
        return parts, f"must be one of {allowed} (got {_shown(got)}{hint})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return parts, f"must be an integer (got {_shown(got)})"
    if kind in ("float_type", "float_parsing"):
        return parts, f"must be a number (got {_shown(got)})"
    if kind == "string_type":
        return parts, f"must be a string (got {_shown(got)})"
    if kind == "list_type":
        if isinstance(got, str):
            hint = f"; write [{json.dumps(got, ensure_ascii=False)}]"
        else:
            hint = "; wrap it in [ ]" if isinstance(got, dict) else ""
            if (holder, field) == (Config, "services"):
                hint = "; write each service as a [[services]] table, with double brackets"
        return parts, f"must be a list (got {_shown(got)}{hint})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        example = _table_example(ann)
        return parts, f"must be a table (got {_shown(got)}" + (f"; e.g. {example})" if example else ")")
    if kind == "too_short":
        hint = {"services": "add a [[services]] table", "sync": f"add a mapping, e.g. {_MAPPING_EXAMPLE}"}.get(
            str(field), ""
        )
        return parts, "must not be empty" + (f" ({hint})" if hint else "")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return parts, f"must be {bounds[kind]} {limit} (got {_shown(got)})"
    msg = str(e["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
    return parts, f"{msg} (got {_shown(got)})"


def _format_pydantic(err: ValidationError, raw: dict) -> list[str]:
    described = []
    for e in err.errors():
        parts, holder, ann = _walk(tuple(e["loc"]))
        described.append((e, *_describe(e, parts, holder, ann, raw)))
    # A typo (`tagret`) already says what it should be: do not also report `target` missing.
    meant = set()
    for e, parts, message in described:
        if e["type"] == "extra_forbidden" and "did you mean" in message:
            meant.add(_render([*parts[:-1], message.split("'")[1]], raw))
    problems = []
    for e, parts, message in described:
        if e["type"] in ("missing", "union_tag_not_found") and _render(parts, raw) in meant:
            continue
        problems.append(f"{_render(parts, raw)}: {message}")
        if e["type"] == "union_tag_not_found" and isinstance(e.get("input"), dict):
            # no kind, so pydantic cannot say which keys are unknown; catch a misspelt `kind`
            for key in e["input"]:
                if key != "kind" and _close(str(key), ["kind"]):
                    problems[-1] = f"{_render([*parts[:-1], key], raw)}: unknown key (did you mean 'kind'?)"
    return problems


# --- cross-references and the file system -------------------------------------------------


def _did_you_mean(missing: Path) -> str:
    parent = missing.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return ""
    names = [p.name for p in parent.iterdir()]
    close = difflib.get_close_matches(missing.name, names, n=1, cutoff=0.6)
    if not close:
        return ""
    return str(parent / close[0])


def _tables(value: Any) -> list[tuple[int, dict]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _no_such(what: str, name: str, known: list[str]) -> str:
    close = _close(name, known)
    hint = f"did you mean '{close}'?" if close else f"known {what}s: {', '.join(sorted(known)) or 'none defined'}"
    return f"no {what} named '{name}' ({hint})"


def _cross_check(raw: dict, root: Path) -> list[str]:
    """Checks across tables and against the disk. Works on the raw TOML (defensively, since it
    may not have passed the schema) so these problems are reported alongside schema ones."""
    problems: list[str] = []
    targets: dict | None = raw["targets"] if isinstance(raw.get("targets"), dict) else None
    actions: dict = raw["actions"] if isinstance(raw.get("actions"), dict) else {}

    def kind_of(name: Any) -> Any:
        t = targets.get(name) if targets is not None and isinstance(name, str) else None
        return t.get("kind") if isinstance(t, dict) else None

    seen: dict[str, int] = {}
    for i, svc in _tables(raw.get("services")):
        where = "services" + _service_ref(raw, i)
        name, target = svc.get("name"), svc.get("target")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    f"{where}.name: '{name}' is already the name of services[{seen[name]}] (service names must be unique)"
                )
            else:
                seen[name] = i
        if isinstance(target, str) and targets is not None and target not in targets:
            problems.append(f"{where}.target: {_no_such('target', target, list(targets))}")
        # A missing source below a build step's cwd is taken for a build output (a fresh
        # checkout has no target/debug/api yet); the build creates it before the first sync.
        outputs_in = [_resolve(root, b["cwd"] if isinstance(b.get("cwd"), str) else ".")
                      for _, b in _tables(svc.get("build"))]
        for j, m in _tables(svc.get("sync")):
            src_rel = m.get("src")
            if not isinstance(src_rel, str):
                continue
            src = _resolve(root, src_rel)
            if any(src != d and d in src.parents for d in outputs_in):
                continue
            if not src.exists() and not src.is_symlink():
                guess = _did_you_mean(src)
                if guess:
                    hint = f" (did you mean '{os.path.relpath(guess, root)}'?)"
                elif not os.path.isabs(src_rel):
                    hint = f" (paths are relative to {root})"
                else:
                    hint = ""
                problems.append(f"{where}.sync[{j}].src: path '{src_rel}' does not exist{hint}")
        for j, b in _tables(svc.get("build")):
            cwd = b.get("cwd")
            if isinstance(cwd, str) and not _resolve(root, cwd).is_dir():
                problems.append(f"{where}.build[{j}].cwd: directory '{cwd}' does not exist (relative to {root})")
        smoke = svc.get("smoke")
        if isinstance(smoke, dict) and isinstance(smoke.get("path"), str) and not _resolve(root, smoke["path"]).exists():
            problems.append(f"{where}.smoke.path: path '{smoke['path']}' does not exist (relative to {root})")
        # (Whether smoke.pattern matches the file is checked when `syncd smoke` starts: the file
        # is a source the user edits, and a config must not turn invalid mid-edit.)
        kind = kind_of(target)
        if svc.get("restart") == "container" and kind in ("kubernetes", "local"):
            problems.append(f"{where}.restart: 'container' only works for docker targets, not {kind}; use 'process'")

    for name, action in actions.items():
        if not isinstance(action, dict):
            continue
        where = _render(["actions", name])
        if action.get("cmd") is None and not action.get("deps"):
            problems.append(f"{where}.cmd: required key is missing "
                            f"({_CMD_HINT}; or give `deps` for an action that only runs others)")
        cwd = action.get("cwd")
        if isinstance(cwd, str) and not _resolve(root, cwd).is_dir():
            problems.append(f"{where}.cwd: directory '{cwd}' does not exist (relative to {root})")
        if isinstance(cwd, str) and isinstance(action.get("target"), str):
            problems.append(f"{where}.cwd: only local actions take a cwd "
                            f"(this one runs in target '{action['target']}'; use `cd DIR && ...` in cmd)")
        target = action.get("target")
        if isinstance(target, str) and targets is not None and target not in targets:
            problems.append(f"{where}.target: {_no_such('target', target, list(targets))}")
        deps = action.get("deps")
        for k, dep in enumerate(deps if isinstance(deps, list) else []):
            if isinstance(dep, str) and dep not in actions:
                others = [a for a in actions if a != name]
                problems.append(f"{where}.deps[{k}]: {_no_such('action', dep, others)}")
    problems += _dep_cycles(actions)

    for name, t in (targets or {}).items():
        if isinstance(t, dict) and t.get("kind") == "local" and isinstance(t.get("path"), str) \
                and _resolve(root, t["path"]) == root:
            problems.append(
                f"{_render(['targets', name, 'path'])}: must not be the config directory itself "
                "(name a directory to copy into, e.g. '.syncd/sandbox')"
            )
    return problems


def _dep_cycles(actions: dict) -> list[str]:
    """One problem per dependency cycle among actions, named from its first action."""

    def deps_of(name: str) -> list[str]:
        deps = actions[name].get("deps") if isinstance(actions.get(name), dict) else None
        return [d for d in deps if isinstance(d, str) and d in actions] if isinstance(deps, list) else []

    problems, done, reported = [], set(), set()
    for start in actions:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in deps_of(node):
                if dep == start:
                    cycle = frozenset(path)
                    if cycle not in reported:
                        reported.add(cycle)
                        chain = " -> ".join([*path, start])
                        problems.append(f"{_render(['actions', start, 'deps'])}: dependency cycle {chain} "
                                        "(remove one of these deps)")
                elif dep not in path and dep not in done:
                    stack.append((dep, [*path, dep]))
        done.add(start)
    return problems
