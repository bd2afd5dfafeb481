"""Independent observers of trees, for convergence assertions.

The container side is read through Docker's archive API (not through syncd's own code), so
a bug in syncd's manifest script cannot hide a bug in its sync.

A tree may still be moving while it is read (a file written mid-archive makes the tar end
early; a local file removed mid-walk vanishes): such a torn read is "not equal yet", never an
error — the observers read again (a few times, then give up loudly).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

# path (relative) -> ("f", sha1, exec) | ("l", target) | ("d",)
Tree = dict[str, tuple]


TORN_RETRIES = 20


def reread(read: Callable[[], Tree], torn: tuple[type[BaseException], ...] = (tarfile.ReadError, EOFError)) -> Tree:
    """`read()` again while it tears (the tree moved under it); the last failure is raised."""
    for attempt in range(TORN_RETRIES):
        try:
            return read()
        except torn:
            if attempt == TORN_RETRIES - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def local_tree(root: Path, skip: set[str] | None = None) -> Tree:
    """Every entry below `root` (not following symlinks); `skip`: top-level names left out."""
    return reread(lambda: _local_tree(root, skip), (FileNotFoundError, NotADirectoryError))


def _local_tree(root: Path, skip: set[str] | None) -> Tree:
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if skip and rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d",)
            else:
                out[rel] = ("f", hashlib.sha1(full.read_bytes()).hexdigest(), bool(st.st_mode & stat.S_IXUSR))
    return out


def container_tree(container, dest: str) -> Tree:  # noqa: ANN001 - a docker Container
    """The tree below `dest` in a running container, via `GET /containers/{id}/archive`."""
    import docker.errors

    def read() -> Tree:
        try:
            stream, _stat = container.get_archive(dest)
        except docker.errors.NotFound:
            return {}
        # The archive API names members "<basename of dest>/…": drop that first component.
        return tar_tree(b"".join(stream), lambda name: name.split("/", 1)[1] if "/" in name else "")

    # A file written while the engine archives it ends the tar early ("unexpected end of data").
    return reread(read, (tarfile.ReadError, EOFError))


def tar_tree(data: bytes, relative: Callable[[str], str]) -> Tree:
    """The tree held by a tar archive; `relative` maps a member name to the tree's path
    (an empty result is the top directory itself and is skipped)."""
    out: Tree = {}
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            rel = relative(m.name).rstrip("/")
            if not rel or rel == ".":
                continue
            if m.issym():
                out[rel] = ("l", m.linkname)
            elif m.isdir():
                out[rel] = ("d",)
            elif m.isreg():
                f = tf.extractfile(m)
                out[rel] = ("f", hashlib.sha1(f.read() if f else b"").hexdigest(), bool(m.mode & stat.S_IXUSR))
    return out


def diff_trees(want: Tree, got: Tree) -> list[str]:
    """Readable differences (empty when equal)."""
    problems = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            problems.append(f"{k!r}: local={want.get(k)} container={got.get(k)}")
    return problems
