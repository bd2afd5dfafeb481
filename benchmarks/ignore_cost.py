"""Cost of one ignore check (`IgnoreRules.ignored`), the watcher's per-event hot path.

`python -m benchmarks.ignore_cost [--paths N] [--repeat R]`: N paths (default 100,000) of each
kind are checked R times (default 5); the best run is reported as microseconds per path.
Kinds: build output under `target/debug/...` (a cargo event storm) and ordinary source
files, in a tree with a root `.gitignore`, without and with a `.dockerignore`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from syncd.ignore import IgnoreRules

GITIGNORE = "*.log\n/dist/\n.env\n"
DOCKERIGNORES = {
    "none": None,
    "plain": "# typical\n.git\n**/*.md\n!README.md\ndocs\ntarget\nnode_modules\n*.pyc\n",
    "whitelist": "**\n!src\n!Cargo.toml\n!Cargo.lock\n",
    # an exception that may match anywhere: target/ is walked, each path matched
    "reopen-all": "**\n!**/*.rs\n",
}


def paths(app: Path, n: int) -> dict[str, list[str]]:
    kinds = (("deps", "o"), ("build", "rs"), ("incremental", "bin"))
    target = [f"{app}/target/debug/{kinds[i % 3][0]}/crate{i % 97}-{i % 13:x}/out/f{i}.{kinds[i % 3][1]}"
              for i in range(n)]
    source = [f"{app}/src/mod{i % 211}/sub{i % 7}/file{i}.rs" for i in range(n)]
    return {"target/debug/...": target, "src/...": source}


def measure(rules: IgnoreRules, items: list[str], src: str, repeat: int) -> float:
    for p in items[:1000]:
        rules.ignored(p, False, src)  # warm the per-directory cache, as a running daemon has
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in items:
            rules.ignored(p, False, src)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = root / "app"
        (app / "src").mkdir(parents=True)
        (root / ".gitignore").write_text(GITIGNORE)
        sets = paths(app, args.paths)
        print(f"{'dockerignore':<12} {'paths':<18} {'us/path':>8}")
        for name, text in DOCKERIGNORES.items():
            docker = app / ".dockerignore"
            if text is None:
                docker.unlink(missing_ok=True)
            else:
                docker.write_text(text)
            for kind, items in sets.items():
                rules = IgnoreRules(root, [])
                print(f"{name:<12} {kind:<18} {measure(rules, items, str(app), args.repeat):8.2f}")


if __name__ == "__main__":
    main()
