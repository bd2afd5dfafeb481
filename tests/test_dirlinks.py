"""Symlinks to directories inside a synced tree (found by tests/test_stateful.py).

notify, under watchfiles, follows them, and inotify's one-watch-per-inode then makes it report
changes of the real directory under the link's path; once the link is gone those names are
stale. Each case below lost edits before syncd.dirlinks: the whole local tree must reach the
(local) target, and nothing behind a link pointing out of the tree may be read or sent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import pytest

from engine_harness import running, settle, write_config
from syncd.dirlinks import ADDED, DELETED, LinkMap, through_link
from trees import diff_trees, local_tree

CONFIG = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 300
trace = ".syncd/trace.jsonl"
[targets.t]
kind = "local"
path = "sandbox"
[[services]]
name = "app"
target = "t"
sync = [{ src = "src", dest = "/app/src" }]
"""


async def _converged(engine, src: Path, sandbox: Path) -> None:  # noqa: ANN001
    await settle(engine, src, timeout=10)
    assert diff_trees(local_tree(src), local_tree(sandbox)) == []


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, object]:
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "f").write_text("v1")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("not for the container")
    cfg = write_config(tmp_path, CONFIG)
    return src, tmp_path / "sandbox" / "app" / "src", cfg


def _move_in(src: Path, name: str, link_to: Path) -> None:
    """A directory holding a link to `link_to` moved into the tree: notify walks what arrives
    (following the link) -- as it does for every directory present when it starts."""
    staging = src.parent / f"staging-{name}"
    staging.mkdir()
    (staging / "up").symlink_to(link_to)
    os.rename(staging, src / name)


@pytest.mark.anyio
@pytest.mark.reliability("symlinked directories in the tree at start (6 aliases of one directory, a link to '.'): edits below them",
                         kind="fault")
async def test_edits_below_a_linked_directory_arrive_under_their_real_path(tree, reliability) -> None:  # noqa: ANN001
    src, sandbox, cfg = tree
    for i in range(6):  # present at start: notify watches real/ through them too, and names
        (src / f"alias{i}").symlink_to("real")  # it by the one it walked last (readdir order)
    (src / "loop").symlink_to(".")  # and the root itself as loop/
    async with running(cfg) as engine:
        await _converged(engine, src, sandbox)
        for i in range(3):
            (src / "real" / "f").write_text(f"v{i + 2}")
            (src / f"top{i}").write_text("top")
            await _converged(engine, src, sandbox)
        assert (sandbox / "alias0").is_symlink() and os.readlink(sandbox / "alias0") == "real"
    reliability.tried(3)
    reliability.outcome = "every edit arrived under its real path; the links arrived as links"


@pytest.mark.anyio
@pytest.mark.reliability("a link to '..' in the tree: files changed outside it must not be read nor sent", kind="security")
async def test_a_link_out_of_the_tree_is_synced_as_a_link_and_never_read_through(tree, reliability) -> None:  # noqa: ANN001
    src, sandbox, cfg = tree
    (src / "up").symlink_to("..")  # the parent: holds src/, the sandbox and outside/
    async with running(cfg) as engine:
        await _converged(engine, src, sandbox)
        (src.parent / "outside" / "secret").write_text("changed, still not for the container")
        (src.parent / "outside" / "new").write_text("not for the container either")
        for i in range(3):
            (src / "real" / "f").write_text(f"v{i + 2}")
            await _converged(engine, src, sandbox)
    sent = {p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*")}
    assert sent == {"real", "real/f", "up", ".settle-marker"}
    reliability.tried(2)
    reliability.outcome = "the link arrived as a link; nothing behind it was read or sent"


@pytest.mark.anyio
@pytest.mark.reliability("a symlinked directory moved in, then removed or re-pointed: edits made after it", kind="fault")
async def test_edits_after_the_link_is_gone_are_not_lost(tree, reliability) -> None:  # noqa: ANN001
    src, sandbox, cfg = tree
    async with running(cfg) as engine:
        _move_in(src, "tmp", src)  # notify now names src's own watches through tmp/up/
        await _converged(engine, src, sandbox)
        shutil.rmtree(src / "tmp")  # and those names are stale
        for i in range(3):
            (src / "real" / "f").write_text(f"v{i + 3}")
            (src / f"new{i}").write_text("x")
            await _converged(engine, src, sandbox)
        # the same with a link to a directory below the tree, then re-pointed
        _move_in(src, "tmp2", src / "real")
        await _converged(engine, src, sandbox)
        (src / "tmp2" / "up").unlink()
        (src / "tmp2" / "up").symlink_to(src.parent / "outside")
        (src / "real" / "f").write_text("after re-pointing")
        await _converged(engine, src, sandbox)
    reliability.tried(7)
    reliability.outcome = "stale watches noticed, watcher re-created, trees compared; every edit arrived"


def test_place_puts_paths_back_and_flags_stale_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "alias").symlink_to("real")
    (src / "up").symlink_to("..")
    links = LinkMap([str(src)])
    links.scan()
    assert set(links.links) == {str(src / "alias"), str(src / "up")}
    placed, unplaced = links.place({
        (2, str(src / "alias" / "f")),  # real/f, named through the link
        (2, str(src / "up" / "elsewhere" / "x")),  # outside the root: dropped (if it existed)
        (2, str(src / "up" / "src" / "real" / "g")),  # back into the root through ..
        (DELETED, str(src / "gone" / "x")), (DELETED, str(src / "gone")),  # a deleted directory
    })
    assert placed == {(2, str(src / "real" / "f")), (2, str(src / "real" / "g")),
                      (DELETED, str(src / "gone" / "x")), (DELETED, str(src / "gone"))}
    assert unplaced == [(2, str(src / "up" / "elsewhere" / "x"))]  # its directory does not exist
    # a path below a directory that does not exist and was not deleted: a stale name
    placed, unplaced = links.place({(ADDED, str(src / "was-a-link" / "f"))})
    assert placed == set() and unplaced == [(ADDED, str(src / "was-a-link" / "f"))]
    # a known link removed: stale
    (src / "alias").unlink()
    links.place({(DELETED, str(src / "alias"))})
    assert links.stale == {str(src / "alias")}


