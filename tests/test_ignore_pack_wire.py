"""Ignore rules (gitignore and .dockerignore semantics), the streaming tar packer, and the shell wire formats."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from pathspec import GitIgnoreSpec

from syncd.ignore import DEFAULT_IGNORES, IgnoreRules, _any_of
from syncd.model import Entry, Kind, Put
from syncd.pack import SMALL, PackReport, pack
from syncd.scan import HashCache, read_entry
from syncd.transports.shell import STAT_FORMAT, encode_deletes, parse_manifest

# --- ignore ---------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "app/src/gen").mkdir(parents=True)
    (tmp_path / "app/target/debug").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("*.log\n/app/secret.txt\n")
    (tmp_path / "app/.dockerignore").write_text("gen/\n")
    (tmp_path / "app/src/.syncdignore").write_text("*.tmp\n!keep.tmp\n")
    return tmp_path


@pytest.mark.parametrize(
    "rel, is_dir, ignored",
    [
        ("app/src/main.rs", False, False),
        ("app/.git", True, True),
        ("app/.git/config", False, True),
        ("app/src/x.swp", False, True),  # editor swap file (default)
        ("app/src/x~", False, True),
        ("app/node_modules/react/index.js", False, True),  # default
        ("app/target/debug/app", False, True),  # default `target/`
        ("app/src/debug.log", False, True),  # root .gitignore
        ("app/secret.txt", False, True),  # anchored pattern of the root .gitignore
        ("app/src/secret.txt", False, False),
        ("app/gen/out.rs", False, True),  # app/.dockerignore `gen/`, anchored at app/ as Docker does
        ("app/src/gen/out.rs", False, False),  # ... so not app/src/gen (gitignore would match it)
        ("app/src/a.tmp", False, True),  # app/src/.syncdignore
        ("app/src/keep.tmp", False, False),  # ... with its negation
        ("app/src/x.bak", False, True),  # the service's own `ignore`
    ],
)
def test_ignore_rules(tree: Path, rel: str, is_dir: bool, ignored: bool) -> None:
    rules = IgnoreRules(tree, ["*.bak"])
    assert rules.ignored(tree / rel, is_dir, tree / "app") is ignored


def test_explicit_mapping_beats_default_ignore(tree: Path) -> None:
    rules = IgnoreRules(tree, [])
    src = tree / "app/target/debug"
    assert rules.ignored(src / "app", False, src) is False  # mapped on purpose: synced
    assert rules.ignored(src / "x.swp", False, src) is True  # other defaults still apply
    assert rules.ignored(src, True, src) is False


def test_ignore_files_are_reread_after_invalidate(tree: Path) -> None:
    rules = IgnoreRules(tree, [])
    assert rules.ignored(tree / "app/src/a.md", False, tree / "app") is False
    (tree / "app/src/.syncdignore").write_text("*.md\n")
    rules.invalidate()
    assert rules.ignored(tree / "app/src/a.md", False, tree / "app") is True


def test_the_combined_any_rule_regex_matches_where_one_rule_does() -> None:
    """`_any_of` writes the shared "at any depth" prefix once and tries anchored rules at the
    start only: it must match exactly the paths that one of the rules' own regexes matches."""
    lines = [*DEFAULT_IGNORES, "*.log", "/build/", "docs/**/*.md", "a/**/b", "**/gen", "!keep.log", "x?z", "[ab]c/",
             "dir/", "/top.txt", "**/deep/**", "name with space", "trail\\ ", "#not-a-comment\\#"]
    regexes = [p.regex.pattern.replace("(?P<ps_d>", "(?:") for p in GitIgnoreSpec.from_lines(lines).patterns
               if p.include is not None and p.regex is not None]
    combined = _any_of(regexes)
    assert combined is not None and _any_of([]) is None
    names = ["a", "main.rs", "x.log", "keep.log", "build", "top.txt", "gen", "xyz", "ac", "bc", "dir", "deep", "b", "md",
             ".git", "node_modules", "x.swp", "x~", ".#x", "4913", "target", "name with space"]
    paths = {f"{d}{n}{s}" for d in ("", "build/", "docs/", "docs/a/", "a/", "a/q/", "src/deep/", "x/y/z/")
             for n in names for s in ("", "/", "/f.md", "/b")}
    wrong = [p for p in sorted(paths) if (combined(p) is not None) != any(re.search(r, p) for r in regexes)]
    assert not wrong
    assert sum(combined(p) is not None for p in paths) > len(paths) // 4  # the rules do match: not vacuous


