"""The session protocol itself, against the real script under each shell it must support
(dash, bash, busybox ash) with the host's GNU tools or busybox's: no containers needed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from syncd.transports.session import (
    LISTING_ZIPPED,
    SESSION_SCRIPT,
    Answer,
    ProcessChannel,
    Session,
    SessionUnavailable,
    unpacked_listing,
)
from syncd.model import Entry, Kind
from syncd.transports.shell import UNREAD_LINK, parse_hash_list, parse_manifest, unread_links

SHELLS = [["dash", "-c"], ["bash", "-c"], ["busybox", "sh", "-c"]]
NAMES = ["plain", "sp ace", "new\nline", "back\\slash", "-rf", "$(touch PWNED)", "ü名"]


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(params=[s[0] for s in SHELLS])
def session(request, tmp_path: Path):  # noqa: ANN001, ANN201
    argv = next(s for s in SHELLS if s[0] == request.param)
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} not installed")
    s = Session(ProcessChannel([*argv, SESSION_SCRIPT, "syncd-session"]), request.param)
    s.wait_ready()
    yield s
    s.close()


def test_apply_manifest_hash_run_and_errors_in_one_session(session: Session, tmp_path: Path) -> None:
    root = str(tmp_path / "app")
    files = {f"d/{n}": n.encode() * 3 for n in NAMES}
    fut, sent = session.apply(root, [], iter([tar_of(files)]))
    assert fut.result(10).rc == 0 and sent() > 0
    # pipelined: a failing request (root below a file) does not desync the ones after it
    bad, _ = session.apply(root + "/d/plain/below", [], iter([tar_of({"x": b"x"})]))
    gone, _ = session.apply(root, ["d/-rf", "d/$(touch PWNED)"], iter([tar_of({"d/big": os.urandom(3_000_000)})]))
    listing = session.manifest([root + "/d"], quick=True)
    full = session.manifest([root + "/d"], quick=False)
    assert bad.result(10).rc != 0 and b"Not a directory" in bad.result().output
    assert gone.result(10).rc == 0
    quick = parse_manifest(listing.result(10).output)
    hashed = parse_manifest(full.result(10).output)
    expected = {root + "/d/" + n for n in NAMES if n not in ("-rf", "$(touch PWNED)")} | {root + "/d/big", root + "/d"}
    assert set(quick) == expected and set(hashed) == expected
    for n in ("plain", "new\nline", "back\\slash", "ü名"):
        path = f"{root}/d/{n}"
        assert hashed[path].digest == hashlib.sha1(n.encode() * 3).hexdigest()
        assert quick[path].size == len(n.encode() * 3) and quick[path].mtime == 1_700_000_000  # tar-written
    digests = parse_hash_list(session.hash([f"{root}/d/new\nline", f"{root}/d/sp ace"]).result(10).output)
    assert digests[f"{root}/d/sp ace"] == hashlib.sha1(b"sp ace" * 3).hexdigest()
    assert digests[f"{root}/d/new\nline"] == hashlib.sha1(b"new\nline" * 3).hexdigest()
    ran = session.run("echo out; echo err >&2; exit 3").result(10)
    assert (ran.rc, ran.output) == (3, b"out\nerr")
    assert not list(Path(root).rglob("PWNED")) and session.ping().result(5).rc == 0


def test_a_file_touched_by_someone_else_is_not_taken_for_tar_written(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "f").write_text("abc")  # sub-second mtime: not from tar
    quick = parse_manifest(session.manifest([str(root)], quick=True).result(10).output)
    assert quick[f"{root}/f"].size == 3 and quick[f"{root}/f"].mtime == -2


def test_missing_tools_make_the_session_unavailable(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("printf", "cat"):  # a PATH with no dd and no tar
        os.symlink(shutil.which(tool), fake_bin / tool)
    s = Session(ProcessChannel(["/bin/dash", "-c", f"PATH={fake_bin}; " + SESSION_SCRIPT, "x"]), "bare")
    with pytest.raises(SessionUnavailable, match="dd"):
        s.wait_ready()


class CountingChannel(ProcessChannel):
    """A ProcessChannel that keeps what came back, as it crossed the channel."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.received = bytearray()

    def recv(self) -> bytes:
        data = super().recv()
        self.received += data
        return data


