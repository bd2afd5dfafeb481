"""The polling watcher (syncd/poll.py): what two walks of a tree say changed."""

from __future__ import annotations

import os
from pathlib import Path

from syncd.poll import Poller


def test_a_file_rewritten_within_the_same_second_is_seen(tmp_path: Path) -> None:
    """watchfiles' poller compared whole-second mtimes: this rewrite went unseen (a test flaked)."""
    f = tmp_path / "b.txt"
    f.write_text("b1\n")
    p = Poller([str(tmp_path)])
    p.start()
    st = f.stat()
    f.write_text("b2\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # even the same mtime: ctime still moves
    assert p.poll() == {str(f)}
    assert p.poll() == set()


def test_new_vanished_and_replaced_paths_but_not_their_directories(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old.txt").write_text("x")
    (tmp_path / "e").mkdir()
    p = Poller([str(tmp_path)])
    p.start()
    (tmp_path / "d" / "new.txt").write_text("y")  # d's times move; d is not reported
    (tmp_path / "d" / "old.txt").unlink()
    (tmp_path / "e").rmdir()
    (tmp_path / "e").write_text("now a file")
    (tmp_path / "n" / "deep").mkdir(parents=True)
    assert p.poll() == {str(tmp_path / "d" / "new.txt"), str(tmp_path / "d" / "old.txt"), str(tmp_path / "e"),
                        str(tmp_path / "n"), str(tmp_path / "n" / "deep")}
    assert p.is_dir(str(tmp_path / "n" / "deep")) and not p.is_dir(str(tmp_path / "e"))


def test_symlinks_are_listed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(outside, tree / "link")
    p = Poller([str(tree)])
    p.start()
    (outside / "secret.txt").write_text("changed")
    (outside / "more.txt").write_text("m")
    assert p.poll() == set()
    os.remove(tree / "link")
    os.symlink(tree, tree / "link")  # re-pointed: a new link
    assert p.poll() == {str(tree / "link")}
