"""Load and validate `syncd.toml`.

Every problem is collected and reported at once, each as `file: key.path: message (hint)`,
so a user fixes a config in one round trip. Unknown keys are errors: a typo must not pass.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_PATHS = ("syncd.toml", "config/syncd.toml")

Command = Union[str, list[str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonConfig(_Strict):
    debounce_ms: int = Field(20, ge=0, le=60_000)
    max_batch_wait_ms: int = Field(2000, ge=1, le=600_000)
    api: str = "127.0.0.1:10351"
    trace: str = ".syncd/trace.jsonl"

    @model_validator(mode="after")
    def _wait_covers_debounce(self) -> DaemonConfig:
        if self.max_batch_wait_ms < self.debounce_ms:
            raise ValueError("max_batch_wait_ms must be >= debounce_ms")
        return self


class KubernetesTarget(_Strict):
    kind: Literal["kubernetes"]
    context: str | None = None
    namespace: str = "default"
    selector: str
    container: str | None = None


class DockerTarget(_Strict):
    kind: Literal["docker"]
    container: str | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> DockerTarget:
        if bool(self.container) == bool(self.labels):
            raise ValueError("set exactly one of 'container' (name or id) or 'labels'")
        return self


class LocalTarget(_Strict):
    kind: Literal["local"]
    path: str


Target = Annotated[Union[KubernetesTarget, DockerTarget, LocalTarget], Field(discriminator="kind")]


class Mapping(_Strict):
    src: str
    dest: str

    @field_validator("dest")
    @classmethod
    def _absolute_dest(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"dest '{v}' must be an absolute container path, e.g. '/app/{v}'")
        norm = posixpath.normpath(v)
        if ".." in v.split("/"):
            raise ValueError(f"dest '{v}' must not contain '..'")
        if norm == "/":
            raise ValueError("dest '/' would let syncd write anywhere in the container; name a directory")
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


class Service(_Strict):
    name: str
    target: str
    sync: list[Mapping] = Field(min_length=1)
    ignore: list[str] = []
    fall_back_on: list[str] = []
    fallback: Command | None = None
    build: list[BuildStep] = []
    run: list[RunStep] = []
    restart: Literal["none", "container", "process"] = "none"


class Action(_Strict):
    cmd: Command
    target: str | None = None
    deps: list[str] = []


class Config(_Strict):
    daemon: DaemonConfig = DaemonConfig()
    targets: dict[str, Target]
    services: list[Service] = Field(min_length=1)
    actions: dict[str, Action] = {}

    # Not part of the TOML: where the file was, so relative paths can be resolved.
    root: Path = Path(".")
    file: Path = Path("syncd.toml")

    def resolve(self, rel: str) -> Path:
        return (self.root / rel).resolve() if not os.path.isabs(rel) else Path(rel)

    @property
    def state_dir(self) -> Path:
        return self.root / ".syncd"

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)


class ConfigError(Exception):
    """All problems of one config file. `str()` is the user-facing report."""

    def __init__(self, file: Path | str, problems: list[str]):
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(f"{self.file}: {p}" for p in problems))


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for candidate in DEFAULT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError(
        DEFAULT_PATHS[0],
        [f"no config found (looked for {' and '.join(DEFAULT_PATHS)}); pass -c FILE or run `syncd demo`"],
    )


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, ["file not found; pass -c FILE with an existing config"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"TOML syntax error: {e}"]) from None
    root = path.resolve().parent
    try:
        cfg = Config.model_validate({**raw, "root": root, "file": path})
    except ValidationError as e:
        raise ConfigError(path, _format_pydantic(e, raw)) from None
    problems = _cross_check(cfg, raw)
    if problems:
        raise ConfigError(path, problems)
    return cfg


# --- error formatting -------------------------------------------------------------------

_UNION_TAGS = {"kubernetes", "docker", "local"}


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 2 and loc[0] == "targets" and part in _UNION_TAGS:
            continue  # pydantic's discriminator tag: not a key the user wrote
        elif isinstance(part, str) and ("function-" in part or part.startswith("union")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Known key names of the table that holds `loc`, for did-you-mean hints."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in _UNION_TAGS:
            model = {"kubernetes": KubernetesTarget, "docker": DockerTarget, "local": LocalTarget}[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            model = None if model is not Config or part != "targets" else None
            continue
        ann = field.annotation
        for candidate in (Service, Mapping, BuildStep, RunStep, Action, DaemonConfig):
            if candidate.__name__ in repr(ann):
                model = candidate
                break
        else:
            model = None
    if model is None:
        return []
    return [n for n in model.model_fields if n not in ("root", "file")]


def _format_pydantic(err: ValidationError, raw: dict) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = _key_path(loc)
        if e["type"] == "extra_forbidden":
            name = str(loc[-1])
            close = difflib.get_close_matches(name, _fields_at(loc), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else " (remove it)"
            problems.append(f"{key}: unknown key{hint}")
        elif e["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        elif e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
            problems.append(f"{key}.kind: must be one of 'kubernetes', 'docker', 'local'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
            problems.append(f"{key}: {msg}{shown}")
    return problems


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
    return str((parent / close[0]))


def _cross_check(cfg: Config, raw: dict) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, svc in enumerate(cfg.services):
        where = f"services[{i}]"
        if svc.name in seen:
            problems.append(f"{where}.name: service '{svc.name}' is defined twice; names must be unique")
        seen.add(svc.name)
        if svc.target not in cfg.targets:
            known = ", ".join(sorted(cfg.targets)) or "none defined"
            close = difflib.get_close_matches(svc.target, list(cfg.targets), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known targets: {known}"
            problems.append(f"{where}.target: no target named '{svc.target}' ({hint})")
        for j, m in enumerate(svc.sync):
            src = cfg.resolve(m.src)
            if not src.exists() and not src.is_symlink():
                guess = _did_you_mean(src)
                hint = ""
                if guess:
                    hint = f" (did you mean '{os.path.relpath(guess, cfg.root)}'?)"
                elif not m.src.startswith("/"):
                    hint = f" (paths are relative to {cfg.root})"
                problems.append(f"{where}.sync[{j}].src: path '{m.src}' does not exist{hint}")
        for j, b in enumerate(svc.build):
            if b.cwd and not cfg.resolve(b.cwd).is_dir():
                problems.append(f"{where}.build[{j}].cwd: directory '{b.cwd}' does not exist")
        if svc.restart == "container" and svc.target in cfg.targets:
            if cfg.targets[svc.target].kind != "docker":
                problems.append(f"{where}.restart: 'container' only works for docker targets; use 'process'")
    for name, action in cfg.actions.items():
        if action.target and action.target not in cfg.targets:
            problems.append(f"actions.{name}.target: no target named '{action.target}'")
        for d in action.deps:
            if d not in cfg.actions:
                problems.append(f"actions.{name}.deps: no action named '{d}'")
    for name, t in cfg.targets.items():
        if t.kind == "local" and cfg.resolve(t.path) == cfg.root:
            problems.append(f"targets.{name}.path: must not be the config directory itself")
    return problems
