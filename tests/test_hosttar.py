"""Long runs of files packed by the host's GNU tar (syncd/hosttar.py): the stream extracts to
exactly what Python's packer gives, and only what is proven unchanged since the scan is
recorded as sent."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from test_cli import SYNCD
from test_ignore_pack_wire import _members
from trees import container_tree, diff_trees, local_tree

from syncd import hosttar
from syncd.model import Kind, Put
from syncd.pack import PackReport, pack
from syncd.scan import HashCache, read_entry

SETTLED = hosttar.SETTLED  # (before the fixture below changes it for the in-process tests)
pytestmark = pytest.mark.skipif(hosttar.gnu_tar() is None and not os.environ.get("CI"), reason="no GNU tar")


@pytest.fixture(autouse=True)
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files this test just wrote count as settled (the rule itself: test_recent_files_...)."""
    monkeypatch.setattr(hosttar, "SETTLED", -10.0)


def _tree(root: Path) -> list[tuple[str, str]]:
    """(local path, container path) of a tree with what a tar header can carry: modes, an
    mtime, long and odd names, a directory per group, a symlink, a file renamed by its sync."""
    src = root / "src"
    names = ["a b", "ü", "new\nline", "-rf", "l" * 200, "sub/x.txt", "sub/deeper/y.bin", "sub/.hidden"]
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(n.encode() * 50)
    os.chmod(src / "a b", 0o755)
    os.chmod(src / "sub/x.txt", 0o600)
    os.utime(src / "ü", (1_600_000_000, 1_600_000_000))
    (src / "link").symlink_to("../outside/" + "t" * 150)
    (root / "single.conf").write_text("renamed by its sync rule\n")
    out = [(str(src / "sub"), "/app/code/sub"), (str(src / "sub/deeper"), "/app/code/sub/deeper")]
    out += [(str(src / n), f"/app/code/{n}") for n in [*names, "link"]]
    return [*sorted(out, key=lambda p: p[1]), (str(root / "single.conf"), "/app/etc/app.conf")]


def _puts(pairs: list[tuple[str, str]]) -> list[Put]:
    """The pairs as the scan gives them: entries with digests and the stats they came from."""
    h = HashCache()
    return [Put(dest, read_entry(path, h)) for path, dest in pairs]  # type: ignore[arg-type]


def _packed(pairs: list[tuple[str, str]], tar_from: int) -> tuple[dict, PackReport]:
    puts = _puts(pairs)
    report = PackReport()
    return _members(list(pack(puts, "/app", report, tar_from=tar_from))), report


def _fields(m: tarfile.TarInfo) -> tuple:
    return (m.name, m.type, m.mode, m.size, m.mtime, m.linkname, m.uid, m.gid)


def test_host_tar_stream_extracts_like_pythons(tmp_path: Path) -> None:
    pairs = _tree(tmp_path)
    by_tar, tar_report = _packed(pairs, tar_from=1)
    by_python, py_report = _packed(pairs, tar_from=10**9)
    assert sorted(by_tar) == sorted(by_python)
    for name, (info, data) in by_python.items():
        assert _fields(by_tar[name][0]) == _fields(info), name
        assert by_tar[name][1] == data, name
    assert "etc/app.conf" in by_tar and "code/l" + "l" * 199 in by_tar  # renamed (Python), long (GNU LongLink)
    assert tar_report.sent == py_report.sent and tar_report.files == py_report.files == 9
    assert not (tar_report.torn or tar_report.vanished or tar_report.errors)
    assert tar_report.bytes == sum(len(b) for b in pack(
        _puts(pairs), "/app", PackReport(), tar_from=1))


def test_host_tar_is_what_packs_the_runs(tmp_path: Path) -> None:
    """The runs are tar's (not a silent fallback): its stream is not Python's byte for byte
    (GNU tar writes the owner names Python leaves empty), yet extracts the same (above)."""
    pairs = _tree(tmp_path)
    puts = _puts(pairs)
    names = [d.removeprefix("/app/") for _, d in pairs]
    cut = hosttar.runs(puts, names, now=time.time(), minimum=2)
    assert [(s, e, g) for s, e, g in cut if g is not None] == [(0, len(pairs) - 1, (str(tmp_path / "src"), "code"))]
    assert cut[-1] == (len(pairs) - 1, len(pairs), None)  # the renamed file
    tar_bytes = b"".join(pack(puts, "/app", PackReport(), tar_from=1))
    py_bytes = b"".join(pack(puts, "/app", PackReport(), tar_from=10**9))
    assert tar_bytes != py_bytes


def test_a_prefix_with_sed_specials_is_taken_literally(tmp_path: Path) -> None:
    """`--transform`'s replacement escapes `\\`, `&` and its delimiter `|`."""
    pairs = [(path, dest.replace("/app/code/", "/app/a&b|c\\d/")) for path, dest in _tree(tmp_path)[:-1]]
    by_tar, _ = _packed(pairs, tar_from=1)
    by_python, _ = _packed(pairs, tar_from=10**9)
    assert sorted(by_tar) == sorted(by_python) and "a&b|c\\d/sub/x.txt" in by_tar


