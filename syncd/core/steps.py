"""Which steps a change sets off, and how actions order. Pure: config data and paths in.

Triggers are gitignore-style globs matched against paths relative to the config file, the
same way `fall_back_on` is. A step without `trigger` runs on every change of its service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from pathspec import GitIgnoreSpec


@lru_cache(maxsize=256)
def _spec(patterns: tuple[str, ...]) -> GitIgnoreSpec:
    return GitIgnoreSpec.from_lines(patterns)


def triggered(patterns: Iterable[str], rel_paths: Iterable[str]) -> bool:
    """Does any of `rel_paths` match the trigger globs? (No globs: any path does.)"""
    pats = tuple(patterns)
    paths = list(rel_paths)
    if not pats:
        return bool(paths)
    spec = _spec(pats)
    return any(spec.match_file(p) for p in paths)


def step_name(service: str, explicit: str | None, index: int, count: int) -> str:
    """`build:<name>` / `run:<name>` span names: the step's own name, else the service's
    (numbered when the service has several)."""
    if explicit:
        return explicit
    return service if count == 1 else f"{service}-{index + 1}"


# Compiler and tool error lines: rustc/cargo ("error[E0308]: ...", "error: could not compile"),
# a failing Rust test ("thread 'x' panicked at"), esbuild ("✘ [ERROR] ..."), npm ("npm ERR!",
# "npm error"), node's test runner ("not ok 1 - ..."), tsc/node ("Error:", "SyntaxError"), psql.
_ERROR = re.compile(r"^\s*(error(\[\w+\])?:|thread '[^']*'( \(\d+\))? panicked at|✘ \[ERROR\]|\[ERROR\]|npm (ERR!|error)"
                    r"|not ok \d+|\w*Error\b|ERROR\b|psql:.*ERROR:)")


def first_error(output: str, context: int = 8) -> list[str]:
    """The first error of a tool's output with the lines that locate it (rustc prints
    ` --> src/x.rs:3:5` and the source below the error line); [] when no line looks like one."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if _ERROR.match(line):
            block = [line]
            for follow in lines[i + 1 : i + 1 + context]:
                if not follow.strip() and len(block) > 1:
                    break
                block.append(follow)
            return block
    return []


class ActionError(ValueError):
    pass


def action_order(deps: Mapping[str, Iterable[str]], name: str) -> list[str]:
    """`name` and everything it depends on, dependencies first (each once, config order
    among siblings). Cycles are refused by config validation; this raises on them too."""
    if name not in deps:
        raise ActionError(name)
    order: list[str] = []
    visiting: set[str] = set()

    def visit(n: str) -> None:
        if n in order:
            return
        if n in visiting:
            raise ActionError(f"dependency cycle through '{n}'")
        visiting.add(n)
        for d in deps[n]:
            visit(d)
        visiting.discard(n)
        order.append(n)

    visit(name)
    return order