# --- pack -----------------------------------------------------------------------------------


def _members(chunks: list[bytes]) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = (m, f.read() if f else b"")
    return out


def test_pack_modes_links_names_and_mtimes(tmp_path: Path) -> None:
    names = ["a b", "ü", "new\nline", "-rf", "l" * 200]
    for n in names:
        (tmp_path / n).write_text(n)
    os.chmod(tmp_path / "a b", 0o755)
    os.utime(tmp_path / "ü", (1_600_000_000, 1_600_000_000))
    (tmp_path / "link").symlink_to("../outside/" + "t" * 150)
    h = HashCache()
    puts = [Put(f"/app/src/{n}", read_entry(str(tmp_path / n), h)) for n in names + ["link"]]  # type: ignore[arg-type]
    report = PackReport()
    members = _members(list(pack(puts, "/app", report)))
    assert set(members) == {f"src/{n}" for n in names + ["link"]}  # relative to the root, never absolute
    assert members["src/a b"][0].mode == 0o755 and members["src/ü"][0].mode & 0o111 == 0
    assert members["src/ü"][0].mtime == 1_600_000_000
    assert members["src/new\nline"][1] == b"new\nline"
    assert members["src/link"][0].issym() and members["src/link"][0].linkname == "../outside/" + "t" * 150
    assert report.sent["/app/src/a b"].digest == hashlib.sha1(b"a b").hexdigest() and report.sent["/app/src/a b"].exec
    assert report.files == len(names)


def test_pack_vanished_file_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    put = Put("/app/x", read_entry(str(tmp_path / "x"), HashCache()))  # type: ignore[arg-type]
    (tmp_path / "x").unlink()
    report = PackReport()
    assert _members(list(pack([put], "/", report))) == {}
    assert report.vanished == ["/app/x"] and "/app/x" not in report.sent