@pytest.mark.parametrize("gzip", [True, False], ids=["with-gzip", "without-gzip"])
def test_a_listing_crosses_gzipped_where_it_can_and_reads_the_same(tmp_path: Path, gzip: bool) -> None:
    """Where gzip and base64 work the listing crosses the channel compressed (the bytes on the
    wire, counted, are a fraction of it), and reads back exactly as the plain listing does, names
    with a newline and a missing destination's exit code included; without gzip it crosses plain."""
    root = tmp_path / "app"
    for d in range(20):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(50):
            (root / f"d{d}" / f"file-{f}.txt").write_bytes(b"x" * f)
    (root / "new\nline").write_text("n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ("printf", "cat", "dd", "tar", "find", "xargs", "stat", "sha1sum", "rm", "mkdir", "readlink", "sh")
    for tool in (*tools, *(("gzip", "base64") if gzip else ())):
        os.symlink(shutil.which(tool), bin_dir / tool)
    channel = CountingChannel(["/bin/dash", "-c", f"PATH={bin_dir}; " + SESSION_SCRIPT, "x"])
    s = Session(channel, "counted")
    try:
        s.wait_ready()
        before = len(channel.received)
        answer = s.manifest([str(root)], quick=True).result(10)
        wire = len(channel.received) - before
        missing = s.manifest([str(root), str(root / "d0" / "file-1.txt" / "below")], quick=True).result(10)
    finally:
        s.close()
    assert answer.rc == 0
    listing = parse_manifest(answer.output)
    assert len(listing) == 1 + 20 + 20 * 50 + 1 and listing[f"{root}/new\nline"].size == 1
    assert listing[f"{root}/d3/file-7.txt"].size == 7
    assert (wire < len(answer.output) / 4) if gzip else (wire > len(answer.output))
    assert set(parse_manifest(missing.output)) == set(listing)  # the missing one lists nothing...
    assert missing.rc == 0  # ...and is not an error (manifest_one returns 0 for what is not there)


def test_a_damaged_or_cut_compressed_listing_is_an_error_not_a_listing() -> None:
    import base64
    import gzip as gz

    whole = gz.compress(b"@@M\0/app\0@@L\0@@A\0" + b"\0@@RC 3\0")
    assert unpacked_listing(Answer(1, 0, LISTING_ZIPPED + base64.b64encode(whole))) == Answer(1, 3, b"@@M\0/app\0@@L\0@@A\0")
    cut = unpacked_listing(Answer(1, 0, LISTING_ZIPPED + base64.b64encode(whole[:-12])))
    assert cut.rc == 1 and b"compressed listing" in cut.output
    no_rc = unpacked_listing(Answer(1, 0, LISTING_ZIPPED + base64.b64encode(gz.compress(b"@@M\0/app\0"))))
    assert no_rc.rc == 1 and b"ends early" in no_rc.output
    plain = Answer(2, 0, b"@@M\0/app\0")
    assert unpacked_listing(plain) is plain


def test_a_quick_listing_walks_once_and_its_symlinks_are_read_after(session: Session, tmp_path: Path) -> None:
    """The quick listing stats symlinks with everything else (one walk) and leaves their
    targets unread; `links` reads exactly those, odd names and a dangling link included."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "f").write_text("x")
    links = {"plain": "f", "sp ace": "../elsewhere", "new\nline": "t\nwo", "dangling": "/nowhere", "dir": "."}
    for name, target in links.items():
        os.symlink(target, root / name)
    quick = parse_manifest(session.manifest([str(root)], quick=True).result(10).output)
    assert sorted(unread_links(quick)) == sorted(f"{root}/{n}" for n in links)
    assert all(quick[f"{root}/{n}"] == Entry(Kind.LINK, link=UNREAD_LINK) for n in links)
    answer = session.links(unread_links(quick) + [f"{root}/gone"]).result(10)
    targets = parse_manifest(answer.output)
    assert answer.rc == 0
    assert {p: e.link for p, e in targets.items() if p != "/"} == {
        **{f"{root}/{n}": t for n, t in links.items()}, f"{root}/gone": ""}
