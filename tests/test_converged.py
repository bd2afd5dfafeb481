"""A reconcile skipped because nothing changed since the last one (syncd/converged.py).

The proof is two fingerprints: the local walk's and the container listing's. These tests
check that each kind of change on either side moves one of them (so the comparison runs and
repairs it), and that an unchanged pair really skips the comparison — the container tree
compared whole with the local one every time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.converged import ConvergedStore
from syncd.core.packed import from_columns, pack
from syncd.ignore import IgnoreRules
from syncd.model import Entry, Kind
from syncd.scan import Fingerprint, HashCache, fingerprint_source, scan_source
from trees import container_tree, diff_trees, local_tree

SYNCD = [sys.executable, "-m", "syncd"]


# --- the local fingerprint ----------------------------------------------------------------


def _tree(root: Path) -> Path:
    src = root / "app"
    (src / "sub").mkdir(parents=True)
    (src / "node_modules" / "pkg").mkdir(parents=True)
    (src / "node_modules" / "pkg" / "index.js").write_text("x")
    (src / "main.py").write_text("print('hi')\n")
    (src / "sub" / "x.txt").write_text("x")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("sub/x.txt")
    (src / "debug.log").write_text("log")
    (src / ".gitignore").write_text("*.log\n.gitignore\n")  # ignores itself: its rules still apply
    return src


def _walked(root: Path, src: Path) -> str:
    fp = Fingerprint()
    fingerprint_source(src, IgnoreRules(root, []), fp)
    return fp.hexdigest()


def test_the_walk_and_the_scan_feed_the_same_fingerprint(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    scanned = Fingerprint()
    tree = scan_source(src, IgnoreRules(tmp_path, []), HashCache(), [], scanned)
    assert str(src / "main.py") in tree and str(src / "debug.log") not in tree
    assert scanned.hexdigest() == _walked(tmp_path, src) == _walked(tmp_path, src)


@pytest.mark.parametrize("change", ["same size and mtime", "mode", "new file", "deleted", "symlink",
                                    "ignored ignore file", "ignore file above", "new dir"])
def test_every_change_that_matters_moves_the_local_fingerprint(tmp_path: Path, change: str) -> None:
    src = _tree(tmp_path)
    before = _walked(tmp_path, src)
    main = src / "main.py"
    if change == "same size and mtime":  # an edit an mtime check would miss: the ctime moves
        st = main.stat()
        main.write_text("print('ho')\n")
        os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "mode":
        main.chmod(0o755)
    elif change == "new file":
        (src / "sub" / "y.txt").write_text("y")
    elif change == "deleted":
        (src / "sub" / "x.txt").unlink()
    elif change == "symlink":
        (src / "link").unlink()
        (src / "link").symlink_to("main.py")
    elif change == "ignored ignore file":
        (src / ".gitignore").write_text("*.txt\n.gitignore\n")
    elif change == "ignore file above":  # the config directory's rules apply below `app/`
        (tmp_path / ".syncdignore").write_text("*.py\n")
    elif change == "new dir":
        (src / "sub" / "deeper").mkdir()
    assert _walked(tmp_path, src) != before, change


def test_changes_below_an_ignored_directory_do_not_move_it(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    before = _walked(tmp_path, src)
    (src / "node_modules" / "pkg" / "index.js").write_text("changed")
    (src / "node_modules" / "other").mkdir()
    assert _walked(tmp_path, src) == before


# --- the store ------------------------------------------------------------------------------


def test_a_kept_proof_reads_back_whole_and_a_damaged_one_is_none(tmp_path: Path) -> None:
    store = ConvergedStore(tmp_path)
    manifest = {"/app": Entry(Kind.DIR), "/app/a": Entry(Kind.FILE, "ab" * 20, True, size=3, mtime=9),
                "/app/l": Entry(Kind.LINK, link="a"), "/app/q": Entry(Kind.FILE, "?")}
    store.save("web/c1", "L" * 40, "R" * 40, manifest)
    kept = store.load("web/c1")
    assert kept is not None and (kept.local, kept.remote) == ("L" * 40, "R" * 40) and dict(kept.manifest) == manifest
    assert ConvergedStore(tmp_path).load("web/c2") is None
    store.save("web/c2", "L" * 40, "R" * 40, pack(manifest))
    twin = store.load("web/c2")
    assert twin is not None
    taken = from_columns(twin.manifest.columns(), [kept.manifest])  # as a restarted replica takes it
    assert taken.columns()[0] is kept.manifest.columns()[0] and dict(taken) == manifest  # shared, as replicas
    for path in (tmp_path / "converged").iterdir():
        path.write_bytes(path.read_bytes()[:-7])  # cut short
    assert store.load("web/c1") is None and store.load("web/c2") is None
    store.save("web/c1", "L" * 40, "R" * 40, manifest)
    store.forget("web/c1")
    assert store.load("web/c1") is None


# --- end to end, through Docker ------------------------------------------------------------------


def _sync(work: Path) -> dict:
    """`syncd sync`; its reconcile record."""
    done = subprocess.run([*SYNCD, "sync"], cwd=work, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (work / ".syncd" / "trace.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("reconcile")][-1]


def _unchanged(record: dict) -> bool:
    spans = {s["name"].split(":")[0]: s for s in record["spans"]}
    return bool(spans["manifest"]["detail"].get("unchanged")) and "scan" not in spans


IGNORED = (".gitignore", "debug.log", "node_modules")  # by _tree's own .gitignore and the defaults


def _equal(container, src: Path, ignored: tuple[str, ...] = IGNORED) -> None:  # noqa: ANN001
    """The container's tree is the local one less what is ignored."""
    want = {p: e for p, e in local_tree(src).items() if not p.startswith(ignored)}
    assert not diff_trees(want, container_tree(container, "/app/src"))


