"""The example app (examples/fullstack) as benchmarks and tests use it: copies of it that share
one from-scratch build of the Rust backend, and the backend built before and after an edit.

The backend (tokio + hyper + tokio-postgres + serde_json, Debian's crates) takes ~30 s to build
from scratch on two cores: `warm_backend()` builds it once, in the repository's own
examples/fullstack/backend/target (cargo's lock guards concurrent callers; an up-to-date tree
costs ~0.1 s), and `copy_example()` copies that target/ into each copy, where cargo finds
everything fresh (its fingerprints hold no absolute paths of the package). Each copy then
builds only what its own edits change.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "fullstack"
# build.target = "host-tuple" in backend/.cargo/config.toml (so +crt-static spares proc-macros)
BACKEND_BINARY = "backend/target/x86_64-unknown-linux-gnu/debug/api"
VERSION_RS = "backend/src/version.rs"
VERSION_PATTERN = r'pub const VERSION: &str = "[^"]*";'

_warmed: set[Path] = set()


def warm_backend(backend: Path = EXAMPLE / "backend") -> Path:
    """`cargo build --all-targets` in `backend` (binary, unit and integration tests); its target/."""
    if backend not in _warmed:
        p = subprocess.run(["cargo", "build", "--all-targets", "--quiet"], cwd=backend, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"cargo build in {backend} failed (Debian's librust-*-dev packages installed? "
                               f"scripts/test.sh installs them):\n{(p.stdout + p.stderr)[-2000:]}")
        _warmed.add(backend)
    return backend / "target"


def copy_example(dest: Path, warm: bool = True) -> None:
    """The example without build products; frontend/node_modules is linked from the repo, and
    (warm) the backend's target/ is copied from the shared build."""
    modules = EXAMPLE / "frontend" / "node_modules"
    if not modules.is_dir():
        raise RuntimeError("examples/fullstack/frontend/node_modules is missing: run `npm ci` there")
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("target", "node_modules", "dist", ".syncd"))
    (dest / "frontend" / "node_modules").symlink_to(modules)
    if warm:
        # cp -a keeps the mtimes cargo compares; --reflink shares blocks where the file system can
        subprocess.run(["cp", "-a", "--reflink=auto", str(warm_backend()), str(dest / "backend" / "target")],
                       check=True)


@dataclass
class BackendBuild:
    """One incremental build of the backend: how long cargo took and the binary it wrote."""

    seconds: float
    binary: bytes


def build_backend(backend: Path) -> BackendBuild:
    t0 = time.perf_counter()
    p = subprocess.run(["cargo", "build", "--bin", "api", "--quiet"], cwd=backend, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"cargo build in {backend} failed:\n{(p.stdout + p.stderr)[-2000:]}")
    return BackendBuild(seconds, (backend.parent / BACKEND_BINARY).read_bytes())


def set_version(app: Path, version: str) -> None:
    """Rewrites the backend's VERSION const (a `const` edit: a few blocks of the binary change)."""
    path = app / VERSION_RS
    text = path.read_text()
    new = re.sub(VERSION_PATTERN, f'pub const VERSION: &str = "{version}";', text)
    if new == text and f'"{version}"' not in text:
        raise RuntimeError(f"{path}: no line matching {VERSION_PATTERN!r}")
    path.write_text(new)


def add_route(app: Path, name: str, body: str) -> str:
    """Adds `GET /<name>` answering `body` to the backend (an edit that shifts the binary's
    layout); returns the path. Idempotent per name."""
    lib = app / "backend" / "src" / "lib.rs"
    text = lib.read_text()
    path = f"/{name}"
    if f'"{path}" =>' in text:
        return path
    marker = '        _ => Route::NotFound,\n'
    extra = f'        "{path}" => Route::Extra("{body}"),\n'
    if marker not in text or "Extra(&'static str)" not in text:
        raise RuntimeError(f"{lib}: not the shape add_route() edits (Route::Extra, `_ => Route::NotFound`)")
    lib.write_text(text.replace(marker, extra + marker, 1))
    return path


def backend_edits(app: Path, route: str) -> dict[str, BackendBuild]:
    """The backend of the copy `app` built as it is ("before", VERSION "v1"), after a `const`
    edit of the same length ("const": "v2"), after one that makes the string longer
    ("const_longer": it moves every later string in the binary, and with them much of the code
    that addresses them — another edit for a delta), then after a route-adding edit ("route")
    -> build time and binary (#17's delta and gzip figures)."""
    backend = app / "backend"
    for src in (backend / "src").rglob("*.rs"):  # "before" compiled here, as the edits are: the copied
        src.touch()  # target/ was built elsewhere, and its debug info names that directory's paths
    out = {"before": build_backend(backend)}
    for name, version in (("const", "v2"), ("const_longer", "v2-longer")):
        set_version(app, version)
        out[name] = build_backend(backend)
    add_route(app, route, f"{route} v2-longer")
    out["route"] = build_backend(backend)
    return out
