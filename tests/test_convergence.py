"""Randomized storms of file operations; after each, the container tree equals the local tree
(file by file: content hash, exec bit, symlink target, directories), on local and docker."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from engine_harness import running, settle, write_config
from trees import container_tree, diff_trees, local_tree

pytestmark = pytest.mark.anyio

NAMES = [
    "plain.txt", "with space.txt", "ünïcødé-名前.md", "quote's \"double\".txt", "-rf", "--help",
    "new\nline", "$(touch PWNED)", "; rm -rf x", "back\\slash", "tab\tname", "*glob?[x]", ".hidden",
    "a" * 120, "x.rs", "y.js", "deep",
]


def _rand_name(rng: random.Random) -> str:
    return rng.choice(NAMES) + ("" if rng.random() < 0.6 else f"-{rng.randrange(50)}")


def _all(root: Path) -> tuple[list[Path], list[Path]]:
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            (files if p.is_symlink() else dirs).append(p)
        for f in filenames:
            files.append(Path(dirpath) / f)
    return files, dirs


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def storm(root: Path, rng: random.Random, ops: int) -> None:
    """`ops` random operations: creates, edits, same-byte rewrites, deletes, renames, directory
    moves and deletes, mode changes, symlinks (relative, dangling, absolute), kind changes."""
    for _ in range(ops):
        files, dirs = _all(root)
        parent = rng.choice([root] + dirs)
        op = rng.random()
        try:
            if op < 0.22 or not files:
                p = parent / _rand_name(rng)
                if p.exists() or p.is_symlink():
                    _remove(p)
                p.write_bytes(os.urandom(rng.choice([0, 1, 100, 5000, 70000])))
            elif op < 0.34:
                p = rng.choice(files)
                if not p.is_symlink():
                    with open(p, "ab") as f:
                        f.write(b"edit\n")
            elif op < 0.40:
                p = rng.choice(files)
                if not p.is_symlink():
                    p.write_bytes(p.read_bytes())  # same bytes: must cost a hash, not a transfer
            elif op < 0.50:
                _remove(rng.choice(files))
            elif op < 0.58:
                src = rng.choice(files)
                dst = rng.choice([root] + dirs) / _rand_name(rng)
                if not dst.exists() and not dst.is_symlink():
                    src.rename(dst)
            elif op < 0.66:
                d = parent / f"dir {rng.randrange(30)}"
                d.mkdir(exist_ok=True)
                (d / _rand_name(rng)).write_text("in a new dir")
            elif op < 0.72 and dirs:
                d = rng.choice(dirs)
                dst = rng.choice([root] + [x for x in dirs if d not in x.parents and x != d]) / f"moved {rng.randrange(30)}"
                if not dst.exists():
                    d.rename(dst)
            elif op < 0.77 and dirs:
                shutil.rmtree(rng.choice(dirs))
            elif op < 0.85:
                p = rng.choice(files)
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode ^ 0o111)
            elif op < 0.93:
                link = parent / f"link-{rng.randrange(20)}"
                if link.exists() or link.is_symlink():
                    _remove(link)
                target = rng.choice(["plain.txt", "../elsewhere", "/etc/hostname", "dangling/nowhere", "with space.txt"])
                link.symlink_to(target)
            else:
                # kind change: a file becomes a directory or a directory becomes a file
                if dirs and rng.random() < 0.5:
                    d = rng.choice(dirs)
                    shutil.rmtree(d)
                    d.write_text("was a directory")
                else:
                    p = rng.choice(files)
                    _remove(p)
                    p.mkdir()
                    (p / "inside").write_text("was a file")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, OSError):
            continue  # a random op that does not apply to the current tree: just skip it


CONFIG = """
[daemon]
debounce_ms = 20
max_batch_wait_ms = 500
trace = ".syncd/trace.jsonl"
[targets.t]
{target}
[[services]]
name = "app"
target = "t"
sync = [{{ src = "src", dest = "/app/src" }}]
"""


@pytest.fixture(params=["local", "docker"])
def setup(request, tmp_path):  # noqa: ANN001, ANN201
    src = tmp_path / "src"
    src.mkdir()
    (src / "seed.txt").write_text("seed")
    if request.param == "local":
        cfg = write_config(tmp_path, CONFIG.format(target='kind = "local"\npath = "sandbox"'))
        return cfg, src, lambda: local_tree(tmp_path / "sandbox" / "app" / "src"), lambda: []
    container = request.getfixturevalue("make_container")()
    cfg = write_config(tmp_path, CONFIG.format(target=f'kind = "docker"\ncontainer = "{container.name}"'))
    def pwned() -> list[str]:
        out = container.exec_run(["find", "/", "-xdev", "-name", "PWNED*"]).output.decode()
        return [line for line in out.splitlines() if line.strip()]

    return cfg, src, lambda: container_tree(container, "/app/src"), pwned


@pytest.mark.parametrize("seed", [1, 2])
async def test_storms_converge(setup, seed: int) -> None:  # noqa: ANN001
    cfg, src, observe, shell_leaks = setup
    rng = random.Random(seed)
    async with running(cfg) as engine:
        for round_no in range(3):
            storm(src, rng, ops=60)
            await settle(engine, src)
            problems = diff_trees(local_tree(src), observe())
            assert not problems, f"round {round_no}: trees differ:\n" + "\n".join(problems[:20])
        # whole directories replaced at once (like a `git checkout`), then emptied
        for i in range(40):
            (src / "checkout" / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
            (src / "checkout" / f"d{i % 5}" / f"f{i}").write_text(f"v{i}")
        await settle(engine, src)
        assert not diff_trees(local_tree(src), observe())
        shutil.rmtree(src / "checkout")
        await settle(engine, src)
        tree = observe()
        assert not any(k.startswith("checkout") for k in tree)
        assert not diff_trees(local_tree(src), tree)
        # No batch reported an error, and no file name was ever interpreted by a shell.
        bad = [r for r in engine.trace.records if not r["ok"]]
        assert not bad, bad[:3]
        assert shell_leaks() == []


async def test_a_5000_file_checkout_is_a_handful_of_batches(tmp_path) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(tmp_path, CONFIG.format(target='kind = "local"\npath = "sandbox"').replace("max_batch_wait_ms = 500", "max_batch_wait_ms = 2000"))
    async with running(cfg) as engine:
        before = len(engine.trace.records)
        for i in range(5000):
            d = src / f"pkg{i % 50}"
            d.mkdir(exist_ok=True)
            (d / f"file{i}.rs").write_text(f"// {i}\n")
        await settle(engine, src, timeout=60)
        batches = [r for r in engine.trace.records[before:] if not r["reconcile"]]
        assert len(batches) <= 8, [r["spans"][-1]["detail"] for r in batches]
        assert sum((r["spans"][-1]["detail"] or {}).get("files", 0) for r in batches) >= 5000
        assert not diff_trees(local_tree(src), local_tree(tmp_path / "sandbox/app/src"))
