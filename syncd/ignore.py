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


class IgnoreRules:
    """Answers "is this path ignored?" for one service. Caches per directory; call
    `invalidate()` when an ignore file changes."""

    def __init__(self, root: Path, patterns: list[str]):
        self.root = Path(os.path.abspath(root))
        self._defaults = GitIgnoreSpec.from_lines(DEFAULT_IGNORES)
        self._service = GitIgnoreSpec.from_lines(patterns)
        self._files: dict[Path, list[GitIgnoreSpec]] = {}
        self._dir_cache: dict[tuple[str, str], bool] = {}
        self._bases: dict[Path, Path] = {}

    def invalidate(self) -> None:
        self._files.clear()
        self._dir_cache.clear()
        self._bases.clear()

    @staticmethod
    def is_ignore_file(path: str) -> bool:
        return os.path.basename(path) in IGNORE_FILES

    def _specs_in(self, directory: Path) -> list[GitIgnoreSpec]:
        specs = self._files.get(directory)
        if specs is None:
            specs = []
            for name in IGNORE_FILES:
                try:
                    lines = (directory / name).read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    continue
                specs.append(GitIgnoreSpec.from_lines(lines))
            self._files[directory] = specs
        return specs

    def _decide(self, base: Path, path: Path, is_dir: bool) -> bool:
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        verdict = False
        checks: list[tuple[GitIgnoreSpec, str]] = [(self._defaults, rel)]
        # Ignore files from the base down to the path's parent; each matches relative to itself.
        here = base
        for part in ("",) + path.relative_to(base).parts[:-1]:
            here = here / part if part else here
            sub = path.relative_to(here).as_posix() + ("/" if is_dir else "")
            checks.extend((spec, sub) for spec in self._specs_in(here))
        checks.append((self._service, rel))
        for spec, candidate in checks:
            res = spec.check_file(candidate)
            if res.include is not None:
                verdict = bool(res.include)
        return verdict

    def _base_for(self, src: Path) -> Path:
        base = self._bases.get(src)
        if base is None:
            base = src
            if src == self.root or self.root in src.parents:
                explicit = src != self.root and self._ignored_from(self.root, src, src.is_dir(), stop=self.root)
                base = src if explicit else self.root
            self._bases[src] = base
        return base

    def _ignored_from(self, base: Path, path: Path, is_dir: bool, stop: Path) -> bool:
        # Git semantics: an ignored ancestor directory hides everything below it.
        rel_parts = path.relative_to(stop).parts
        current = stop
        for part in rel_parts[:-1]:
            current = current / part
            key = (str(base), str(current))
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
        path, src = Path(path), Path(src)
        if path == src:
            return False
        base = self._base_for(src)
        return self._ignored_from(base, path, is_dir, stop=src)

    def ignored_any_kind(self, path: str | Path, src: str | Path) -> bool:
        """For a path that no longer exists: ignored as a file or as a directory."""
        return self.ignored(path, False, src) or self.ignored(path, True, src)
