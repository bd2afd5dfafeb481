"""A cold scan hashes in a helper process (syncd/hashwork.py) while it walks on: the same
entries, in the same order, the same fingerprint and cache as hashing in-process; what the
helper cannot read or never answers is hashed in-process, for the real error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import syncd.scan as scan
from syncd.hashwork import FAILED, GONE, OK, Hasher
from syncd.ignore import IgnoreRules
from syncd.scan import Fingerprint, HashCache, scan_source


def _tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n" * (i % 5))
    (root / "big.bin").write_bytes(os.urandom(3 << 20))  # (read in several chunks)
    os.symlink("d0", root / "link")
    (root / "d1" / "run.sh").write_text("#!/bin/sh\n")
    (root / "d1" / "run.sh").chmod(0o755)


def _scan(root: Path, helper_after: int) -> tuple[dict, str, dict, list]:
    fp, hashes, errors = Fingerprint(), HashCache(), []
    out = scan_source(root, IgnoreRules(root, ["ignored*"]), hashes, errors, fp, helper_after=helper_after)
    return out, fp.hexdigest(), hashes.snapshot(), errors


def test_a_scan_hashed_by_the_helper_equals_one_hashed_in_process(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 60)
    (tmp_path / "src" / "ignored.txt").write_text("never hashed")
    alone = _scan(tmp_path / "src", helper_after=10**9)
    helped = _scan(tmp_path / "src", helper_after=5)
    assert list(helped[0].items()) == list(alone[0].items())  # same entries, same walk order
    assert helped[1:] == alone[1:]  # fingerprint, hash cache, no errors
    big = helped[0][str(tmp_path / "src" / "big.bin")]
    assert big.entry.digest == hashlib.sha1((tmp_path / "src" / "big.bin").read_bytes()).hexdigest()
    assert str(tmp_path / "src" / "ignored.txt") not in helped[0]


def test_the_helper_answers_in_order_and_says_what_it_could_not_read(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a\n")
    weird = tmp_path / "n\u00e9e \udcff"  # (a name that is not UTF-8 on disk)
    weird.write_bytes(b"b")
    hasher = Hasher()
    for path in (tmp_path / "a", tmp_path / "missing", tmp_path, weird, tmp_path / "a" / "below-a-file"):
        hasher.submit(str(path))
    answers = hasher.results()
    hasher.close()
    assert answers == [(OK, hashlib.sha1(b"a\n").digest()), (GONE, bytes(20)),
                       (FAILED, bytes(20)),  # a directory: read fails, hashed in-process for the error
                       (OK, hashlib.sha1(b"b").digest()), (GONE, bytes(20))]


def test_a_helper_that_dies_leaves_its_files_to_be_hashed_in_process(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "src", 40)
    alone = _scan(tmp_path / "src", helper_after=10**9)

    class Dying(Hasher):
        def results(self) -> list[tuple[int, bytes]]:
            self._proc.kill()
            return super().results()

    monkeypatch.setattr(scan, "Hasher", Dying)
    assert _scan(tmp_path / "src", helper_after=3)[:3] == alone[:3]


def test_a_file_the_helper_cannot_read_is_hashed_in_process_and_reported_against_its_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "src", 20)
    refused, vanished = str(tmp_path / "src" / "d3" / "f3.txt"), str(tmp_path / "src" / "d4" / "f4.txt")

    class Refusing(Hasher):
        def results(self) -> list[tuple[int, bytes]]:
            os.unlink(vanished)  # (gone when hashed again in-process: vanished, no error)
            return [(FAILED, b"")] * self._sent

    def sha1_file(path: str) -> bytes:
        if path == refused:
            raise PermissionError(13, "Permission denied")
        return hashlib.sha1(Path(path).read_bytes()).digest()

    monkeypatch.setattr(scan, "Hasher", Refusing)
    monkeypatch.setattr(scan, "sha1_file", sha1_file)
    out, _, cache, errors = _scan(tmp_path / "src", helper_after=2)
    assert errors == [(refused, "Permission denied")]
    assert refused not in out and vanished not in out and refused not in cache and vanished not in cache
    assert len([p for p in out if p.endswith(".txt")]) == 18