def test_through_link_names_the_outermost_link(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "real" / "deep").mkdir(parents=True)
    (src / "alias").symlink_to("real")
    memo: dict[str, str | None] = {}
    assert through_link(str(src / "alias" / "deep" / "f"), str(src), memo) == str(src / "alias")
    assert through_link(str(src / "alias" / "g"), str(src), memo) == str(src / "alias")
    assert through_link(str(src / "real" / "deep" / "f"), str(src), memo) is None
    assert through_link(str(src / "alias"), str(src), memo) is None  # the link itself


@pytest.mark.anyio
async def test_short_lived_temp_dirs_under_ignored_paths_are_not_a_loss(tree) -> None:  # noqa: ANN001
    """cargo makes and removes `target/debug/deps/rmetaXXXX/` in every build: events for the file
    in it arrive after the directory is gone. Under an ignored path that is no reason to compare
    whole trees (it was, with 'a symlinked directory was removed or re-pointed')."""
    from structlog.testing import capture_logs

    src, sandbox, cfg = tree
    deps = src / "target" / "debug" / "deps"
    deps.mkdir(parents=True)
    async with running(cfg) as engine:
        with capture_logs() as logs:
            for i in range(300):
                tmp = deps / f"rmeta{i:04}"
                tmp.mkdir()
                (tmp / "full.rmeta").write_bytes(b"x" * 100)
                # the removal lands at any point of the watcher's own 5 ms step: sometimes in
                # the batch after the one that names the file, once the directory is gone
                await anyio.sleep((i % 8) / 1000)
                os.rename(tmp / "full.rmeta", deps / f"lib{i % 7}.rmeta")
                shutil.rmtree(tmp)
            (src / "real" / "f").write_text("v2")  # a real edit in the same stretch still arrives
            await settle(engine, src, timeout=10)
            assert diff_trees(local_tree(src, skip={"target"}), local_tree(sandbox)) == []
        lost = [e for e in logs if e["event"] == "file events may have been lost"]
        assert lost == [], lost[:3]
        assert not any(r["reconcile"] for r in engine.trace.records[1:]), "a whole-tree comparison ran"
    assert (sandbox / "real" / "f").read_text() == "v2" and not (sandbox / "target").exists()


def test_a_link_that_vanishes_while_it_is_resolved_is_no_link(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """realpath lstat()s, then readlink()s: a link removed in between made it raise, and the
    exception stopped the (polling) watcher, found by the docker soak. Now: not a link."""
    from syncd import dirlinks

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    def vanished(path: str, **_kw: object) -> str:
        raise FileNotFoundError(2, "No such file or directory", path)

    links = LinkMap([str(tmp_path)])
    monkeypatch.setattr(dirlinks.os.path, "realpath", vanished)
    assert dirlinks._dir_link_target(str(tmp_path / "link")) is None
    links.note(str(tmp_path / "link"))
    assert links.links == {} and not links.stale
