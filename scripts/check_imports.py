#!/usr/bin/env python3
"""The import graph of syncd/ and benchmarks/: no circles (imports under TYPE_CHECKING and
inside functions count too), and each layer imports only the layers below it
(docs/ARCHITECTURE.md, "Layers").

    python scripts/check_imports.py          # exit 0: clean; 1: prints every cycle and violation

tests/test_architecture.py runs it, so CI does.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("syncd", "benchmarks")

# Lower layers never import higher ones. A module not listed is in the top layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("data", ("syncd.model", "syncd.settings", "syncd.clock")),
    ("core", ("syncd.core",)),
    ("edges", ("syncd.config", "syncd.ignore", "syncd.dockerignore", "syncd.scan", "syncd.hashwork", "syncd.pack", "syncd.dirlinks",
               "syncd.hosttar", "syncd.known", "syncd.converged", "syncd.memory", "syncd.progress", "syncd.trace", "syncd.steps", "syncd.logs",
               "syncd.watch", "syncd.inotify", "syncd.poll", "syncd.statelock", "syncd.compose", "syncd.basecache")),
    ("transports", ("syncd.transports",)),
    ("runtime", ("syncd.services", "syncd.jobs", "syncd.builds", "syncd.workers", "syncd.push", "syncd.deltas", "syncd.reconcile",
                 "syncd.batches", "syncd.engine", "syncd.testing")),
]


def layer_of(module: str) -> int:
    for i, (_name, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return len(LAYERS)


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every project module `module` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            # the longest project module the name starts with (`from syncd import batches`)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name not in PACKAGES:
                yield name


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: set(imports_of(m, p, known)) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        if not m.startswith("syncd"):
            continue
        for d in sorted(deps):
            if layer_of(d) > layer_of(m):
                bad.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({_name(layer_of(d))})")
    return bad


def _name(i: int) -> str:
    return LAYERS[i][0] if i < len(LAYERS) else "outer"


def main() -> int:
    g = graph()
    found, bad = cycles(g), violations(g)
    for comp in found:
        print("import cycle: " + " -> ".join(comp))
    for line in bad:
        print("layer violation: " + line)
    if not found and not bad:
        print(f"{len(g)} modules, {sum(len(v) for v in g.values())} imports: no cycles, layers respected")
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main())
