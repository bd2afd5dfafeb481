"""Randomized storms of file operations, used by the convergence tests of every transport."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

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