def test_recent_files_and_short_runs_are_packed_in_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosttar, "SETTLED", 1.0)
    pairs = _tree(tmp_path)
    puts = _puts(pairs)
    names = [d.removeprefix("/app/") for _, d in pairs]
    newest = max(p.source.ctime for p in puts)
    assert hosttar.runs(puts, names, now=newest + 0.5, minimum=1) == [(0, len(puts), None)]  # all just written
    assert hosttar.runs(puts, names, now=newest + 2.0, minimum=len(puts))[0][2] is None  # a run too short


def test_a_file_changed_after_the_scan_goes_again_as_python_reads_it(tmp_path: Path) -> None:
    """tar may have read it mid-write: not recorded from the scan's digest, and packed again
    after tar's run by Python (a stable read): extraction keeps that later member."""
    pairs = _tree(tmp_path)
    puts = _puts(pairs)
    changed = next(p for p in puts if p.dest == "/app/code/sub/x.txt")
    Path(changed.source.path).write_text("edited after the scan\n")  # (size, ctime move)
    gone = next(p for p in puts if p.dest == "/app/code/ü")
    os.unlink(gone.source.path)
    report = PackReport()
    stream = b"".join(pack(puts, "/app", report, tar_from=1))
    with tarfile.open(fileobj=io.BytesIO(stream)) as tf:
        names = [m.name for m in tf]
    assert names.count("code/sub/x.txt") == 2  # tar's, then Python's
    members = _members([stream])  # (the last member of a name wins, as in extraction)
    assert members["code/sub/x.txt"][1] == b"edited after the scan\n"
    assert report.sent["/app/code/sub/x.txt"].digest == hashlib.sha1(b"edited after the scan\n").hexdigest()
    assert report.torn == [] and report.vanished == ["/app/code/ü"] and "/app/code/ü" not in report.sent
    assert "code/ü" not in members and members["code/a b"][1] == b"a b" * 50  # the others went whole
    assert report.sent["/app/code/link"].kind is Kind.LINK and report.files == 8


def test_a_tar_that_dies_mid_stream_breaks_the_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No archive end from tar: the stream raises (the transport drops the batch), never
    a half member followed by more."""
    fake = tmp_path / "bin" / "tar"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nhead -c 700 /dev/zero | tr '\\0' x\nexit 2\n")
    fake.chmod(0o755)
    pairs = _tree(tmp_path)
    puts = _puts(pairs)
    monkeypatch.setattr(hosttar, "gnu_tar", lambda: str(fake))
    with pytest.raises(OSError, match="without a whole archive"):
        list(pack(puts, "/app", PackReport(), tar_from=1))


def test_gnu_tar_is_found_here() -> None:
    assert hosttar.gnu_tar() == shutil.which("tar")


def test_tars_errors_are_attributed_to_the_files_it_names() -> None:
    said = ("/usr/bin/tar: a: b.txt: Cannot open: Permission denied\n"
            "/usr/bin/tar: Exiting with failure status due to previous errors\n")
    assert hosttar._failed("/usr/bin/tar", said, ["a: b.txt", "c"]) == {"a: b.txt": "Cannot open: Permission denied"}
    # a line naming no file of the run: no file of it counts as proven sent
    assert hosttar._failed("/usr/bin/tar", "/usr/bin/tar: -: Cannot write: Broken pipe\n", ["c"]) == {
        "": "-: Cannot write: Broken pipe"}


def test_a_big_reconcile_through_host_tar_lands_whole_in_a_docker_container(tmp_path: Path, make_container) -> None:
    """End to end: `syncd sync` of 600 settled paths (odd names, a long one, modes, symlinks,
    an empty directory) into a busybox container; the host's tar really packs them (a wrapper
    on PATH logs its runs), and the container tree equals the local one. Then an edit goes
    the Python way over a tar-written file."""
    src = tmp_path / "src"
    for i in range(600):
        (src / f"d{i // 100}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i // 100}" / f"f{i:03d}.txt").write_text(f"file {i}\n" * (i % 7))
    for name in ["a b", "ü", "new\nline", "-rf", "l" * 150, "$(touch PWNED)"]:
        (src / "odd" / name).parent.mkdir(exist_ok=True)
        (src / "odd" / name).write_text(name)
    (src / "odd" / "run.sh").write_text("#!/bin/sh\n")
    (src / "odd" / "run.sh").chmod(0o755)
    (src / "odd" / "link").symlink_to("../d0/f001.txt")
    (src / "empty").mkdir()
    container = make_container()
    (tmp_path / "syncd.toml").write_text(f"""
[targets.t]
kind = "docker"
container = "{container.name}"
[[services]]
name = "app"
target = "t"
sync = [{{ src = "src", dest = "/app/src" }}]
""")
    log = tmp_path / "tar-runs.log"
    wrapper = tmp_path / "bin" / "tar"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {shutil.which("tar")} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    time.sleep(SETTLED + 0.5)  # the files settle (the CLI runs the real rule, not the fixture's)
    done = subprocess.run([*SYNCD, "sync", "-c", str(tmp_path / "syncd.toml")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = [line for line in log.read_text().splitlines() if line.startswith("-c ")]
    assert runs, log.read_text()
    assert diff_trees(local_tree(src), container_tree(container, "/app/src")) == []
    (src / "d3" / "f300.txt").write_text("edited\n")
    done = subprocess.run([*SYNCD, "sync", "-c", str(tmp_path / "syncd.toml")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert diff_trees(local_tree(src), container_tree(container, "/app/src")) == []
    assert container.exec_run(["find", "/", "-xdev", "-name", "PWNED*"]).output.decode().strip() == ""
