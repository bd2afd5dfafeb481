"""Which local paths a service leaves out: ignore files and rules, each with its own semantics.

Rule sets, later wins (path by path):
1. built-in defaults (`DEFAULT_IGNORES`);
2. for each directory from the base down to the path's own directory (deeper wins), its
   `.gitignore`, then `.dockerignore`, then `.syncdignore`;
3. the service's `ignore`.

Defaults, `.gitignore`, `.syncdignore` and `ignore` have gitignore semantics (pathspec), each
file matching relative to its own directory (defaults and `ignore`: the config directory).
A `.dockerignore` has Docker's (`syncd.dockerignore`): anchored at its own directory, which
is the root of the build context it belongs to, and applying to that directory's subtree.
Docker reads only the one at the context root; here a nested one (`backend/.dockerignore`
for `docker build backend`) is the root one of the context below it.

Below an ignored directory, the rule set that ignored it (the last one matching it) decides:
- a gitignore-style one hides everything below it: nothing can be re-included (as in git);
- a `.dockerignore` lets its own exceptions that come after the excluding line re-include
  paths below (as in Docker: `docs` then `!docs/README.md`). The directory itself stays
  ignored: syncd never creates or deletes it as such, it appears in the container as the
  parent of a re-included file (as in a build context). Rules after the `.dockerignore` can
  still ignore what it re-includes. VCS directories and `.syncd/` are never reopened.
The walkers skip a directory only when nothing below it can be re-included (`open_below`).

Patterns are matched against paths relative to the config directory (like a repo root). A
mapping whose `src` is itself ignored (e.g. `backend/target/debug`, a build output synced on
purpose) matches relative to that `src` instead: an explicit mapping beats an implicit rule.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import structlog
from pathspec import GitIgnoreSpec

from syncd.dockerignore import DockerPatterns

log = structlog.get_logger("syncd")

DEFAULT_IGNORES = (
    ".git/",
    ".hg/",
    ".svn/",
    ".syncd/",
    "target/",
    "node_modules/",
    "__pycache__/",
    # editor swap, backup and probe files
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    ".DS_Store",
    # the rest of what `docker compose watch` leaves out (JetBrains, KDE Kate, Go's umask probe)
    "*___jb_old___",
    "*___jb_tmp___",
    ".idea/",
    ".*.kate-swp",
    "*-go-tmp-umask",
)
IGNORE_FILES = (".gitignore", ".dockerignore", ".syncdignore")
# Never reopened by a .dockerignore exception (`**` then `!**/*.json` must not reach into them).
SEALED_NAMES = frozenset((".git", ".hg", ".svn", ".syncd"))


# What pathspec starts the regex of every rule without a slash with ("at any depth").
_ANY_DEPTH = "^(?:.+/)?"


def _any_of(regexes: list[str]) -> Callable[[str], re.Match[str] | None] | None:
    """One regex that matches where any of `regexes` does. The "at any depth" prefix most
    rules share is written once (`^(?:.+/)?(?:a|b|…)`: the same matches, but the `.+/` is not
    backtracked through once per rule), and rules all anchored at "^" are tried at the start
    only (`match`, not `search`): 0.8 against 1.9 us a path with the default rules."""
    if not regexes:
        return None
    deep = [r[len(_ANY_DEPTH):] for r in regexes if r.startswith(_ANY_DEPTH)]
    rest = [r for r in regexes if not r.startswith(_ANY_DEPTH)]
    parts = ([_ANY_DEPTH + "(?:" + "|".join(f"(?:{r})" for r in deep) + ")"] if deep else []) + [f"(?:{r})" for r in rest]
    combined = re.compile("|".join(parts))
    return combined.match if all(r.startswith("^") for r in regexes) else combined.search


class _Rules:
    """A gitignore rule set with a fast "does any rule match at all?" pre-check.

    Most paths match no rule; one combined regex answers that, instead of one regex per
    rule. Only on a hit does pathspec find the last matching rule (negations included)."""

    def __init__(self, lines: list[str] | tuple[str, ...]) -> None:
        self.spec = GitIgnoreSpec.from_lines(lines)
        regexes = [p.regex.pattern.replace("(?P<ps_d>", "(?:") for p in self.spec.patterns
                   if p.include is not None and p.regex is not None]
        self._any = _any_of(regexes)

    def verdict(self, path: str) -> bool | None:
        """True: ignored, False: re-included, None: no rule speaks about `path`."""
        if self._any is None or self._any(path) is None:
            return None
        res = self.spec.check_file(path)
        return None if res.include is None else bool(res.include)


# A path's state: False (not ignored), True (ignored, and so is everything below it), or the
# DockerPatterns that ignored a directory and may re-include something below it.
State = bool | DockerPatterns
# (rule set, where its relative path starts in an absolute path, is it a .dockerignore)
Layer = tuple[_Rules | DockerPatterns, int, bool]


class IgnoreRules:
    """Answers "is this path ignored?" for one service. Caches per directory; call
    `invalidate()` when an ignore file changes.

    Works on plain absolute path strings: it runs for every file event on the event loop,
    and pathlib's parsing would cost more than the matching itself."""

    def __init__(self, root: Path, patterns: list[str], dockerignore: list[Path] | None = None,
                 anchored: dict[str, list[DockerPatterns]] | None = None) -> None:
        """`dockerignore`: the only .dockerignore files that apply (each anchored at its own
        directory, which may be above `root`); None: every `.dockerignore` found. `anchored`:
        Docker-style rule sets applying below a directory (a mapping's own ignore/include),
        after that directory's ignore files."""
        self.root = os.path.abspath(root)
        self._defaults = _Rules(DEFAULT_IGNORES)
        self._service = _Rules(patterns)
        self._docker_files: dict[str, list[str]] | None = None
        if dockerignore is not None:
            self._docker_files = {}
            for f in dockerignore:
                path = os.path.abspath(f)
                self._docker_files.setdefault(os.path.dirname(path), []).append(path)
        self._anchored = {os.path.abspath(d): layers for d, layers in (anchored or {}).items()}
        self._files: dict[str, list[Layer]] = {}
        self._chains: dict[tuple[str, str], tuple[Layer, ...]] = {}
        self._dir_cache: dict[tuple[str, str], State] = {}
        self._bases: dict[str, str] = {}
        # Has a .dockerignore ever left an ignored directory open? (Callers skip the checks
        # that only matter then.)
        self.reopens = False

    def invalidate(self) -> None:
        self._files.clear()
        self._chains.clear()
        self._dir_cache.clear()
        self._bases.clear()

    @staticmethod
    def is_ignore_file(path: str) -> bool:
        name = os.path.basename(path)
        return name in IGNORE_FILES or name.endswith(".dockerignore")  # also `Dockerfile.dev.dockerignore`

    def _layers_in(self, directory: str) -> list[Layer]:
        layers = self._files.get(directory)
        if layers is None:
            layers = []
            cut = len(directory) + 1
            for name in IGNORE_FILES:
                if name == ".dockerignore" and self._docker_files is not None:
                    for path in self._docker_files.get(directory, []):
                        layers.extend(self._docker_layer(path, cut))
                    continue
                path = os.path.join(directory, name)
                if name == ".dockerignore":
                    layers.extend(self._docker_layer(path, cut))
                    continue
                try:
                    with open(path, encoding="utf-8", errors="replace") as f:
                        text = f.read()
                except OSError:
                    continue
                layers.append((_Rules(text.splitlines()), cut, False))
            layers.extend((rules, cut, True) for rules in self._anchored.get(directory, []))
            self._files[directory] = layers
        return layers

    @staticmethod
    def _docker_layer(path: str, cut: int) -> list[Layer]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                docker = DockerPatterns.from_text(f.read())
        except OSError:
            return []
        for pattern, why in docker.invalid:
            log.warning("invalid .dockerignore pattern skipped", file=path, pattern=pattern, error=why,
                        hint="docker build refuses this file too: fix the line")
        return [(docker, cut, True)]

    def _outer(self, base: str) -> tuple[Layer, ...]:
        """The listed .dockerignore files of directories above `base` (a build context that
        contains the mapped tree): they apply below it too."""
        if not self._docker_files:
            return ()
        return tuple(layer for d, paths in sorted(self._docker_files.items())
                     if base != d and _within(base, d) for path in paths
                     for layer in self._docker_layer(path, len(d.rstrip("/")) + 1))

    def _chain(self, base: str, directory: str) -> tuple[Layer, ...]:
        """The ignore files that apply below `directory`, from `base` down."""
        key = (base, directory)
        chain = self._chains.get(key)
        if chain is None:
            above = self._outer(base) if directory == base else self._chain(base, directory[: directory.rfind("/")])
            own = self._layers_in(directory)
            chain = (*above, *own) if own else above
            self._chains[key] = chain
        return chain

    def _decide(self, base: str, path: str, is_dir: bool, parent: State,
                chain: tuple[Layer, ...] | None = None) -> State:
        """Run every applicable rule set over `path` (below `base`); the last match wins.

        `parent` is the state of the path's directory: not ignored (False), or ignored by a
        .dockerignore whose exceptions may re-include what is below it. `chain`: the rule sets
        of the path's directory, when the caller looked them up already."""
        if isinstance(parent, DockerPatterns):
            return self._decide_inside(base, path, is_dir, parent)
        suffix = "/" if is_dir else ""
        rel = path[len(base) + 1 :] + suffix
        ignored = bool(self._defaults.verdict(rel))
        decider: DockerPatterns | None = None  # the .dockerignore that ignored `path`, if it was the last
        at, below = -1, ""
        if chain is None:
            chain = self._chain(base, path[: path.rfind("/")])
        for layer, cut, _docker in chain:
            if isinstance(layer, DockerPatterns):
                k = layer.last_match(path[cut:])
                if k >= 0:
                    ignored = not layer.patterns[k].exception
                    decider, at, below = layer, k, path[cut:]
            else:
                v = layer.verdict(path[cut:] + suffix)
                if v is not None:
                    ignored, decider = v, None
        v = self._service.verdict(rel)
        if v is not None:
            ignored, decider = v, None
        return self._outcome(path, is_dir, ignored, decider, at, below)

    def _decide_inside(self, base: str, path: str, is_dir: bool, opener: DockerPatterns) -> State:
        """`_decide` below a directory that `opener` (a .dockerignore) excluded: `opener` matches
        `path` too (through that directory), so rule sets before it do not count, only its
        exceptions can re-include (git semantics for the others), and later ones may ignore."""
        ignored, decider, at, below = True, None, -1, ""
        seen = False
        for layer, cut, _docker in self._chain(base, path[: path.rfind("/")]):
            if layer is opener:
                seen = True
                k = opener.last_match(path[cut:])
                ignored = k < 0 or not opener.patterns[k].exception
                decider, at, below = opener, k, path[cut:]
                if ignored and not is_dir:
                    return True  # nothing after it can re-include
            elif seen:
                if isinstance(layer, DockerPatterns):
                    k = layer.last_match(path[cut:])
                    if k >= 0 and not layer.patterns[k].exception:
                        ignored, decider, at, below = True, layer, k, path[cut:]
                elif layer.verdict(path[cut:] + ("/" if is_dir else "")):
                    ignored, decider = True, None
        if self._service.verdict(path[len(base) + 1 :] + ("/" if is_dir else "")):
            ignored, decider = True, None
        return self._outcome(path, is_dir, ignored, decider, at, below)

    def _outcome(self, path: str, is_dir: bool, ignored: bool, decider: DockerPatterns | None, at: int,
                 below: str) -> State:
        if not ignored:
            return False
        if (is_dir and decider is not None and path[path.rfind("/") + 1 :] not in SEALED_NAMES
                and decider.reincludes_below(below, at)):
            self.reopens = True
            return decider  # its exceptions after line `at` may re-include something below
        return True

    def _state(self, base: str, path: str, is_dir: bool, stop: str, remember: bool = True) -> State:
        """The state of `path`, below `stop` (which is not ignored). `remember`: cache it (a
        directory's; ancestors' are always)."""
        cache = self._dir_cache
        if is_dir:
            hit = cache.get((base, path))
            if hit is not None:
                return hit
        # The ancestors top down (cached): an ignored one hides everything below it, unless
        # a .dockerignore may re-include something there. Top down: the common ignored path
        # is deep in a build tree (target/debug/...) whose top directory decides.
        parent: State = False
        current = stop
        parts = path[len(stop) + 1 :].split("/")
        for part in parts[:-1]:
            current = f"{current}/{part}"
            key = (base, current)
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._decide(base, current, True, parent)
            if hit is True:
                return True
            parent = hit
        state = self._decide(base, path, is_dir, parent)
        if is_dir and remember:
            cache[(base, path)] = state
        return state

    def _base_for(self, src: str) -> str:
        base = self._bases.get(src)
        if base is None:
            base = src
            if _within(src, self.root):
                explicit = src != self.root and self._state(self.root, src, os.path.isdir(src), self.root) is not False
                base = src if explicit else self.root
            self._bases[src] = base
        return base

    def ignored(self, path: str | Path, is_dir: bool, src: str | Path) -> bool:
        """Is `path` (absolute, at or below mapping source `src`) ignored?

        `src` itself is never ignored: it was mapped explicitly.
        """
        path, src = os.fspath(path), os.fspath(src)
        if path == src or not _within(path, src):
            return False
        return self._state(self._base_for(src), path, is_dir, src) is not False

    def in_directory(self, directory: str, src: str) -> Callable[[str, bool], bool]:
        """`ignored` for the entries of one directory (at or below `src`), answering
        `(path, is_dir)`: the directory's own state and the rule sets that apply in it are
        looked up once, not once per entry — a scan of 100,000 files asks 100,000 times."""
        base = self._base_for(src)
        parent: State = False if directory == src else self._state(base, directory, True, src)
        if parent is True:
            return lambda path, is_dir: True
        if parent is not False:  # opened by a .dockerignore exception: the general path
            return lambda path, is_dir: self._state(base, path, is_dir, src) is not False
        chain, cache = self._chain(base, directory), self._dir_cache

        def ignored(path: str, is_dir: bool) -> bool:
            if not is_dir:
                return self._decide(base, path, False, False, chain) is not False
            state = cache.get((base, path))
            if state is None:
                state = cache[(base, path)] = self._decide(base, path, True, False, chain)
            return state is not False

        return ignored

    def files_above(self, src: str) -> list[str]:
        """The ignore files outside the tree below `src` whose rules apply in it (present or
        not): those of the directories from the rules' base down to `src`'s parent, and the
        listed `.dockerignore` files. A walk's fingerprint covers them (syncd/scan.py)."""
        base = self._base_for(src)
        dirs: list[str] = []
        d = os.path.dirname(src)
        while d != src and _within(d, base):
            dirs.append(d)
            if d == base or d == os.path.dirname(d):
                break
            d = os.path.dirname(d)
        found = {os.path.join(d, name) for d in dirs for name in IGNORE_FILES}
        found.update(p for paths in (self._docker_files or {}).values() for p in paths)
        return sorted(found)

    def open_below(self, path: str | Path, src: str | Path) -> bool:
        """Is `path` an ignored directory below which something may be re-included (by a
        .dockerignore exception)? Walkers must then look inside it: its files are checked
        one by one. False for directories that are not ignored, and for sealed ones.

        `path` need not exist (a directory that was removed): it is then not cached."""
        path, src = os.fspath(path), os.fspath(src)
        if path == src or not _within(path, src):
            return False
        return isinstance(self._state(self._base_for(src), path, True, src, remember=False), DockerPatterns)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