def test_sync_skips_only_what_is_proven_unchanged(make_container, tmp_path: Path) -> None:  # noqa: ANN001
    c = make_container()
    src = _tree(tmp_path)
    (tmp_path / "app").rename(tmp_path / "src")
    src = tmp_path / "src"
    (tmp_path / "syncd.toml").write_text(f"""
[daemon]
trace = ".syncd/trace.jsonl"
[targets.web]
kind = "docker"
container = "{c.name}"
[[services]]
name = "web"
target = "web"
sync = [{{ src = "src", dest = "/app/src" }}]
""")
    assert not _unchanged(_sync(tmp_path))  # sent everything: the container changed since its listing
    _equal(c, src.resolve())
    assert not _unchanged(_sync(tmp_path))  # compared, found equal: the proof is kept
    assert _unchanged(_sync(tmp_path))  # nothing changed since: nothing compared
    _equal(c, src.resolve())

    # a file changed in the container: its listing moves, the comparison runs and repairs it
    c.exec_run(["sh", "-c", "echo other > /app/src/sub/x.txt && rm /app/src/run.sh"])
    assert not _unchanged(_sync(tmp_path))
    _equal(c, src.resolve())
    assert not _unchanged(_sync(tmp_path))
    assert _unchanged(_sync(tmp_path))

    # a local edit of the same size with its mtime put back: the walk's ctime moves
    main = src / "main.py"
    st = main.stat()
    main.write_text("print('ho')\n")
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not _unchanged(_sync(tmp_path))
    _equal(c, src.resolve())
    assert not _unchanged(_sync(tmp_path))
    assert _unchanged(_sync(tmp_path))

    # the configuration: a pattern that re-includes an ignored file (the walk no longer skips it)
    cfg = tmp_path / "syncd.toml"
    cfg.write_text(cfg.read_text().replace('sync = [', 'ignore = ["!debug.log"]\nsync = ['))
    assert not _unchanged(_sync(tmp_path))
    _equal(c, src.resolve(), ignored=(".gitignore", "node_modules"))
