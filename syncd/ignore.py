"""Ignore rules with gitignore semantics (pathspec).

Order, later wins: built-in defaults, then `.gitignore` / `.dockerignore` / `.syncdignore`
files from the base directory down to the path's own directory, then the service's `ignore`.
As in git, nothing inside an ignored directory can be re-included.

Patterns are matched against paths relative to the config directory (like a repo root). A
mapping whose `src` is itself ignored (e.g. `backend/target/debug`, a build output synced on
purpose) matches relative to that `src` instead: an explicit mapping beats an implicit rule.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pathspec import GitIgnoreSpec

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
)
IGNORE_FILES = (".gitignore", ".dockerignore", ".syncdignore")


class _Rules:
    """A gitignore rule set with a fast "does any rule match at all?" pre-check.

    Most paths match no rule; one combined regex answers that, instead of one regex per
    rule. Only on a hit does pathspec find the last matching rule (negations included)."""

    def __init__(self, lines: list[str] | tuple[str, ...]):
        self.spec = GitIgnoreSpec.from_lines(lines)
        regexes = [p.regex.pattern.replace("(?P<ps_d>", "(?:") for p in self.spec.patterns
                   if p.include is not None and p.regex is not None]
        self._any = re.compile("|".join(f"(?:{r})" for r in regexes)) if regexes else None

    def verdict(self, path: str) -> bool | None:
        """True: ignored, False: re-included, None: no rule speaks about `path`."""
        if self._any is None or self._any.search(path) is None:
            return None
        res = self.spec.check_file(path)
        return None if res.include is None else bool(res.include)


class IgnoreRules:
    """Answers "is this path ignored?" for one service. Caches per directory; call
    `invalidate()` when an ignore file changes.

    Works on plain absolute path strings: it runs for every file event on the event loop,
    and pathlib's parsing would cost more than the matching itself."""

    def __init__(self, root: Path, patterns: list[str]):
        self.root = os.path.abspath(root)
        self._defaults = _Rules(DEFAULT_IGNORES)
        self._service = _Rules(patterns)
        self._files: dict[str, list[_Rules]] = {}
        self._dir_cache: dict[tuple[str, str], bool] = {}
        self._bases: dict[str, str] = {}

    def invalidate(self) -> None:
        self._files.clear()
        self._dir_cache.clear()
        self._bases.clear()

    @staticmethod
    def is_ignore_file(path: str) -> bool:
        return os.path.basename(path) in IGNORE_FILES

    def _specs_in(self, directory: str) -> list[_Rules]:
        specs = self._files.get(directory)
        if specs is None:
            specs = []
            for name in IGNORE_FILES:
                try:
                    with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                        specs.append(_Rules(f.read().splitlines()))
                except OSError:
                    continue
            self._files[directory] = specs
        return specs

    def _decide(self, base: str, path: str, is_dir: bool) -> bool:
        """Run every applicable rule set over `path` (below `base`); the last match wins."""
        suffix = "/" if is_dir else ""
        rel = path[len(base) + 1 :]
        parts = rel.split("/")
        verdict = self._defaults.verdict(rel + suffix) or False
        # Ignore files from the base down to the path's parent; each matches relative to itself.
        here = base
        for i in range(len(parts)):
            for spec in self._specs_in(here):
                v = spec.verdict("/".join(parts[i:]) + suffix)
                if v is not None:
                    verdict = v
            here = f"{here}/{parts[i]}"
        v = self._service.verdict(rel + suffix)
        return verdict if v is None else v

    def _base_for(self, src: str) -> str:
        base = self._bases.get(src)
        if base is None:
            base = src
            if _within(src, self.root):
                explicit = src != self.root and self._ignored_from(self.root, src, os.path.isdir(src), stop=self.root)
                base = src if explicit else self.root
            self._bases[src] = base
        return base

    def _ignored_from(self, base: str, path: str, is_dir: bool, stop: str) -> bool:
        # Git semantics: an ignored ancestor directory hides everything below it.
        parts = path[len(stop) + 1 :].split("/")
        current = stop
        for part in parts[:-1]:
            current = f"{current}/{part}"
            key = (base, current)
            hit = self._dir_cache.get(key)
            if hit is None:
                hit = self._decide(base, current, True)
                self._dir_cache[key] = hit
            if hit:
                return True
        return self._decide(base, path, is_dir)

    def ignored(self, path: str | Path, is_dir: bool, src: str | Path) -> bool:
        """Is `path` (absolute, at or below mapping source `src`) ignored?

        `src` itself is never ignored: it was mapped explicitly.
        """
        path, src = os.fspath(path), os.fspath(src)
        if path == src or not _within(path, src):
            return False
        return self._ignored_from(self._base_for(src), path, is_dir, stop=src)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
