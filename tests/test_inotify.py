"""syncd/inotify.py against the real kernel: the recursive tree of watches kept by hand."""

from __future__ import annotations

import os
import select
import shutil
import time
from pathlib import Path

import pytest

from syncd import inotify

pytestmark = pytest.mark.skipif(not inotify.available(), reason="inotify is Linux-only")


def drain(tree: inotify.InotifyTree, until: float = 0.3) -> inotify.Batch:
    """Everything the kernel reports within `until` seconds of quiet."""
    out = inotify.Batch()
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        ready, _, _ = select.select([tree.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        b = tree.read()
        out.paths |= b.paths
        out.overflowed |= b.overflowed
        deadline = time.monotonic() + until
    return out


@pytest.fixture
def tree(tmp_path: Path):  # noqa: ANN201
    (tmp_path / "src").mkdir()
    t = inotify.InotifyTree([str(tmp_path / "src")])
    t.open()
    yield tmp_path / "src", t
    t.close()


def test_idle_costs_nothing_and_an_edit_is_reported(tree) -> None:  # noqa: ANN001
    src, t = tree
    assert select.select([t.fd], [], [], 0.2)[0] == []  # nothing to wake for while idle
    (src / "a.txt").write_text("a")
    assert str(src / "a.txt") in drain(t).paths


def test_what_a_new_directory_held_before_its_watch_is_reported(tree) -> None:  # noqa: ANN001
    src, t = tree
    deep = src / "new" / "er" / "est"
    deep.mkdir(parents=True)  # in one go: the watch on "new" comes after its children exist
    (deep / "f.txt").write_text("f")
    got = drain(t).paths
    assert {str(src / "new"), str(src / "new" / "er"), str(deep), str(deep / "f.txt")} <= got
    (deep / "later.txt").write_text("later")  # ... and what comes after is watched
    assert str(deep / "later.txt") in drain(t).paths


def test_a_directory_moved_within_the_tree_is_followed_under_its_new_name(tree) -> None:  # noqa: ANN001
    src, t = tree
    (src / "d" / "sub").mkdir(parents=True)
    drain(t)
    os.rename(src / "d", src / "e")
    got = drain(t).paths
    assert {str(src / "d"), str(src / "e")} <= got
    (src / "e" / "sub" / "x.txt").write_text("x")
    got = drain(t).paths
    assert str(src / "e" / "sub" / "x.txt") in got and not any("/d/" in p for p in got)


def test_a_directory_moved_out_is_forgotten_and_one_moved_in_is_watched(tree, tmp_path: Path) -> None:  # noqa: ANN001
    src, t = tree
    (src / "gone" / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "old.txt").write_text("already here")
    drain(t)
    watches = t.watches
    os.rename(src / "gone", tmp_path / "gone-out")
    assert str(src / "gone") in drain(t).paths
    (tmp_path / "gone-out" / "sub" / "after.txt").write_text("not ours")
    assert not drain(t).paths  # no stale watch reports it under the old name
    assert t.watches == watches - 2
    os.rename(outside, src / "came")
    got = drain(t).paths
    assert {str(src / "came"), str(src / "came" / "inner"), str(src / "came" / "inner" / "old.txt")} <= got
    (src / "came" / "inner" / "new.txt").write_text("new")
    assert str(src / "came" / "inner" / "new.txt") in drain(t).paths


def test_symlinked_directories_are_never_followed(tree, tmp_path: Path) -> None:  # noqa: ANN001
    src, t = tree
    (src / "real").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (src / "to-real").symlink_to(src / "real")
    (src / "to-outside").symlink_to(elsewhere)
    drain(t)
    (src / "real" / "f.txt").write_text("edit")
    (elsewhere / "g.txt").write_text("outside the tree")
    got = drain(t).paths
    assert got == {str(src / "real" / "f.txt")}  # the real path only; nothing through a link
    (src / "to-real").unlink()
    (src / "real" / "f.txt").write_text("after the link is gone")
    assert str(src / "real" / "f.txt") in drain(t).paths


def test_a_removed_tree_leaves_no_watches(tree) -> None:  # noqa: ANN001
    src, t = tree
    (src / "a" / "b" / "c").mkdir(parents=True)
    drain(t)
    assert t.watches == 4
    shutil.rmtree(src / "a")
    drain(t)
    assert t.watches == 1


def test_a_directory_renamed_before_its_watch_existed_is_watched_under_its_new_name(tree) -> None:  # noqa: ANN001
    """Found by the docker soak: `mkdir -p ü名; mv 'new\\nline' 'ü名/-rf'; mkdir -rf; mv ü名 -rf/-rf;
    mv -rf a`, all before the watcher read a thing. '-rf' was gone before its creation could be
    watched, so its rename to 'a' paired with nothing known: 'a' was never watched, and a
    directory made in it later never reached the container."""
    src, t = tree
    (src / "new\nline").mkdir()
    drain(t)
    (src / "ü名").mkdir()
    os.rename(src / "new\nline", src / "ü名" / "-rf")
    (src / "-rf").mkdir()
    os.rename(src / "ü名", src / "-rf" / "-rf")
    os.rename(src / "-rf", src / "a")
    got = drain(t).paths
    assert {str(src / "a"), str(src / "a" / "-rf"), str(src / "a" / "-rf" / "-rf")} <= got
    (src / "a" / "b c").mkdir()
    (src / "a" / "-rf" / "-rf" / "f.txt").write_text("deep")
    got = drain(t).paths
    assert {str(src / "a" / "b c"), str(src / "a" / "-rf" / "-rf" / "f.txt")} <= got
