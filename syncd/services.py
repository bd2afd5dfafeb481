"""A configured service as the daemon uses it: its mappings resolved to absolute sources, its
ignore rules, and its fallback and build-trigger globs compiled once (the watcher asks about
every event)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pathspec import GitIgnoreSpec

from syncd.config import Config, Service
from syncd.core.mapping import ResolvedMapping
from syncd.core.plan import ServicePlanInput
from syncd.dockerignore import DockerPatterns
from syncd.ignore import IgnoreRules


@dataclass
class ServiceRuntime:
    cfg: Service
    mappings: tuple[ResolvedMapping, ...]
    rules: IgnoreRules
    fallback_spec: GitIgnoreSpec = field(init=False)
    trigger_spec: GitIgnoreSpec = field(init=False)
    triggers: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.fallback_spec = GitIgnoreSpec.from_lines(self.cfg.fall_back_on)
        self.triggers = [t for b in self.cfg.build for t in b.trigger]  # paths that set off a build
        self.trigger_spec = GitIgnoreSpec.from_lines(self.triggers)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def fall_back_on(self) -> list[str]:
        return self.cfg.fall_back_on

    @property
    def plan_input(self) -> ServicePlanInput:
        return ServicePlanInput(self.cfg.name, self.cfg.target, self.mappings, tuple(self.cfg.fall_back_on),
                                self.cfg.fallback, tuple(tuple(b.trigger) for b in self.cfg.build))


def mapping_rules(include: list[str], ignore: list[str]) -> list[DockerPatterns]:
    """A mapping's own Docker-style rule sets, anchored at its `src`: with `include`, everything
    is left out but what it matches (its `!` lines exclude); then `ignore`."""
    layers = []
    if include:
        layers.append(DockerPatterns(["**", *(p[1:] if p.startswith("!") else "!" + p for p in include)]))
    if ignore:
        layers.append(DockerPatterns(ignore))
    return layers


def service_runtimes(cfg: Config) -> list[ServiceRuntime]:
    out = []
    for svc in cfg.services:
        mappings = tuple(ResolvedMapping(cfg.resolve(m.src), m.dest, svc.name, svc.target) for m in svc.sync)
        anchored: dict[str, list[DockerPatterns]] = {}
        for r, m in zip(mappings, svc.sync, strict=True):
            anchored.setdefault(str(r.src), []).extend(mapping_rules(m.include, m.ignore))
        docker = None if svc.dockerignore is None else [cfg.resolve(f) for f in svc.dockerignore]
        out.append(ServiceRuntime(svc, mappings, IgnoreRules(cfg.root, svc.ignore, docker, anchored)))
    return out