def test_pack_streams_large_files_in_chunks(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(SMALL + 3 * (1 << 20) + 7)  # sparse: cheap to create, large to read
    report = PackReport()
    chunks = list(pack([Put("/app/big", read_entry(str(big), HashCache()))], "/app", report))  # type: ignore[arg-type]
    assert max(len(c) for c in chunks) <= 1 << 20  # never the whole file in one piece
    assert report.sent["/app/big"].digest == hashlib.sha1(big.read_bytes()).hexdigest()
    assert _members(chunks)["big"][0].size == big.stat().st_size


def test_pack_refuses_names_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    put = Put("/etc/x", read_entry(str(tmp_path / "x"), HashCache()))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        list(pack([put], "/app", PackReport()))


# --- wire formats, checked against a real POSIX sh ------------------------------------------------

WEIRD = ["a b", "new\nline", "-rf", "$(touch PWNED)", "back\\slash", "ü名", "quo'te\"", "%s%n", "\\0101"]


def test_delete_list_round_trips_through_sh_printf(tmp_path: Path) -> None:
    script = "while IFS= read -r l && [ -n \"$l\" ]; do printf '%b\\0' \"$l\"; done"
    out = subprocess.run(["sh", "-c", script], input=encode_deletes(WEIRD), capture_output=True, check=True, cwd=tmp_path)
    assert out.stdout.split(b"\0")[:-1] == [("./" + n).encode() for n in WEIRD]
    assert not (tmp_path / "PWNED").exists()


def test_parse_manifest_with_hostile_names() -> None:
    digest = hashlib.sha1(b"x").hexdigest()
    out = (
        b"@@M\0/app/src\0@@D\0.\0./d\0@@L\0./l\0../t\0@@X\0./new\nline\0@@H\0"
        + f"{digest}  ./new\nline\n{digest}  ./d/{digest}  ./fake\n".encode()
        + b"\0@@M\0/app/bin\0@@D\0@@L\0@@X\0./api\0@@H\0"
        + f"{digest}  ./api\n".encode()
        + b"\0"
    )
    m = parse_manifest(out)
    assert m["/app/src"].kind.value == "d" and m["/app/src/d"].kind.value == "d"
    assert m["/app/src/l"].link == "../t"
    assert m["/app/src/new\nline"].digest == digest and m["/app/src/new\nline"].exec
    assert m[f"/app/src/d/{digest}  ./fake"].digest == digest  # a name that looks like a record
    assert m["/app/bin/api"].exec


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_manifest_script_with_the_hosts_gnu_tools(tmp_path: Path, shell: str) -> None:
    """GNU coreutils' sha1sum escapes odd names ("\\\\" prefix); busybox does not. Both parse."""
    from syncd.transports.shell import MANIFEST_SCRIPT

    root = tmp_path / "app"
    root.mkdir()
    names = ["plain", "new\nline", "back\\slash", "ü", "sp ace", "cr\rname"]
    for n in names:
        (root / n).write_bytes(n.encode())
    (root / "plain").chmod(0o755)
    (root / "ln").symlink_to("plain")
    out = subprocess.run([shell, "-c", MANIFEST_SCRIPT, "m", str(root)], capture_output=True, check=True).stdout
    m = parse_manifest(out)
    for n in names:
        assert m[f"{root}/{n}"].digest == hashlib.sha1(n.encode()).hexdigest(), n
    assert m[f"{root}/plain"].exec and m[f"{root}/ln"].link == "plain" and m[str(root)].kind.value == "d"


def test_the_fast_tar_header_is_byte_for_byte_what_tarfile_writes() -> None:
    """pack._header builds headers from a template (tarfile costs ~20 µs a member); long names,
    long link targets, huge sizes and odd times go to tarfile. 20,000 random members agree."""
    import random

    from syncd.model import Kind
    from syncd.pack import _header, _tarfile_header

    rnd = random.Random(20261206)
    kinds = (Kind.FILE, Kind.DIR, Kind.LINK)
    for _ in range(20_000):
        kind = rnd.choice(kinds)
        name = "".join(rnd.choice("abé/_-. z\udcff") for _ in range(rnd.randint(1, 120))).strip("/") or "x"
        link = "".join(rnd.choice("ab/.é") for _ in range(rnd.randint(1, 110)))
        mode = rnd.randint(0, 0o7777)
        mtime = rnd.choice([0, 1.5e9, 1_700_000_000.7, rnd.randint(0, 8**11 - 1), 8**11, -1])
        size = rnd.choice([0, 1, 100, 8**11 - 1, 8**11, 2**40])
        assert _header(name, kind, mode, mtime, size, link) == _tarfile_header(name, kind, mode, mtime, size, link), \
            (name, kind, mode, mtime, size, link)


@pytest.mark.parametrize("stat_tool", [["stat"], ["busybox", "stat"]], ids=["gnu", "busybox"])
def test_quick_listing_is_one_stat_line_per_entry(tmp_path: Path, stat_tool: list[str]) -> None:
    """The quick listing's `@@A` section (`stat -c STAT_FORMAT`, GNU and busybox): the
    listed directory itself, directories, files with size, exec bit and a tar-written mtime
    (whole seconds; a sub-second mtime proves nothing), a name with a newline; a fifo left out."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "d" / "run.sh").chmod(0o755)
    os.utime(tmp_path / "d" / "run.sh", (1_600_000_000, 1_600_000_000))
    (tmp_path / "new\nline").write_bytes(b"xyz")
    os.utime(tmp_path / "new\nline", ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    (tmp_path / "edited").write_bytes(b"1234")
    os.utime(tmp_path / "edited", ns=(1_700_000_000 * 10**9 + 5, 1_700_000_000 * 10**9 + 5))
    os.mkfifo(tmp_path / "pipe")
    names = ["."] + sorted("./" + p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    lines = subprocess.run([*stat_tool, "-c", STAT_FORMAT, *names], cwd=tmp_path, capture_output=True,
                           check=True).stdout
    m = parse_manifest(b"@@M\0/app/src\0@@L\0@@A\0" + lines + b"\0")
    assert m.pop("/app/src").kind.value == "d" and m.pop("/app/src/d").kind.value == "d"
    assert m == {
        "/app/src/d/run.sh": Entry(Kind.FILE, exec=True, size=10, mtime=1_600_000_000),
        "/app/src/new\nline": Entry(Kind.FILE, exec=False, size=3, mtime=1_700_000_000),
        "/app/src/edited": Entry(Kind.FILE, exec=False, size=4, mtime=-2),
    }
