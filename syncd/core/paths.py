"""What a local path means to the daemon: does its event wake the pipeline, which directories
must be watched, does it set off a build. Pure: a service's rules come in as a `ServicePaths`
(syncd.services.ServiceRuntime is one); the ignore decisions are its `rules`' answers.

These run for every file event on the event loop (cargo writes hundreds into `target/` per
build): paths stay plain strings, and each service's globs are compiled once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from pathspec import GitIgnoreSpec

from syncd.core.mapping import ResolvedMapping, local_rel, most_specific


class Rules(Protocol):
    """A service's ignore rules (syncd.ignore.IgnoreRules)."""

    @property
    def reopens(self) -> bool: ...

    def ignored(self, path: str | Path, is_dir: bool, src: str | Path) -> bool: ...

    def open_below(self, path: str | Path, src: str | Path) -> bool: ...


class ServicePaths(Protocol):
    """One service's rules about local paths (read-only)."""

    @property
    def name(self) -> str: ...
    @property
    def mappings(self) -> tuple[ResolvedMapping, ...]: ...
    @property
    def rules(self) -> Rules: ...
    @property
    def fall_back_on(self) -> Sequence[str]: ...
    @property
    def triggers(self) -> Sequence[str]: ...  # every build step's trigger globs
    @property
    def fallback_spec(self) -> GitIgnoreSpec: ...
    @property
    def trigger_spec(self) -> GitIgnoreSpec: ...


def is_reopened(svc: ServicePaths, path: str, is_dir: bool, src: Path) -> bool:
    """An ignored directory below which a .dockerignore re-includes paths (made, moved in, or
    gone: a path that is no more may have been one): what is below it must be seen."""
    return svc.rules.reopens and (is_dir or not os.path.lexists(path)) and svc.rules.open_below(path, src)


def accepts(services: Iterable[ServicePaths], path: str, is_dir: bool, root: str) -> bool:
    """Should an event on `path` wake the pipeline? Mapped and not ignored, a fallback trigger,
    or a build trigger that is not ignored (a build's own outputs never set it off again)."""
    rel = None
    for svc in services:
        m = most_specific(svc.mappings, path)
        if m is not None and (not svc.rules.ignored(path, is_dir, m.src) or is_reopened(svc, path, is_dir, m.src)):
            return True
        if svc.fall_back_on or svc.triggers:
            rel = rel or local_rel(path, root)
            if svc.fall_back_on and svc.fallback_spec.match_file(rel):
                return True
            if svc.triggers and svc.trigger_spec.match_file(rel) and not svc.rules.ignored(path, is_dir, root):
                return True
    return False


def watch_sources(services: Sequence[ServicePaths], resolve: Callable[[str], Path]) -> list[Path]:
    """Every mapping's source, and the fixed part of every fallback and build trigger glob
    (a `!` line only takes paths out; a leading `/` anchors at the config directory, as in
    gitignore: it is not the file system's root)."""
    paths = [m.src for s in services for m in s.mappings]
    for svc in services:
        for pattern in [*svc.fall_back_on, *svc.triggers]:
            if pattern.startswith("!"):
                continue
            static = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].split("\\", 1)[0]
            paths.append(resolve(static.lstrip("/") or "."))
    return paths


def sets_off_a_build(services: Iterable[ServicePaths], idle: Callable[[str], bool], paths: set[str], root: str,
                     limit: int) -> bool:
    """Does this change set off the build of a service whose builds are `idle`? Then its batch
    is cut at once: the watcher already waited for its own quiet step, and the debounce would
    only delay the build (a change a moment later asks for one follow-up build). A burst of
    more than `limit` paths coalesces as usual."""
    if len(paths) > limit:
        return False
    for svc in services:
        if not svc.triggers or not idle(svc.name):
            continue
        for path in paths:
            rel = local_rel(path, root)
            if (svc.trigger_spec.match_file(rel)
                    and not (svc.fall_back_on and svc.fallback_spec.match_file(rel))
                    and not svc.rules.ignored(path, os.path.isdir(path), root)):
                return True
    return False
